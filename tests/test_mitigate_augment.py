"""Counterfactual augmentation: answer detection, typed substitution, formats, the CLI."""

from __future__ import annotations

import json

import pytest

from ctxrely.cli.main import main
from ctxrely.data.records import write_rows
from ctxrely.data.sft import parse_row
from ctxrely.data.sft import read_sft_records as read_records
from ctxrely.mitigate.augment import augment, augment_rows, entity_type, find_answer
from test_diagnose_rows import QA, TEMPLATE, make_rows


def test_entity_types_and_answers():
    assert entity_type("1969") == "year" and entity_type("3,500") == "number"
    assert entity_type("4 July 1776") == "date" and entity_type("Ada Lovelace") == "proper"
    assert entity_type("Paris") == "city" and entity_type("France") == "country"  # fact tables
    ex = parse_row({"instruction": "Who?", "input": "It was painted by Ada Lovelace in 1840.",
                    "output": "It was painted by Ada Lovelace."}, fmt="alpaca", index=0)
    assert find_answer(ex) == "Ada Lovelace"  # long response: the capitalised phrase found in the context
    ex = parse_row({"instruction": "Q?", "input": "Nothing here.", "output": "Lyon"}, fmt="alpaca", index=0)
    assert find_answer(ex) is None


def test_augment_alpaca_swaps_consistently():
    rows = make_rows("alpaca")
    res = augment(rows, ratio=0.5, seed=0)
    assert res.rows[:8] == rows and len(res.rows) == 12 and res.n_eligible == 6 and len(res.manifest) == 4
    for m in res.manifest:
        new, src = res.rows[m["index"]], rows[m["source_index"]]
        assert new["instruction"] == src["instruction"]
        assert m["answer"] in src["input"] and m["answer"] not in new["input"]
        assert m["substitute"] in new["input"] and new["output"] == src["output"].replace(m["answer"], m["substitute"])
        assert entity_type(m["substitute"]) == m["type"] == entity_type(m["answer"])
    assert augment(rows, ratio=0.5, seed=0).rows == res.rows  # seeded
    assert augment(rows, ratio=0.5, seed=1).rows != res.rows
    assert augment_rows(rows, ratio=0.0) == rows


def test_augment_replace_and_pool_and_cap():
    rows = make_rows("alpaca")
    res = augment(rows, ratio=1.0, mode="replace", entity_pool={"city": ["Lima"], "country": ["Peru"],
                                                                 "number": ["7"], "proper": ["Zed"]})
    assert len(res.rows) == 8 and res.n_requested == 8 and len(res.manifest) == 6  # capped by eligible rows
    by_src = {m["source_index"]: m for m in res.manifest}
    assert res.rows[0] == {"instruction": QA[0][1], "input": "The capital of France is Lima.", "output": "Lima"}
    assert by_src[7]["substitute"] == "7" and res.rows[7]["input"] == "The answer is 7."
    assert res.rows[2] == rows[2]  # no context: untouched


def test_augment_embedded_context_only_touches_context():
    rows = make_rows("messages_tmpl")
    rows[0]["messages"][1]["content"] = "Context: The capital is Lyon.\n\nQuestion: Is Lyon the capital?"
    res = augment(rows, ratio=1.0, seed=0, context_template=TEMPLATE)
    m = next(m for m in res.manifest if m["source_index"] == 0)
    user = res.rows[m["index"]]["messages"][1]["content"]
    assert user == f"Context: The capital is {m['substitute']}.\n\nQuestion: Is Lyon the capital?"
    assert res.rows[m["index"]]["messages"][2]["content"] == m["substitute"]
    assert rows[0]["messages"][1]["content"].endswith("Is Lyon the capital?")  # originals not mutated


@pytest.mark.parametrize("name,kind,opts", [
    ("a.jsonl", "alpaca", []),
    ("a.csv", "alpaca", []),
    ("m.jsonl", "messages", []),
    ("p.jsonl", "pc", ["--context-field", "passage"]),
    ("t.csv", "pc_tmpl", ["--context-template", TEMPLATE + "\nAnswer:"]),
])
def test_augment_cli(tmp_path, name, kind, opts):
    data = write_rows(tmp_path / name, make_rows(kind))
    out = tmp_path / f"out.{name.split('.')[-1]}"
    assert main(["augment", "--data", str(data), "--ratio", "0.25", "--out", str(out), *opts]) == 0
    rows = [r for _, r in read_records(out)[0]]
    man = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert len(rows) == 10 and man["n_augmented"] == 2 and man["n_eligible"] == 6
    assert rows[:8] == [r for _, r in read_records(data)[0]]
    for m in man["augmented"]:
        assert m["substitute"] in json.dumps(rows[m["index"]]) and m["answer"] not in json.dumps(rows[m["index"]])
    if kind == "messages":
        assert rows[8]["id"].endswith("-cf")


def test_augment_cli_bad_row(tmp_path, capsys):
    rows = make_rows("alpaca")
    rows[4]["output"] = 5
    data = write_rows(tmp_path / "a.jsonl", rows)
    assert main(["augment", "--data", str(data), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "line 5" in err and "'output'" in err
    assert not (tmp_path / "o.jsonl").exists()
