"""PASTA attention steering on tiny real models: exactness, per-layer factor, eager == sdpa, cleanup."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from ctxrely.models.tiny import tiny_model  # noqa: E402
from ctxrely.steer.attention import attention_layers, steer_attention  # noqa: E402
from ctxrely.steer.heads import SteerError  # noqa: E402

ARCHS = ("llama", "gpt_neox", "gpt2", "qwen2")


def _model(arch, tok, impl="eager", **kw):
    model, _ = tiny_model(arch, tokenizer=tok, **kw)
    model.config._attn_implementation = impl
    return model


def _batch(tok):
    """Two left-padded rows and a span mask (the 'context') in each."""
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * 3 + list(range(40, 52)), list(range(60, 75))])
    mask = (torch.arange(15)[None, :] >= torch.tensor([[3], [0]])).long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    span = torch.zeros_like(ids, dtype=torch.bool)
    span[0, 5:9] = True
    span[1, 2:8] = True
    return ids, mask, pos, span


def _logits(model, ids, mask, pos):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_alpha_one_is_exact(tiny_tokenizer, arch, impl):
    model = _model(arch, tiny_tokenizer, impl)
    ids, mask, pos, span = _batch(tiny_tokenizer)
    base = _logits(model, ids, mask, pos)
    with steer_attention(model, span, alpha=1.0):
        one = _logits(model, ids, mask, pos)
    with steer_attention(model, span, alpha=0.01):
        steered = _logits(model, ids, mask, pos)
    assert torch.equal(base, one)
    assert not torch.allclose(base, steered, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_eager_equals_sdpa_steered(tiny_tokenizer, arch):
    ids, mask, pos, span = _batch(tiny_tokenizer)
    out = {}
    for impl in ("eager", "sdpa"):
        model = _model(arch, tiny_tokenizer, impl)
        with steer_attention(model, span, alpha=0.05, heads=[(0, 1), (1, 0), (1, 3)]):
            out[impl] = _logits(model, ids, mask, pos)[mask.bool()]
    assert torch.allclose(out["eager"], out["sdpa"], atol=1e-5)


def _capture(model):
    """Forward hooks recording each attention module's inputs and attention weights."""
    seen: dict[int, dict] = {}
    handles = []
    for m in attention_layers(model):
        def pre(mod, args, kwargs, _i=m.layer_idx):
            kw = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "cache", "layer_past")}
            seen[_i] = {"args": args, "kwargs": kw, "mask": kwargs.get("attention_mask")}
            seen[_i]["mask_copy"] = None if seen[_i]["mask"] is None else seen[_i]["mask"].clone()

        def post(mod, args, kwargs, out, _i=m.layer_idx):
            seen[_i]["weights"] = out[1]
        handles += [m.register_forward_pre_hook(pre, with_kwargs=True),
                    m.register_forward_hook(post, with_kwargs=True)]
    return seen, handles


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_same_factor_in_every_layer(tiny_tokenizer, arch):
    """The steered/unsteered weight ratio of de-emphasised vs emphasised keys is alpha in EVERY layer
    (the PASTA fork's in-place mask edit gives alpha^(l+1)), and unselected heads are untouched."""
    layers = {"num_hidden_layers": 4} if arch != "gpt2" else {"n_layer": 4}
    model = _model(arch, tiny_tokenizer, "eager", **layers)
    ids, mask, pos, span = _batch(tiny_tokenizer)
    alpha, heads = 0.1, [(0, 1), (1, 2), (2, 0), (3, 3), (3, 1)]
    seen, handles = _capture(model)
    try:
        with steer_attention(model, span, alpha=alpha, heads=heads):
            _logits(model, ids, mask, pos)
    finally:
        for h in handles:
            h.remove()
    assert sorted(seen) == [0, 1, 2, 3]
    for layer, rec in seen.items():
        if rec["mask"] is not None:
            assert torch.equal(rec["mask"], rec["mask_copy"]), "the shared mask was written to"
        with torch.no_grad():  # the same layer inputs, unsteered
            plain = attention_layers(model)[layer](*rec["args"], **rec["kwargs"])[1]
        ratio = rec["weights"][1, :, -1, :] / plain[1, :, -1, :]  # row 1, last query, every key
        emph, other = span[1], ~span[1]
        for h in range(ratio.shape[0]):
            r_emph, r_other = ratio[h, emph], ratio[h, other]
            assert torch.allclose(r_emph, r_emph[0], rtol=1e-4)
            assert torch.allclose(r_other, r_other[0], rtol=1e-4)
            factor = float(r_other[0] / r_emph[0])
            want = alpha if (layer, h) in heads else 1.0
            assert math.isclose(factor, want, rel_tol=1e-3), (layer, h, factor)


