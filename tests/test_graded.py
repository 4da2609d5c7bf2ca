"""Graded conflicts (issue 21): the perturbation ladder, the built-in graded suites, the prior pass,
adoption metrics and ClashEval's table, ``evaluate(..., grade=True)`` on a user's file.

Run: .venv/bin/python -m pytest -q tests/test_graded.py
"""

from __future__ import annotations

import json
import math

import pytest

from ctxrely.data.graded import NUMBER_FACTORS, YEAR_STEPS, grade_examples, grade_suite, numeric_part
from ctxrely.data.mentions import number_pattern, word_pattern
from ctxrely.data.schema import ConflictExample, Suite
from ctxrely.data.suites import load_suite
from ctxrely.metrics.adoption import adoption_flat, adoption_summary, by_prior, clasheval, outcome, trend

GRADED = ("graded_years", "graded_numbers", "graded_names")


def _ex(i: str, context: str, answer: str, question: str = "Q?") -> ConflictExample:
    return ConflictExample(id=i, suite="user", context=context, question=question, cf_answer=answer)


# ----------------------------------------------------------------------------- the generator


def test_year_ladder_edits_every_mention_and_records_degree():
    ex = _ex("a", "It fell in 1989. In 1989 (not 19890 or 1989.5) crowds cheered.", "1989")
    graded, report = grade_examples([ex], suite="graded_u")
    assert [g.meta["degree"] for g in graded] == [0, *YEAR_STEPS]
    assert [g.meta["degree_rank"] for g in graded] == list(range(len(YEAR_STEPS) + 1))
    for g in graded[1:]:
        new = int(g.cf_answer)
        assert abs(new - 1989) == g.meta["degree"] and g.param_answer == "1989"
        assert g.context.count(g.cf_answer) == 2 and "1989 " not in g.context.replace("1989.5", "")
        assert "19890" in g.context and "1989.5" in g.context  # longer numbers are not mentions
    assert graded[0].context == ex.context and graded[0].cf_answer == graded[0].param_answer
    assert report.n_graded == 1 and report.skipped == {}


def test_number_ladder_keeps_format_and_moves_every_step():
    for ans, ctx in (("8,849", "Everest is 8,849 metres; 8,849 is official."), ("42.195", "A marathon is 42.195 km."),
                     ("3", "An octopus has 3 hearts.")):
        graded, _ = grade_examples([_ex("n", ctx, ans)], suite="g")
        steps = graded[1:]
        assert [g.meta["degree"] for g in steps] == list(NUMBER_FACTORS)
        values = [float(g.cf_answer.replace(",", "")) for g in steps]
        assert len(set(values)) == len(values) and float(ans.replace(",", "")) not in values
        assert all(("," in g.cf_answer) == ("," in ans) or float(g.cf_answer.replace(",", "")) < 1000 for g in steps)
        assert all(len(g.cf_answer.split(".")[-1]) == 3 for g in steps) if "." in ans else True
        assert all(g.cf_answer in g.context and not number_pattern(ans).search(g.context) for g in steps)
    assert [m.start() for m in number_pattern("8").finditer("8 legs, 8,849 m, 1.8 s")] == [0]


def test_names_same_type_and_implausible_with_surnames():
    ex = _ex("p", "The telephone was invented by Alexander Graham Bell. Bell's patent followed.",
             "Alexander Graham Bell")
    pools = {"same_type": ["Thomas Edison"], "implausible": ["Kabul"]}
    graded, _ = grade_examples([ex], suite="g", kinds=("name",), pools=pools)
    same, odd = graded[1], graded[2]
    assert same.meta["degree"] == "same_type" and same.context.endswith("Thomas Edison. Edison's patent followed.")
    assert odd.meta["degree"] == "implausible" and "Bell" not in odd.context and odd.cf_answer == "Kabul"


def test_bad_items_are_counted_not_raised():
    exs = [_ex("ok", "Born in 1950.", "1950"), _ex("word", "It is blue.", "blue"),
           _ex("missing", "Born in the fifties.", "1950"), _ex("two", "From 3 to 4.", "3 to 4")]
    graded, report = grade_examples(exs, suite="g", kinds=("year", "number"))
    assert report.n_source == 4 and report.n_graded == 1
    assert report.skipped == {"not_perturbable": 2, "answer_not_in_passage": 1}
    assert report.skipped_ids["answer_not_in_passage"] == ["missing"]
    assert {g.meta["source_id"] for g in graded} == {"ok"}
    assert numeric_part("March 5, 1990") == ("1990", "year")


