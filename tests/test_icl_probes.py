"""ICL / IWL / Copy probes and bucketed suites: hand-built cases with known scores, and
``icl-data`` -> ``train`` -> probes (and the lab) on a tiny model."""

from __future__ import annotations

import json

import pytest

from ctxrely.data.schema import ConflictExample
from ctxrely.icl.lexicon import lexicon_task
from ctxrely.icl.probes import ICL_METRICS, bucket_examples, probe_examples, probe_scores, score_outputs


def _ex(suite, i, label, param=None, others=()):
    return ConflictExample(id=str(i), suite=suite, context="Question: q\nAnswer: a", question=f"q{i}",
                           cf_answer=label, param_answer=param, cf_aliases=tuple(others))


def test_scores_on_hand_built_outputs():
    icl = [_ex("icl_probe", i, f"nov{i}") for i in range(4)]
    # IWL items: taught label "ok<i>"; dissimilar demos carry "d<i>a" / "d<i>b"
    iwl = [_ex("iwl_probe", i, f"d{i}a", param=f"ok{i}", others=[f"d{i}b"]) for i in range(5)]
    outs = {("icl_probe", "0"): "nov0", ("icl_probe", "1"): "nov1 extra", ("icl_probe", "2"): "nov0",
            ("icl_probe", "3"): "",
            ("iwl_probe", "0"): "ok0", ("iwl_probe", "1"): "ok1", ("iwl_probe", "2"): "d2b",
            ("iwl_probe", "3"): "d3a", ("iwl_probe", "4"): "ok0"}
    s = score_outputs({"icl_probe": icl, "iwl_probe": iwl}, outs)
    assert s["icl_score"] == pytest.approx(2 / 4)  # item 2 answered another item's label
    assert s["iwl_score"] == pytest.approx(2 / 5)
    assert s["copy_score"] == pytest.approx(2 / 5)  # items 2 and 3 copied a dissimilar demo's label
    assert s["icl_acc_high"] is None  # no bucket suite scored


def test_metric_declarations_are_complete():
    names = [m["name"] for m in ICL_METRICS]
    assert len(names) == len(set(names)) and {"icl_score", "iwl_score", "copy_score", "icl_acc_zero"} <= set(names)
    assert all({"mode", "higher_is_better", "aggregation", "key"} <= set(m) for m in ICL_METRICS)
    assert probe_scores({"icl_probe/cf_acc": 0.25})["icl_score"] == 0.25
    assert probe_scores({"x_iwl_probe/cf_acc": 0.5}, prefix="x_")["copy_score"] == 0.5


def test_probe_suites_hold_what_the_definitions_say():
    t = lexicon_task(n_train=120, n_test=12, n_novel=12)
    trained = {w for r in t.train for w in r["input"].split()}
    ex = probe_examples(t.train, t.novel, t.train[:12], k=4, similarity="bm25")
    for e in ex["icl_probe"]:  # the label is novel: no training row teaches the novel noun
        assert e.question.split()[1] not in trained and e.cf_answer in e.context
        assert e.meta["demo_kinds"].count("near_duplicate") == 1 and len(e.meta["demo_ids"]) == 4
    for e in ex["iwl_probe"]:  # taught target, dissimilar demos that share no word with it
        assert e.param_answer in {r["output"] for r in t.train} and e.param_answer not in e.context
        demo_inputs = [line[len("Question: "):] for line in e.context.splitlines() if line.startswith("Question: ")]
        assert not any(set(d.split()) & set(e.question.split()) for d in demo_inputs)
        assert len(e.cf_targets()) == 4
    b = bucket_examples(t.train, t.test, k=4, similarity="bm25")
    assert len(b["icl_zero"]) == 12 and all(not e.context for e in b["icl_zero"])
    assert sum(len(v) for v in b.values()) == 12 * 4
    for name, exs in b.items():
        if name != "icl_zero":
            from ctxrely.icl.buckets import bucket_of

            assert all(f"icl_{bucket_of(e.meta['max_similarity'])}" == name for e in exs)
    assert {"icl_low", "icl_medium", "icl_high"} <= set(b)


