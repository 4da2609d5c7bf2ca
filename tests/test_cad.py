"""Context-aware decoding (CAD / AdaCAD) on tiny real models, and --decode/--steer through evaluate."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from ctxrely.data.suites import load_suite  # noqa: E402
from ctxrely.engine.generate import greedy_generate  # noqa: E402
from ctxrely.engine.logits import score_continuations  # noqa: E402
from ctxrely.models.tiny import tiny_model  # noqa: E402
from ctxrely.steer.cad import cad_generate, contrast, jsd, score_full  # noqa: E402
from ctxrely.steer.heads import SteerError  # noqa: E402


def _prompts(tok, n=6):
    exs = load_suite("cf_capitals").examples[:n]
    ctx = [tok(f"{e.context}\nQuestion: {e.question}\nAnswer:")["input_ids"] for e in exs]
    bare = [tok(f"Question: {e.question}\nAnswer:")["input_ids"] for e in exs]
    return ctx, bare


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_alpha_zero_equals_plain_greedy(tiny_tokenizer, arch):
    model, tok = tiny_model(arch, tokenizer=tiny_tokenizer)
    ctx, bare = _prompts(tok)
    plain = greedy_generate(model, tok, ctx, max_new_tokens=8, stop=[], batch_size=3)
    cad0 = cad_generate(model, tok, ctx, bare, alpha=0.0, max_new_tokens=8, stop=[], batch_size=3)
    cad1 = cad_generate(model, tok, ctx, bare, alpha=1.0, max_new_tokens=8, stop=[], batch_size=3)
    assert cad0 == plain
    assert cad1 != plain


@pytest.mark.parametrize("adaptive", [False, True])
def test_batched_equals_one_by_one(tiny_llama, adaptive):
    model, tok = tiny_llama
    ctx, bare = _prompts(tok)
    kw = dict(alpha=1.0, adaptive=adaptive, max_new_tokens=8, stop=[])
    assert cad_generate(model, tok, ctx, bare, batch_size=4, **kw) == cad_generate(model, tok, ctx, bare, batch_size=1, **kw)


def test_both_streams_hold_the_same_generated_tokens(tiny_llama):
    model, tok = tiny_llama
    ctx, bare = _prompts(tok, 4)
    fed = []
    h = model.register_forward_pre_hook(lambda m, a, kw: fed.append(kw["input_ids"].clone()), with_kwargs=True)
    try:
        cad_generate(model, tok, ctx, bare, alpha=0.5, max_new_tokens=6, stop=[], batch_size=4)
    finally:
        h.remove()
    prefill, steps = fed[0], fed[1:]
    assert prefill.shape[0] == 8 and len(steps) == 5
    for step in steps:  # rows 0..3: with context; rows 4..7: the same prompts without it
        assert torch.equal(step[:4], step[4:])
    lengths = (prefill != tok.pad_token_id).sum(-1)
    assert (lengths[:4] > lengths[4:]).all()  # the second stream really lacks the context


def test_jsd_and_contrast():
    p = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), -1)
    q = torch.log_softmax(torch.tensor([[-1.0, 0.5, 3.0], [0.0, 0.0, 0.0]]), -1)
    pp, qq = p.exp(), q.exp()
    m = (pp + qq) / 2
    want = 0.5 * (pp * (pp / m).log()).sum(-1) + 0.5 * (qq * (qq / m).log()).sum(-1)
    assert torch.allclose(jsd(p, q), want, atol=1e-6)
    assert float(jsd(p, q)[1]) == 0.0 and float(jsd(p, q)[0]) <= math.log(2)
    c = contrast(p, q, alpha=1.0)
    assert torch.allclose(c, torch.log_softmax(2 * p - q, -1))
    assert torch.equal(contrast(p, q, 0.0, adaptive=True, floor=None)[1], torch.log_softmax(p[1], -1))
    assert torch.allclose(contrast(p, q, 0.0, adaptive=True, floor=0.5)[1], p[1])  # equal streams: no change


def test_cad_scoring_alpha_zero_equals_plain(tiny_llama):
    model, tok = tiny_llama
    ctx, bare = _prompts(tok, 4)
    conts = [[tok(" Paris")["input_ids"], tok(" Herat city")["input_ids"]] for _ in ctx]
    plain = score_continuations(model, tok, ctx, conts)
    cad0 = score_full(model, tok, ctx, conts, bare, alpha=0.0, batch_size=3)
    cad1 = score_full(model, tok, ctx, conts, bare, alpha=1.0, batch_size=3)
    for a, b, c in zip(plain, cad0, cad1, strict=True):
        for x, y, z in zip(a, b, c, strict=True):
            assert math.isclose(x.logp, y.logp, abs_tol=1e-4) and x.greedy == y.greedy
            assert not math.isclose(x.logp, z.logp, abs_tol=1e-3)


def test_evaluate_with_decode_and_steer(tiny_llama, tmp_path):
    from ctxrely.engine.api import evaluate

    model, tok = tiny_llama
    kw = dict(suites=["cf_capitals"], mode="both", limit=4, max_new_tokens=4, progress=False, n_boot=10)
    plain = evaluate(model, tok, **kw)
    cad0 = evaluate(model, tok, decode="cad", cad_alpha=0.0, **kw)
    cad = evaluate(model, tok, decode="adacad", cad_floor=0.1, **kw)
    pasta = evaluate(model, tok, steer="pasta:alpha=0.05", out_dir=tmp_path / "p", **kw)
    assert "intervention" not in plain.summary["config"]
    assert cad.summary["config"]["intervention"] == {"decode": "adacad", "cad_floor": 0.1, "steer": None}
    assert pasta.summary["config"]["intervention"]["steer"]["alpha"] == 0.05
    hashes = {r.summary["config_hash"] for r in (plain, cad0, cad, pasta)}
    assert len(hashes) == 4
    assert [r["output"] for r in cad0.rows] == [r["output"] for r in plain.rows]
    assert all(r["steer_span_tokens"] > 0 for r in pasta.rows)
    assert [r["logp_cf"] for r in pasta.rows] != [r["logp_cf"] for r in plain.rows]


@pytest.mark.parametrize("kw, match", [
    (dict(decode="cad", cad_alpha=-1.0), "cad-alpha"),
    (dict(decode="adacad", cad_floor=0.9), "cad-floor"),
    (dict(decode="greedy"), "--decode"),
    (dict(steer="pasta:alpha=0"), "alpha"),
    (dict(steer="pasta:beta=1"), "bad item"),
    (dict(steer="pasta:heads=/nonexistent.json"), "no such head file"),
    (dict(steer="rome"), "unknown method"),
])
def test_bad_intervention_input(kw, match):
    from ctxrely.steer.plan import Intervention

    with pytest.raises(SteerError, match=match):
        Intervention.parse(**kw)


def test_token_budget_counts_both_streams(tiny_llama):
    """A token budget holds CAD's two rows per prompt: half the prompts per batch of plain decoding."""
    model, tok = tiny_llama
    ctx = [list(range(5, 15))] * 8  # 8 prompts of 10 tokens, 2 new tokens: 12 per row
    bare = [list(range(5, 9))] * 8
    from ctxrely.engine.backend import Request
    from ctxrely.engine.hf import HFBackend

    plain_sizes: list[int] = []
    HFBackend(model, tok).run([Request(p, (), 2) for p in ctx], batch_tokens=48,
                              on_batch=lambda idx, _: plain_sizes.append(len(idx)))
    cad_sizes: list[int] = []
    cad_generate(model, tok, ctx, bare, alpha=1.0, max_new_tokens=2, batch_size=None, batch_tokens=48,
                 on_batch=cad_sizes.append)
    assert plain_sizes == [4, 4] and cad_sizes == [2, 2, 2, 2]
