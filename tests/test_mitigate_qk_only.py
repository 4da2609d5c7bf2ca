"""QK-only fine-tuning per architecture: value weights never change, under AdamW with weight decay,
for full fine-tuning and LoRA; the fused-QKV layouts really are the value rows."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ctxrely.mitigate.qk_only import freeze_all_but_qk, qk_lora, qk_lora_targets, qk_modules  # noqa: E402
from ctxrely.models.tiny import tiny_model  # noqa: E402

ARCHS = ["llama", "qwen2", "gpt_neox", "gpt2", "phi3"]
FUSED = {"gpt_neox", "gpt2", "phi3"}



def _v(w, qk):
    """The value slice of a fused weight (rows for Linear, columns for GPT-2 Conv1D) and the rest."""
    mask = torch.tensor(qk.v_mask)
    if w.ndim == 1 or qk.out_dim == 0:
        return w[mask], w[~mask]
    return w[:, mask], w[:, ~mask]


def _train(model, params, steps=3, wd=0.1):
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=wd)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("arch", ARCHS)
def test_full_qk_only_keeps_values_fixed(tiny_tokenizer, arch):
    model, _ = tiny_model(arch, tiny_tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = freeze_all_but_qk(model)
    assert names and all(p.requires_grad == (n in names) for n, p in model.named_parameters())
    _train(model, [p for p in model.parameters() if p.requires_grad])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(names)  # only Q/K tensors move
    for qk in qk_modules(model):
        if arch in FUSED:
            for pname, p in qk.module.named_parameters(recurse=False):
                v_now, rest_now = _v(p, qk)
                v_old, rest_old = _v(before[f"{qk.name}.{pname}"], qk)
                assert torch.equal(v_now, v_old), f"{qk.name}.{pname}: value part changed"
                assert not torch.equal(rest_now, rest_old)
        else:
            assert qk.name.split(".")[-1] in ("q_proj", "k_proj")
    if arch not in FUSED:
        assert not any("v_proj" in n for n in changed)


@pytest.mark.parametrize("arch", sorted(FUSED))
def test_without_the_step_hook_weight_decay_moves_values(tiny_tokenizer, arch):
    """Control: the gradient mask alone is not enough under AdamW weight decay (the test can fail)."""
    model, _ = tiny_model(arch, tiny_tokenizer)
    freeze_all_but_qk(model)
    qk = qk_modules(model)[0]
    old = _v(qk.module.weight.detach().clone(), qk)[0]
    guard = model._ctxrely_qk_guard
    guard.items.clear()  # keep the gradient hooks, drop the restore step
    _train(model, [p for p in model.parameters() if p.requires_grad])
    assert not torch.equal(_v(qk.module.weight, qk)[0], old)
    guard.remove()


@pytest.mark.parametrize("arch", sorted(FUSED))
def test_fused_layout_is_the_value_part(tiny_tokenizer, arch):
    """Changing the rows called V leaves attention weights unchanged; changing Q/K rows does not."""
    from ctxrely.diagnose.attention_score import eager_attention

    model, _ = tiny_model(arch, tiny_tokenizer)
    ids = torch.tensor([[5, 9, 17, 33, 2, 8]])

    def attn():
        with eager_attention(model), torch.no_grad():
            out = model(input_ids=ids, output_attentions=True)
        return out.attentions[0], out.logits

    a0, l0 = attn()
    qk = qk_modules(model)[0]
    w = qk.module.weight
    mask = torch.tensor(qk.v_mask)
    sel = (mask[None, :] if qk.out_dim == 1 else mask[:, None]).expand_as(w)
    with torch.no_grad():
        w.add_(torch.randn_like(w) * sel)
    a1, l1 = attn()
    assert torch.allclose(a0, a1) and not torch.allclose(l0, l1)
    with torch.no_grad():
        w.add_(torch.randn_like(w) * ~sel)
    a2, _ = attn()
    assert not torch.allclose(a0, a2)


@pytest.mark.parametrize("arch", ARCHS)
def test_qk_lora_never_touches_values(tiny_tokenizer, arch):
    pytest.importorskip("peft")
    model, _ = tiny_model(arch, tiny_tokenizer)
    base = {n: p.detach().clone() for n, p in tiny_model(arch, tiny_tokenizer)[0].named_parameters()}
    targets = qk_lora_targets(model)
    assert targets == (sorted({"c_attn", "query_key_value", "qkv_proj"} & set(targets)) if arch in FUSED
                       else ["k_proj", "q_proj"])
    pm = qk_lora(model, r=4)
    _train(pm, [p for p in pm.parameters() if p.requires_grad])
    merged = pm.merge_and_unload()
    changed = {n for n, p in merged.named_parameters() if not torch.equal(p, base[n])}
    mods = qk_modules(merged)
    assert changed == {f"{m.name}.weight" for m in mods}
    for m in mods:
        if m.v_mask is not None:
            v_now, rest_now = _v(m.module.weight, m)
            v_old, rest_old = _v(base[f"{m.name}.weight"], m)
            assert torch.equal(v_now, v_old) and not torch.equal(rest_now, rest_old)


def test_unknown_layouts_are_refused():
    class Cfg:
        def __init__(self, model_type):
            self.model_type = model_type

    class Fake(torch.nn.Module):
        def __init__(self, model_type, leaf):
            super().__init__()
            self.config = Cfg(model_type)
            self.add_module(leaf, torch.nn.Linear(4, 12))

    with pytest.raises(ValueError, match="falcon: fused QKV projection 'query_key_value' with a layout"):
        freeze_all_but_qk(Fake("falcon", "query_key_value"))
    with pytest.raises(ValueError, match="no query/key projections"):
        qk_lora_targets(Fake("mlp", "fc"))
