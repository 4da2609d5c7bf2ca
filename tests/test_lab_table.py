"""The measured lab table on hand-made experiment folders whose right numbers are known."""

from __future__ import annotations

import json
import math

import pytest

from ctxrely.errors import ConfigError
from ctxrely.lab.labels import class_recovery, experiment_recovery
from ctxrely.lab.presets import get_preset
from ctxrely.lab.table import build_table, collect
from ctxrely.lab.table_md import compact_rows, html, markdown
from ctxrely.track.trajectory import TrajectoryStore

METRIC = "lab_conflicts/logit_cf_rate"


def make_run(out, variant, seed, wins, id_acc, done=True):
    """A run folder: ``wins[step]`` = per-item cf_wins of 4 items, ``id_acc[step]`` = ID accuracy."""
    d = out / "runs" / f"{variant}-s{seed}"
    store = TrajectoryStore(d)
    store.write_settings({"metric": METRIC})
    for step, w in wins.items():
        store.append({"step": step, METRIC: sum(w) / len(w), "id/id/acc": id_acc[step]},
                     [{"suite": "lab_conflicts", "id": str(i), "cf_wins": x} for i, x in enumerate(w)])
    if done:
        (d / "lab_done.json").write_text(json.dumps({"variant": variant, "seed": seed}))


def make_experiment(out, **overrides):
    preset = get_preset("quick", runs=["baseline", "filter", "no_ccs"], seeds=[0, 1, 2], max_steps=4, **overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / "preset.json").write_text(json.dumps(preset.to_dict()))
    return preset


UP, HALF, ZERO = [1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]
ACC = {0: 0.0, 2: 0.5, 4: 1.0}


@pytest.fixture
def experiment(tmp_path):
    out = tmp_path / "exp"
    make_experiment(out)
    # baseline: seed 0 falls 1.0 -> 0.5 (drop 50), seed 1 falls 1.0 -> 0.75 (drop 25); ID acc ends at 1.0
    make_run(out, "baseline", 0, {0: ZERO, 2: UP, 4: HALF}, ACC)
    make_run(out, "baseline", 1, {0: ZERO, 2: UP, 4: [1, 1, 1, 0]}, ACC)
    # filter: seed 0 ends at its peak (drop 0), seed 1 falls like the baseline's seed 1 (drop 25)
    make_run(out, "filter", 0, {0: ZERO, 2: HALF, 4: UP}, {0: 0.0, 2: 0.5, 4: 0.99})
    make_run(out, "filter", 1, {0: ZERO, 2: UP, 4: [0, 1, 1, 1]}, ACC)
    # no_ccs: ends at its peak in both seeds, but ID accuracy only 0.9 (< 98% of the baseline's 1.0)
    make_run(out, "no_ccs", 0, {0: ZERO, 2: HALF, 4: UP}, {0: 0.0, 2: 0.4, 4: 0.9})
    make_run(out, "no_ccs", 1, {0: ZERO, 2: HALF, 4: UP}, {0: 0.0, 2: 0.4, 4: 0.9})
    # marked done but its trajectory is empty
    (out / "runs" / "no_ccs-s2").mkdir(parents=True)
    (out / "runs" / "no_ccs-s2" / "trajectory.jsonl").write_text("")
    (out / "runs" / "no_ccs-s2" / "lab_done.json").write_text("{}")
    # an interrupted run: evaluated at steps 0 and 2, no lab_done.json
    make_run(out, "filter", 2, {0: ZERO, 2: HALF}, ACC, done=False)
    return out