def test_word_accuracy_on_hand_built_logs(tmp_path):
    from ctxrely.icl.report import word_accuracy, word_copy_rate

    probe = [_ex("iwl_probe", 0, "d0", param="ka lo"), _ex("iwl_probe", 1, "d1", param="mi nu")]
    (tmp_path / "probe_set.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in probe))
    logs = [{"step": 0, "rows": [{"suite": "iwl_probe", "id": "0", "output": "lo ka"},
                                 {"suite": "iwl_probe", "id": "1", "output": ""}]},
            {"step": 5, "rows": [{"suite": "iwl_probe", "id": "0", "output": "ka lo extra"},
                                 {"suite": "iwl_probe", "id": "1", "output": "mi"}]}]
    (tmp_path / "trajectory_examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    assert word_accuracy(tmp_path) == {0: 0.0, 5: 0.75}  # position matters; 3 of 4 words at step 5
    logs[1]["rows"][1]["output"] = "d1 nu"  # item 1 copies the demo word "d1"
    (tmp_path / "trajectory_examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    assert word_copy_rate(tmp_path) == {0: 0.0, 5: 0.5}


torch = pytest.importorskip("torch")
pytest.importorskip("trl")


def test_icl_data_then_train_then_probes_on_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    from ctxrely.cli.main import main
    from ctxrely.models.load import load_model
    from ctxrely.train.config import load_config
    from ctxrely.train.sft import run_train

    t = lexicon_task(n_train=40, n_test=3, n_novel=3)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in t.train))
    rows = tmp_path / "ic_train.jsonl"
    assert main(["icl-data", "--data", str(pool), "--k", "2", "--strategy", "contrastive", "--similarity", "bm25",
                 "--format", "alpaca", "--out", str(rows)]) == 0
    probes = probe_examples(t.train, t.novel, t.train[:3], k=2, similarity="bm25")
    probes.update(bucket_examples(t.train, t.test, k=2, similarity="bm25"))
    cfg = load_config(None, [f"model={tiny_model_dir('llama')}", f"dataset={rows}", f"output_dir={tmp_path / 'run'}",
                             "prompt_format=raw", "max_steps=3", "eval_every=2", "batch_size=4", "max_length=128",
                             "suites=", "eval_mode=generate", "eval_max_new_tokens=4", "metric=icl_probe/cf_acc",
                             "attention_subset=0", "device=cpu", "save_final=false"])
    model, tok = load_model(cfg.model)
    out = run_train(cfg, model=model, tokenizer=tok, eval_examples=probes)
    traj = [json.loads(x) for x in (out / "trajectory.jsonl").read_text().splitlines()]
    assert [r["step"] for r in traj] == [0, 2, 3]
    for r in traj:
        s = probe_scores(r)
        assert all(v is None or 0 <= v <= 1 for v in s.values())
        assert s["icl_score"] is not None and s["iwl_score"] is not None and s["copy_score"] is not None
        assert s["icl_acc_zero"] is not None
    assert json.loads((out / "tracking.json").read_text())["format"] == "raw"  # probes render as training did


def test_lab_runs_and_reports_on_a_tiny_model(tiny_model_dir, tmp_path):
    from ctxrely.icl.lab import IclLabSettings, run_icl_lab

    s = IclLabSettings(model=str(tiny_model_dir("llama")), strategies=("zero", "contrastive"), k=2, passes=1,
                       n_train=30, n_probe=2, max_steps=2, eval_every=1, batch_size=4, max_length=96,
                       max_new_tokens=3)
    summary = run_icl_lab(s, tmp_path / "lab")
    assert set(summary["per_strategy"]) == {"zero", "contrastive"}
    assert summary["per_strategy"]["zero"]["steps"] == [0, 1, 2]
    page = (tmp_path / "lab" / "report" / "report.html").read_text()
    assert "IC-Train: accuracy per similarity bucket" in page and page.count("data:image/png") >= 3
    assert (tmp_path / "lab" / "icl_summary.md").read_text().startswith("| strategy |")
    rows = (tmp_path / "lab" / "icl_intervals.md").read_text().splitlines()
    assert rows[0].startswith("| run | ICL-score [95% CI, 2 items]") and [r.split(" | ")[0] for r in rows[2:]] == [
        "| zero-s0", "| contrastive-s0"]
    again = run_icl_lab(s, tmp_path / "lab")  # resumes: both runs are done
    assert again["per_strategy"] == summary["per_strategy"]


def test_icl_probes_tracked_from_the_command_line(tiny_model_dir, tmp_path, capsys):
    """`ctxrely icl-data --probes` writes the suites; `ctxrely train eval_data=[...]` tracks them (no Python)."""
    from ctxrely.cli.main import main
    from ctxrely.data.loaders import load_data

    t = lexicon_task(n_train=40, n_test=3, n_novel=3)
    files = {}
    for name, rows in (("pool", t.train), ("novel", t.novel), ("test", t.test)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows, pdir = tmp_path / "ic_train.jsonl", tmp_path / "probes"
    args = ["icl-data", "--data", str(files["pool"]), "--k", "2", "--similarity", "bm25", "--format", "alpaca",
            "--out", str(rows)]
    assert main([*args, "--novel", str(files["novel"])]) == 2  # --novel without --probes
    assert "--probes" in capsys.readouterr().err
    assert main([*args, "--probes", str(pdir), "--novel", str(files["novel"]), "--test", str(files["test"]),
                 "--n-taught", "3"]) == 0
    assert "track them: ctxrely train" in capsys.readouterr().out
    want = probe_examples(t.train, [dict(r, line=i + 1) for i, r in enumerate(t.novel)], t.train[:3], k=2,
                          similarity="bm25")
    def fields(exs):  # what scoring reads (the loader keeps its own meta)
        return [{k: v for k, v in e.to_dict().items() if k != "meta"} for e in exs]

    for name in ("icl_probe", "iwl_probe"):
        back = load_data(str(pdir / f"{name}.jsonl"))
        assert back.name == name and fields(back.examples) == fields(want[name])
    suites = sorted(p.stem for p in pdir.glob("*.jsonl"))
    assert {"icl_probe", "iwl_probe", "icl_zero"} <= set(suites)
    out = tmp_path / "run"
    assert main(["train", f"model={tiny_model_dir('llama')}", f"dataset={rows}", f"output_dir={out}",
                 "prompt_format=raw", "max_steps=2", "eval_every=2", "batch_size=4", "max_length=128", "suites=",
                 "eval_mode=generate", "eval_max_new_tokens=4", "metric=icl_probe/cf_acc", "attention_subset=0",
                 "device=cpu", "save_final=false", "eval_data=[" + ",".join(str(pdir / f"{s}.jsonl") for s in suites) + "]"]) == 0
    traj = [json.loads(x) for x in (out / "trajectory.jsonl").read_text().splitlines()]
    s = probe_scores(traj[-1])
    assert s["icl_score"] is not None and s["iwl_score"] is not None and s["copy_score"] is not None
    twice = ["train", "model=tiny", f"dataset={rows}", f"output_dir={tmp_path / 'r2'}", "suites=",
             f"eval_data=[{pdir / 'icl_probe.jsonl'},{pdir / 'icl_probe.jsonl'}]"]
    assert main(twice) == 2 and "given twice" in capsys.readouterr().err


def test_interval_counts_from_logged_outputs(tmp_path):
    from ctxrely.icl.intervals import interval_markdown, item_counts

    run = tmp_path / "runs" / "random-s0"
    run.mkdir(parents=True)
    (run / "lab_done.json").write_text("{}")
    step = [{"suite": "icl_probe", "id": f"n{i}", "cf_hit": i < 3, "param_hit": None} for i in range(4)] + [
        {"suite": "iwl_probe", "id": f"w{i}", "cf_hit": i == 0, "param_hit": i > 0} for i in range(5)]
    lines = [{"step": 0, "rows": step[:4]}, {"step": 30, "rows": step}]
    (run / "trajectory_examples.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    counts = item_counts(run)
    assert counts[0] == {"icl_score": (3, 4)}
    assert counts[30] == {"icl_score": (3, 4), "iwl_score": (4, 5), "copy_score": (1, 5)}
    md = interval_markdown(tmp_path)
    assert "| random-s0 | 0.75 [0.30, 0.95] | 0.80 [0.38, 0.96] | 0.20 [0.04, 0.62] | 30: 0.80 |" in md
    (run / "trajectory_examples.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(ValueError, match="trajectory_examples.jsonl:1: not a logged evaluation"):
        item_counts(run)