def test_context_attention_mass_rises(tiny_tokenizer):
    model = _model("llama", tiny_tokenizer, "eager")
    ids, mask, pos, span = _batch(tiny_tokenizer)

    def mass():
        seen, handles = _capture(model)
        try:
            _logits(model, ids, mask, pos)
        finally:
            for h in handles:
                h.remove()
        w = torch.stack([seen[i]["weights"][:, :, -1, :] for i in sorted(seen)])  # layer, row, head, key
        return float((w * span[None, :, None, :]).sum(-1).mean())

    before = mass()
    with steer_attention(model, span, alpha=0.01):
        after = mass()
    assert after > before + 0.2, (before, after)


def test_cleanup_after_exception(tiny_tokenizer):
    model = _model("qwen2", tiny_tokenizer, "sdpa")
    ids, mask, pos, span = _batch(tiny_tokenizer)
    base = _logits(model, ids, mask, pos)
    with pytest.raises(RuntimeError, match="boom"), steer_attention(model, span, alpha=0.01):
        _logits(model, ids, mask, pos)
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    assert not model._forward_pre_hooks
    assert not any(hasattr(m, "_ctxrely_steer") for m in model.modules())
    assert torch.equal(base, _logits(model, ids, mask, pos))


def test_cached_generation_keeps_steering_the_prompt(tiny_tokenizer):
    """Greedy decoding with a KV cache under steering equals recomputing every step from scratch
    with the prompt span steered (include mode: only the span is scaled, never generated tokens)."""
    from ctxrely.engine.generate import greedy_generate

    model = _model("llama", tiny_tokenizer, "sdpa")
    prompt = list(range(40, 60))
    span = (4, 12)
    with steer_attention(model, alpha=0.05, mode="include") as st:
        st.add(prompt, [span])
        ids = []
        for _ in range(6):  # reference: no cache
            x = torch.tensor([prompt + ids])
            m = torch.zeros_like(x, dtype=torch.bool)
            m[0, span[0]:span[1]] = True
            st.fixed = m
            with torch.no_grad():
                ids.append(int(model(input_ids=x).logits[0, -1].argmax()))
    with steer_attention(model, alpha=0.05, mode="include") as st:
        st.add(prompt, [span])
        cached = greedy_generate(model, tiny_tokenizer, [prompt], max_new_tokens=6, stop=[])
    plain = greedy_generate(model, tiny_tokenizer, [prompt], max_new_tokens=6, stop=[])
    want = tiny_tokenizer.decode(ids).strip()
    assert cached[0] == want
    assert plain[0] != want


def test_rows_without_span_are_unsteered(tiny_tokenizer):
    model = _model("llama", tiny_tokenizer, "eager")
    ids, mask, pos, span = _batch(tiny_tokenizer)
    span[0] = False
    base = _logits(model, ids, mask, pos)
    with steer_attention(model, span, alpha=0.01) as st:
        out = _logits(model, ids, mask, pos)
    assert st.n_unsteered == 1
    assert torch.equal(base[0], out[0]) and not torch.allclose(base[1], out[1])


@pytest.mark.parametrize("alpha", [0, -0.5, float("nan"), float("inf")])
def test_bad_alpha(tiny_llama, alpha):
    with pytest.raises(SteerError, match="alpha"), steer_attention(tiny_llama[0], alpha=alpha):
        pass


def test_bad_heads_and_head_files(tiny_llama, tmp_path):
    model = tiny_llama[0]
    with pytest.raises(SteerError, match="layer 5 does not exist"), steer_attention(model, heads=[(5, 0)]):
        pass
    with pytest.raises(SteerError, match="head 9 of layer 0"), steer_attention(model, heads=[(0, 9)]):
        pass
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": 3}))
    with pytest.raises(SteerError, match="bad.json"), steer_attention(model, heads=str(bad)):
        pass
    pasta = tmp_path / "pasta.json"
    pasta.write_text(json.dumps({"1": [0, 2], "0": [3]}))
    with steer_attention(model, heads=str(pasta)) as st:
        assert st.heads == {0: (3,), 1: (0, 2)}
    assert model.config._attn_implementation in ("eager", "sdpa")
