"""One settings object and one backend seam: the same settings give the same answers in every command.

``EvalSettings`` is validated once and taken by ``evaluate``, ``score_examples``, ``run_nih`` and the
callback's probe; NIH cells and eval examples go through the same backend and decode strategy, so
CAD + PASTA gives equal answers on equal prompts; the callback's probe reports ``evaluate``'s metrics.
"""

from __future__ import annotations

import argparse

import pytest

from ctxrely.data.schema import ConflictExample, Suite
from ctxrely.engine.settings import EvalSettings
from ctxrely.errors import ConfigError


def _examples(n: int = 6) -> list[ConflictExample]:
    cities = ["Lyon", "Oslo", "Kyiv", "Lima", "Rome", "Baku", "Doha", "Riga"]
    return [ConflictExample(str(i), "toy", f"The capital of Country{i} is {cities[i]}. It moved there long ago.",
                            f"What is the capital of Country{i}?", cities[i], cities[(i + 3) % len(cities)])
            for i in range(n)]


def test_settings_validate_once_with_one_line_errors():
    s = EvalSettings(mode="both", limit=3, stop=["\n"])
    assert s.stop == ("\n",) and s.replace() is s and s.replace(limit=2).limit == 2
    with pytest.raises(ConfigError, match="--limit must be a positive"):
        EvalSettings(limit=0)
    with pytest.raises(ConfigError, match="--n-boot"):
        EvalSettings(n_boot=-1)
    with pytest.raises(TypeError, match="did you mean 'limit'"):
        s.replace(limt=2)
    from ctxrely.steer.heads import SteerError

    with pytest.raises(SteerError, match="cad-alpha"):
        EvalSettings(decode="cad", cad_alpha=-1.0)


def test_cli_flags_build_the_same_settings_in_eval_and_nih():
    from ctxrely.cli import eval_cmd, nih_cmd
    from ctxrely.cli.options import settings_from_args

    fix = ["--decode", "cad", "--cad-alpha", "0.5", "--steer", "pasta:alpha=0.05", "--indicator",
           "--max-new-tokens", "8", "--batch-size", "2"]
    pe, pn = argparse.ArgumentParser(), argparse.ArgumentParser()
    eval_cmd.add_arguments(pe)
    nih_cmd.add_arguments(pn)
    se = settings_from_args(pe.parse_args(["--model", "m", "--mode", "generate", *fix]))
    sn = settings_from_args(pn.parse_args(["--model", "m", *fix]), mode="generate")
    assert se.intervention == sn.intervention and se.intervention.steer.alpha == 0.05
    assert (se.indicator, se.max_new_tokens, se.batch_size) == (sn.indicator, sn.max_new_tokens, sn.batch_size)


def test_evaluate_keywords_are_settings_overrides(tiny_llama):
    from ctxrely.engine.api import evaluate

    model, tok = tiny_llama
    exs = _examples()
    by_kw = evaluate(model, tok, examples=exs, mode="both", limit=4, max_new_tokens=4, n_boot=0, progress=False)
    by_settings = evaluate(model, tok, examples=exs, settings=EvalSettings(mode="both", limit=4, max_new_tokens=4,
                                                                          n_boot=0), progress=False)
    mixed = evaluate(model, tok, examples=exs, settings=EvalSettings(mode="both", limit=5, max_new_tokens=4),
                     limit=4, n_boot=0, progress=False)
    assert by_kw.rows == by_settings.rows == mixed.rows and len(by_kw.rows) == 4
    assert by_kw.summary["config_hash"] == by_settings.summary["config_hash"] == mixed.summary["config_hash"]
    with pytest.raises(TypeError, match="unknown evaluation setting"):
        evaluate(model, tok, examples=exs, max_new_token=4)


@pytest.mark.parametrize("fix", [dict(decode="cad", cad_alpha=2.0, steer="pasta:alpha=0.01"),
                                 dict(decode="adacad", steer="pasta:alpha=0.05"), dict(steer="pasta:alpha=0.01")])
