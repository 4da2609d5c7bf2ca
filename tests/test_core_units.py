"""Unit tests of the light core: registry, prompt formats, matching, metrics, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ctxrely.metrics.conflict import aggregate, gen_flags, logit_flags, m_c
from ctxrely.metrics.matching import contains, normalize_answer
from ctxrely.metrics.stats import mean_ci, wilson_ci
from ctxrely.prompts import get_format
from ctxrely.registry import FORMATS, Registry, UnknownNameError


def test_import_is_light():
    code = "import ctxrely, sys; ctxrely.get_format; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_registry_collisions_and_suggestions():
    reg: Registry[int] = Registry("thing")
    reg.add("cf_capitals", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("cf_capitals", 2)
    with pytest.raises(UnknownNameError, match="did you mean 'cf_capitals'"):
        reg.get("cf_capital")


def test_formats_have_adhering_twins_and_distinct_hashes():
    names = FORMATS.names()
    for base in ("raw", "alpaca", "tulu", "chat"):
        assert base in names and f"{base}-ctx" in names
    hashes = {FORMATS.get(n).hash for n in names}
    assert len(hashes) == len(names)


def test_format_render_and_custom_template():
    raw = get_format("raw").render("Paris moved to Lyon.", "Capital of France?")
    assert raw == "Paris moved to Lyon.\nQuestion: Capital of France?\nAnswer:"
    ctx = get_format("alpaca-ctx").render("C.", "Q?")
    assert "context only" in ctx and "### Input:\nC." in ctx
    custom = get_format("Passage: {context}\nQ: {question}\nA:")
    assert custom.render("x", "y") == "Passage: x\nQ: y\nA:" and custom.name.startswith("custom-")
    with pytest.raises(UnknownNameError, match="did you mean"):
        get_format("alpacca")


def test_chat_format_needs_template(tiny_tokenizer):
    text = get_format("chat").render("ctx", "q?", tiny_tokenizer)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="chat template"):
        get_format("chat").render("ctx", "q?", None)


def test_prompt_change_changes_hash():
    from ctxrely.prompts import PromptFormat

    a = PromptFormat("x", "{context}\n{question}")
    b = PromptFormat("x", "{context}\n\n{question}")
    assert a.hash != b.hash


@pytest.mark.parametrize(("text", "targets", "expected"), [
    ("The answer is Herat.", ["herat"], True),
    ("Heratville", ["Herat"], False),  # whole words only
    ("the United States of America", ["United States"], True),
    ("", ["x"], False),
])
def test_contains(text, targets, expected):
    assert contains(text, targets) is expected


def test_normalize_and_raw_mode():
    assert normalize_answer("  The Eiffel-Tower! ") == "eiffel tower"
    assert contains("herat", ["Herat"], mode="raw") is False


def test_gen_flags_buckets_and_absent_param():
    assert gen_flags("Herat, not Kabul", ["Herat"], ["Kabul"])["bucket"] == "both"
    assert gen_flags("no idea", ["Herat"], ["Kabul"])["bucket"] == "neither"
    assert gen_flags("Kabul", ["Herat"], ["Kabul"])["bucket"] == "param_only"
    absent = gen_flags("Herat", ["Herat"], [])
    assert absent == {"cf_hit": True, "param_hit": None, "bucket": None}


def test_m_c_and_logit_flags():
    assert m_c(0.0, 0.0) == pytest.approx(0.5)
    assert m_c(-1000.0, 0.0) == pytest.approx(0.0)
    assert logit_flags(-1.0, None)["m_c"] is None
    assert logit_flags(-1.0, -3.0)["cf_wins"] is True


def test_aggregate_counts_sum_and_absent_metrics():
    rows = [gen_flags(o, ["Herat"], ["Kabul"]) for o in ["Herat", "Kabul", "Herat Kabul", "x", "Herat"]]
    agg = aggregate(rows, n_boot=100)
    assert sum(agg["buckets"]["counts"].values()) == len(rows)
    assert agg["cf_acc"]["mean"] == pytest.approx(3 / 5)
    cad = aggregate([gen_flags("Herat", ["Herat"], [])], n_boot=10)
    assert cad["param_acc"] is None and cad["buckets"] is None


def test_mean_ci_brackets_mean_and_is_seeded():
    vals = [1, 0, 1, 1, 0, 1, 1, 1]
    a, b = mean_ci(vals, seed=3), mean_ci(vals, seed=3)
    assert a == b and a["ci_low"] <= a["mean"] <= a["ci_high"]
    assert mean_ci([])["mean"] is None


def test_wilson_ci_matches_statsmodels_and_is_not_degenerate():
    # statsmodels.stats.proportion.proportion_confint(8, 10, method="wilson") = (0.4902, 0.9433)
    lo, hi = wilson_ci(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    lo0, hi0 = wilson_ci(0, 32)
    assert lo0 == 0.0 and 0.05 < hi0 < 0.15  # 0/32 still has an upper bound
    lo1, hi1 = wilson_ci(32, 32)
    assert hi1 == 1.0 and lo1 == pytest.approx(1 - hi0)
    assert wilson_ci(0, 0) == (None, None)
    with pytest.raises(ValueError, match="successes=11"):
        wilson_ci(11, 10)


def test_alpaca_uses_no_input_form_without_context():
    text = get_format("alpaca").render("", "What is 2+2?")
    assert "### Input:" not in text and text.endswith("What is 2+2?\n\n### Response:\n")
    assert "### Input:\nC." in get_format("alpaca").render("C.", "Q?")
