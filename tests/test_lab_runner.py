"""The lab end to end on a tiny random model: data, every variant, resume, comparison, report, CLI."""

from __future__ import annotations

import json
import math

import pytest

from ctxrely.errors import ConfigError
from ctxrely.lab.compare import compare_runs, markdown, paired_drop
from ctxrely.lab.presets import get_preset
from ctxrely.track.trajectory import TrajectoryStore


@pytest.fixture(scope="module")
def quick_lab(tmp_path_factory):
    """One quick experiment (probe off: a random model knows nothing) with every variant."""
    from ctxrely.lab.runner import run_lab

    out = tmp_path_factory.mktemp("lab")
    preset = get_preset("quick", runs=["baseline", "no_ccs", "filter", "augment", "indicator",
                                                     "qk_only"], max_steps=4, eval_every=2)
    said: list[str] = []
    outcome = run_lab(preset, out, progress=False, say=said.append)
    return preset, outcome, said


def test_quick_lab_writes_runs_comparison_and_report(quick_lab):
    preset, outcome, _ = quick_lab
    out = outcome.out_dir
    data = json.loads((out / "data" / "data.json").read_text())
    assert data["train_classes"] == {"C": 13, "C+S": 13, "S": 6} and data["eval_sets"] == {"lab_conflicts": 8}
    done = {k for k, d in outcome.run_dirs.items() if (d / "lab_done.json").exists()}
    assert done == {(r, 0) for r in preset.runs}
    for d in outcome.run_dirs.values():
        steps = [r["step"] for r in TrajectoryStore(d).rows()]
        assert steps == [0, 2, 4] and (d / "ctxrely_config.yaml").exists()
    table = json.loads((out / "comparison.json").read_text())
    assert {r["variant"] for r in table["runs"]} == set(preset.runs)
    assert table["metric"] == "lab_conflicts/logit_cf_rate"
    md = (out / "comparison.md").read_text()
    assert "| baseline | 0 |" in md and "paired SE" in md
    page = outcome.report.read_text()
    assert "Lab comparison" in page and "Lab data" in page and "data:image/png;base64" in page


def test_variants_change_what_they_should(quick_lab):
    _, outcome, _ = quick_lab
    m = {k[0]: json.loads((d / "lab_variant.json").read_text()) for k, d in outcome.run_dirs.items()}
    base = m["baseline"]
    assert m["no_ccs"]["C+S"] == 0 and m["no_ccs"]["n_rows"] == base["n_rows"] - base["C+S"]
    # filter drops 25% of the rows that have a context (C and C+S), never S rows
    assert m["filter"]["n_dropped"] == round(0.25 * (base["C"] + base["C+S"]))
    assert m["filter"]["S"] == base["S"] and m["filter"]["dropped_by_class"]["S"] == 0
    assert m["augment"]["added"] > 0 and m["augment"]["n_rows"] == base["n_rows"] + m["augment"]["added"]
    assert m["indicator"]["marked_by_class"]["S"] == 0
    import yaml

    cfg = {k[0]: yaml.safe_load((d / "ctxrely_config.yaml").read_text()) for k, d in outcome.run_dirs.items()}
    assert cfg["qk_only"]["train_modules"] == "qk" and cfg["baseline"]["train_modules"] == "all"
    assert cfg["indicator"]["indicator"] == "[IND]" and cfg["baseline"]["indicator"] is None


def test_rerun_skips_finished_runs_and_rejects_other_settings(quick_lab):
    from ctxrely.lab.runner import run_lab

    preset, outcome, _ = quick_lab
    before = {k: (d / "trajectory.jsonl").read_text() for k, d in outcome.run_dirs.items()}
    said: list[str] = []
    again = run_lab(preset, outcome.out_dir, progress=False, report=False, say=said.append)
    assert sum("done earlier, skipped" in s for s in said) == len(preset.runs)
    assert {k: (d / "trajectory.jsonl").read_text() for k, d in again.run_dirs.items()} == before
    import dataclasses

    with pytest.raises(ConfigError, match=r"\(lr differ\)"):
        run_lab(dataclasses.replace(preset, lr=0.5), outcome.out_dir, progress=False)
    # more seeds or runs are fine: only the new ones run
    assert run_lab(dataclasses.replace(preset, runs=["baseline"], seeds=[0]), outcome.out_dir, progress=False,
                   report=False).run_dirs == {("baseline", 0): outcome.run_dirs[("baseline", 0)]}


def _fake_run(path, peak_wins, final_wins):
    store = TrajectoryStore(path)
    for step, wins in ((0, peak_wins), (10, final_wins)):
        rate = sum(wins) / len(wins)
        store.append({"step": step, "metric": "s/logit_cf_rate", "s/logit_cf_rate": rate},
                     [{"suite": "s", "id": str(i), "cf_wins": w} for i, w in enumerate(wins)])