@pytest.mark.parametrize("name", GRADED)
def test_builtin_graded_suites_are_listed_versioned_hashed_and_consistent(name):
    from ctxrely.registry import SUITES

    assert name in SUITES.names()
    suite = load_suite(name)
    assert suite.version == "1" and len(suite.hash) == 16 and len(suite.examples) >= 200
    ids = [e.id for e in suite.examples]
    assert len(set(ids)) == len(ids)
    for ex in suite.examples:
        assert ex.meta["degree_rank"] >= 0 and "degree" in ex.meta
        assert number_pattern(ex.cf_answer).search(ex.context) if ex.meta["perturb"] != "name" \
            else ex.cf_answer in ex.context
        if ex.meta["degree_rank"] > 0:
            pattern = word_pattern if ex.meta["perturb"] == "name" else number_pattern
            assert not pattern(ex.param_answer).search(ex.context)  # every mention edited
    assert suite.examples[0].meta["degree_rank"] == 0  # whole ladders, control first


# ----------------------------------------------------------------------------- metrics


def _row(rank, hit, phit, prior_p=0.5, prior_ok=True, cf_wins=None, **kw):
    return {"suite": "s", "id": f"{rank}-{hit}-{phit}-{prior_p}", "degree_rank": rank, "degree": rank,
            "degree_label": f"d{rank}", "perturb": "year", "cf_hit": hit, "param_hit": phit,
            "prior_p": prior_p, "prior_correct": prior_ok, "cf_wins": cf_wins, **kw}


def test_adoption_rates_by_degree_and_prior_bins():
    rows = [_row(0, True, True), _row(1, True, False), _row(1, True, False, 0.005), _row(2, False, True),
            _row(2, False, False, 0.005, cf_wins=True)]
    assert [outcome(r) for r in rows] == ["adopt", "adopt", "adopt", "prior_kept", "neither"]
    s = adoption_summary(rows, n_boot=0)
    assert s["n_perturbed"] == 4 and s["overall"]["adopt"]["mean"] == 0.5
    pts = {p["degree_rank"]: p for p in s["by_degree"]}
    assert pts[1]["adopt"]["mean"] == 1.0 and pts[2]["prior_kept"]["mean"] == 0.5 and pts[2]["neither"]["n"] == 2
    assert pts[2]["logit_adopt"]["n"] == 1
    bins = {b["prior_hi"]: b for b in by_prior(rows[1:], n_boot=0)}
    assert bins[0.01]["n"] == 2 and bins[1.0]["n"] == 2 and bins[0.001]["n"] == 0 and bins[0.01]["adopt"]["mean"] == 0.5
    assert s["trend_degree"]["slope"] == pytest.approx(-1.0)
    flat = adoption_flat(s, "s")
    assert flat["s/adopt@degree=year:d1"] == 1.0 and flat["s/adopt_rate"] == 0.5 and "s/adopt@prior<=0.01" in flat


def test_clasheval_biases_and_token_probability_correction():
    # two wrong contexts with a right prior: one adopted (context bias 1/2); a right context with a
    # wrong prior, missed (prior bias 1). TPC answers from the prior where p(context) < p(prior answer).
    lp = math.log(0.2)
    rows = [_row(1, True, False, logp_cf=lp, n_tok_cf=1, prior_output_p=0.9),
            _row(1, False, True, logp_cf=lp, n_tok_cf=1, prior_output_p=0.1),
            _row(0, False, False, prior_ok=False, logp_cf=math.log(0.8), n_tok_cf=1, prior_output_p=0.5)]
    t = clasheval(rows, n_boot=0)
    assert t["context_bias"]["mean"] == 0.5 and t["prior_bias"]["mean"] == 1.0
    assert t["accuracy"]["mean"] == pytest.approx(1 / 3)
    # TPC: row 0 -> prior (right), row 1 -> context answer (kept the true value: right), row 2 -> context (wrong)
    assert t["tpc"]["accuracy"]["mean"] == pytest.approx(2 / 3) and t["tpc"]["context_bias"]["mean"] == 0.0
    assert t["calibrated"] == "too few items for a held-out split"
    rows[0]["output_p"] = 0.95  # the with-context answer's own probability wins over the teacher-forced value's
    assert clasheval(rows, n_boot=0)["tpc"]["context_bias"]["mean"] == 0.5
    assert trend([0, 1, 2, 3], [1, 1, 0, 0], n_boot=200)["ci_high"] <= 0.0


