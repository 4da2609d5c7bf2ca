"""Attention to the context, as the training callback measures it (moved to :mod:`ctxrely.engine.attention`;
the attention internals live in :mod:`ctxrely.models.attention`). The names below stay as aliases.

Example:
    >>> from ctxrely.track.attention import context_attention  # same as ctxrely.engine.attention's
"""

from __future__ import annotations

from typing import Any

from ctxrely.engine.attention import ContextAttention, context_attention, context_attention_stats
from ctxrely.models.attention import base_model as _base_model  # noqa: F401  (old private name)
from ctxrely.models.attention import eager_attention, offsets_of, token_mask

__all__ = ["ContextAttention", "context_attention", "context_attention_stats", "context_token_mask",
           "eager_attention"]


def context_token_mask(tokenizer: Any, text: str, context: str, add_special_tokens: bool) -> tuple[list[int], list[bool]]:
    """Token ids of ``text`` and, per token, whether it overlaps the first occurrence of ``context``
    (all False where it does not occur; the callback locates contexts through the template instead).

    Example:
        >>> ids, mask = context_token_mask(tok, "Ctx here.\\nQuestion: q", "Ctx here.", False)  # doctest: +SKIP
    """
    enc = offsets_of(tokenizer, text, add_special_tokens)
    start = text.find(context) if context else -1
    chars = [(start, start + len(context))] if start >= 0 else []
    return list(enc["input_ids"]), token_mask(enc["offset_mapping"], chars)