def test_eval_and_nih_give_the_same_answers_with_the_same_settings(tiny_llama, tmp_path, fix):
    """A NIH cell written as a conflict example (its prompt and its prompt without the haystack as the data's
    own prompt pair) decodes to the same answer through ``score_examples`` and ``run_nih``: one backend, one strategy (CAD+PASTA allowed in both)."""
    from ctxrely.awareness.haystack import DEFAULT_NEEDLE, read_haystack
    from ctxrely.awareness.nih import build_grid
    from ctxrely.awareness.nih_run import NIH_STOP, _bare_ids, run_nih
    from ctxrely.engine.scoring import score_examples

    model, tok = tiny_llama
    hay = tmp_path / "hay"
    hay.mkdir()
    (hay / "a.txt").write_text(" ".join(f"Sentence {i} is about startups and code." for i in range(200)))
    st = EvalSettings(mode="generate", max_new_tokens=8, batch_size=2, stop=NIH_STOP, **fix)
    grid = dict(lengths=[300], depths=[0, 50, 100], haystack=str(hay), template="raw")
    nih = run_nih(model, tok, settings=st, progress=False, **grid)
    plain = run_nih(model, tok, settings=EvalSettings(mode="generate", max_new_tokens=8, batch_size=2, stop=NIH_STOP),
                    progress=False, **grid)
    cells, _ = build_grid(tok, read_haystack(str(hay)), [DEFAULT_NEEDLE], [300], [0, 50, 100], template="raw",
                          max_new_tokens=8)
    bare = tok.decode(_bare_ids(tok, DEFAULT_NEEDLE, "raw", None, False), skip_special_tokens=True)
    exs = [ConflictExample(c.key, "nih", c.context, DEFAULT_NEEDLE.question, "x", "y",
                           meta={"prebuilt_prompt": c.prompt, "prebuilt_prompt_no_context": bare}) for c in cells]
    rows = score_examples(model, tok, exs, st, progress=False)
    assert [r.prompt for r in rows] == [c.prompt for c in cells]
    assert [r.output for r in rows] == [c["output"] for c in nih["cells"]]
    assert [c["output"] for c in nih["cells"]] != [c["output"] for c in plain["cells"]]  # the fix did something
    assert all(r.steer_span_tokens for r in rows)


def test_nih_cli_accepts_cad_with_steering_as_eval_does(tiny_model_dir, tmp_path):
    from ctxrely.cli.main import main

    hay = tmp_path / "hay"
    hay.mkdir()
    (hay / "a.txt").write_text(" ".join(f"Sentence {i} is about startups and code." for i in range(200)))
    fix = ["--decode", "cad", "--steer", "pasta:alpha=0.05", "--max-new-tokens", "4", "--no-progress"]
    model = str(tiny_model_dir("llama"))
    assert main(["nih", "--model", model, "--template", "raw", "--lengths", "300", "--depths", "50",
                 "--haystack", str(hay), "--out", str(tmp_path / "nih"), *fix]) == 0
    assert main(["eval", "--model", model, "--suites", "cf_capitals", "--limit", "2", "--mode", "generate",
                 "--out", str(tmp_path / "eval"), *fix]) == 0


def test_callback_probe_reports_evaluates_metrics(tiny_llama):
    from ctxrely.engine.api import evaluate
    from ctxrely.track.probe import build_probe, run_probe

    model, tok = tiny_llama
    exs = _examples()
    other = [ConflictExample(e.id, "toy2", e.context, e.question, e.param_answer, e.cf_answer) for e in exs]
    probe = build_probe(examples={"toy": exs, "toy2": other}, limit=5, mode="both", max_new_tokens=4,
                        attention_subset=0)
    got = run_probe(model, tok, probe).metrics
    want = evaluate(model, tok, [Suite("toy", "x", exs), Suite("toy2", "x", other)],
                    settings=EvalSettings(mode="both", limit=5, max_new_tokens=4, batch_size=16, n_boot=0),
                    progress=False).metrics
    assert {k: got[k] for k in want} == want and "all/cf_acc" in want and "toy2/logit_cf_rate" in want


def test_one_eval_run_validates_once_and_resolves_suites_once(tiny_model_dir, tmp_path, monkeypatch):
    """``ctxrely eval``: the options are checked once and the suites read once (before the model loads)."""
    from ctxrely.cli.main import main
    from ctxrely.engine import api, settings

    calls = {"check_options": 0, "resolve_suites": 0}

    def counted(name, fn):
        def wrapper(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(settings, "check_options", counted("check_options", settings.check_options))
    monkeypatch.setattr(api, "resolve_suites", counted("resolve_suites", api.resolve_suites))
    assert main(["eval", "--model", str(tiny_model_dir("llama")), "--suites", "cf_capitals", "--limit", "2",
                 "--mode", "logits", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert calls == {"check_options": 1, "resolve_suites": 1}


def test_callback_takes_one_settings_object_with_a_decode_strategy(tiny_llama):
    """``ContextRelianceCallback(settings=...)``: CAD + PASTA in the probe, metrics equal ``evaluate``'s."""
    from ctxrely.engine.api import evaluate
    from ctxrely.track.callback import ContextRelianceCallback
    from ctxrely.track.probe import run_probe

    model, tok = tiny_llama
    st = EvalSettings(mode="generate", limit=4, max_new_tokens=4, decode="cad", cad_alpha=2.0, steer="pasta")
    cb = ContextRelianceCallback(examples={"toy": _examples()}, settings=st, attention_subset=0)
    assert cb.metric == "toy/cf_acc" and cb.probe.settings.intervention == st.intervention
    got = run_probe(model, tok, cb.probe)
    want = evaluate(model, tok, [Suite("toy", "x", _examples())], settings=st.replace(n_boot=0), progress=False)
    assert got.metrics == want.metrics
    assert [r["output"] for r in got.example_rows] == [r["output"] for r in want.rows]
