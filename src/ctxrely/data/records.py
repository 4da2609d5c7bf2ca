"""Line-numbered records: the one reader (and writer) of JSON, JSON Lines, CSV/TSV files and Hugging
Face datasets that every input kind (knowledge-conflict data, SFT rows, RC data) is parsed from.

Each record comes with the 1-based line it starts on (for a Hugging Face dataset: its row number), so
every parser can raise a :class:`~ctxrely.errors.DataError` naming the file, the line and the field.
Files must be UTF-8 (a byte-order mark is allowed); anything else is one error naming the line.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
    >>> _ = p.write_text('{"a": 1}\\n\\n{"b": 2}\\n')
    >>> read_records(str(p))
    [(1, {'a': 1}), (3, {'b': 2})]
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.errors import DataError

Record = tuple[int, dict[str, Any]]  # (1-based line, record)
FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv")


def read_text(path: Path) -> str:
    """The file's text as UTF-8 (BOM stripped); a non-UTF-8 byte is a DataError naming its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {col}); re-save the file as "
                        "UTF-8", path=str(path), line=line) from None


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


CSV_FIELD_LIMIT = 1 << 30  # characters in one field (Python's default, 131,072, is too small for long contexts)


def _csv(text: str, delimiter: str, path: str = "") -> list[Record]:
    """Rows of a CSV/TSV text; a row with more or fewer fields than the header is a DataError."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    out: list[Record] = []
    sep = "tab" if delimiter == "\t" else repr(delimiter)
    try:
        for row in reader:
            n_head = len(reader.fieldnames or [])
            if None in row:
                raise DataError(f"{n_head + len(row[None])} fields under a {n_head}-field header (an unquoted "
                                f"{sep} in a value? quote it)", path=path or None, line=reader.line_num)
            if any(v is None for v in row.values()):
                n = sum(v is not None for v in row.values())
                raise DataError(f"{n} fields under a {n_head}-field header", path=path or None, line=reader.line_num)
            out.append((reader.line_num, row))
    except csv.Error as e:
        raise DataError(f"bad CSV: {e}", path=path or None, line=reader.line_num) from None
    return out


def _one_object(text: str, path: str) -> None:
    """Refuse a file that is one JSON object wrapping the records (``{"data": [...]}``)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return
    def records_inside(v: Any) -> bool:  # a list of records, not of chat messages
        return isinstance(v, list) and any(isinstance(x, dict) and "role" not in x for x in v)

    if isinstance(obj, dict) and (keys := [k for k, v in obj.items() if records_inside(v)]):
        raise DataError(f"one JSON object; expected a JSON list of records or JSON Lines (one object per "
                        f"line), not records wrapped under {keys}", path=path, line=1)


def read_file_records(path: Path) -> list[Record]:
    """``(line, record)`` pairs of one local file (the format from its suffix and first character)."""
    text, suffix = read_text(path), path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        records = _csv(text, "\t" if suffix == ".tsv" else ",", str(path))
    else:
        head = text.lstrip()[:1]
        if head == "[":
            records = _json_array(text, str(path))
        elif head == "{" or suffix in (".jsonl", ".ndjson", ".json"):
            if head == "{":
                _one_object(text, str(path))
            try:
                records = _jsonl(text, str(path))
            except DataError:
                if "\n" in text.strip() and _is_json(text):
                    raise DataError("one JSON object; expected a JSON list of records or JSON Lines",
                                    path=str(path), line=1) from None
                raise
        else:
            records = _csv(text, ",", str(path))
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


def require_hub_id(s: str) -> None:
    """Raise "no such file" for a string that looks like a path rather than a dataset id."""
    if s.lower().endswith(FILE_SUFFIXES) or s.startswith(("/", "./", "../", "~")):
        raise DataError("no such file", path=s)


def read_records(path_or_id: str, split: str = "test") -> list[Record]:
    """``(line, record)`` pairs of a local JSON/JSONL/CSV/TSV file, or of a Hugging Face dataset
    (the 1-based row number as line); for callers that parse records of their own formats."""
    path = Path(path_or_id).expanduser()
    if path.is_file():
        return read_file_records(path)
    if path.is_dir():
        raise DataError("is a directory; pass a data file", path=str(path))
    require_hub_id(path_or_id)
    return hf_records(path_or_id, split)


def hf_records(dataset_id: str, split: str) -> list[Record]:
    """The rows of a Hugging Face dataset (cached or reachable), numbered from 1."""
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


# ----------------------------------------------------------------------------- file types and writing


def file_type_of(path: str | Path) -> str:
    """``jsonl``, ``json``, ``csv`` or ``tsv`` from a file name."""
    suf = Path(path).suffix.lower()
    if suf in (".jsonl", ".ndjson"):
        return "jsonl"
    if suf in (".json", ".csv", ".tsv"):
        return suf[1:]
    raise DataError(f"unsupported file type {suf or '(none)'}; use .jsonl, .json, .csv or .tsv", path=str(path))


def file_layout(path: str | Path) -> str:
    """:func:`file_type_of`, except ``json-lines`` for JSON Lines in a ``.json`` file (written back so)."""
    ftype = file_type_of(path)
    if ftype == "json" and not read_text(Path(path)).lstrip().startswith("["):
        return "json-lines"
    return ftype


def columns_of(records: Sequence[Record]) -> list[str]:
    """Every field name, in first-seen order (the column order to write back)."""
    columns: list[str] = []
    for _, row in records:
        columns += [k for k in row if k not in columns]
    return columns


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]], file_type: str | None = None,
               columns: Sequence[str] | None = None) -> Path:
    """Write rows as JSONL, a JSON array or CSV/TSV (from ``file_type``, else the file extension),
    atomically; lists and objects in CSV cells are written as JSON (and read back by the SFT parser)."""
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
        raise DataError(f"unknown file type {ftype!r}", path=str(p))
    tmp.replace(p)
    return p
