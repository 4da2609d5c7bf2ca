"""Training rows for ``ctxrely train``: rows parsed by the one SFT-row parser
(:mod:`ctxrely.data.sft`), turned into TRL prompt-completion rows (completion-only loss).

- ``alpaca`` (``instruction``, ``input``, ``output``): the prompt is rendered with a ctxrely prompt
  format (``input`` is the context, ``instruction`` the question), the same renderer the probes
  use, so training and probing prompts match.
- ``messages``: the last turn must be the assistant's reply to a user turn; it becomes the
  completion and every turn before it the (conversational) prompt, so TRL applies the chat template.
- ``prompt_completion``: used as is (strings or conversational lists).

Example:
    >>> rows = [{"instruction": "Capital of France?", "input": "", "output": "Paris"}]
    >>> to_sft_rows(rows, "auto", prompt_format="raw")
    [{'prompt': 'Question: Capital of France?\\nAnswer:', 'completion': ' Paris'}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ctxrely.data.records import Record, read_records
from ctxrely.data.sft import FORMATS, SFTExample, detect_format, get_path, parse_row
from ctxrely.errors import DataError

__all__ = ["FORMATS", "detect_format", "is_conversational", "load_rows", "load_sft_rows", "infer_eval_format", "probe_format",
           "to_id_rows", "to_sft_rows"]


def load_rows(source: str, split: str = "train", limit: int | None = None) -> list[Record]:
    """``(line, record)`` pairs of a local JSON/JSONL/CSV file or a hub dataset (row number as line)."""
    records = read_records(source, split)
    if not records:
        raise DataError("no rows", path=source)
    return records[:limit] if limit else records


def _chat(msgs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def to_trl_row(ex: SFTExample, pf: Any, tokenizer: Any = None) -> dict[str, Any]:
    """One parsed row as a TRL ``{"prompt", "completion"}`` row (see the module docstring)."""
    from ctxrely.engine.prompting import continuation

    if ex.fmt == "alpaca":
        prompt = pf.render(ex.context, ex.prompt_without_context, tokenizer)
        return {"prompt": prompt, "completion": continuation(prompt, ex.response)}
    container = ex.response_path[0]
    if len(ex.response_path) == 1:  # plain-text prompt / completion
        return {"prompt": ex.raw["prompt"], "completion": ex.raw["completion"]}
    if container == "messages":
        msgs = _chat(get_path(ex.raw, ("messages",)))
        return {"prompt": msgs[:-1], "completion": msgs[-1:]}
    return {"prompt": _chat(ex.raw["prompt"]), "completion": _chat(ex.raw["completion"])}


def to_sft_rows(rows: Sequence[dict[str, Any] | tuple[int, dict[str, Any]]], fmt: str = "auto", *,
                prompt_format: str = "alpaca", tokenizer: Any = None, path: str = "<rows>") -> list[dict[str, Any]]:
    """Convert rows (or ``(line, row)`` pairs) to TRL ``{"prompt", "completion"}`` rows.

    Raises:
        DataError: a row lacks a field or has the wrong type (names path, line and field).
    """
    from ctxrely.prompts import get_format

    pairs = [r if isinstance(r, tuple) else (i + 1, r) for i, r in enumerate(rows)]
    if not pairs:
        raise DataError("no training rows", path=path)
    if fmt not in ("auto", *FORMATS):
        raise DataError(f"unknown dataset format {fmt!r}; choose auto, {', '.join(FORMATS)}", path=path)
    pf = get_format(prompt_format)
    out: list[dict[str, Any]] = []
    kind = fmt
    for i, (line, row) in enumerate(pairs):
        if not isinstance(row, dict):
            raise DataError(f"row is a {type(row).__name__}, expected an object", path=path, line=line)
        if kind == "auto":  # the first row decides for the whole file
            kind = detect_format(row, path, line)
        out.append(to_trl_row(parse_row(row, fmt=kind, index=i, line=line, path=path), pf, tokenizer))
    if len({isinstance(r["prompt"], list) for r in out}) > 1:
        raise DataError("rows mix chat (message lists) and plain-text prompts", path=path)
    return out


def is_conversational(rows: Sequence[dict[str, Any]]) -> bool:
    return bool(rows) and isinstance(rows[0]["prompt"], list)


def to_id_rows(sft_rows: Sequence[dict[str, Any]], tokenizer: Any) -> list[dict[str, str]]:
    """Plain ``{prompt, completion}`` text for the in-distribution probe (chat rows are templated)."""
    out = []
    for r in sft_rows:
        if isinstance(r["prompt"], list):
            prompt = tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
            out.append({"prompt": prompt, "completion": r["completion"][-1]["content"]})
        else:
            out.append({"prompt": r["prompt"], "completion": r["completion"]})
    return out


def load_sft_rows(source: str, *, fmt: str = "auto", split: str = "train", limit: int | None = None,
                  prompt_format: str = "alpaca", tokenizer: Any = None) -> list[dict[str, Any]]:
    """:func:`load_rows` then :func:`to_sft_rows`."""
    return to_sft_rows(load_rows(source, split, limit), fmt, prompt_format=prompt_format, tokenizer=tokenizer,
                       path=source)


def infer_eval_format(dataset_format: str, rows: Sequence[dict[str, Any] | tuple[int, dict[str, Any]]],
                 sft_rows: Sequence[dict[str, Any]], prompt_format: str) -> str:
    """The probe prompt format for ``eval_format: auto``: the training prompt format for Alpaca data,
    ``chat`` for chat data, ``raw`` for plain prompt/completion data."""
    if is_conversational(sft_rows):
        return "chat"
    first = rows[0][1] if isinstance(rows[0], tuple) else rows[0]
    kind = dataset_format if dataset_format != "auto" else detect_format(first)
    return prompt_format if kind == "alpaca" else "raw"


probe_format = infer_eval_format  # former name, kept ("probe" means what the training callback measures)
