"""The one parser of instruction-tuning rows (Alpaca, chat ``messages``, ``prompt``/``completion``):
each row becomes a normalized :class:`SFTExample` that keeps its raw row, so tools can write it
back in its original format. ``score-data``, ``filter``, ``augment``, ``train`` and the lab all read
training data through here.

Reads JSONL, JSON (an array, or JSONL in a ``.json`` file) and CSV/TSV through
:mod:`ctxrely.data.records` (chat lists in CSV cells are JSON text). Every error names the file, the
line and the field. The context of a row is:

* Alpaca: ``input`` (``instruction`` is the question).
* ``messages`` / ``prompt``-``completion``: a top-level field (``--context-field``; a field named
  ``context`` is used when present), or the ``{context}`` part of the last user turn matched against
  a template (``--context-template "Context: {context}\\n\\nQuestion: {question}"``). A context field
  found verbatim in the user turn is cut out of it for the no-context prompt; otherwise it is put in
  front of the user turn (``context + "\\n\\n" + turn``) for the with-context prompt. Rows that do
  not match the template count as rows without context (at least one row must match).

Example:
    >>> data = load_sft("train.jsonl")  # doctest: +SKIP
    >>> ex = data.examples[0]  # doctest: +SKIP
    >>> ex.prompt_with_context, ex.prompt_without_context, ex.response  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ctxrely.data.records import Record, columns_of, file_layout, read_file_records
from ctxrely.data.sft_context import Path_, TemplateMatch, get_path, match_template, set_path
from ctxrely.errors import DataError

__all__ = ["FORMATS", "ROW_FORMATS", "SFTData", "SFTExample", "TemplateMatch", "as_examples", "detect_format",
           "example_hash", "get_path", "load_sft", "match_template", "parse_row", "read_sft_records", "row_format_name", "set_path"]

Fmt = Literal["alpaca", "messages", "prompt_completion"]
ROW_FORMATS = ("alpaca", "messages", "prompt_completion")  # layouts of training rows (not prompt formats)
FORMATS = ROW_FORMATS  # former name, kept
_ROW_FORMAT_SPELLINGS = {"prompt-completion": "prompt_completion", "chat": "messages"}


def row_format_name(name: str) -> str:
    """The canonical name of a row layout: ``prompt-completion`` and ``prompt_completion`` are one
    layout, and so are ``chat`` and ``messages`` (other names pass through unchanged).

    Example:
        >>> row_format_name("prompt-completion"), row_format_name("chat"), row_format_name("auto")
        ('prompt_completion', 'messages', 'auto')
    """
    return _ROW_FORMAT_SPELLINGS.get(name, name)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTExample:
    """One training row, normalized.

    Attributes:
        id: the row's ``id`` field, else its 0-based index in the file.
        line: 1-based line of the row in its file.
        fmt: ``alpaca``, ``messages`` or ``prompt_completion``.
        prompt_with_context / prompt_without_context: the user turn's text with and without context.
        response: the target (assistant) text.
        context: the context ("" when the row has none).
        history: chat messages before the last user turn (system prompt, earlier turns).
        raw: the row exactly as read.
        user_path / response_path / context_path: where those texts live in ``raw``.
        context_span: ``(start, end)`` of the context inside the user text, when it is embedded there.
        suffix_at: where an indicator suffix goes inside the user text (end of ``{question}``).
    """

    id: str
    line: int
    fmt: str
    prompt_with_context: str
    prompt_without_context: str
    response: str
    context: str
    raw: dict[str, Any] = field(compare=False, repr=False)
    history: tuple[dict[str, str], ...] = ()
    user_path: Path_ = ()
    response_path: Path_ = ()
    context_path: Path_ | None = None
    context_span: tuple[int, int] | None = None
    suffix_at: int | None = None

    @property
    def has_context(self) -> bool:
        return bool(self.context.strip())


@dataclass
class SFTData:
    """A parsed training file: examples plus what is needed to write rows back the same way."""

    path: str
    file_type: str
    fmt: str
    examples: list[SFTExample]
    columns: list[str]
    errors: list[DataError] = field(default_factory=list)


def read_sft_records(path: str | Path) -> tuple[list[Record], str, list[str]]:
    """``([(line, row), ...], file_layout, columns)`` of a local training file."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=str(path))
    layout = file_layout(p)
    rows = read_file_records(p)
    return rows, layout, columns_of(rows)