def test_calibrated_correction_fits_on_one_half_and_reports_the_other():
    rows = []
    for i in range(40):
        ctx_wins = i % 2 == 0
        rows.append(_row(1, True, False, logp_cf=math.log(0.3 + 0.01 * (i % 7)), n_tok_cf=1,
                         prior_output_p=0.9 if ctx_wins else 0.1, source_id=f"q{i}"))
    t = clasheval(rows, n_boot=0)["calibrated"]
    assert t["n_calibration"] + t["n_test"] == 40 and t["n_calibration"] >= 4
    for key in ("plain", "tpc", "calibrated"):
        assert t[key]["accuracy"]["n"] == t["n_test"]
    assert t["calibrated"]["accuracy"]["mean"] >= t["plain"]["accuracy"]["mean"]


# ----------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_eval_on_graded_suite_writes_adoption_and_prior_equals_closed_book_scoring(arch, tiny_model_dir, tmp_path):
    from ctxrely.engine.api import evaluate
    from ctxrely.engine.prior import closed_book
    from ctxrely.engine.scoring import score_examples
    from ctxrely.models.load import load_model

    model, tok = load_model(str(tiny_model_dir(arch)))
    res = evaluate(model, tok, ["graded_numbers"], mode="both", limit=12, max_new_tokens=4, n_boot=20,
                   progress=False, out_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    a = summary["adoption"]["graded_numbers"]
    assert {"by_degree", "by_prior", "by_prior_answer", "trend_degree", "trend_prior", "clasheval"} <= set(a)
    assert sum(b["n"] for b in a["by_prior_answer"]) == a["n_perturbed"]  # every closed-book answer has a probability
    assert [p["degree_label"] for p in a["by_degree"]] == ["none", "x1.1", "x1.5", "x2", "x5", "x10"]
    assert all({"mean", "ci_low", "ci_high"} <= set(p["adopt"]) for p in a["by_degree"])
    assert summary["prior_pass"]["n_questions"] == 2 and summary["prior_pass"]["n_items"] == 12
    assert "graded_numbers/adopt@degree=number:x10" in summary["flat"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "examples.jsonl").read_text().splitlines()]
    assert rows == res.rows and all("prior_p" in r and "degree_rank" in r for r in rows)
    assert all(0 < r["output_p"] <= 1 for r in rows if r["output"])  # the with-context answer's own confidence
    # the prior equals plain scoring of the closed-book question (teacher-forced log p, greedy answer)
    books = list(closed_book(load_suite("graded_numbers").examples[:12]).values())
    direct = score_examples(model, tok, books, mode="both", max_new_tokens=4, progress=False)
    for book, d in zip(books, direct, strict=True):
        r = next(r for r in rows if r["param_answer"] == book.cf_answer and r["degree_rank"] == 0)
        assert r["prior_logp"] == pytest.approx(d.logp_cf, abs=1e-4) and r["prior_output"] == d.output
        assert r["prior_correct"] == d.cf_hit


def test_prior_pass_costs_at_most_one_prefill_per_item(tiny_llama):
    from ctxrely.engine.prior import prior_pass
    from ctxrely.prompts import get_format

    model, tok = tiny_llama
    exs = load_suite("graded_years").examples[:15]  # 3 questions x 5 passages
    rows = []

    def hook(_mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if cache is None or (hasattr(cache, "get_seq_length") and cache.get_seq_length() == 0):
            rows.append(ids.shape[0])

    h = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        priors = prior_pass(model, tok, exs, fmt=get_format("raw"), max_new_tokens=3)
    finally:
        h.remove()
    assert len(priors) == 3 and sum(rows) == 3 <= len(exs)


def test_grade_a_users_file_counts_bad_items(tiny_llama, tmp_path):
    from ctxrely.engine.api import evaluate

    para = {"context": "The bridge opened in 1932 and carries 160,000 cars a day. Its architect was Bradfield.",
            "qas": [{"id": "y", "question": "When did the bridge open?", "answers": [{"text": "1932", "answer_start": 21}]},
                    {"id": "n", "question": "How many cars?", "answers": [{"text": "160,000", "answer_start": 38}]},
                    {"id": "w", "question": "Who designed it?", "answers": [{"text": "Bradfield", "answer_start": 78}]},
                    {"id": "m", "question": "How long?", "answers": [{"text": "1,149 metres", "answer_start": 0}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "b", "paragraphs": [para]}]}))
    model, tok = tiny_llama
    res = evaluate(model, tok, data=[str(path)], grade=True, mode="both", max_new_tokens=3, n_boot=0, progress=False)
    name = next(iter(res.summary["grading"]))
    assert name.startswith("graded_") and res.summary["grading"][name]["skipped"] == {
        "not_perturbable": 1, "answer_not_in_passage": 1}
    assert res.summary["adoption"][name]["n"] == 5 + 6  # a year (control + 4 steps), a number (control + 5)
    assert res.summary["suites"][0]["name"] == name
    with pytest.raises(Exception, match="no item could be graded"):
        evaluate(model, tok, examples=[_ex("w", "It is blue.", "blue")], grade=True, progress=False)