def test_table_numbers_drop_vs_baseline_recipe_keep_peak_and_missing(experiment):
    t = build_table(collect([experiment]))
    b, f, n = (t["by_variant"][v] for v in ("baseline", "filter", "no_ccs"))
    assert b["drop"]["mean"] == pytest.approx(37.5) and b["drop"]["sd"] == pytest.approx(math.sqrt(2) * 12.5)
    assert b["peak_step"]["mean"] == 2 and b["final"]["mean"] == pytest.approx(0.625)
    # per-run paired SE from the items: baseline seed 0 diffs 0,0,1,1 -> sd sqrt(1/3), /2
    run0 = next(r for r in t["runs"] if (r["variant"], r["seed"]) == ("baseline", 0))
    assert run0["drop_se"] == pytest.approx(100 * math.sqrt(1 / 3) / 2)
    # filter vs baseline, paired by seed: d = 50 - 0, 25 - 25 -> mean 25, se sd([50, 0]) / sqrt 2 = 25
    vs = f["vs_baseline"]
    assert vs["n"] == 2 and vs["diff"] == pytest.approx(25) and vs["se"] == pytest.approx(25)
    assert vs["removed"] == pytest.approx(25 / 37.5)
    assert [r["variant"] for r in t["ranking"]] == ["no_ccs", "filter"]
    # where training ends, paired by seed: filter finals 1.0, 0.75 vs baseline 0.5, 0.75 -> +50, 0 (pts)
    fv = f["final_vs_baseline"]
    assert fv["n"] == 2 and fv["diff"] == pytest.approx(25) and fv["se"] == pytest.approx(25)
    assert "final_vs_baseline" not in b
    assert t["ranking"][0]["removed"] == pytest.approx(1.0)
    # recipe: final >= own peak and final ID acc >= 0.98 * 1.0
    assert t["recipe_id_bar"] == pytest.approx(0.98)
    assert f["recipe"] == {"pass": 1, "n": 2, "verdict": False}
    assert n["recipe"] == {"pass": 0, "n": 2, "verdict": False}  # peak kept but ID acc 0.9 < 0.98
    assert b["recipe"]["pass"] == 0
    # within noise: filter seed 1 falls 25 pts but its 4 items give z = 1 < 2 -> passes; no_ccs still fails on ID
    assert f["recipe_noise"] == {"pass": 2, "n": 2, "verdict": True}
    assert n["recipe_noise"]["pass"] == 0
    # keep_peak: cf = peak, ID acc at the peak step (baseline: step 2, 0.5)
    assert b["id_acc_peak"]["mean"] == pytest.approx(0.5) and b["keep_peak_recipe"]["verdict"] is False
    assert f["id_acc_peak"]["mean"] == pytest.approx((0.99 + 0.5) / 2)
    # best step whose ID acc clears 0.98: baseline only the last (0.5 in seed 0, 0.75 in seed 1); filter seed 0
    # only step 4 (0.99), seed 1 step 4 (0.75); no_ccs never (0.9)
    kb = b["keep_best_id"]
    assert kb["cf"]["mean"] == pytest.approx(0.625) and kb["step"]["mean"] == 4 and kb["cf"]["n"] == 2
    assert f["keep_best_id"]["cf"]["mean"] == pytest.approx(0.875) and n["keep_best_id"]["cf"]["n"] == 0
    # missing: the preset's grid (3 seeds) minus finished runs, with why
    missing = {(m["variant"], m["seed"]): m["why"] for m in t["missing"]}
    assert set(missing) == {("baseline", 2), ("filter", 2), ("no_ccs", 2)}
    assert missing[("filter", 2)].startswith("unfinished: last evaluation at step 2 of 4")
    assert missing[("baseline", 2)] == "not started"
    assert missing[("no_ccs", 2)].startswith("finished but unreadable:") and "no evaluations" in missing[("no_ccs", 2)]
    assert t["partial"] == {"filter-s2": [[0, 0.0], [2, 0.5]]} and "- filter-s2: 0: 0.00, 2: 0.50" in markdown(t)
    md = markdown(t)
    assert "1. no_ccs: removes 100%" in md and "2. filter: removes 67% (drop 25.0 ± 25.0 pts smaller, n=2)" in md
    assert "met by no run" in md and "- filter seed 2: unfinished" in md
    assert "Within noise (final below the peak by less than 2 paired SE, same ID bar): met by " in md
    assert "| +25.0 ± 25.0 (n=2) |" in md
    short = compact_rows(t)
    assert short[2].startswith("| `baseline` | 2 | ") and short[3].startswith("| `no_ccs` | 2 | ")  # best first
    assert "1. no_ccs: +37.5 ± 12.5 pts (n=2)" in md and "2. filter: +25.0 ± 25.0 pts (n=2)" in md
    assert "| 67% (25.0 ± 25.0) | +25.0 ± 25.0 |" in short[4] and short[4].endswith("| 1/2 / 2/2 |")
    assert "| filter | 0,1 | " in md and "| yes (1/2)" not in md and "| no (1/2) |" in md
    assert "- baseline seeds 2, 3: not started" in markdown(build_table(collect([experiment]), seeds=[0, 1, 2, 3]))
    assert "<table>" in html(t, caption="Measured <long>") and "Measured &lt;long&gt;" in html(t, caption="Measured <long>")


