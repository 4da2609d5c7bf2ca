"""`ctxrely train` with an indicator token: the token joins the tokenizer and its embedding trains (LoRA too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

ROWS = [{"instruction": f"Where is {c}? [IND]", "input": f"{c} is in {p}.", "output": p}
        for c, p in [("Lyon", "France"), ("Kyoto", "Japan"), ("Porto", "Portugal"), ("Cusco", "Peru")]] * 2


def _train(model: Any, tok: Any, out: Path, *overrides: str) -> Path:
    """Two steps of `ctxrely train` with `indicator='[IND]'` on ROWS, one toy probe; returns the run folder."""
    from ctxrely.data.schema import ConflictExample
    from ctxrely.train.config import load_config
    from ctxrely.train.sft import run_train

    cfg = load_config(None, ["model=tiny", f"output_dir={out}", "batch_size=4", "max_length=64", "lr=1e-2",
                             "eval_every=50", "suites=", "prompt_format=raw", "device=cpu", "max_steps=2",
                             "attention_subset=0", "indicator='[IND]'", *overrides])
    probe = {"toy": [ConflictExample(id="0", suite="toy", context="Lyon is in Peru.", question="Where is Lyon?",
                                     cf_answer="Peru", param_answer="France")]}
    return run_train(cfg, model=model, tokenizer=tok, train_rows=ROWS, eval_examples=probe)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_indicator_token_is_added_and_trained(tmp_path, tiny_model_dir, finetune):
    from ctxrely.models.load import load_model

    model, tok = load_model(str(tiny_model_dir("llama")))
    n_vocab = len(tok)
    mean_row = model.get_input_embeddings().weight.detach().mean(0).clone()
    _train(model, tok, tmp_path, f"finetune={finetune}", "save_final=false")
    ind = tok.convert_tokens_to_ids("[IND]")
    assert len(tok) == n_vocab + 1 and ind == n_vocab
    assert tok("x [IND]")["input_ids"][-1] == ind  # one token, not split into pieces
    if finetune == "full":  # the new row starts at the mean embedding and is trained from there
        row = model.get_input_embeddings().weight.detach()[ind]
        assert not torch.allclose(row, mean_row)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text"])
def test_lora_indicator_on_tied_output_layer(tmp_path, tiny_tokenizer, arch):
    """Tied input/output embeddings (SmolLM2, Gemma 3): PEFT wraps the output layer too, and TRL's fused
    LM head reads its ``bias``; two LoRA steps train the indicator row, on both sides, and no other row."""
    from ctxrely.models.load import load_model
    from ctxrely.models.tiny import save_tiny

    path = save_tiny(tmp_path / "model", arch=arch, tokenizer=tiny_tokenizer, tie_word_embeddings=True)
    model, tok = load_model(str(path))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    before = model.get_input_embeddings().weight.detach().clone()
    run_dir = _train(model, tok, tmp_path / "run", "finetune=lora", "save_final=true")
    ind = tok.convert_tokens_to_ids("[IND]")
    assert ind == before.shape[0]
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    trained = emb.weight.detach()  # PEFT's merged weights: base rows plus the trained token rows
    assert not torch.allclose(trained[ind], before.mean(0))  # started at the mean, moved
    assert torch.equal(trained[:ind], before)  # no other row of the embedding changed
    assert torch.equal(head.weight.detach(), trained)  # the output side follows the input (still tied)
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()


def test_qk_only_lora_trains_the_indicator_token(tmp_path, tiny_tokenizer):
    """`train_modules=qk` with LoRA: the indicator row trains too (it used to stay at its mean init)."""
    from ctxrely.models.load import load_model
    from ctxrely.models.tiny import save_tiny

    path = save_tiny(tmp_path / "model", arch="llama", tokenizer=tiny_tokenizer, tie_word_embeddings=True)
    model, tok = load_model(str(path))
    before = model.get_input_embeddings().weight.detach().clone()
    run_dir = _train(model, tok, tmp_path / "run", "finetune=lora", "train_modules=qk", "save_final=true")
    ind = tok.convert_tokens_to_ids("[IND]")
    trained = model.get_input_embeddings().weight.detach()
    assert not torch.allclose(trained[ind], before.mean(0))
    assert torch.equal(trained[:ind], before)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("q_proj.lora_A" in n for n in names) and not any("v_proj" in n or "mlp" in n for n in names)
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