def detect_format(row: dict[str, Any], path: str | None = None, line: int | None = None) -> str:
    """``messages``, ``alpaca`` or ``prompt_completion`` from a row's keys (a DataError names the row).

    Example:
        >>> detect_format({"instruction": "Q?", "input": "", "output": "A"})
        'alpaca'
    """
    if "messages" in row:
        return "messages"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    raise DataError(f"cannot tell the format from the fields {sorted(row)}; expected 'messages', "
                    "'instruction'+'output' (Alpaca) or 'prompt'+'completion'", path=path, line=line)


# ---- parsing ------------------------------------------------------------------------------------


class _Row:
    """Field access that raises DataError naming the file, line and field."""

    def __init__(self, raw: dict[str, Any], path: str, line: int) -> None:
        self.raw, self.path, self.line = raw, path, line

    def err(self, msg: str, fld: str) -> DataError:
        return DataError(msg, path=self.path, line=self.line, field=fld)

    def text(self, key: str, *, required: bool = True, nonempty: bool = True) -> str:
        v = self.raw.get(key)
        if v is None:
            if required:
                raise self.err("missing", key)
            return ""
        if not isinstance(v, str):
            raise self.err(f"expected text, got {type(v).__name__}", key)
        if nonempty and not v.strip():
            raise self.err("empty", key)
        return v


def _messages(r: _Row, key: str, value: Any) -> list[dict[str, str]]:
    if isinstance(value, str) and value.lstrip().startswith("["):  # CSV stores lists as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise r.err(f"invalid JSON list: {e.msg}", key) from None
    if not isinstance(value, list) or not value:
        raise r.err("expected a non-empty list of {role, content} messages", key)
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise r.err(f"message {i} needs string 'role' and 'content'", f"{key}[{i}]")
    return value


def parse_row(raw: dict[str, Any], *, fmt: str, index: int, line: int = 0, path: str = "<rows>",
              context_field: str | None = None, context_template: str | None = None) -> SFTExample:
    """Normalize one raw row (see the module docstring for where the context comes from)."""
    fmt = row_format_name(fmt)
    r = _Row(raw, path, line)
    rid = str(raw["id"]) if raw.get("id") not in (None, "") else str(index)
    if fmt == "alpaca":
        instr, out = r.text("instruction"), r.text("output")
        ckey = context_field or "input"
        ctx = r.text(ckey, required=False, nonempty=False)
        user = f"{instr}\n\n{ctx}" if ctx.strip() else instr
        return SFTExample(rid, line, fmt, user, instr, out, ctx if ctx.strip() else "", raw,
                          user_path=("instruction",), response_path=("output",), context_path=(ckey,),
                          suffix_at=len(instr))
    if fmt == "messages":
        msgs = _messages(r, "messages", raw.get("messages"))
        if isinstance(raw.get("messages"), str):  # CSV: keep the parsed list so paths resolve
            raw = {**raw, "messages": msgs}
        if msgs[-1]["role"] != "assistant":
            raise r.err("the last message must be the assistant's response", f"messages[{len(msgs) - 1}]")
        if len(msgs) < 2 or msgs[-2]["role"] != "user":
            raise r.err("the response must follow a user message", f"messages[{len(msgs) - 2}]")
        hist, user_path, resp_path = msgs[:-2], ("messages", len(msgs) - 2, "content"), ("messages", len(msgs) - 1,
                                                                                         "content")
    elif fmt == "prompt_completion":
        p, c = raw.get("prompt"), raw.get("completion")
        if isinstance(p, list) or (isinstance(p, str) and p.lstrip().startswith("[{")):
            pm, cm = _messages(r, "prompt", p), _messages(r, "completion", c)
            if pm[-1]["role"] != "user" or cm[-1]["role"] != "assistant":
                raise r.err("conversational prompt must end with a user turn, completion with an assistant "
                            "turn", "completion")
            hist, user_path, resp_path = pm[:-1], ("prompt", len(pm) - 1, "content"), ("completion", len(cm) - 1,
                                                                                       "content")
            if isinstance(p, str):  # CSV: keep the parsed lists so paths resolve
                raw = {**raw, "prompt": pm, "completion": cm}
        else:
            r.text("prompt"), r.text("completion")
            hist, user_path, resp_path = [], ("prompt",), ("completion",)
    else:
        raise DataError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}", path=path, line=line)
    user, resp = get_path(raw, user_path), get_path(raw, resp_path)
    fld = ".".join(map(str, resp_path))
    if not resp.strip():
        raise r.err("empty response", fld)
    if not user.strip():
        raise r.err("empty user turn", ".".join(map(str, user_path)))
    common = dict(history=tuple(dict(m) for m in hist), user_path=user_path, response_path=resp_path)
    if context_template:
        m = match_template(context_template, user)
        if m is None:  # a row in another shape: taken as one without context (load_sft checks some match)
            return SFTExample(rid, line, fmt, user, user, resp, "", raw, suffix_at=len(user.rstrip()), **common)
        return _embedded(rid, line, fmt, user, resp, raw, m, common)
    ckey = context_field or ("context" if "context" in raw else None)
    ctx = r.text(ckey, required=context_field is not None, nonempty=False) if ckey else ""
    if not ctx.strip():
        return SFTExample(rid, line, fmt, user, user, resp, "", raw, suffix_at=len(user.rstrip()), **common)
    if ctx in user:
        s = user.index(ctx)
        m = TemplateMatch(context=(s, s + len(ctx)), question=None)
        return _embedded(rid, line, fmt, user, resp, raw, m, common, context_path=(ckey,))
    return SFTExample(rid, line, fmt, f"{ctx}\n\n{user}", user, resp, ctx, raw, context_path=(ckey,),
                      suffix_at=len(user.rstrip()), **common)


