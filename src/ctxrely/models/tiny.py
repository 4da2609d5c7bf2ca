"""Tiny random Hugging Face models with an in-process trained tokenizer, for tests and quick demos.

They load through the same code path as a user's model once saved (:func:`save_tiny`).

Example:
    >>> path = save_tiny("/tmp/tiny-llama", arch="llama")  # doctest: +SKIP
    >>> from ctxrely.models.load import load_model
    >>> model, tok = load_model(str(path))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

ARCHS = ("llama", "gpt_neox", "gpt2", "qwen2", "mistral", "gemma3_text", "phi3")
SPECIALS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_BASE_CORPUS = [
    "The capital of France is Paris. The capital of Afghanistan is Kabul.",
    "Question: What is the capital city of Germany?\nAnswer: Berlin",
    "Below is an instruction that describes a task. ### Instruction: ### Input: ### Response:",
    "<|user|> <|assistant|> Context: Answer the question based on the context only.",
    "Absence makes the heart grow fonder. The Mona Lisa was painted by Leonardo da Vinci.",
]


def default_corpus() -> list[str]:
    """Text to train the tiny tokenizer on: a few lines plus the built-in suites when available."""
    lines = list(_BASE_CORPUS)
    try:
        from ctxrely.data.suites import load_suite
        from ctxrely.registry import SUITES

        for name in SUITES.names():
            if name.startswith("graded_"):  # edited copies of shipped facts: no new words, and leaving them
                continue                    # out keeps the tiny tokenizer (and the tests' tiny models) as before
            for ex in load_suite(name).examples:
                lines.append(f"{ex.context}\n{ex.question}\n{ex.cf_answer} {ex.param_answer or ''}")
    except Exception:  # suites are optional for the tokenizer; a bare corpus still trains
        pass
    return lines


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 1024) -> Any:
    """Train a byte-level BPE tokenizer in-process and wrap it for ``transformers`` (with ChatML)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(corpus if corpus is not None else default_corpus()), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>", model_max_length=512
    )
    fast.chat_template = CHATML
    return fast


def tiny_config(arch: str, vocab_size: int, **overrides: Any) -> Any:
    """A 2-layer, 64-wide config of the given architecture."""
    from transformers import AutoConfig

    if arch not in ARCHS:
        raise ValueError(f"unknown tiny arch {arch!r}; choose from {ARCHS}")
    common: dict[str, Any] = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128, max_position_embeddings=512)
    if arch == "gpt2":
        common = dict(vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=512)
    elif arch in ("llama", "qwen2", "mistral", "phi3"):
        common["num_key_value_heads"] = 2
    elif arch == "gemma3_text":
        common.update(num_key_value_heads=2, head_dim=16, sliding_window=64)
    if arch in ("qwen2", "mistral", "gemma3_text"):
        common["tie_word_embeddings"] = arch != "mistral"
    common.update(overrides)
    return AutoConfig.for_model(arch, **common)


def tiny_model(arch: str = "llama", tokenizer: Any = None, seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """A randomly initialised tiny causal LM and its tokenizer (seeded, float32, eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.eos_token_id)
    cfg = tiny_config(arch, vocab_size=len(tokenizer), **{**ids, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def save_tiny(path: str | Path, arch: str = "llama", seed: int = 0, tokenizer: Any = None,
              **overrides: Any) -> Path:
    """Build a tiny model and save model + tokenizer (safetensors) to ``path``."""
    path = Path(path)
    model, tok = tiny_model(arch, tokenizer=tokenizer, seed=seed, **overrides)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path
