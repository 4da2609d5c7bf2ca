"""Theory sandbox: the paper's one-layer model shows the inversion, its removal without C+S points,
more subject attention with more S points; plots, JSON, CLI and determinism."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from ctxrely.errors import ConfigError
from ctxrely.lab.theory import (
    SETTINGS,
    TheoryConfig,
    load_traces,
    plot_theory,
    run_experiments,
    save_traces,
    simulate,
)

MARGIN = 0.1  # M_C units


@pytest.fixture(scope="module")
def traces():
    return run_experiments(TheoryConfig())


def test_settings_named(traces):
    assert list(traces) == list(SETTINGS)
    assert {"baseline", "no_ccs", "more_subject_only"} <= set(traces)
    assert traces["no_ccs"].counts["C+S"] == 0
    assert traces["more_subject_only"].counts["S"] > traces["baseline"].counts["S"]
    assert traces["more_subject_only"].counts["C"] == traces["baseline"].counts["C"]


def test_start_matches_closed_form(traces):
    # W_KQ = 0: uniform attention over [c, s, r]; the context answer's logit is alpha/3, the
    # memorised answer's beta/3, every embedding orthonormal, so M_C = sigmoid((alpha - beta) / 3).
    cfg = TheoryConfig()
    tr = traces["baseline"]
    assert tr.p_context[0] == pytest.approx(1 / 3)
    assert tr.p_subject[0] == pytest.approx(1 / 3)
    expect = 1 / (1 + math.exp(-(cfg.context_strength - cfg.memory_strength) / 3))
    for t in traces.values():  # every setting fine-tunes the same pretrained model
        assert t.m_c[0] == pytest.approx(expect, abs=1e-9)


def test_baseline_rises_then_falls(traces):
    s = traces["baseline"].summary()
    assert s["peak_m_c"] > s["start_m_c"] + MARGIN
    assert s["final_m_c"] < s["peak_m_c"] - MARGIN
    assert 0 < s["peak_step"] < traces["baseline"].step[-1]
    # the fine-tuning loss keeps falling while M_C falls
    loss = traces["baseline"].loss
    assert loss[-1] < loss[traces["baseline"].step.index(s["peak_step"])]
    # the fall comes with the subject score catching up with the context score
    tr = traces["baseline"]
    i = tr.step.index(s["peak_step"])
    assert tr.attn_context[i] - tr.attn_subject[i] > tr.attn_context[-1] - tr.attn_subject[-1] + 0.5
    assert tr.p_subject[-1] > tr.p_subject[i]


def test_no_ccs_has_no_fall(traces):
    s = traces["no_ccs"].summary()
    assert s["final_m_c"] >= s["peak_m_c"] - 0.005
    assert s["final_m_c"] > traces["baseline"].summary()["final_m_c"] + MARGIN


def test_more_subject_only_raises_subject_attention(traces):
    base, more = traces["baseline"], traces["more_subject_only"]
    assert more.attn_subject[-1] > base.attn_subject[-1] + 0.1
    assert all(m >= b - 1e-12 for m, b in zip(more.attn_subject, base.attn_subject, strict=True))
    assert more.summary()["peak_m_c"] < base.summary()["peak_m_c"]


def test_more_subject_only_with_mean_loss():
    # With the loss averaged over each setting's own points, the extra S points also dilute the C+S
    # points: Proposition 2 still shows up to and around the peak, not necessarily at the end.
    tr = run_experiments(TheoryConfig(loss_reduction="mean"), settings=["baseline", "more_subject_only"])
    base, more = tr["baseline"], tr["more_subject_only"]
    i = base.step.index(base.summary()["peak_step"])
    assert more.attn_subject[i] > base.attn_subject[i] + 0.1
    assert more.summary()["peak_m_c"] < base.summary()["peak_m_c"]


@pytest.mark.parametrize("seed", [1, 2])
def test_inversion_other_seeds(seed):
    tr = run_experiments(TheoryConfig(seed=seed), settings=["baseline", "no_ccs"])
    b, n = tr["baseline"].summary(), tr["no_ccs"].summary()
    assert b["peak_m_c"] > b["start_m_c"] + MARGIN and b["final_m_c"] < b["peak_m_c"] - MARGIN
    assert n["final_m_c"] >= n["peak_m_c"] - 0.005


def test_deterministic():
    cfg = TheoryConfig(steps=30)
    a, b = simulate(cfg), simulate(cfg)
    assert a.to_dict() == b.to_dict()
    assert simulate(TheoryConfig(steps=30, seed=1)).attn_context != a.attn_context


def test_log_every_and_value_training():
    tr = simulate(TheoryConfig(steps=25, log_every=10, train_value=True, lr_value=0.1))
    assert tr.step == [0, 10, 20, 25]
    frozen = simulate(TheoryConfig(steps=25, log_every=10))
    assert tr.m_c[0] == frozen.m_c[0] and tr.m_c[-1] != frozen.m_c[-1]
    assert tr.copy_strength[0] == pytest.approx(TheoryConfig().context_strength)
    assert tr.c_fact_memory[0] == pytest.approx(0.0, abs=1e-9)
    assert tr.copy_strength[-1] > tr.copy_strength[0] and tr.c_fact_memory[-1] > 0
    assert frozen.copy_strength[-1] == frozen.copy_strength[0]


def test_plots_and_json(traces, tmp_path):
    paths = plot_theory(traces, tmp_path / "plots")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()
    path = save_traces(traces, tmp_path / "theory.json")
    doc = json.loads(path.read_text())
    assert set(doc["summary"]) == set(traces)
    back = load_traces(path)
    assert back["baseline"].m_c == traces["baseline"].m_c


def test_config_errors():
    with pytest.raises(ConfigError, match="theory config, field .stepz.: unknown key .did you mean .steps."):
        TheoryConfig.from_dict({"stepz": 3})
    with pytest.raises(ConfigError, match="sum to 1"):
        TheoryConfig(share_subject_only=0.5)
    with pytest.raises(ConfigError, match="too small"):
        simulate(TheoryConfig(d=64, steps=1))
    with pytest.raises(ConfigError, match="unknown theory settings"):
        run_experiments(TheoryConfig(steps=1), settings=["nope"])
    assert simulate(TheoryConfig(d=64, steps=1, embeddings="random")).step == [0, 1]


def test_cli(tmp_path, capsys):
    from ctxrely.cli.main import main

    out = tmp_path / "theory"
    assert main(["theory", "--out", str(out), "--steps", "40", "--seed", "1"]) == 0
    assert {p.name for p in out.iterdir()} == {"theory.json", "theory.png", "theory.svg"}
    text = capsys.readouterr().out
    assert "M_C" in text and "peak" in text and "baseline" in text and "no_ccs" in text
    assert json.loads((out / "theory.json").read_text())["traces"]["baseline"]["config"]["seed"] == 1


def test_no_torch_at_import():
    code = ("import sys, ctxrely.cli.theory_cmd, ctxrely.lab.theory, ctxrely.lab.theory_plots; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
