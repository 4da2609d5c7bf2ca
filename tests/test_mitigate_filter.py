"""``filter_rows`` and ``ctxrely filter`` (after a real ``score-data`` on a tiny model)."""

from __future__ import annotations

import json

import pytest

from ctxrely.data.records import write_rows
from ctxrely.data.sft import read_sft_records as read_records
from ctxrely.mitigate.filter import filter_rows
from test_diagnose_rows import TEMPLATE, make_rows


def _scores(vals):
    return [{"id": str(i), "line": i + 1, "has_context": v is not None, "nll_without": 9.0 if v is None else v,
             "cls": "S" if v is None else ("C+S" if v < 1 else "C")} for i, v in enumerate(vals)]


def test_drop_lowest_share_of_rows_with_context():
    vals = [3.0, 0.2, None, 1.5, 0.9, None, 4.0, 2.0]  # 6 rows with context
    rows = [{"i": i} for i in range(8)]
    kept, man = filter_rows(rows, _scores(vals), drop=0.34)
    assert [r["i"] for r in kept] == [0, 2, 3, 5, 6, 7]  # round(0.34 * 6) = 2 lowest: rows 1 and 4
    assert man["n_dropped"] == 2 and man["cutoff"] == 0.9
    assert [d["index"] for d in man["dropped"]] == [1, 4]
    assert "lowest 34% of 6 rows with context" in man["dropped"][0]["reason"]
    kept, man = filter_rows(rows, _scores(vals), drop=0.25, scope="all")  # rows without context compete too
    assert man["n_dropped"] == 2 and [d["index"] for d in man["dropped"]] == [1, 4]
    kept, man = filter_rows(rows, _scores(vals), by="class")
    assert [d["index"] for d in man["dropped"]] == [1, 4] and man["dropped"][0]["reason"].startswith("class C+S")
    assert filter_rows(rows, _scores(vals), drop=0.0)[1]["n_dropped"] == 0
    sc = _scores(vals)
    for i, s in enumerate(sc):
        s["gain"] = [0.5, 2.0, 0.0, 0.1, 3.0, 0.0, 1.0, 0.2][i]
    _, man = filter_rows(rows, sc, drop=0.34, by="gain")  # the context helps least: rows 3 and 7
    assert [d["index"] for d in man["dropped"]] == [3, 7] and man["dropped"][0]["reason"].startswith("gain 0.100")


def test_unscored_rows_are_kept_and_bad_arguments_raise():
    s = _scores([0.1, 0.2, 3.0, 4.0])
    s[0]["nll_without"] = None  # too long to score
    kept, man = filter_rows([{}] * 4, s, drop=0.5)
    assert man["n_dropped"] == 2 and man["n_unscored_kept"] == 1 and 0 not in [d["index"] for d in man["dropped"]]
    with pytest.raises(ValueError, match="drop"):
        filter_rows([{}] * 4, s, drop=1.0)
    with pytest.raises(ValueError, match="rows but"):
        filter_rows([{}] * 3, s)
    with pytest.raises(ValueError, match="by must"):
        filter_rows([{}] * 4, s, by="ppl")


@pytest.mark.parametrize("name,kind,opts", [
    ("alpaca.csv", "alpaca", []),
    ("messages.json", "messages_tmpl", ["--context-template", TEMPLATE]),
])
def test_filter_cli_keeps_format(tmp_path, tiny_model_dir, name, kind, opts):
    from ctxrely.cli.main import main

    rows = make_rows(kind)
    data = write_rows(tmp_path / name, rows)
    out = tmp_path / "scores"
    assert main(["score-data", "--model", str(tiny_model_dir("llama")), "--data", str(data), "--out", str(out),
                 "--no-progress", "--cs-quantile", "0.34", *opts]) == 0
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    target = tmp_path / f"filtered.{name.split('.')[-1]}"
    assert main(["filter", "--scores", str(out), "--drop", "0.34", "--out", str(target)]) == 0
    kept = [r for _, r in read_records(target)[0]]
    man = json.loads(target.with_name(target.name + ".manifest.json").read_text())
    ctx = sorted((s["nll_without"], i) for i, s in enumerate(scores) if s["has_context"])
    dropped = sorted(i for _, i in ctx[:2])
    assert [d["index"] for d in man["dropped"]] == dropped
    want = [r for i, r in enumerate(rows) if i not in dropped]
    assert kept == want  # same rows, same schema (CSV: same columns, values as text)
    if name.endswith(".csv"):
        assert target.read_text().splitlines()[0] == "instruction,input,output"
    # by class: the C+S rows set by --cs-quantile
    assert main(["filter", "--scores", str(out), "--by", "class", "--out", str(target)]) == 0
    man = json.loads(target.with_name(target.name + ".manifest.json").read_text())
    assert [d["index"] for d in man["dropped"]] == [i for i, s in enumerate(scores) if s["cls"] == "C+S"]
    assert man["n_dropped"] == 2


def test_filter_cli_indicator_and_missing_scores(tmp_path, tiny_model_dir, capsys):
    from ctxrely.cli.main import main

    data = write_rows(tmp_path / "a.jsonl", make_rows("alpaca"))
    out = tmp_path / "scores"
    assert main(["filter", "--scores", str(out), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "score-data" in capsys.readouterr().err
    assert main(["score-data", "--model", str(tiny_model_dir("llama")), "--data", str(data), "--out", str(out),
                 "--no-progress"]) == 0
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    thr = sorted(s["attn_score"] for s in scores)[4]
    target = tmp_path / "ind.jsonl"
    assert main(["filter", "--scores", str(out), "--indicator", "--threshold", str(thr), "--out", str(target)]) == 0
    rows = [r for _, r in read_records(target)[0]]
    assert len(rows) == 8  # --indicator alone drops nothing
    for s, r, orig in zip(scores, rows, make_rows("alpaca"), strict=True):
        marked = s["attn_score"] > thr
        assert r["instruction"] == (orig["instruction"] + " [IND]" if marked else orig["instruction"])
        assert r["input"] == orig["input"] and r["output"] == orig["output"]
    man = json.loads((tmp_path / "ind.jsonl.manifest.json").read_text())
    assert man["indicator"]["n_marked"] == 3
