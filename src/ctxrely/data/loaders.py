"""Load published knowledge-conflict data (JSON, JSONL, CSV or a Hugging Face dataset) as a Suite.

Records are read by :mod:`ctxrely.data.records` (the one line-numbered reader); this module holds
the knowledge-conflict formats.

Formats, each declared once in ``DATA_FORMAT_TABLE`` (help, row parser, detector; also registered in
``ctxrely.registry.DATA_FORMATS``), detected from the first record's fields unless ``fmt`` is given:

- ``cpi``: context-parametric-inversion files (CF_Capitals, CF_World_Facts, CF_Bio): ``context``,
  ``question``, ``answer`` (counterfactual), ``memory_answer`` or ``parametric_answer``.
- ``memotrap``: ``prompt``, ``classes`` (a Python list written as a string), ``answer_index``.
- ``cad``: CAD / AdaCAD-style ``context_string`` (or ``context``), ``question``, ``gold_answers``.
- ``generic``: any JSON/JSONL/CSV/TSV with a column ``mapping`` onto the schema's fields.
- ``hf``: a Hugging Face dataset id (not a local path), read with ``datasets.load_dataset``.

Every malformed record raises :class:`~ctxrely.data.schema.DataError` naming the file, the
1-based line (for Hugging Face datasets: the row) and the field.

Example:
    >>> suite = load_data("../shared/data/cf_capitals/country_capitals_only.json")  # doctest: +SKIP
    >>> suite.name, suite.version, len(suite.examples)  # doctest: +SKIP
    ('country_capitals_only', 'file', 196)
    >>> parse_mapping("context=passage,question=q,cf_answer=ans")
    {'context': 'passage', 'question': 'q', 'cf_answer': 'ans'}
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxrely.data.rc import squad_row
from ctxrely.data.records import (
    FILE_SUFFIXES,
    Record,
    hf_records,
    read_file_records,
    read_records,
    require_hub_id,
)
from ctxrely.data.schema import ConflictExample, DataError, Suite
from ctxrely.registry import DATA_FORMATS

__all__ = ["DATA_FORMAT_TABLE", "FILE_SUFFIXES", "FORMATS_KNOWN", "FORMAT_HELP", "DataFormat", "Record", "TARGET_FIELDS", "detect_format", "load_data",
           "parse_mapping", "read_records"]

TARGET_FIELDS = ("id", "context", "question", "cf_answer", "param_answer", "cf_aliases", "param_aliases")


@dataclass(frozen=True)
class _Where:
    path: str
    line: int

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, path=self.path, line=self.line, field=field)


# ----------------------------------------------------------------------------- mapping / detection


def parse_mapping(s: str) -> dict[str, str]:
    """Parse ``"context=passage,question=q,cf_answer=ans"`` into a mapping (schema field -> column)."""
    mapping: dict[str, str] = {}
    for item in (p.strip() for p in s.split(",")):
        if not item:
            continue
        key, sep, col = (x.strip() for x in item.partition("="))
        if not sep or not key or not col:
            raise DataError(f"mapping item {item!r} is not field=column", field="mapping")
        if key in mapping:
            raise DataError(f"field {key!r} mapped twice", field=key)
        mapping[key] = col
    return _check_mapping(mapping)


def _check_mapping(mapping: dict[str, str]) -> dict[str, str]:
    for key, col in mapping.items():
        if key not in TARGET_FIELDS:
            raise DataError(f"unknown schema field {key!r} in mapping (known: {', '.join(TARGET_FIELDS)})",
                            field=key)
        if not isinstance(col, str) or not col:
            raise DataError(f"mapping for {key!r} must name a column", field=key)
    return dict(mapping)


def _detect_keys(keys: set[str]) -> str:
    for f in sorted((f for f in DATA_FORMAT_TABLE if f.detect is not None), key=lambda f: f.rank):
        if f.detect(keys):
            return f.name
    return "generic"


def detect_format(path: str | Path) -> str:
    """The format of a local file (from its first record's fields), or ``"hf"`` for a dataset id."""
    p = Path(path)
    if not p.exists():
        require_hub_id(str(path))
        return "hf"
    records = read_file_records(p)
    return _detect_keys(set(records[0][1])) if records else "generic"


# ----------------------------------------------------------------------------- field access


def _text(rec: dict[str, Any], key: str, w: _Where, *, allow_empty: bool = False) -> str:
    if key not in rec or rec[key] is None:
        raise w.error("missing field", key)
    val = rec[key]
    if not isinstance(val, str):
        raise w.error(f"expected a string, got {type(val).__name__}", key)
    if not allow_empty and not val.strip():
        raise w.error("empty value", key)
    return val.strip()


def _answers(val: Any, key: str, w: _Where) -> list[str]:
    """A string or a non-empty list of strings, stripped; empty entries are an error."""
    items = [val] if isinstance(val, str) else val
    if not isinstance(items, list) or not items:
        raise w.error(f"expected a string or a non-empty list of strings, got {type(val).__name__}", key)
    out = []
    for x in items:
        if not isinstance(x, str):
            raise w.error(f"expected strings, found {type(x).__name__}", key)
        if not x.strip():
            raise w.error("empty answer", key)
        out.append(x.strip())
    return out


def _conflict_context(rec: dict[str, Any], key: str, w: _Where, conflict: bool) -> str:
    """The context; empty only in a row that is no knowledge conflict (e.g. a zero-shot probe)."""
    ctx = _text(rec, key, w, allow_empty=True)
    if conflict and not ctx:
        raise w.error("empty context in a knowledge-conflict row (it has a parametric answer): nothing in the "
                      "prompt states the conflicting answer", key)
    return ctx


def _required_answers(rec: dict[str, Any], key: str, w: _Where) -> list[str]:
    if rec.get(key) is None:
        raise w.error("missing field", key)
    return _answers(rec[key], key, w)


def _optional_answers(rec: dict[str, Any], key: str, w: _Where) -> list[str]:
    val = rec.get(key)
    blank = val is None or val == [] or (isinstance(val, str) and not val.strip())
    return [] if blank else _answers(val, key, w)


# ----------------------------------------------------------------------------- formats

Row = dict[str, Any]  # ConflictExample keyword arguments (minus id/suite)


def _cpi(rec: dict[str, Any], w: _Where, mapping: dict[str, str]) -> Row:
    cf = _required_answers(rec, "answer", w)
    pkey = "memory_answer" if "memory_answer" in rec else "parametric_answer"
    param = _optional_answers(rec, pkey, w)
    return {"context": _conflict_context(rec, "context", w, True), "question": _text(rec, "question", w),
            "cf_answer": cf[0], "cf_aliases": tuple(cf[1:]), "param_answer": param[0] if param else None,
            "param_aliases": tuple(param[1:])}


def _clean_class(c: str) -> str:
    c = c.strip()
    return c[:-1].rstrip() if c.endswith(".") else c


def _memotrap(rec: dict[str, Any], w: _Where, mapping: dict[str, str]) -> Row:
    prompt = _text(rec, "prompt", w)
    if rec.get("classes") is None:
        raise w.error("missing field", "classes")
    raw = rec["classes"]
    if isinstance(raw, str):
        try:
            raw = ast.literal_eval(raw)  # a Python list written as a string; never eval
        except (ValueError, SyntaxError) as e:
            raise w.error(f"not a Python list literal: {e}", "classes") from e
    classes = _answers(raw, "classes", w) if isinstance(raw, list) else None
    if classes is None or len(classes) < 2:
        raise w.error("expected a list of at least two endings", "classes")
    classes = [_clean_class(c) for c in classes]
    if not all(classes):
        raise w.error("an ending is empty once its trailing period is removed", "classes")
    if rec.get("answer_index") is None:
        raise w.error("missing field", "answer_index")
    idx = rec["answer_index"]
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(classes):
        raise w.error(f"expected an integer in [0, {len(classes)}), got {idx!r}", "answer_index")
    others = [c for j, c in enumerate(classes) if j != idx]
    cut = prompt.find(": ")
    context, question = (prompt[:cut + 1].strip(), prompt[cut + 2:].strip()) if cut > 0 else ("", prompt)
    meta = {"prompt": prompt, **{k: rec[k] for k in ("round", "part") if k in rec}}
    return {"context": context, "question": question or prompt, "cf_answer": classes[idx],
            "param_answer": others[0], "param_aliases": tuple(others[1:]), "meta": meta}


def _cad(rec: dict[str, Any], w: _Where, mapping: dict[str, str]) -> Row:
    ckey = "context_string" if "context_string" in rec else "context"
    gold = _required_answers(rec, "gold_answers", w)
    return {"context": _text(rec, ckey, w, allow_empty=True), "question": _text(rec, "question", w),
            "cf_answer": gold[0], "cf_aliases": tuple(gold[1:]), "param_answer": None}


def _aliases(rec: dict[str, Any], col: str, w: _Where) -> tuple[str, ...]:
    val = rec.get(col)
    if isinstance(val, str):  # CSV cell: "a|b|c"
        return tuple(x.strip() for x in val.split("|") if x.strip())
    return tuple(_optional_answers(rec, col, w))


def _generic(rec: dict[str, Any], w: _Where, mapping: dict[str, str]) -> Row:
    col = {f: mapping.get(f, f) for f in TARGET_FIELDS}
    param = _optional_answers(rec, col["param_answer"], w)
    cf = _required_answers(rec, col["cf_answer"], w)
    row: Row = {"context": _conflict_context(rec, col["context"], w, bool(param)),
                "question": _text(rec, col["question"], w),
                "cf_answer": cf[0],  # a list of gold answers: the first, the others as aliases
                "param_answer": param[0] if param else None,
                "cf_aliases": tuple(cf[1:]) + _aliases(rec, col["cf_aliases"], w),
                "param_aliases": _aliases(rec, col["param_aliases"], w)}
    if rec.get(col["id"]) not in (None, ""):
        if not isinstance(rec[col["id"]], (str, int)) or isinstance(rec[col["id"]], bool):
            raise w.error(f"expected a string or integer id, got {type(rec[col['id']]).__name__}", col["id"])
        row["id"] = str(rec[col["id"]])
    return row


@dataclass(frozen=True)
class DataFormat:
    """One data format, declared once: its help, its row parser and how it is recognised.

    ``parse`` is None for formats read as a whole document (BIG-bench, official RC JSON, AdaCAD pairs,
    hub datasets); ``detect`` (a test on the first record's fields, tried by ascending ``rank``) is
    None for formats recognised by the file's shape or named explicitly.
    """

    name: str
    help: str
    parse: Callable[[dict[str, Any], _Where, dict[str, str]], Row] | None = None
    detect: Callable[[set[str]], bool] | None = None
    rank: int = 0


DATA_FORMAT_TABLE: tuple[DataFormat, ...] = (
    DataFormat("cpi", "context-parametric-inversion JSON/JSONL: context, question, answer, "
               "memory_answer|parametric_answer", _cpi, lambda k: {"context", "question", "answer"} <= k, 3),
    DataFormat("memotrap", "MemoTrap JSONL: prompt ('instruction: stem'), classes (a list as a string), "
               "answer_index", _memotrap, lambda k: {"prompt", "classes"} <= k, 0),
    DataFormat("cad", "CAD/AdaCAD JSONL: context_string|context, question, gold_answers (first = answer); "
               "no param answer", _cad, lambda k: "gold_answers" in k or "context_string" in k, 1),
    DataFormat("cad_pairs", "AdaCAD JSONL: two rows per input_index (assigned_weight 1: prompt with passage, "
               "0: without), gold_answers; prompts kept verbatim; no param answer"),
    DataFormat("bigbench", "BIG-bench JSON task: examples with input '\\nQuestion: ...\\nContext: ...', "
               "target_scores (1 = context answer, 0 = memorised answer)"),
    DataFormat("generic", "JSON/JSONL/CSV/TSV with mapping schema-field=column (default: the schema's own names)",
               _generic),
    DataFormat("hf", "a Hugging Face dataset id, loaded with datasets.load_dataset(id, split=...) and the mapping"),
    # reading comprehension, official JSON (ctxrely.data.rc): gold answers only, no parametric answer
    DataFormat("squad", "SQuAD v1.1/v2 official JSON (data/paragraphs/qas); all gold answers kept"),
    DataFormat("quac", "QuAC official JSON; the first question of each dialogue"),
    DataFormat("coqa", "CoQA official JSON; the first question of each story"),
    DataFormat("drop", "DROP official JSON (number/date/spans answers)"),
    DataFormat("squad_rows", "SQuAD rows as on the Hugging Face hub: context, question, answers {text: [...]}",
               squad_row, lambda k: {"context", "question", "answers"} <= k, 2),
)
for _f in DATA_FORMAT_TABLE:
    DATA_FORMATS.add(_f.name, _f, description=_f.help)

# Derived views, kept for old code: the names, the help and the row parsers.
FORMATS_KNOWN: list[str] = [f.name for f in DATA_FORMAT_TABLE]
FORMAT_HELP: dict[str, str] = {f.name: f.help for f in DATA_FORMAT_TABLE}
_PARSERS: dict[str, Callable[[dict[str, Any], _Where, dict[str, str]], Row]] = {
    f.name: f.parse for f in DATA_FORMAT_TABLE if f.parse is not None}


# ----------------------------------------------------------------------------- entry point


def load_data(path_or_id: str, *, mapping: dict[str, str] | str | None = None, fmt: str | None = None,
              name: str | None = None, split: str = "test") -> Suite:
    """Load a local file or a Hugging Face dataset as a :class:`Suite`.

    Args:
        path_or_id: a ``.json``/``.jsonl``/``.csv``/``.tsv`` file, or a Hugging Face dataset id.
        mapping: schema field -> column (a dict or ``"context=passage,question=q,..."``); implies
            the ``generic`` format. Fields: ``id, context, question, cf_answer, param_answer,
            cf_aliases, param_aliases`` (aliases as lists, or ``a|b`` in CSV cells).
        fmt: one of ``FORMATS_KNOWN``; detected when None.
        name: suite name (default: the file stem, or the dataset id's last part).
        split: the split to read from a Hugging Face dataset.

    Returns:
        A Suite with version ``"file"`` (``"hf"`` for hub datasets) and ``source`` = the path or id.

    Raises:
        DataError: unknown format, missing file, or a malformed record (file, line and field named).
    """
    if fmt is not None and fmt not in FORMATS_KNOWN:
        raise DataError(f"unknown format {fmt!r} (known: {', '.join(FORMATS_KNOWN)})", field="fmt")
    if isinstance(mapping, str):
        mapping = parse_mapping(mapping)
    mapping = _check_mapping(mapping or {})
    if mapping and fmt not in (None, "generic", "hf"):
        raise DataError(f"a column mapping applies to the generic format, not {fmt!r}", field="mapping")

    path = Path(path_or_id).expanduser()
    if fmt == "hf" or not path.exists():
        if fmt != "hf":
            require_hub_id(path_or_id)
        records, source, version = hf_records(path_or_id, split), f"hf:{path_or_id}@{split}", "hf"
        name = name or path_or_id.rstrip("/").split("/")[-1]
    elif path.is_dir():
        raise DataError("is a directory; pass a data file (or fmt='hf' for a saved dataset)", path=str(path))
    else:
        from ctxrely.data.bigbench import is_bigbench, load_bigbench

        if fmt == "bigbench" or (fmt is None and not mapping and is_bigbench(path)):
            return load_bigbench(path, name)
        from ctxrely.data.rc import RC_FORMATS, load_rc

        rc = None if mapping or fmt not in (None, *RC_FORMATS) else load_rc(path, fmt, name)
        if rc is not None:
            return rc
        if fmt in RC_FORMATS:
            raise DataError(f"not an official {fmt} JSON document", path=str(path))
        records, source, version = read_file_records(path), str(path), "file"
        name = name or path.stem
    if not records:
        raise DataError("no records", path=source)

    kind = "generic" if mapping else (fmt if fmt in (*_PARSERS, "cad_pairs") else _detect_keys(set(records[0][1])))
    from ctxrely.data.cad_pairs import cad_pair_examples, is_cad_pairs

    if kind == "cad_pairs" or (kind == "cad" and is_cad_pairs(set(records[0][1]))):
        return Suite(name=name, version=version, examples=cad_pair_examples(records, source, name), source=source)
    parse = _PARSERS[kind]
    examples: list[ConflictExample] = []
    seen: dict[str, int] = {}
    for i, (line, rec) in enumerate(records):
        w = _Where(source, line)
        row = parse(rec, w, mapping)
        ex_id = row.pop("id", None) or f"{name}-{i:04d}"
        if ex_id in seen:
            raise w.error(f"duplicate id {ex_id!r} (first on line {seen[ex_id]})", mapping.get("id", "id"))
        seen[ex_id] = line
        meta = {"line": line, "format": kind, **row.pop("meta", {})}
        try:
            examples.append(ConflictExample(id=ex_id, suite=name, meta=meta, **row))
        except DataError as e:
            raise w.error(str(e).split(": ", 1)[-1], e.field) from e
    return Suite(name=name, version=version, examples=examples, source=source)