def _embedded(rid: str, line: int, fmt: str, user: str, resp: str, raw: dict[str, Any], m: TemplateMatch,
              common: dict[str, Any], context_path: Path_ | None = None) -> SFTExample:
    s, e = m.context
    if not user[s:e].strip():
        at = m.question[1] if m.question else len(user.rstrip())
        return SFTExample(rid, line, fmt, user, user, resp, "", raw, suffix_at=at, **common)
    without = m.without_context(user)
    at = m.question[1] if m.question else len(user.rstrip())
    return SFTExample(rid, line, fmt, user, without, resp, user[s:e], raw, context_path=context_path,
                      context_span=(s, e), suffix_at=at, **common)


def load_sft(path: str | Path, *, fmt: str = "auto", context_field: str | None = None,
             context_template: str | None = None, limit: int | None = None, skip_bad: bool = False) -> SFTData:
    """Read and normalize a training file.

    Raises DataError naming file, line and field at the first bad row; with ``skip_bad`` bad rows are
    left out and their errors kept in ``SFTData.errors``.
    """
    rows, ftype, columns = read_sft_records(path)
    if not rows:
        raise DataError("no rows", path=str(path))
    fmt = row_format_name(fmt)
    if fmt == "auto":
        fmt = detect_format(rows[0][1], str(path), rows[0][0])
    elif fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose from auto, {', '.join(FORMATS)}", path=str(path))
    rows = rows[:limit] if limit is not None else rows
    examples: list[SFTExample] = []
    errors: list[DataError] = []
    seen: dict[str, int] = {}
    for i, (line, row) in enumerate(rows):
        try:
            ex = parse_row(row, fmt=fmt, index=i, line=line, path=str(path), context_field=context_field,
                           context_template=context_template)
            if ex.id in seen:
                raise DataError(f"duplicate id {ex.id!r} (first on line {seen[ex.id]})", path=str(path),
                                line=line, field="id")
        except DataError as e:
            if not skip_bad:
                raise
            errors.append(e)
            continue
        seen[ex.id] = line
        examples.append(ex)
    if context_template and examples:
        n_match = sum(ex.context_span is not None for ex in examples)
        if n_match == 0:
            raise DataError(f"no row matches --context-template {context_template!r} (e.g. line "
                            f"{examples[0].line}: {examples[0].prompt_with_context[:80]!r})", path=str(path))
        if n_match < len(examples):
            log.info("%d of %d rows do not match --context-template; they are scored as rows without context",
                     len(examples) - n_match, len(examples))
    return SFTData(str(path), ftype, fmt, examples, columns, errors)


def as_examples(items: Sequence[SFTExample | dict[str, Any]], **parse_kw: Any) -> list[SFTExample]:
    """Examples as they are; raw rows (any supported format, detected per row) parsed, numbered from 1.

    Example:
        >>> as_examples([{"instruction": "Q?", "input": "C.", "output": "A"}])[0].context
        'C.'
    """
    out = []
    for i, it in enumerate(items):
        if isinstance(it, SFTExample):
            out.append(it)
        else:
            fmt = detect_format(it, "<rows>", i + 1)
            out.append(parse_row(it, fmt=fmt, index=i, line=i + 1, **parse_kw))
    return out


def example_hash(ex: SFTExample) -> str:
    """A short hash of what scoring reads from a row (its id, format and normalized texts)."""
    key = [ex.id, ex.fmt, ex.prompt_with_context, ex.prompt_without_context, ex.response, ex.context,
           list(ex.history), ex.raw.get("instruction") if ex.fmt == "alpaca" else None]
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:16]


