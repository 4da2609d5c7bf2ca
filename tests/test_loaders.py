"""Loaders: published files (when ../shared/data is present), CAD/generic/HF inputs, and errors.

Run: .venv/bin/pytest -q tests/test_loaders.py
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from ctxrely.data.loaders import FORMATS_KNOWN, detect_format, load_data, parse_mapping, read_records
from ctxrely.data.schema import DataError
from ctxrely.data.suites import load_suite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CAPITALS = DATA / "cf_capitals" / "country_capitals_only.json"
MEMOTRAP = DATA / "memotrap" / "memo-trap_classification.jsonl"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"published data file {path} is absent (../shared/data sits beside the checkout in CI)")
    return path


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- published files


def test_cf_capitals_published_file() -> None:
    path = _need(CAPITALS)
    assert detect_format(path) == "cpi"
    suite = load_data(str(path))
    assert (suite.name, suite.version, suite.source) == ("country_capitals_only", "file", str(path))
    assert len(suite.examples) == 196
    first = suite.examples[0]
    assert (first.cf_answer, first.param_answer) == ("Herat", "Kabul")
    assert first.question == "What is the capital city of Afghanistan?"
    assert first.id == "country_capitals_only-0000" and first.meta["line"] == 2
    assert all(ex.context == ex.context.strip() and ex.param_answer for ex in suite.examples)
    assert load_data(str(path)).hash == suite.hash


def test_memotrap_published_file() -> None:
    path = _need(MEMOTRAP)
    assert detect_format(path) == "memotrap"
    suite = load_data(str(path), name="memotrap")
    assert suite.name == "memotrap" and len(suite.examples) == 936
    first = suite.examples[0]
    assert first.context == 'Write a quote that ends in the word "heavy":'
    assert first.question == "Absence makes the heart grow"
    assert (first.cf_answer, first.param_answer) == ("heavy", "fonder")
    for ex in suite.examples:
        for ans in (ex.cf_answer, ex.param_answer):
            assert ans == ans.strip() and not ans.endswith(".")
        assert ex.context.endswith(":") and ex.question
        assert ex.meta["prompt"] == f"{ex.context} {ex.question}"
    # answer_index names the counterfactual (demanded) class, whichever position it has
    flipped = next(ex for ex in suite.examples if ex.meta["prompt"].endswith("Still water runs"))
    assert (flipped.cf_answer, flipped.param_answer) == ("by", "deep")


# ----------------------------------------------------------------------------- other formats


def test_cad_style_jsonl(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "nq_swap.jsonl", [
        {"context_string": "The tallest peak is Mount Ossa.", "question": "What is the tallest peak?",
         "gold_answers": ["Mount Ossa", "Ossa"]},
        {"context": "Blue whales are small.", "question": "Are blue whales large?", "gold_answers": ["no"]},
    ])
    assert detect_format(path) == "cad"
    suite = load_data(str(path))
    assert suite.name == "nq_swap" and suite.version == "file"
    a, b = suite.examples
    assert (a.cf_answer, a.cf_aliases, a.param_answer) == ("Mount Ossa", ("Ossa",), None)
    assert b.context == "Blue whales are small." and b.meta["line"] == 2


def test_cpi_jsonl_with_parametric_answer_and_indented_context(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bios.jsonl", [
        {"context": "  Ada Varn wrote Hamlet in 1701.", "question": "Who wrote Hamlet?", "answer": "Ada Varn",
         "parametric_answer": "William Shakespeare"},
    ])
    (ex,) = load_data(str(path)).examples
    assert ex.context == "Ada Varn wrote Hamlet in 1701." and ex.param_answer == "William Shakespeare"


def test_generic_csv_with_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("passage,q,ans,orig,alts\n"
                    "Lyon is the capital.,Capital of France?,Lyon,Paris,Lyons|Lugdunum\n"
                    '"Oslo, they say, moved.",Capital of Norway?,Bergen,,\n', encoding="utf-8")
    assert detect_format(path) == "generic"
    mapping = {"context": "passage", "question": "q", "cf_answer": "ans", "param_answer": "orig",
               "cf_aliases": "alts"}
    suite = load_data(str(path), mapping=mapping, name="mine2")
    a, b = suite.examples
    assert (a.cf_answer, a.param_answer, a.cf_aliases) == ("Lyon", "Paris", ("Lyons", "Lugdunum"))
    assert (b.context, b.param_answer, b.cf_aliases) == ("Oslo, they say, moved.", None, ())
    assert suite.name == "mine2" and a.id == "mine2-0000" and b.meta["line"] == 3
    as_string = load_data(str(path), mapping="context=passage,question=q,cf_answer=ans,param_answer=orig,"
                                             "cf_aliases=alts", name="mine2")
    assert as_string.hash == suite.hash


def test_generic_jsonl_round_trips_a_suite(tmp_path: Path) -> None:
    suite = load_suite("cf_capitals", limit=5)
    rows = [{k: v for k, v in ex.to_dict().items() if k not in ("meta", "suite")} for ex in suite.examples]
    path = _jsonl(tmp_path / "export.jsonl", rows)
    back = load_data(str(path), name="cf_capitals", fmt="generic")
    assert back.hash == suite.hash
    assert [ex.id for ex in back.examples] == [ex.id for ex in suite.examples]


def test_tsv_and_json_list(tmp_path: Path) -> None:
    tsv = tmp_path / "t.tsv"
    tsv.write_text("context\tquestion\tcf_answer\nIt rained.\tWeather?\train\n", encoding="utf-8")
    assert load_data(str(tsv)).examples[0].cf_answer == "rain"
    js = tmp_path / "l.json"
    js.write_text(json.dumps([{"context": "c", "question": "q", "answer": "a", "memory_answer": "b"}] * 3,
                             indent=2), encoding="utf-8")
    exs = load_data(str(js)).examples
    assert len(exs) == 3 and [e.meta["line"] for e in exs] == [2, 8, 14]


def test_parse_mapping() -> None:
    assert parse_mapping(" context = passage , question=q,") == {"context": "passage", "question": "q"}
    with pytest.raises(DataError, match="not field=column"):
        parse_mapping("context")
    with pytest.raises(DataError, match="unknown schema field 'answer'"):
        parse_mapping("answer=x")
    with pytest.raises(DataError, match="mapped twice"):
        parse_mapping("question=a,question=b")


def test_formats_known() -> None:
    assert FORMATS_KNOWN == ["cpi", "memotrap", "cad", "cad_pairs", "bigbench", "generic", "hf", "squad", "quac",
                             "coqa", "drop", "squad_rows"]


# ----------------------------------------------------------------------------- Hugging Face ids


def _fake_datasets(monkeypatch: pytest.MonkeyPatch, load) -> list[tuple]:
    calls: list[tuple] = []
    mod = types.ModuleType("datasets")

    def load_dataset(name, split=None):
        calls.append((name, split))
        return load()

    mod.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", mod)
    return calls


def test_hf_dataset_id(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"passage": "Herat is the capital.", "q": "Capital of Afghanistan?", "ans": "Herat"}]
    calls = _fake_datasets(monkeypatch, lambda: rows)
    suite = load_data("someone/conflicts", mapping="context=passage,question=q,cf_answer=ans", split="dev")
    assert calls == [("someone/conflicts", "dev")]
    assert (suite.name, suite.version, suite.source) == ("conflicts", "hf", "hf:someone/conflicts@dev")
    assert suite.examples[0].cf_answer == "Herat"
    assert detect_format("someone/conflicts") == "hf"


def test_hf_without_network_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline():
        raise ConnectionError("Couldn't reach the Hub")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(DataError, match="network") as e:
        load_data("someone/conflicts")
    assert "someone/conflicts" in str(e.value) and "ConnectionError" in str(e.value)


def test_hf_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match="needs the `datasets` package"):
        load_data("someone/conflicts")


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_data(str(tmp_path / "nope.jsonl"))


# ----------------------------------------------------------------------------- malformed input


CPI_OK = {"context": "c", "question": "q?", "answer": "a", "memory_answer": "b"}


@pytest.mark.parametrize(("bad", "field", "message"), [
    ({k: v for k, v in CPI_OK.items() if k != "question"}, "question", "missing field"),
    ({**CPI_OK, "answer": 7}, "answer", "expected a string"),
    ({**CPI_OK, "answer": "  "}, "answer", "empty answer"),
    ({**CPI_OK, "question": ""}, "question", "empty value"),
    ({**CPI_OK, "memory_answer": ["b", ""]}, "memory_answer", "empty answer"),
])
def test_malformed_cpi_rows_name_line_and_field(tmp_path: Path, bad: dict, field: str, message: str) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [CPI_OK, CPI_OK, bad])
    with pytest.raises(DataError, match=message) as e:
        load_data(str(path))
    assert e.value.line == 3 and e.value.field == field and e.value.path == str(path)
    assert "line 3" in str(e.value) and f"'{field}'" in str(e.value) and "d.jsonl" in str(e.value)


def test_bad_json_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [CPI_OK, '{"context": "c", "question": ', CPI_OK])
    with pytest.raises(DataError, match=r"line 2: bad JSON"):
        load_data(str(path))


def test_bad_record_in_json_list_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([CPI_OK, {**CPI_OK, "answer": None}], indent=2), encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_data(str(path))
    assert (e.value.line, e.value.field) == (8, "answer")
    path.write_text('[\n{"context": "c"},\n{"context": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match="bad JSON") as e:
        load_data(str(path))
    assert e.value.line == 3
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="expected an object"):
        load_data(str(path))
    path.write_text(json.dumps({"data": [CPI_OK]}, indent=2), encoding="utf-8")
    with pytest.raises(DataError, match="line 1: one JSON object; expected a JSON list"):
        load_data(str(path))


def test_read_records_for_other_parsers(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "r.jsonl", [{"a": 1}, "", {"b": 2}])
    assert read_records(str(path)) == [(1, {"a": 1}), (3, {"b": 2})]


@pytest.mark.parametrize(("bad", "field"), [
    ({"prompt": "Say x: y", "classes": "[' x.', ", "answer_index": 0}, "classes"),
    ({"prompt": "Say x: y", "classes": "[' x.']", "answer_index": 0}, "classes"),
    ({"prompt": "Say x: y", "classes": "[' x.', ' .']", "answer_index": 0}, "classes"),
    ({"prompt": "Say x: y", "classes": "[' x.', ' z.']", "answer_index": 2}, "answer_index"),
    ({"prompt": "Say x: y", "classes": "[' x.', ' z.']", "answer_index": "0"}, "answer_index"),
    ({"prompt": "Say x: y", "classes": "[' x.', ' z.']"}, "answer_index"),
])
def test_malformed_memotrap_rows(tmp_path: Path, bad: dict, field: str) -> None:
    good = {"prompt": 'Write a quote that ends in the word "x": y', "classes": "[' x.', ' z.']", "answer_index": 0}
    path = _jsonl(tmp_path / "m.jsonl", [good, bad])
    with pytest.raises(DataError) as e:
        load_data(str(path), fmt="memotrap")
    assert (e.value.line, e.value.field) == (2, field)


def test_malformed_csv_and_cad_rows(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("context,question,cf_answer\nc,q,a\nc,,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3, field 'question'"):
        load_data(str(path))
    cad = _jsonl(tmp_path / "c.jsonl", [{"context_string": "c", "question": "q", "gold_answers": []}])
    with pytest.raises(DataError, match=r"line 1, field 'gold_answers'"):
        load_data(str(cad))


def test_duplicate_ids_and_bad_options(tmp_path: Path) -> None:
    row = {"id": "x1", "context": "c", "question": "q", "cf_answer": "a"}
    path = _jsonl(tmp_path / "g.jsonl", [row, row])
    with pytest.raises(DataError, match=r"line 2, field 'id': duplicate id 'x1' \(first on line 1\)"):
        load_data(str(path))
    with pytest.raises(DataError, match="unknown format 'csvx'"):
        load_data(str(path), fmt="csvx")
    with pytest.raises(DataError, match="generic format"):
        load_data(str(path), fmt="cpi", mapping={"question": "q"})
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        load_data(str(empty))
