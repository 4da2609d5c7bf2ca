"""Context-criticality NLLs and the attention score against unbatched references; token roles from
rendered offsets under two different chat templates."""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")

from ctxrely.data.sft import parse_row  # noqa: E402
from ctxrely.diagnose.attention_score import (  # noqa: E402
    attention_modules,
    context_dependency,
    eager_attention,
    encode_example,
)
from ctxrely.diagnose.criticality import classify, quantile_threshold, reclassify, score_criticality  # noqa: E402

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '<|endoftext|>[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' <|endoftext|>' }}{% endif %}"
    "{% endfor %}"
)



def _examples():
    rows = [
        {"instruction": "What is the capital of France?", "input": "The capital of France is Lyon.", "output": "Lyon"},
        {"instruction": "Say hi", "input": "", "output": "Hi there, friend"},
        {"instruction": "Who painted it?", "input": "The Mona Lisa was painted by Picasso in a long year.",
         "output": "Picasso painted the Mona Lisa."},
    ]
    exs = [parse_row(r, fmt="alpaca", index=i, line=i + 1) for i, r in enumerate(rows)]
    exs.append(parse_row({"messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Paris is nice.\n\nWhere is nice?"},
                                       {"role": "assistant", "content": "Paris"}], "context": "Paris is nice."},
                         fmt="messages", index=3, line=4))
    return exs


def _ref_nll(model, ids, start):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    tgt = torch.tensor(ids[start:])
    return float(-lp[start - 1:-1].gather(-1, tgt[:, None]).mean())


def test_nll_matches_unbatched_reference(tiny_llama):
    model, tok = tiny_llama
    exs = _examples()
    rows = score_criticality(model, tok, exs, batch_size=3, progress=False)
    for ex, row in zip(exs, rows, strict=True):
        w = encode_example(ex, tok, with_context=True)
        wo = encode_example(ex, tok, with_context=False)
        assert row["nll_with"] == pytest.approx(_ref_nll(model, w.ids, w.resp_start), abs=1e-4)
        assert row["nll_without"] == pytest.approx(_ref_nll(model, wo.ids, wo.resp_start), abs=1e-4)
        assert row["gain"] == pytest.approx(row["nll_without"] - row["nll_with"])
        assert row["ppl_with"] == pytest.approx(math.exp(row["nll_with"]))
        assert row["cls"] == ("C" if ex.has_context else "S")  # a random model knows nothing: NLL ~ log V
    assert rows[1]["nll_with"] == rows[1]["nll_without"]  # no context: one sequence


def test_too_long_rows_are_skipped_not_fatal(tiny_llama):
    model, tok = tiny_llama
    rows = score_criticality(model, tok, _examples(), progress=False, max_length=60)
    skipped = [r for r in rows if r.get("skipped")]
    assert skipped and all(r["cls"] == "skipped" and r["nll_with"] is None for r in skipped)
    assert any(r["nll_with"] is not None for r in rows)


def test_classify_and_quantile():
    assert classify(0.5, True) == "C+S" and classify(1.5, True) == "C" and classify(0.1, False) == "S"
    rows = [{"has_context": True, "nll_without": v} for v in (0.5, 2.0, 3.0, 4.0)] + [{"has_context": False,
                                                                                        "nll_without": 0.1}]
    assert quantile_threshold(rows, 0.25) == 0.5
    thr = reclassify(rows, cs_quantile=0.5)
    assert thr == 2.0 and [r["cls"] for r in rows] == ["C+S", "C+S", "C", "C", "S"]