def test_recipe_met_when_every_seed_ends_at_its_peak_with_id_acc(tmp_path):
    out = tmp_path / "exp"
    make_experiment(out)
    make_run(out, "baseline", 0, {0: ZERO, 2: UP, 4: HALF}, ACC)
    make_run(out, "filter", 0, {0: ZERO, 2: HALF, 4: UP}, {0: 0.0, 2: 0.5, 4: 0.98})
    t = build_table(collect([out]), runs=["baseline", "filter"], seeds=[0])
    assert t["by_variant"]["filter"]["recipe"] == {"pass": 1, "n": 1, "verdict": True}
    assert t["missing"] == [] and "met by filter." in markdown(t)
    assert t["by_variant"]["filter"]["vs_baseline"]["se"] is None  # one paired seed: no SE


def test_recorded_runs_enter_the_table_and_folders_win(experiment, tmp_path):
    preset = json.loads((experiment / "preset.json").read_text())
    rec = tmp_path / "recorded.json"
    rec.write_text(json.dumps({"metric": METRIC, "preset": preset, "provenance": {"commit": "abc1234"}, "runs": [
        {"variant": "baseline", "seed": 2, "step0": 0.0, "peak": 1.0, "peak_step": 2, "final": 0.25, "drop": 75.0,
         "drop_se": 5.0, "id_acc_final": 1.0, "trajectory": {"4": 0.25, "0": 0.0, "2": 1.0}},
        {"variant": "baseline", "seed": 0, "peak": 0.1, "final": 0.1, "drop": 0.0}]}))
    t = build_table(collect([experiment], [rec]))
    b = t["by_variant"]["baseline"]
    assert b["seeds"] == [0, 1, 2] and b["recorded_seeds"] == [2]
    assert b["drop"]["mean"] == pytest.approx((50 + 25 + 75) / 3)  # seed 0 from the folder, not the file
    assert "recorded (abc1234)" in markdown(t) and "(2 recorded)" in markdown(t)
    assert "| baseline | 0 | 0: 0.00, 2: 1.00, 4: 0.50 | 0: 0.00, 2: 0.50, 4: 1.00 |" in markdown(t)
    assert "| baseline | 2 | 0: 0.00, 2: 1.00, 4: 0.25 | - |" in markdown(t)  # a recorded trajectory, in step order
    assert ("baseline", 2) not in {(m["variant"], m["seed"]) for m in t["missing"]}


def test_sources_with_other_settings_are_refused(experiment, tmp_path):
    other = tmp_path / "other"
    make_experiment(other, lr=0.5)
    with pytest.raises(ConfigError, match=r"other settings .*\(lr differ\)"):
        collect([experiment, other])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": [{"variant": "baseline", "seed": 0}]}))
    with pytest.raises(ConfigError, match=r"runs\[0\]: missing field\(s\) peak, final, drop"):
        collect([], [bad])
    with pytest.raises(ConfigError, match="no preset.json"):
        collect([tmp_path])


def test_class_recovery_counts():
    scores = ([{"has_context": True, "nll_without": 0.1 * i} for i in range(6)]  # C+S by threshold: all six
              + [{"has_context": True, "nll_without": 2.0 + i} for i in range(4)]
              + [{"has_context": False, "nll_without": 0.3}] * 2)
    labels = ["C+S"] * 4 + ["C"] * 2 + ["C+S"] + ["C"] * 3 + ["S"] * 2
    r = class_recovery(scores, labels, drop=0.2)
    cs = r["classes"]["C+S"]
    assert (cs["n_pred"], cs["n_true"], cs["tp"]) == (6, 5, 4)
    assert cs["precision"] == pytest.approx(4 / 6) and cs["recall"] == pytest.approx(4 / 5)
    assert r["classes"]["S"]["precision"] == 1.0 and r["confusion"]["C"]["C+S"] == 2
    # quantile filter: lowest round(0.2 * 10) = 2 rows with context, both true C+S
    q = r["filters"]["filter"]
    assert q["n_pred"] == 2 and q["precision"] == 1.0 and q["recall"] == pytest.approx(2 / 5)
    assert r["filters"]["filter_class"]["dropped_by_class"] == {"C": 2, "C+S": 4, "S": 0}


