"""Greedy decoding: stop strings, EOS ids, output cleaning, and ``greedy_generate`` over the backend.

The decoding loop itself lives in :mod:`ctxrely.engine.hf` (it shares its prefill with answer
scoring); this module holds what any backend needs to turn tokens into an answer.

Example:
    >>> truncate_at_stop("Paris.\\n\\nQuestion: next", ["\\n\\n", "###"])
    'Paris.'
    >>> texts = greedy_generate(model, tok, [[5, 6, 7]], max_new_tokens=8, stop=["\\n"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_STOP = ("\n\n", "\nQuestion:", "###", "<|user|>", "<|im_end|>", "<|endoftext|>", "</s>", "<end_of_turn>")


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def greedy_generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 32,
    stop: Sequence[str] = DEFAULT_STOP,
    batch_size: int | None = 16,
    batch_tokens: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy continuations of pre-tokenised prompts, cut at the first stop string.

    Args:
        prompt_ids: token ids per prompt (already rendered and shortened to fit).
        on_batch: called with the number of prompts finished after each batch (progress bars).
    """
    from ctxrely.engine.backend import make_backend

    done = (lambda idx, _: on_batch(len(idx))) if on_batch else None
    return make_backend(model, tokenizer).generate(prompt_ids, max_new_tokens, stop=stop, batch_size=batch_size,
                                                batch_tokens=batch_tokens, on_batch=done)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every EOS id the generation config, model config or tokenizer names."""
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config, tokenizer):
        v = getattr(src, "eos_token_id", None)
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return ids


def clean_output(text: str, stop: Sequence[str], specials: Sequence[str]) -> str:
    """Cut at the first stop string, drop special tokens, strip."""
    text = truncate_at_stop(text, stop)
    for s in specials:
        text = text.replace(s, "")
    return text.strip()


def stop_window(stop: Sequence[str]) -> int:
    """Tokens to decode when checking for stop strings: every token decodes to at least one byte, so a
    stop string of n bytes that just completed lies within the last n + 1 tokens."""
    return max([8] + [len(s.encode("utf-8")) + 2 for s in stop if s])


def hit_stop(tokenizer: Any, tokens: list[int], stop: Sequence[str], window: int = 8) -> bool:
    """Whether a stop string occurs in the decoded last ``window`` tokens (checked after every token,
    so a stop string that completed earlier was already seen then)."""
    tail = tokenizer.decode(tokens[-window:], skip_special_tokens=False)
    return any(s and s in tail for s in stop)
