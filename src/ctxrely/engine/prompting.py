"""Turn examples into prompt strings for a model, shortening the context (never the question)
when a prompt would not fit the model's window.

Example:
    >>> prompts = build_prompts(examples, get_format("raw"), tokenizer, max_len=512)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ctxrely.data.schema import ConflictExample, DataError
from ctxrely.prompts import PromptFormat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    n_tokens: int
    context_truncated: bool
    ids: list[int] = field(default_factory=list, compare=False, repr=False)  # encode(text), for reuse


def render(ex: ConflictExample, fmt: PromptFormat, tokenizer: Any, context: str | None = None,
           suffix: str | None = None) -> str:
    """Render one example; ``suffix`` (e.g. an indicator token) is appended to the question.

    Examples whose data ships its own prompts (``meta["prebuilt_prompt"]`` and
    ``meta["prebuilt_prompt_no_context"]``, e.g. AdaCAD pairs) render them verbatim (as the user
    message for chat formats); ``context=""`` selects the one without context.
    """
    pre = ex.meta.get("prebuilt_prompt") if ex.meta else None
    if pre is not None:
        text = ex.meta.get("prebuilt_prompt_no_context", "") if context == "" else pre
        if not fmt.chat:
            return text
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    question = ex.question if not suffix else f"{ex.question} {suffix}"
    return fmt.render(ex.context if context is None else context, question, tokenizer)


def encode(tokenizer: Any, text: str, fmt: PromptFormat) -> list[int]:
    """Token ids of a prompt; chat templates already carry their special tokens."""
    return tokenizer(text, add_special_tokens=not fmt.chat)["input_ids"]


def build_prompts(examples: list[ConflictExample], fmt: PromptFormat, tokenizer: Any,
                  max_len: int | None, reserve: int = 0, suffix: str | None = None) -> list[BuiltPrompt]:
    """Render every example; where ``len(prompt) + reserve > max_len`` cut the context's tail.

    Raises DataError if even an empty context does not fit (the question alone is too long).
    """
    out: list[BuiltPrompt] = []
    n_cut = 0
    texts = [render(ex, fmt, tokenizer, suffix=suffix) for ex in examples]
    all_ids = tokenizer(texts, add_special_tokens=not fmt.chat)["input_ids"] if texts else []  # one batched call
    for ex, text, ids in zip(examples, texts, all_ids, strict=True):
        if max_len is None or len(ids) + reserve <= max_len:
            out.append(BuiltPrompt(text, len(ids), False, list(ids)))
            continue
        bare = encode(tokenizer, render(ex, fmt, tokenizer, context="", suffix=suffix), fmt)
        budget = max_len - reserve - len(bare) - 2
        if budget <= 0 and reserve and (reserve >= max_len or len(bare) + 2 < max_len // 2):  # the option's fault
            from ctxrely.errors import ConfigError

            raise ConfigError(f"--max-new-tokens {reserve} leaves {max(max_len - reserve, 0)} of the model window's "
                              f"{max_len} tokens for the prompt; lower --max-new-tokens")
        if budget <= 0:
            raise DataError(
                f"{ex.suite}:{ex.id}: the prompt without its context needs {len(bare)} tokens, more than "
                f"the model window {max_len} minus {reserve} reserved; the question cannot be shortened"
            )
        ctx_ids = tokenizer(ex.context, add_special_tokens=False)["input_ids"]
        while True:  # decode/re-encode can drift by a token or two; shrink until it fits
            ctx = tokenizer.decode(ctx_ids[:budget], skip_special_tokens=True)
            text = render(ex, fmt, tokenizer, context=ctx, suffix=suffix)
            ids = encode(tokenizer, text, fmt)
            if len(ids) + reserve <= max_len or budget <= 1:
                break
            budget -= max(1, len(ids) + reserve - max_len)
        out.append(BuiltPrompt(text, len(ids), True, list(ids)))
        n_cut += 1
    if n_cut:
        log.warning("shortened the context of %d/%d prompts to fit the model window (%d tokens)",
                    n_cut, len(examples), max_len)
    return out


def continuation(prompt: str, answer: str) -> str:
    """The answer as a continuation of the prompt: a leading space unless the prompt ends in one."""
    return answer if (not prompt or prompt[-1].isspace()) else f" {answer}"