def test_grade_suite_is_idempotent_on_graded_suites():
    s = load_suite("graded_years", limit=10)
    assert grade_suite(s)[0] is s
    user = Suite("u", "file", [_ex("a", "In 1950.", "1950")])
    assert grade_suite(user)[0].name == "graded_u"


def test_callback_probe_tracks_adoption_curves(tiny_llama):
    from ctxrely.track.probe import build_probe, run_probe

    model, tok = tiny_llama
    probe = build_probe(suites=["graded_years"], limit=10, mode="both", max_new_tokens=3, attention_subset=0)
    metrics = run_probe(model, tok, probe).metrics
    for key in ("graded_years/adopt_rate", "graded_years/logit_adopt@degree=year:100y", "graded_years/context_bias",
                "graded_years/adopt@prior<=1"):
        assert key in metrics
    assert metrics["graded_years/logit_adopt@degree=year:none"] == 0.0  # the control: p(value) == p(value)


def test_lm_eval_export_splits_graded_suites_by_degree(tmp_path):
    import yaml

    from ctxrely.integrations.lmeval.export import export_lm_eval

    tasks = {t.name: t for t in export_lm_eval(tmp_path, ["graded_years", "cf_capitals"], limit=10)}
    assert {"ctxrely_graded_years_gen", "ctxrely_graded_years_1y_gen", "ctxrely_graded_years_100y_mc",
            "ctxrely_graded_years_prior_gen"} <= set(tasks)
    assert tasks["ctxrely_graded_years_1y_gen"].n_docs == 2 and tasks["ctxrely_graded_years_prior_gen"].n_docs == 2
    prior_rows = [json.loads(x) for x in (tmp_path / "graded_years_prior" / "data.jsonl").read_text().splitlines()]
    assert all(r["param_answer"] is None and "Question:" in r["prompt"] for r in prior_rows)
    group = yaml.safe_load((tmp_path / "ctxrely_gen.yaml").read_text())
    assert sorted(group["task"]) == ["ctxrely_cf_capitals_gen", "ctxrely_graded_years_gen"]  # each item pooled once


def test_cli_graded_and_report_on_a_saved_tiny_model(tiny_model_dir, tmp_path, capsys):
    from ctxrely.cli.main import main

    out = tmp_path / "g"
    assert main(["graded", "--model", str(tiny_model_dir("gpt_neox")), "--suites", "graded_numbers", "--limit", "12",
                 "--max-new-tokens", "3", "--n-boot", "20", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [p["degree_label"] for p in summary["adoption"]["graded_numbers"]["by_degree"]][-1] == "x10"
    assert (out / "adoption.png").stat().st_size > 1000
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64" in page and "x1.5" in page and "context bias" in page
    assert main(["ls"]) == 0 and "graded_years" in capsys.readouterr().out
    assert main(["graded", "--model", str(tiny_model_dir("gpt_neox")), "--out", str(out / "summary.json")]) == 2


def test_prior_on_an_ungraded_suite_and_under_cad(tiny_llama):
    from ctxrely.engine.api import evaluate

    model, tok = tiny_llama
    res = evaluate(model, tok, ["cf_capitals"], prior=True, mode="both", limit=6, max_new_tokens=3, n_boot=0,
                   progress=False)
    a = res.summary["adoption"]["cf_capitals"]
    assert a["n_perturbed"] == 6 and [p["degree_label"] for p in a["by_degree"]] == ["conflict"]
    assert res.summary["prior_pass"]["n_questions"] == 6  # one passage per question: one extra prefill each
    plain = evaluate(model, tok, ["graded_years"], mode="both", limit=5, max_new_tokens=3, n_boot=0, progress=False)
    cad = evaluate(model, tok, ["graded_years"], mode="both", limit=5, max_new_tokens=3, n_boot=0, progress=False,
                   decode="cad")
    assert cad.summary["config"]["intervention"]["decode"] == "cad"
    keys = ("prior_output", "prior_logp")  # the prior is the model's own: plain decoding under CAD too
    assert [[r[k] for k in keys] for r in cad.rows] == [[r[k] for k in keys] for r in plain.rows]
    assert evaluate(model, tok, ["cf_capitals"], limit=2, progress=False).summary.get("adoption") is None
