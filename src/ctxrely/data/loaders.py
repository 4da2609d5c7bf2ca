"""Load published knowledge-conflict data (JSON, JSONL, CSV or a Hugging Face dataset) as a Suite.

Formats (``FORMATS_KNOWN``), detected from the first record's fields unless ``fmt`` is given:

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
import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxrely.data.schema import ConflictExample, DataError, Suite

FORMATS_KNOWN: list[str] = ["cpi", "memotrap", "cad", "cad_pairs", "bigbench", "generic", "hf"]
FORMAT_HELP: dict[str, str] = {
    "cpi": "context-parametric-inversion JSON/JSONL: context, question, answer, memory_answer|parametric_answer",
    "memotrap": "MemoTrap JSONL: prompt ('instruction: stem'), classes (a list as a string), answer_index",
    "cad": "CAD/AdaCAD JSONL: context_string|context, question, gold_answers (first = answer); no param answer",
    "cad_pairs": "AdaCAD JSONL: two rows per input_index (assigned_weight 1: prompt with passage, 0: without), "
                 "gold_answers; prompts kept verbatim; no param answer",
    "bigbench": "BIG-bench JSON task: examples with input '\\nQuestion: ...\\nContext: ...', target_scores "
                "(1 = context answer, 0 = memorised answer)",
    "generic": "JSON/JSONL/CSV/TSV with mapping schema-field=column (default: the schema's own names)",
    "hf": "a Hugging Face dataset id, loaded with datasets.load_dataset(id, split=...) and the mapping",
}
TARGET_FIELDS = ("id", "context", "question", "cf_answer", "param_answer", "cf_aliases", "param_aliases")
FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv")

Record = tuple[int, dict[str, Any]]  # (1-based line, record)


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
    if {"prompt", "classes"} <= keys:
        return "memotrap"
    if "gold_answers" in keys or "context_string" in keys:
        return "cad"
    if {"context", "question", "answer"} <= keys:
        return "cpi"
    return "generic"


def detect_format(path: str | Path) -> str:
    """The format of a local file (from its first record's fields), or ``"hf"`` for a dataset id."""
    p = Path(path)
    if not p.exists():
        _require_hub_id(str(path))
        return "hf"
    records = _read_records(p)
    return _detect_keys(set(records[0][1])) if records else "generic"


def _require_hub_id(s: str) -> None:
    if s.lower().endswith(FILE_SUFFIXES) or s.startswith(("/", "./", "../", "~")):
        raise DataError("no such file", path=s)


# ----------------------------------------------------------------------------- reading records


def _json_array(text: str, path: str) -> list[Record]:
    """Parse a JSON list, remembering the line each element starts on."""
    dec, out, line, last = json.JSONDecoder(), [], 1, 0

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line_at(i: int) -> int:
        nonlocal line, last
        line, last = line + text.count("\n", last, i), i
        return line

    i = skip(text.index("[") + 1)
    while i < len(text) and text[i] != "]":
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(f"bad JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno) from e
        out.append((line_at(i), obj))
        i = skip(end)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
        elif i >= len(text) or text[i] != "]":
            raise DataError("bad JSON: expected ',' or ']' after a record", path=path, line=line_at(min(i, len(text))))
    if i >= len(text):
        raise DataError("bad JSON: the list is not closed", path=path, line=line_at(len(text)))
    if text[skip(i + 1):].strip():
        raise DataError("bad JSON: extra data after the list", path=path, line=line_at(skip(i + 1)))
    return out


def _jsonl(text: str, path: str) -> list[Record]:
    out: list[Record] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            out.append((n, json.loads(raw)))
        except json.JSONDecodeError as e:
            raise DataError(f"bad JSON: {e.msg} (column {e.colno})", path=path, line=n) from e
    return out


def _csv(path: Path, delimiter: str) -> list[Record]:
    out: list[Record] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        for row in reader:
            out.append((reader.line_num, {k: v for k, v in row.items() if k is not None}))
    return out


def _read_records(path: Path) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        records = _csv(path, "\t" if suffix == ".tsv" else ",")
    else:
        text = path.read_text(encoding="utf-8-sig")
        head = text.lstrip()[:1]
        if head == "[":
            records = _json_array(text, str(path))
        elif head == "{" or suffix in (".jsonl", ".ndjson", ".json"):
            try:
                records = _jsonl(text, str(path))
            except DataError:
                if "\n" in text.strip() and _is_json(text):
                    raise DataError("one JSON object; expected a JSON list of records or JSON Lines",
                                    path=str(path), line=1) from None
                raise
        else:
            records = _csv(path, ",")
    for line, rec in records:
        if not isinstance(rec, dict):
            raise DataError(f"record is a {type(rec).__name__}, expected an object", path=str(path), line=line)
    return records


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def read_records(path_or_id: str, split: str = "test") -> list[Record]:
    """``(line, record)`` pairs of a local JSON/JSONL/CSV/TSV file, or of a Hugging Face dataset
    (the 1-based row number as line); for callers that parse records of their own formats."""
    path = Path(path_or_id).expanduser()
    if path.is_file():
        return _read_records(path)
    _require_hub_id(path_or_id)
    return _hf_records(path_or_id, split)


def _hf_records(dataset_id: str, split: str) -> list[Record]:
    try:
        import datasets  # lazy: heavy, and only needed for hub ids
    except ImportError as e:
        raise DataError("loading a Hugging Face dataset needs the `datasets` package "
                        "(pip install 'ctxrely[train]')", path=dataset_id) from e
    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:  # network, auth, unknown id, bad split: all reported the same way
        raise DataError(
            f"could not load Hugging Face dataset {dataset_id!r} (split {split!r}): {type(e).__name__}: {e}. "
            "Is the network reachable? Offline, only datasets already in the local cache load; "
            "otherwise pass a local JSON/JSONL/CSV file", path=dataset_id) from e
    return [(i, dict(row)) for i, row in enumerate(ds, start=1)]


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
    return {"context": _text(rec, "context", w, allow_empty=True), "question": _text(rec, "question", w),
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
    row: Row = {"context": _text(rec, col["context"], w, allow_empty=True),
                "question": _text(rec, col["question"], w),
                "cf_answer": _text(rec, col["cf_answer"], w),
                "param_answer": param[0] if param else None,
                "cf_aliases": _aliases(rec, col["cf_aliases"], w),
                "param_aliases": _aliases(rec, col["param_aliases"], w)}
    if rec.get(col["id"]) not in (None, ""):
        if not isinstance(rec[col["id"]], (str, int)) or isinstance(rec[col["id"]], bool):
            raise w.error(f"expected a string or integer id, got {type(rec[col['id']]).__name__}", col["id"])
        row["id"] = str(rec[col["id"]])
    return row


_PARSERS: dict[str, Callable[[dict[str, Any], _Where, dict[str, str]], Row]] = {
    "cpi": _cpi, "memotrap": _memotrap, "cad": _cad, "generic": _generic,
}


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
            _require_hub_id(path_or_id)
        records, source, version = _hf_records(path_or_id, split), f"hf:{path_or_id}@{split}", "hf"
        name = name or path_or_id.rstrip("/").split("/")[-1]
    elif path.is_dir():
        raise DataError("is a directory; pass a data file (or fmt='hf' for a saved dataset)", path=str(path))
    else:
        from ctxrely.data.bigbench import is_bigbench, load_bigbench

        if fmt == "bigbench" or (fmt is None and not mapping and is_bigbench(path)):
            return load_bigbench(path, name)
        records, source, version = _read_records(path), str(path), "file"
        name = name or path.stem
    if not records:
        raise DataError("no records", path=source)

    kind = "generic" if mapping else (fmt if fmt not in (None, "hf") else _detect_keys(set(records[0][1])))
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