def test_paired_drop_and_ranking(tmp_path):
    _fake_run(tmp_path / "b0", [1, 1, 1, 0], [0, 1, 0, 0])
    _fake_run(tmp_path / "b1", [1, 1, 1, 1], [1, 1, 0, 1])
    _fake_run(tmp_path / "m0", [1, 1, 0, 0], [1, 1, 0, 0])
    p = paired_drop(tmp_path / "b0", "s/logit_cf_rate", 0, 10)
    assert p["n"] == 4
    assert p["drop_se"] == pytest.approx(100 * math.sqrt(1 / 3) / 2)  # diffs 1,0,1,0: sd sqrt(1/3)
    assert p["noise_se"] == pytest.approx(100 * math.sqrt(0.75 * 0.25 / 4))
    t = compare_runs({("baseline", 0): tmp_path / "b0", ("baseline", 1): tmp_path / "b1",
                      ("no_ccs", 0): tmp_path / "m0", ("filter", 0): tmp_path / "missing"})
    agg = t["by_variant"]["baseline"]
    assert agg["drop"]["mean"] == pytest.approx(37.5) and agg["drop"]["n"] == 2
    assert agg["drop"]["sd"] == pytest.approx(math.sqrt(2 * 12.5 ** 2))
    assert t["ranking"] == [{"variant": "no_ccs", "drop": 0.0, "removed": 1.0}]
    assert "removes 100%" in markdown(t)


def test_lab_cli_overrides_and_errors(tmp_path, capsys):
    from ctxrely.cli.lab_cmd import parse_overrides
    from ctxrely.cli.main import main

    assert parse_overrides(["max_steps=7", "seeds=1,2", "probe=false", "lr=3e-4", "relations=capital"]) == {
        "max_steps": 7, "seeds": [1, 2], "probe": False, "lr": 3e-4, "relations": ["capital"]}
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        parse_overrides(["max_step=7"])
    with pytest.raises(ConfigError, match="--set, field .max_steps.: expected int"):
        parse_overrides(["max_steps=many"])
    assert main(["lab", "--preset", "quick", "--set", "maxsteps=3", "--out", str(tmp_path)]) == 2
    assert "field 'maxsteps': unknown key (did you mean 'max_steps'?)" in capsys.readouterr().err
    assert main(["lab", "--preset", "quick", "--runs", "baseline", "--seeds", "3", "--set", "max_steps=2",
                 "--no-progress", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "| baseline | 3 |" in printed and f"report: {tmp_path / 'cli' / 'report' / 'report.html'}" in printed
    assert json.loads((tmp_path / "cli" / "preset.json").read_text())["max_steps"] == 2


@pytest.mark.parametrize("run", ["filter", "augment", "indicator"])
def test_variants_on_plain_text_rows(tiny_llama, tmp_path, run):
    """Base models train on plain-text rows (no chat template): every scorer must find the context."""
    from ctxrely.data.facts import load_facts
    from ctxrely.lab.mixture import build_mixture
    from ctxrely.lab.variants import make_variant
    from ctxrely.prompts import get_format

    model, tok = tiny_llama
    rows = build_mixture(load_facts("capital")[:20], get_format("raw"), tok, n_rows=16, seed=0)
    assert isinstance(rows[0]["prompt"], str)
    v = make_variant(run, rows, get_preset("quick"), model, tok, tmp_path, fmt="raw", progress=False)
    if run == "filter":
        assert v.manifest["n_dropped"] == round(0.25 * sum(1 for r in rows if r["cls"] != "S"))
        assert json.loads((tmp_path / "criticality.json").read_text())[0]["nll_with"] is not None
    elif run == "augment":
        new = v.rows[len(rows):]
        assert new and all(r["prompt"] != o["prompt"] for r, o in zip(new, rows, strict=False))
        assert all(r["completion"].strip() in r["prompt"] for r in new)  # the answer follows the context
    else:
        marked = [r for r, o in zip(v.rows, rows, strict=True) if r is not o]
        assert marked and all(r["prompt"].endswith("? [IND]\nAnswer:") and r["context"] for r in marked)


def test_lab_data_cache_is_keyed_by_the_weights(tiny_llama, tmp_path):
    """Same model name, other weights: the cached probe is not reused (kept aside, probed again).

    A random tiny model knows no fact, so each call stops with the "too few facts" line right after
    the probe, which it has cached by then."""
    import copy

    import torch

    from ctxrely.errors import ConfigError
    from ctxrely.lab.prepare import prepare_data

    model, tok = tiny_llama
    preset = get_preset("quick", probe=True)
    probe = tmp_path / "data" / "probe.jsonl"

    def prepare(m):
        with pytest.raises(ConfigError, match="facts are known closed-book"):
            prepare_data(preset, m, tok, tmp_path, progress=False)
        return json.loads(probe.read_text().splitlines()[0])["fingerprint"], probe.stat().st_mtime_ns

    head, written = prepare(model)
    assert prepare(model) == (head, written)  # same weights: the cache is reused as it is
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(0.5)
    assert prepare(other)[0] != head
    assert (tmp_path / "data" / f"probe.{head}.jsonl").is_file()  # the old weights' probe is kept, not lost