@pytest.mark.parametrize("template", ["chatml", "llama2"])
def test_roles_come_from_rendered_offsets(tiny_tokenizer, template):
    tok = tiny_tokenizer
    if template == "llama2":  # a copy: the session tokenizer keeps ChatML
        tok = copy.deepcopy(tiny_tokenizer)
        tok.chat_template = LLAMA2
    ex = _examples()[3]
    enc = encode_example(ex, tok, template="chat")

    def text_of(role):
        return tok.decode([i for i, r in zip(enc.ids, enc.roles, strict=True) if r == role])

    assert text_of("user").replace(" ", "") == ex.prompt_with_context.replace(" ", "")
    assert text_of("system") == "Be brief."
    assert text_of("response").strip() == "Paris" and enc.roles[-1] == "response"
    marker = "[INST]" if template == "llama2" else "<|im_start|>"
    assert marker in tok.decode([i for i, r in zip(enc.ids, enc.roles, strict=True) if r == "template"])
    assert enc.roles[enc.resp_start - 1] == "template"


def test_alpaca_and_plain_roles(tiny_tokenizer):
    ex = _examples()[0]
    enc = encode_example(ex, tiny_tokenizer)  # auto: Alpaca template for Alpaca rows
    user = tiny_tokenizer.decode([i for i, r in zip(enc.ids, enc.roles, strict=True) if r == "user"])
    assert "What is the capital of France?" in user and "Lyon." in user and "### Input" not in user
    wo = encode_example(ex, tiny_tokenizer, with_context=False)
    assert "Input" not in tiny_tokenizer.decode(wo.ids)


def _ref_attention(model, ids, roles, layer):
    with eager_attention(model), torch.no_grad():
        att = model(input_ids=torch.tensor([ids]), output_attentions=True).attentions[layer][0]
    user = [j for j, r in enumerate(roles) if r == "user"]
    resp = [j for j, r in enumerate(roles) if r == "response"]
    return float(att[:, resp][:, :, user].sum(-1).max(0).values.mean())


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox", "qwen2", "phi3"])
def test_scores_match_references_per_arch(tiny_tokenizer, arch):
    from ctxrely.models.tiny import tiny_model

    model, tok = tiny_model(arch, tiny_tokenizer)
    impl = model.config._attn_implementation
    exs = _examples()
    scores = context_dependency(model, tok, exs, layer=1, batch_size=3)
    assert model.config._attn_implementation == impl
    for ex, s in zip(exs, scores, strict=True):
        enc = encode_example(ex, tok)
        assert s == pytest.approx(_ref_attention(model, enc.ids, enc.roles, 1), abs=1e-5)
        assert 0.0 < s <= 1.0
    assert len(attention_modules(model)) == 2
    for ex, row in zip(exs, score_criticality(model, tok, exs, batch_size=4, progress=False), strict=True):
        wo = encode_example(ex, tok, with_context=False)  # NLL through logits_to_keep, per architecture
        assert row["nll_without"] == pytest.approx(_ref_nll(model, wo.ids, wo.resp_start), abs=1e-4)
    # the hook is gone and a normal forward pass runs to the end
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.logits.shape[1] == 3


def test_attention_restores_after_error(tiny_llama, monkeypatch):
    import ctxrely.diagnose.attention_score as att

    model, tok = tiny_llama
    impl = model.config._attn_implementation
    assert impl != "eager"
    with pytest.raises(ValueError, match="out of range"):
        context_dependency(model, tok, _examples(), layer=7)

    def boom(*_a, **_k):
        assert model.config._attn_implementation == "eager"  # switched while scoring
        raise RuntimeError("boom")

    monkeypatch.setattr(att, "_score_row", boom)
    with pytest.raises(RuntimeError, match="boom"):
        context_dependency(model, tok, _examples())
    assert model.config._attn_implementation == impl
    assert not any(m._forward_hooks for m in attention_modules(model))


def test_raw_rows_are_accepted(tiny_llama):
    model, tok = tiny_llama
    raw = [{"instruction": "Q?", "input": "Lyon is big.", "output": "Lyon"},
           {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]
    rows = score_criticality(model, tok, raw, progress=False)
    assert [r["cls"] for r in rows] == ["C", "S"] and [r["line"] for r in rows] == [1, 2]
    assert len(context_dependency(model, tok, raw)) == 2
    with pytest.raises(Exception, match="cannot tell the format"):
        score_criticality(model, tok, [{"text": "x"}], progress=False)
