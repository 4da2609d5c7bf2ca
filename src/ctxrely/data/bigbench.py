"""BIG-bench JSON tasks of the knowledge-conflict kind (``contextual_parametric_knowledge_conflicts``).

A task file is one JSON object with header fields (``task_prefix``, ``example_input_prefix``, ...)
and ``examples``, each with ``input`` (``"\\nQuestion: ...\\nContext: ..."``), ``target`` and
``target_scores``: the answer scored 1 is the context's (counterfactual) answer, the one scored 0
the real, memorised one. An example whose ``target_scores`` does not hold exactly one answer of
each score cannot be read as a conflict: it is skipped, and the loader logs which (its index,
line and question). The BIG-bench prompt (task prefix + input + output prefix) is kept in
``meta["bigbench_prompt"]``; prompts are built by the chosen format like every other suite.

Example:
    >>> suite = load_bigbench("../shared/data/bigbench_cpkc/task_sample.json")  # doctest: +SKIP
    >>> suite.examples[0].cf_answer, suite.examples[0].param_answer  # doctest: +SKIP
    ('Griselda Blanco', 'Jeremy Johnson')
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ctxrely.data.schema import ConflictExample, DataError, Suite

log = logging.getLogger(__name__)
_INPUT = re.compile(r"^\s*Question:\s*(?P<q>.*?)\s*\n\s*Context:\s*(?P<c>.*?)\s*$", flags=re.DOTALL)


def is_bigbench(path: str | Path) -> bool:
    """Whether a file is a BIG-bench JSON task (one object with ``examples``), from its first 4 KB."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    with p.open(encoding="utf-8-sig", errors="replace") as fh:  # not UTF-8: the reader names the line
        head = fh.read(4096).lstrip()
    return head.startswith("{") and ('"examples"' in head or
                                     '"examples"' in p.read_text(encoding="utf-8-sig", errors="replace"))


def _examples_with_lines(text: str, path: str) -> list[tuple[int, Any]]:
    from ctxrely.data.records import _json_array  # the JSON-list reader with line numbers

    m = re.search(r'"examples"\s*:\s*\[', text)
    if m is None:
        raise DataError("a BIG-bench task needs an 'examples' list", path=path, field="examples")
    start = m.end() - 1
    offset = text.count("\n", 0, start)
    body = text[start:]
    try:  # where the list closes (strings may hold brackets), then each element's own line
        _, end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError as e:
        raise DataError(f"bad JSON: {e.msg}", path=path, line=offset + e.lineno) from e
    try:
        return [(offset + n, rec) for n, rec in _json_array(body[:end], path)]
    except DataError as e:
        raise DataError(str(e).split(": ", 1)[-1], path=path, line=(e.line or 0) + offset) from e


def load_bigbench(path: str | Path, name: str | None = None) -> Suite:
    """Read a BIG-bench knowledge-conflict task as a :class:`Suite` (skipping, and naming, bad examples)."""
    p = Path(path).expanduser()
    from ctxrely.data.records import read_text

    text = read_text(p)  # non-UTF-8 bytes: one DataError naming the line
    try:
        task = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"bad JSON: {e.msg}", path=str(p), line=e.lineno) from e
    if not isinstance(task, dict) or not isinstance(task.get("examples"), list):
        raise DataError("a BIG-bench task is an object with an 'examples' list", path=str(p), field="examples")
    name = name or p.stem
    prefix = str(task.get("task_prefix", ""))
    in_pre, out_pre = str(task.get("example_input_prefix", "\n")), str(task.get("example_output_prefix", "\nA: "))
    out: list[ConflictExample] = []
    for i, (line, rec) in enumerate(_examples_with_lines(text, str(p))):
        if not isinstance(rec, dict):
            raise DataError("example is not an object", path=str(p), line=line)
        for key in ("input", "target_scores"):
            if key not in rec:
                raise DataError("missing field", path=str(p), line=line, field=key)
        scores = rec["target_scores"]
        if not isinstance(scores, dict):
            raise DataError("expected an object {answer: score}", path=str(p), line=line, field="target_scores")
        cf = [a for a, s in scores.items() if s == 1]
        param = [a for a, s in scores.items() if s == 0]
        m = _INPUT.match(str(rec["input"]))
        if m is None:
            raise DataError("expected '\\nQuestion: ...\\nContext: ...'", path=str(p), line=line, field="input")
        if len(scores) != 2 or len(cf) != 1 or len(param) != 1:
            log.warning("%s line %d: example %d (%r) has target_scores %s, not one answer scored 1 and one 0: "
                        "skipped", p, line, i, m.group("q")[:80], json.dumps(scores, ensure_ascii=False))
            continue
        out.append(ConflictExample(
            id=f"{name}-{i:05d}", suite=name, context=m.group("c"), question=m.group("q"), cf_answer=cf[0].strip(),
            param_answer=param[0].strip(),
            meta={"line": line, "format": "bigbench", "index": i,
                  "bigbench_prompt": f"{prefix}{in_pre}{rec['input']}{out_pre}"}))
    if not out:
        raise DataError("no usable examples", path=str(p), field="examples")
    return Suite(name=name, version="file", examples=out, source=str(p))
