"""Instruction-tuning rows (Alpaca, chat ``messages``, ``prompt``/``completion``) as one normalized
:class:`SFTExample`, and back into their original format.

Reads JSONL, JSON (an array, or JSONL in a ``.json`` file) and CSV. Every error names the file, the
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

import csv
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ctxrely.data.schema import DataError

Fmt = Literal["alpaca", "messages", "prompt_completion"]
FORMATS = ("alpaca", "messages", "prompt_completion")
Path_ = tuple[Any, ...]
log = logging.getLogger(__name__)  # a path into a raw row, e.g. ("messages", 3, "content")


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


def get_path(raw: Any, path: Path_) -> Any:
    """``raw[path[0]][path[1]]...``"""
    for k in path:
        raw = raw[k]
    return raw


def set_path(raw: Any, path: Path_, value: Any) -> None:
    """Set ``raw[path[0]]...[path[-1]] = value``."""
    get_path(raw, path[:-1])[path[-1]] = value


@dataclass(frozen=True)
class TemplateMatch:
    """Where the context (and question) sit in a user turn, and the span cut to remove the context."""

    context: tuple[int, int]
    question: tuple[int, int] | None
    cut: tuple[int, int] | None = None

    def without_context(self, text: str) -> str:
        a, b = self.cut or self.context
        if self.cut is None:  # a bare context: take the whitespace that follows it along
            b += len(text[b:]) - len(text[b:].lstrip())
        rest = text[b:]
        return text[:a] + rest if rest.strip() else text[:a].rstrip()


def match_template(template: str, text: str) -> TemplateMatch | None:
    """Match ``text`` against a template with ``{context}`` (and optionally ``{question}``, ``{any}``).

    The no-context cut runs from the start of the context's line (or the end of the placeholder before
    it on that line) to the end of the context plus the whitespace after it, so a label such as
    ``Context: `` goes with it.

    Example:
        >>> m = match_template("Context: {context}\n\nQ: {question}", "Context: Paris.\n\nQ: Where?")
        >>> m.without_context("Context: Paris.\n\nQ: Where?")
        'Q: Where?'
    """
    parts = re.split(r"\{(\w+)\}", template)
    if "context" not in parts[1::2]:
        raise ValueError(f"context template {template!r} has no {{context}} placeholder")
    rx, seen = [r"\s*"], set()
    for i, part in enumerate(parts):
        if i % 2 == 0:
            rx.append(re.escape(part))
        else:
            rx.append(f"(?P={part})" if part in seen else f"(?P<{part}>.*?)")
            seen.add(part)
    m = re.fullmatch("".join(rx) + r"\s*", text, flags=re.DOTALL)
    if m is None:
        return None
    cs, ce = m.span("context")
    prev = max([m.end(g) for g in seen if g != "context" and m.end(g) <= cs] or [0])
    a = max(prev, text.rfind("\n", 0, cs) + 1)
    b = ce + len(text[ce:]) - len(text[ce:].lstrip())
    q = m.span("question") if "question" in seen else None
    return TemplateMatch(context=(cs, ce), question=q, cut=(a, b))


# ---- reading -----------------------------------------------------------------------------------


def file_type_of(path: str | Path) -> str:
    suf = Path(path).suffix.lower()
    if suf in (".jsonl", ".ndjson"):
        return "jsonl"
    if suf in (".json", ".csv", ".tsv"):
        return suf[1:]
    raise DataError(f"unsupported file type {suf or '(none)'}; use .jsonl, .json or .csv", path=str(path))


def read_records(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], str, list[str]]:
    """``([(line, row), ...], file_type, columns)`` via :func:`ctxrely.data.loaders.read_records`."""
    from ctxrely.data.loaders import read_records as _read

    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=str(path))
    ftype = file_type_of(p)
    rows = _read(str(p))
    if ftype == "json" and not p.read_text(encoding="utf-8-sig").lstrip().startswith("["):
        ftype = "json-lines"  # JSON lines in a .json file: written back the same way
    columns: list[str] = []
    for _, row in rows:
        columns += [k for k in row if k not in columns]
    return rows, ftype, columns


def detect_format(row: dict[str, Any]) -> str:
    """``messages``, ``alpaca`` or ``prompt_completion`` from a row's keys."""
    if "messages" in row:
        return "messages"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    raise ValueError(f"cannot tell the format from the fields {sorted(row)}; expected 'messages', "
                     "'instruction'+'output' (Alpaca) or 'prompt'+'completion'")


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
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
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
    rows, ftype, columns = read_records(path)
    if not rows:
        raise DataError("no rows", path=str(path))
    if fmt == "auto":
        try:
            fmt = detect_format(rows[0][1])
        except ValueError as e:
            raise DataError(str(e), path=str(path), line=rows[0][0]) from None
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
            try:
                fmt = detect_format(it)
            except ValueError as e:
                raise DataError(str(e), path="<rows>", line=i + 1) from None
            out.append(parse_row(it, fmt=fmt, index=i, line=i + 1, **parse_kw))
    return out


def example_hash(ex: SFTExample) -> str:
    """A short hash of what scoring reads from a row (its id, format and normalized texts)."""
    key = [ex.id, ex.fmt, ex.prompt_with_context, ex.prompt_without_context, ex.response, ex.context,
           list(ex.history), ex.raw.get("instruction") if ex.fmt == "alpaca" else None]
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:16]


# ---- writing ------------------------------------------------------------------------


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]], file_type: str | None = None,
               columns: Sequence[str] | None = None) -> Path:
    """Write rows as JSONL, a JSON array or CSV (from ``file_type``, else the file extension)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ftype = file_type or file_type_of(p)
    tmp = p.with_name(p.name + ".tmp")
    if ftype in ("jsonl", "json-lines"):
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif ftype == "json":
        tmp.write_text(json.dumps(list(rows), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    elif ftype in ("csv", "tsv"):
        cols = list(columns or [])
        for r in rows:
            cols += [k for k in r if k not in cols]
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols, delimiter="\t" if ftype == "tsv" else ",")
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                            for k, v in r.items()})
    else:
        raise ValueError(f"unknown file type {ftype!r}")
    tmp.replace(p)
    return p


def word_pattern(text: str) -> re.Pattern[str]:
    """A regex matching ``text`` as a whole word/phrase (no letters or digits glued on either side)."""
    return re.compile(rf"(?<![\w]){re.escape(text)}(?![\w])")
