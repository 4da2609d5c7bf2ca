"""Training data for ``ctxrely train``: Alpaca, chat ``messages`` and ``prompt``/``completion`` rows,
from local files or hub ids, turned into TRL prompt-completion rows (completion-only loss).

- ``alpaca`` (``instruction``, ``input``, ``output``): the prompt is rendered with a ctxrely prompt
  format (``input`` is the context, ``instruction`` the question), the same renderer the probes
  use, so training and probing prompts match.
- ``messages``: the last turn must be the assistant's; it becomes the completion and every turn
  before it the (conversational) prompt, so TRL applies the chat template.
- ``prompt_completion``: used as is (strings or conversational lists).

Example:
    >>> rows = [{"instruction": "Capital of France?", "input": "", "output": "Paris"}]
    >>> to_sft_rows(rows, "auto", prompt_format="raw")
    [{'prompt': 'Question: Capital of France?\\nAnswer:', 'completion': ' Paris'}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ctxrely.data.schema import DataError

FORMATS = ("alpaca", "messages", "prompt_completion")


def load_rows(source: str, split: str = "train", limit: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``(line, record)`` pairs of a local JSON/JSONL/CSV file or a hub dataset (row number as line)."""
    from ctxrely.data.loaders import read_records

    records = read_records(source, split)
    if not records:
        raise DataError("no rows", path=source)
    return records[:limit] if limit else records


def detect_format(row: dict[str, Any], path: str = "<rows>", line: int | None = None) -> str:
    """``alpaca``, ``messages`` or ``prompt_completion`` from a row's keys (a DataError names the row)."""
    from ctxrely.diagnose.sft_rows import detect_format as detect

    try:
        return detect(row)
    except ValueError as e:
        raise DataError(str(e), path=path, line=line) from None


def _text(row: dict[str, Any], key: str, path: str, line: int | None, allow_empty: bool = False) -> str:
    v = row.get(key, "" if allow_empty else None)
    if v is None:
        v = "" if allow_empty else None
    if not isinstance(v, str) or (not allow_empty and not v.strip()):
        raise DataError("expected a non-empty string" if not allow_empty else "expected a string",
                        path=path, line=line, field=key)
    return v


def _messages(v: Any, path: str, line: int | None, key: str) -> list[dict[str, str]]:
    if not isinstance(v, list) or not v:
        raise DataError("expected a non-empty list of {role, content} messages", path=path, line=line, field=key)
    for i, m in enumerate(v):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise DataError(f"message {i} needs string 'role' and 'content'", path=path, line=line, field=key)
    return [{"role": m["role"], "content": m["content"]} for m in v]


def to_sft_rows(rows: Sequence[dict[str, Any] | tuple[int, dict[str, Any]]], fmt: str = "auto", *,
                prompt_format: str = "alpaca", tokenizer: Any = None, path: str = "<rows>") -> list[dict[str, Any]]:
    """Convert rows (or ``(line, row)`` pairs) to TRL ``{"prompt", "completion"}`` rows.

    Raises:
        DataError: a row lacks a field or has the wrong type (names path, line and field).
    """
    from ctxrely.engine.prompting import continuation
    from ctxrely.prompts import get_format

    pairs = [r if isinstance(r, tuple) else (i + 1, r) for i, r in enumerate(rows)]
    if not pairs:
        raise DataError("no training rows", path=path)
    if fmt not in ("auto", *FORMATS):
        raise DataError(f"unknown dataset format {fmt!r}; choose auto, {', '.join(FORMATS)}", path=path)
    pf = get_format(prompt_format)
    out: list[dict[str, Any]] = []
    kind = fmt
    for line, row in pairs:
        if not isinstance(row, dict):
            raise DataError(f"row is a {type(row).__name__}, expected an object", path=path, line=line)
        if kind == "auto":  # the first row decides for the whole file
            kind = detect_format(row, path, line)
        if kind == "alpaca":
            prompt = pf.render(_text(row, "input", path, line, allow_empty=True),
                               _text(row, "instruction", path, line), tokenizer)
            out.append({"prompt": prompt, "completion": continuation(prompt, _text(row, "output", path, line))})
        elif kind == "messages":
            msgs = _messages(row.get("messages"), path, line, "messages")
            if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
                raise DataError("the last message must be the assistant's reply, after at least one other",
                                path=path, line=line, field="messages")
            out.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
        else:
            p, c = row.get("prompt"), row.get("completion")
            if isinstance(p, list) or isinstance(c, list):
                out.append({"prompt": _messages(p, path, line, "prompt"),
                            "completion": _messages(c, path, line, "completion")})
            else:
                out.append({"prompt": _text(row, "prompt", path, line),
                            "completion": _text(row, "completion", path, line)})
    kinds = {isinstance(r["prompt"], list) for r in out}
    if len(kinds) > 1:
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


def probe_format(dataset_format: str, rows: Sequence[dict[str, Any] | tuple[int, dict[str, Any]]],
                 sft_rows: Sequence[dict[str, Any]], prompt_format: str) -> str:
    """The probe prompt format for ``eval_format: auto``: the training prompt format for Alpaca data,
    ``chat`` for chat data, ``raw`` for plain prompt/completion data."""
    if is_conversational(sft_rows):
        return "chat"
    first = rows[0][1] if isinstance(rows[0], tuple) else rows[0]
    kind = dataset_format if dataset_format != "auto" else detect_format(first)
    return prompt_format if kind == "alpaca" else "raw"
