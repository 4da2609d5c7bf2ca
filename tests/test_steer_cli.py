"""``ctxrely steer profile|compare``, ``ctxrely eval --decode/--steer``, head files and the control."""

from __future__ import annotations

import json

import pytest

from ctxrely.cli.main import main
from ctxrely.data.suites import load_suite
from ctxrely.steer.compare import no_conflict


def test_no_conflict_control_states_the_true_answer():
    suite = load_suite("cf_capitals")
    ctrl = no_conflict(suite)
    assert ctrl.name == "cf_capitals+control" and len(ctrl.examples) == len(suite.examples)
    ex, orig = ctrl.examples[0], suite.examples[0]
    assert ex.cf_answer == orig.param_answer and ex.param_answer == orig.cf_answer
    assert orig.cf_answer not in ex.context and orig.param_answer in ex.context
    assert ex.question == orig.question


def test_profile_writes_a_pasta_head_file_that_eval_accepts(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("llama"))
    heads = tmp_path / "heads.json"
    rc = main(["steer", "profile", "--model", model, "--suites", "cf_capitals", "--limit", "4", "--top-k", "3",
               "--top-layers", "1", "--out", str(heads), "--no-progress"])
    assert rc == 0
    data = json.loads(heads.read_text())
    assert len(data) == 1 and len(next(iter(data.values()))) == 3  # 3 heads of the best layer, PASTA shape
    scores = json.loads(heads.with_suffix(".scores.json").read_text())
    assert set(scores["layer_gain"]) == {"0", "1"} and len(scores["head_gain"]) == 4
    assert "top heads" in capsys.readouterr().out
    out = tmp_path / "eval"
    rc = main(["eval", "--model", model, "--suites", "cf_capitals", "--limit", "3", "--mode", "logits",
               "--steer", f"pasta:alpha=0.05,heads={heads}", "--decode", "cad", "--out", str(out), "--no-progress",
               "--n-boot", "10"])
    assert rc == 0
    cfg = json.loads((out / "summary.json").read_text())["config"]["intervention"]
    assert cfg["decode"] == "cad" and cfg["steer"]["alpha"] == 0.05 and len(cfg["steer"]["heads"]) == 12


def test_compare_table(tiny_model_dir, tmp_path):
    out = tmp_path / "cmp"
    rc = main(["steer", "compare", "--model", str(tiny_model_dir("llama")), "--suites", "cf_capitals,cf_quotes",
               "--limit", "3", "--variants", "plain,cad,pasta-all", "--max-new-tokens", "3", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    rows = json.loads((out / "table.json").read_text())
    assert [(r["suite"], r["variant"]) for r in rows][:3] == [("cf_capitals", "plain"), ("cf_quotes", "plain"),
                                                              ("cf_capitals", "cad")]
    assert all(r["n_control"] == 3 and r["control_acc"] is not None for r in rows)
    assert (out / "plain" / "summary.json").exists() and "| cf_capitals | cad |" in (out / "table.md").read_text()


@pytest.mark.parametrize("argv, match", [
    (["--decode", "cad", "--cad-alpha", "-2"], "cad-alpha"),
    (["--steer", "pasta:alpha=2x"], "alpha must be a number"),
    (["--steer", "pasta:heads=/no/such.json"], "no such head file"),
])
def test_eval_bad_intervention_is_one_line(tiny_model_dir, capsys, argv, match):
    rc = main(["eval", "--model", str(tiny_model_dir("llama")), "--suites", "cf_capitals", "--limit", "2", *argv])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err


def test_head_file_with_a_missing_layer_is_one_line(tiny_model_dir, tmp_path, capsys):
    heads = tmp_path / "h.json"
    heads.write_text(json.dumps({"7": [0]}))
    rc = main(["eval", "--model", str(tiny_model_dir("llama")), "--suites", "cf_capitals", "--limit", "2",
               "--mode", "logits", "--steer", f"pasta:heads={heads}", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2
    assert "layer 7 does not exist" in capsys.readouterr().err
