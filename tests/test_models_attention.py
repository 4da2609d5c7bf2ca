"""The one attention module: per-layer hooks give the same shares as ``output_attentions=True`` on
several architectures; PEFT, DDP and FSDP wrappers unwrap (gloo, one process); a shortened context is measured and counted;
the eager switch and the hooks are undone after an exception."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ctxrely.data.schema import ConflictExample  # noqa: E402
from ctxrely.models.attention import (  # noqa: E402
    attention_layers,
    base_model,
    capture_attention,
    char_to_token_spans,
    eager_attention,
    slot_char_span,
    token_roles,
)

ARCHS = ("llama", "gpt2", "qwen2", "gemma3_text", "gpt_neox")
CAPS = [("France", "Lyon"), ("Germany", "Munich"), ("Italy", "Milan"), ("Spain", "Seville"), ("Japan", "Osaka")]


def _examples(long: bool = False) -> list[ConflictExample]:
    pad = " The city is known for its food and its old bridges." * (12 if long else 0)
    out = [ConflictExample(id=f"t-{i}", suite="t", context=f"The capital of {c} is {cf}.{pad}",
                           question=f"What is the capital of {c}?", cf_answer=cf, param_answer="x")
           for i, (c, cf) in enumerate(CAPS)]
    return [*out, ConflictExample(id="bare", suite="t", context="", question="Who?", cf_answer="a")]


@pytest.fixture(scope="module")
def models(tiny_tokenizer):
    from ctxrely.models.tiny import tiny_model

    torch.set_num_threads(1)
    return {a: tiny_model(a, tokenizer=tiny_tokenizer)[0] for a in ARCHS}


def _reference_mass(model, tok, ex, fmt="raw", max_len=None):
    """The old computation: one unbatched forward with ``output_attentions=True`` over the whole model."""
    from ctxrely.engine.attention import context_char_span
    from ctxrely.engine.prompting import build_prompts
    from ctxrely.prompts import get_format

    pf = get_format(fmt)
    built = build_prompts([ex], pf, tok, max_len)[0]
    enc = tok(built.text, add_special_tokens=not pf.chat, return_offsets_mapping=True)
    span = context_char_span(ex, pf, tok, built.text)
    mask = torch.tensor([b > a and a < span[1] and b > span[0] for a, b in enc["offset_mapping"]], dtype=torch.float32)
    with eager_attention(model), torch.no_grad():
        res = model(input_ids=torch.tensor([enc["input_ids"]]), output_attentions=True, use_cache=False)
    last = torch.stack([a[0, :, -1, :].float() for a in res.attentions])  # layers x heads x keys
    return float((last * mask).sum(-1).mean()), built


@pytest.mark.parametrize("arch", ARCHS)
def test_context_mass_from_hooks_equals_output_attentions(models, tiny_tokenizer, arch):
    from ctxrely.engine.attention import context_attention_stats

    model, exs = models[arch], _examples()
    hooks = [dict(m._forward_hooks) for m in attention_layers(model)]
    got = context_attention_stats(model, tiny_tokenizer, exs, fmt="raw", batch_size=3)  # left padding in batches
    assert [dict(m._forward_hooks) for m in attention_layers(model)] == hooks  # exactly ours removed
    assert got.values[-1] is None and got.n_shortened == 0 and got.n_unlocated == 0
    for ex, mass in zip(exs[:-1], got.values, strict=False):
        assert mass == pytest.approx(_reference_mass(model, tiny_tokenizer, ex)[0], abs=1e-5)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_role_shares_from_hooks_equal_output_attentions(models, tiny_tokenizer, arch):
    from ctxrely.awareness.allocation import role_masses
    from ctxrely.awareness.roles import ROLES, encode_roles

    model = models[arch]
    encs = [encode_roles(tiny_tokenizer, "The capital of France is Lyon.\nQuestion: capital?", "Lyon is", t)
            for t in ("raw", "chat")]
    got = role_masses(model, encs)
    ref = 0
    for enc in encs:
        with eager_attention(model), torch.no_grad():
            att = model(input_ids=torch.tensor([enc.ids]), output_attentions=True, use_cache=False).attentions
        onehot = torch.nn.functional.one_hot(torch.tensor([ROLES.index(r) for r in enc.roles]), len(ROLES)).float()
        ref = ref + torch.stack([a[0][:, enc.queries].float().mean(1) @ onehot for a in att]) / len(encs)
    assert got == pytest.approx(ref.numpy(), abs=1e-5)


def test_attention_score_from_one_hooked_layer_equals_output_attentions(models, tiny_tokenizer):
    from ctxrely.data.sft import parse_row
    from ctxrely.diagnose.attention_score import context_dependency, encode_example

    model = models["qwen2"]
    rows = [{"instruction": "What is the capital of France?", "input": "The capital of France is Lyon.",
             "output": "Lyon it is"}, {"instruction": "Say hi", "input": "", "output": "Hi there, friend"}]
    exs = [parse_row(r, fmt="alpaca", index=i, line=i + 1) for i, r in enumerate(rows)]
    got = context_dependency(model, tiny_tokenizer, exs, layer=1, batch_size=2)
    for ex, score in zip(exs, got, strict=True):
        enc = encode_example(ex, tiny_tokenizer)
        with eager_attention(model), torch.no_grad():
            w = model(input_ids=torch.tensor([enc.ids]), output_attentions=True).attentions[1][0]
        user = [i for i, r in enumerate(enc.roles) if r == "user"]
        ref = w[:, enc.resp_start:][:, :, user].sum(-1).max(0).values.mean()
        assert score == pytest.approx(float(ref), abs=1e-5)


def test_shortened_context_is_measured_and_counted(models, tiny_tokenizer):
    """The prompt is shortened as scoring shortens it; the mass is over the part kept, and counted."""
    from ctxrely.engine.attention import context_attention_stats
    from ctxrely.track.attention import context_token_mask

    model, exs = models["llama"], _examples(long=True)
    got = context_attention_stats(model, tiny_tokenizer, exs, max_len=48)
    assert got.n_shortened == len(exs) - 1 and got.n_unlocated == 0 and got.values[-1] is None
    for ex, mass in zip(exs[:-1], got.values, strict=False):
        ref, built = _reference_mass(model, tiny_tokenizer, ex, max_len=48)
        assert built.context_truncated and len(built.ids) <= 48
        assert mass == pytest.approx(ref, abs=1e-5)
        _, old = context_token_mask(tiny_tokenizer, built.text, ex.context, True)
        assert not any(old)  # the old text.find lookup found nothing here: the example was dropped


def test_peft_ddp_and_fsdp_wrappers_unwrap(tiny_tokenizer, tmp_path):
    peft = pytest.importorskip("peft")
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ctxrely.engine.attention import context_attention
    from ctxrely.models.tiny import tiny_model

    model = tiny_model("llama", tokenizer=tiny_tokenizer)[0]
    plain = context_attention(model, tiny_tokenizer, _examples())
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = DDP(wrapped)
        assert base_model(ddp) is model and base_model(wrapped) is model
        assert len(attention_layers(ddp)) == 2
        with eager_attention(ddp) as base:
            assert base is model and model.config._attn_implementation == "eager"
        assert model.config._attn_implementation == "sdpa"
        assert context_attention(ddp, tiny_tokenizer, _examples()) == pytest.approx(plain, abs=1e-6)
        fsdp = FSDP(tiny_model("llama", tokenizer=tiny_tokenizer)[0], device_id=torch.device("cpu"))
        inner = fsdp.module
        assert base_model(fsdp) is inner and len(attention_layers(fsdp)) == 2
        with eager_attention(fsdp):
            assert inner.config._attn_implementation == "eager"
        assert inner.config._attn_implementation == "sdpa"
        assert context_attention(fsdp, tiny_tokenizer, _examples()) == pytest.approx(plain, abs=1e-6)
    finally:
        dist.destroy_process_group()


def test_eager_switch_and_hooks_undone_after_an_exception(models):
    model = models["gpt2"]
    hooks = [dict(m._forward_hooks) for m in attention_layers(model)]
    with pytest.raises(KeyError), eager_attention(model):
        assert model.config._attn_implementation == "eager"
        raise KeyError("boom")
    assert model.config._attn_implementation == "sdpa"

    def reduce(layer, w):
        raise ValueError(f"stop at {layer}")

    with pytest.raises(ValueError, match="stop at 0"), capture_attention(model, reduce), torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert model.config._attn_implementation == "sdpa"
    assert [dict(m._forward_hooks) for m in attention_layers(model)] == hooks


def test_spans_and_roles_from_offsets():
    assert char_to_token_spans([(0, 0), (0, 5), (5, 6), (6, 11)], [(6, 11), (0, 3)]) == [(3, 4), (1, 2)]
    fill = "Context: {}\nQuestion: q?\nAnswer: ".format
    assert slot_char_span(fill("a short")[:-1], fill, "a longer context") == (9, 16)  # shortened, stripped tail
    assert slot_char_span("elsewhere ctx here", lambda c: f"[{c}]", "ctx") == (10, 13)
    assert slot_char_span("no frame", lambda c: f"[{c}]", "absent") is None
    assert token_roles("ab cd", [(3, 5, "user")], [(0, 0), (0, 2), (2, 5)]) == ["template", "template", "user"]