def test_cli_writes_table_with_classes(experiment, tmp_path, capsys):
    from ctxrely.cli.main import main

    data = experiment / "data"
    data.mkdir()
    scores = [{"has_context": True, "nll_without": 0.2}, {"has_context": True, "nll_without": 3.0},
              {"has_context": False, "nll_without": 0.1}]
    (data / "criticality.json").write_text(json.dumps(scores))
    (data / "mixture.jsonl").write_text("".join(json.dumps({"cls": c}) + "\n" for c in ("C+S", "C", "S")))
    assert experiment_recovery(experiment)["classes"]["C+S"]["recall"] == 1.0
    md, js = tmp_path / "t.md", tmp_path / "t.json"
    assert main(["lab-table", str(experiment), "--seeds", "0,1", "--md", str(md), "--json", str(js),
                 "--note", "made by commit abc"]) == 0
    printed = capsys.readouterr().out
    assert printed == md.read_text() and "`score-data`'s classes" in printed
    doc = json.loads(js.read_text())
    assert doc["note"] == "made by commit abc" and doc["grid"]["seeds"] == [0, 1]
    assert doc["missing"] == [] and doc["classes"]["n"] == 3
    assert main(["lab-table"]) == 2
    assert "give at least one experiment folder" in capsys.readouterr().err
    assert main(["lab-table", str(experiment), "--seeds", "0,x"]) == 2


def test_demo_shows_the_shipped_measured_table_labelled():
    from importlib import resources

    from ctxrely.lab.demo import MEASURED, measured_html

    shipped = json.loads(resources.files("ctxrely.lab").joinpath(MEASURED).read_text(encoding="utf-8"))
    assert shipped["note"] and "baseline" in shipped["by_variant"]
    page = measured_html({"runs": [{"variant": "baseline", "z": 1.5}, {"variant": "no_ccs", "z": None}]})
    assert "Not run by this demo" in page and "baseline z = 1.5" in page and "within noise" in page
    assert shipped["note"].split("(")[0].strip() in page and "<td>baseline</td>" in page
    assert "partly clear of noise" in measured_html({"runs": [{"variant": "baseline", "z": 6.0}]})


def test_separability_auc_and_recall_at_precision():
    from ctxrely.lab.labels import separability

    # NLL order: cs 0.1, cs 0.2, c 0.3, cs 0.4, c 0.5 (tie with cs 0.5), c 0.9
    vals = [(0.1, "C+S"), (0.2, "C+S"), (0.3, "C"), (0.4, "C+S"), (0.5, "C"), (0.5, "C+S"), (0.9, "C")]
    scores = [{"nll_without": v} for v, _ in vals] + [{"nll_without": 0.0}]
    labels = [t for _, t in vals] + ["S"]  # S rows never count
    r = separability(scores, labels, precision=0.95)
    # pairs (cs < c): 0.1 and 0.2 beat all 3 C (6), 0.4 beats 2 (2), 0.5 ties one (0.5) and beats one (1)
    assert r["auc"] == pytest.approx(9.5 / 12) and (r["n_cs"], r["n_c"]) == (4, 3)
    assert r["threshold"] == 0.2 and r["recall"] == pytest.approx(0.5)
    assert separability(scores, labels, precision=0.7)["recall"] == pytest.approx(0.75)  # 3/4 at 0.4


def test_a_field_the_record_predates_counts_as_its_default(experiment, tmp_path):
    """A recorded preset without a later-added field matches a folder that kept the field's default."""
    preset = json.loads((experiment / "preset.json").read_text())
    old = {k: v for k, v in preset.items() if k != "awareness_lengths"}
    rec = tmp_path / "old.json"
    body = {"metric": METRIC, "provenance": {"commit": "abc1234"}, "runs": [
        {"variant": "baseline", "seed": 2, "peak": 1.0, "final": 0.5, "drop": 50.0}]}
    rec.write_text(json.dumps({**body, "preset": {**old}}))
    (experiment / "preset.json").write_text(json.dumps({**preset, "awareness_lengths": []}))
    collect([experiment], [rec])  # predates the field; the folder holds the default: same settings
    (experiment / "preset.json").write_text(json.dumps({**preset, "awareness_lengths": [300]}))
    with pytest.raises(ConfigError, match=r"awareness_lengths differ"):
        collect([experiment], [rec])
