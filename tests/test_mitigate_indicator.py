"""Indicator token: mean-initialised embedding (tied and untied), where the suffix goes in each
format, and agreement with the suffix ``evaluate(..., indicator=...)`` puts on a question."""

from __future__ import annotations

import copy

import pytest

from ctxrely.data.sft import parse_row
from ctxrely.mitigate.indicator import add_indicator_token, apply_indicator, with_user_suffix
from test_diagnose_rows import TEMPLATE, make_rows

torch = pytest.importorskip("torch")



@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # untied / tied output embeddings
def test_add_indicator_token_mean_init(tiny_tokenizer, arch):
    from ctxrely.models.tiny import tiny_model

    tok = copy.deepcopy(tiny_tokenizer)
    model, _ = tiny_model(arch, tok)
    n = len(tok)
    emb_old = model.get_input_embeddings().weight.detach().clone()
    out_old = model.get_output_embeddings().weight.detach().clone()
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tied == (arch == "qwen2")
    tid = add_indicator_token(model, tok)
    assert tid == n and len(tok) == n + 1
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == n + 1 and torch.equal(emb[:n], emb_old)
    assert torch.allclose(emb[tid], emb_old.mean(0))
    assert torch.allclose(model.get_output_embeddings().weight[tid], out_old.mean(0))
    ids = tok("Where is Paris? [IND]")["input_ids"]
    assert ids[-1] == tid and ids.count(tid) == 1
    assert add_indicator_token(model, tok) == tid and len(tok) == n + 1  # idempotent
    logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape[-1] == n + 1 and torch.isfinite(logits).all()


def test_suffix_placement_per_format():
    rows = make_rows("alpaca")
    assert with_user_suffix(parse_row(rows[0], fmt="alpaca", index=0), "[IND]")["instruction"] == \
        "What is the capital of France? [IND]"
    m = make_rows("messages")[0]
    out = with_user_suffix(parse_row(m, fmt="messages", index=0), "[IND]")
    assert out["messages"][0]["content"].endswith("What is the capital of France? [IND]")
    t = make_rows("pc_tmpl")[0]
    ex = parse_row(t, fmt="prompt_completion", index=0, context_template=TEMPLATE + "\nAnswer:")
    assert with_user_suffix(ex, "[IND]")["prompt"].endswith("What is the capital of France? [IND]\nAnswer:")
    assert t["prompt"].endswith("France?\nAnswer:")  # original untouched


def test_apply_indicator_threshold_and_score_shapes():
    rows = make_rows("alpaca")
    scores = [0.9, 0.1, None, 0.61, {"attn_score": 0.7}, {"attn_score": None}, 0.6, float("nan")]
    out = apply_indicator(rows, scores, threshold=0.6)
    marked = [i for i, r in enumerate(out) if r["instruction"].endswith(" [IND]")]
    assert marked == [0, 3, 4]
    assert all(out[i] is rows[i] for i in range(8) if i not in marked)
    with pytest.raises(ValueError, match="rows but"):
        apply_indicator(rows, scores[:3])


def test_training_suffix_matches_eval_suffix(tiny_tokenizer):
    """The marked Alpaca row renders like `evaluate(..., fmt="alpaca", indicator="[IND]")` renders a question."""
    from ctxrely.data.schema import ConflictExample
    from ctxrely.diagnose.attention_score import render
    from ctxrely.engine.prompting import render as eval_render
    from ctxrely.prompts import get_format

    row = apply_indicator([make_rows("alpaca")[0]], [1.0])[0]
    train_text, _, _ = render(parse_row(row, fmt="alpaca", index=0), tiny_tokenizer)
    ce = ConflictExample(id="0", suite="t", context=row["input"], question="What is the capital of France?",
                         cf_answer="Lyon")
    eval_text = eval_render(ce, get_format("alpaca"), tiny_tokenizer, suffix="[IND]")
    piece = "### Instruction:\nWhat is the capital of France? [IND]\n\n### Input:\nThe capital of France is Lyon."
    assert piece in train_text and piece in eval_text
