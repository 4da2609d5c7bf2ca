"""AdaCAD's published QA files: each input is two JSONL rows sharing an ``input_index``.

The row with ``assigned_weight`` 1 holds the whole prompt in ``context_string`` (passage, an
instruction, ``\\nQuestion: ...\\nAnswer:``); the row with weight 0 the same prompt without the
passage. ``gold_answers`` (a string, or a list) is the context's answer; there is no parametric
answer, so param metrics are absent. The prompts are kept verbatim (``meta["prebuilt_prompt"]``
and ``meta["prebuilt_prompt_no_context"]``; :func:`ctxrely.engine.prompting.render` uses them), the
passage is what the first prompt has and the second lacks, and the question is the text after the
last ``Question:``. Rows are paired by ``input_index``, never by the sign of the weight.

Example:
    >>> rows = [(1, {"input_index": 0, "assigned_weight": 1, "gold_answers": "Lyon",
    ...              "context_string": "Paris is in Lyon.\\nQuestion: Where is Paris?\\nAnswer:"}),
    ...         (2, {"input_index": 0, "assigned_weight": 0, "gold_answers": "Lyon",
    ...              "context_string": "Question: Where is Paris?\\nAnswer:"})]
    >>> ex = cad_pair_examples(rows, "f.jsonl", "f")[0]
    >>> ex.context, ex.question, ex.cf_answer, ex.param_answer
    ('Paris is in Lyon.', 'Where is Paris?', 'Lyon', None)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ctxrely.data.schema import ConflictExample, DataError

KEYS = frozenset({"input_index", "assigned_weight", "context_string"})


def is_cad_pairs(keys: set[str]) -> bool:
    """Whether a record's fields are AdaCAD's paired-row shape."""
    return keys >= KEYS


def _answers(val: Any, path: str, line: int) -> list[str]:
    items = [val] if isinstance(val, str) else val
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x.strip() for x in items):
        raise DataError("expected a non-empty string or list of strings", path=path, line=line, field="gold_answers")
    return [x.strip() for x in items]


def cad_pair_examples(records: Sequence[tuple[int, dict[str, Any]]], source: str, name: str) -> list[ConflictExample]:
    """Pair ``(line, record)`` rows by ``input_index`` into examples, in order of first appearance."""
    groups: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    for line, rec in records:
        for key in KEYS | {"gold_answers"}:
            if rec.get(key) is None:
                raise DataError("missing field", path=source, line=line, field=key)
        idx = rec["input_index"]
        if isinstance(idx, bool) or not isinstance(idx, (int, str)):
            raise DataError(f"expected an integer or string, got {idx!r}", path=source, line=line, field="input_index")
        if not isinstance(rec["context_string"], str):
            raise DataError("expected a string", path=source, line=line, field="context_string")
        groups.setdefault(idx, []).append((line, rec))
    out = []
    for idx, rows in groups.items():
        lines = ", ".join(str(n) for n, _ in rows)
        by_w = {r["assigned_weight"]: (n, r) for n, r in rows}
        if len(rows) != 2 or set(by_w) != {0, 1}:
            weights = [r["assigned_weight"] for _, r in rows]
            raise DataError(f"input_index {idx!r}: {len(rows)} row(s) (lines {lines}) with assigned_weight {weights}; "
                            "expected two rows, weights 1 (with context) and 0 (without)",
                            path=source, line=rows[0][0], field="input_index")
        (line, with_ctx), (_, without) = by_w[1], by_w[0]
        gold = _answers(with_ctx["gold_answers"], source, line)
        prompt, bare = with_ctx["context_string"], without["context_string"]
        passage = _passage(prompt, bare)
        if not passage:
            raise DataError(f"input_index {idx!r}: the prompts with and without context (lines {lines}) are "
                            "the same; nothing is a context", path=source, line=line, field="context_string")
        if not re.search(r"Question:\s*\S", prompt):
            raise DataError(f"input_index {idx!r}: no 'Question: ...' in the prompt, so the question cannot be "
                            "told from the passage", path=source, line=line, field="context_string")
        out.append(ConflictExample(
            id=f"{name}-{idx}", suite=name, context=passage, question=_question(prompt),
            cf_answer=gold[0], cf_aliases=tuple(gold[1:]), param_answer=None,
            meta={"line": line, "format": "cad_pairs", "input_index": idx, "prebuilt_prompt": prompt,
                  "prebuilt_prompt_no_context": bare}))
    return out


def _passage(prompt: str, bare: str) -> str:
    a = 0
    while a < min(len(prompt), len(bare)) and prompt[a] == bare[a]:
        a += 1
    b = 0
    while b < min(len(prompt), len(bare)) - a and prompt[-1 - b] == bare[-1 - b]:
        b += 1
    return prompt[a:len(prompt) - b].strip()


def _question(prompt: str) -> str:
    m = re.search(r"Question:\s*(.*?)\s*(?:\nAnswer:.*)?$", prompt, flags=re.DOTALL)
    return m.group(1).strip() if m and m.group(1).strip() else prompt.strip()
