"""CAD / AdaCAD and PASTA steering as decode strategies of the engine's HF backend (tiny real models)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from ctxrely.data.schema import ConflictExample  # noqa: E402
from ctxrely.engine.scoring import score_examples  # noqa: E402
from ctxrely.models.tiny import tiny_model  # noqa: E402
from ctxrely.steer.plan import Intervention  # noqa: E402


def examples(n: int = 7) -> list[ConflictExample]:
    caps = [("France", "Paris", "Lyon"), ("Germany", "Berlin", "Munich"), ("Italy", "Rome", "Milan")]
    out = []
    for i in range(n):
        c, p, f = caps[i % len(caps)]
        ctx = f"In 19{i:02d} the capital of {c} moved from {p} to {f}." + " It was a long story." * (i % 4)
        out.append(ConflictExample(f"e{i}", "demo", ctx if i != 3 else "", f"What is the capital of {c}?", f, p))
    return out  # e3 has no context: nothing to steer toward, CAD's two streams are equal


def _rows(model, tok, iv, **kw):
    args = dict(mode="both", max_new_tokens=5, stop=[], progress=False, intervention=iv)
    return score_examples(model, tok, examples(), **{**args, **kw})


def _same(a, b, tol=1e-4):
    assert [r.output for r in a] == [r.output for r in b]
    for x, y in zip(a, b, strict=True):
        assert math.isclose(x.logp_cf, y.logp_cf, abs_tol=tol) and math.isclose(x.logp_param, y.logp_param, abs_tol=tol)
        assert x.cf_greedy == y.cf_greedy


@pytest.mark.parametrize("iv", [dict(decode="adacad", cad_floor=0.05), dict(steer="pasta:alpha=0.05"),
                                dict(decode="cad", cad_alpha=0.7, steer="pasta:alpha=0.05")])
def test_batched_equals_one_by_one(tiny_llama, iv):
    """Token-budget batches with compaction and row-selected answer tails change nothing."""
    model, tok = tiny_llama
    one = _rows(model, tok, Intervention.parse(**iv), batch_size=1)
    many = _rows(model, tok, Intervention.parse(**iv), batch_tokens=400)
    _same(one, many)


@pytest.mark.parametrize("iv", [dict(decode="cad", cad_alpha=1.0), dict(steer="pasta:alpha=0.05")])
def test_both_mode_equals_separate_modes(tiny_llama, iv):
    """One prefill for answers and scores gives what separate generate and logits runs give."""
    model, tok = tiny_llama
    both = _rows(model, tok, Intervention.parse(**iv))
    gen = _rows(model, tok, Intervention.parse(**iv), mode="generate")
    logit = _rows(model, tok, Intervention.parse(**iv), mode="logits")
    assert [r.output for r in both] == [r.output for r in gen]
    assert [r.logp_cf for r in both] == pytest.approx([r.logp_cf for r in logit], abs=1e-4)


def test_neutral_settings_equal_the_plain_engine(tiny_llama):
    model, tok = tiny_llama
    plain = _rows(model, tok, None)
    _same(plain, _rows(model, tok, Intervention.parse(decode="cad", cad_alpha=0.0)))
    _same(plain, _rows(model, tok, Intervention.parse(steer="pasta:alpha=1")), tol=0.0)
    steered = _rows(model, tok, Intervention.parse(steer="pasta:alpha=0.05"))
    _same(steered, _rows(model, tok, Intervention.parse(decode="cad", cad_alpha=0.0, steer="pasta:alpha=0.05")))
    cad = _rows(model, tok, Intervention.parse(decode="cad", cad_alpha=2.0))
    assert [r.logp_cf for r in cad] != pytest.approx([r.logp_cf for r in plain], abs=1e-3)
    assert [r.steer_span_tokens for r in steered][3] == 0 and all(r.steer_span_tokens for r in steered[:3])
    assert steered[3].logp_cf == pytest.approx(plain[3].logp_cf, abs=1e-5)  # no context: unsteered
    assert cad[3].logp_cf == pytest.approx(plain[3].logp_cf, abs=1e-4)  # equal streams: no contrast


def test_steering_through_the_engine_eager_equals_sdpa(tiny_tokenizer):
    out = {}
    for impl in ("eager", "sdpa"):
        model, tok = tiny_model("gpt_neox", tokenizer=tiny_tokenizer)
        model.config._attn_implementation = impl
        out[impl] = _rows(model, tok, Intervention.parse(steer="pasta:alpha=0.02"))
    _same(out["eager"], out["sdpa"])


def test_strategy_scope_is_cleaned_up_on_exception(tiny_llama):
    model, tok = tiny_llama
    impl = model.config._attn_implementation
    with pytest.raises(ValueError, match="no backend"):
        score_examples(model, tok, examples(2), intervention=Intervention.parse(steer="pasta"), backend=object(),
                       progress=False)
    calls = []

    def boom(*_):
        calls.append(1)
        if len(calls) == 3:  # an answer tail or a decode step, inside a stream's steering scope
            raise RuntimeError("boom")

    h = model.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            _rows(model, tok, Intervention.parse(decode="cad", steer="pasta"))
    finally:
        h.remove()
    assert model.config._attn_implementation == impl
    assert not model._forward_pre_hooks
    assert not any(hasattr(m, "_ctxrely_steer") for m in model.modules())
