"""Attention to the context: how much attention the answer position pays to the context tokens.

For each example the prompt is built as for scoring (the context shortened, never the question,
where the prompt would not fit the model's window); the *answer position* is the last prompt token
(the one whose output predicts the first answer token). Its attention weights are summed over the
context tokens, then averaged over heads and layers: the quantity of Fig. 3b of Goyal et al. 2024,
which falls as context reliance inverts. A hook on each attention layer keeps only that last query
row (:func:`ctxrely.models.attention.capture_attention`), so memory grows with layers x heads x
length, not with length squared per layer. The context is located through the prompt template
(so a shortened context is measured, and counted), never by searching for its text.

Example:
    >>> from ctxrely.models.tiny import tiny_model
    >>> model, tok = tiny_model("llama")  # doctest: +SKIP
    >>> context_attention(model, tok, examples[:4], fmt="raw")  # doctest: +SKIP
    [0.61, 0.58, 0.66, 0.60]
    >>> context_attention_stats(model, tok, examples[:4]).n_shortened  # doctest: +SKIP
    0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ctxrely.data.schema import ConflictExample
from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of
from ctxrely.engine.distributed import inference_context
from ctxrely.engine.prompting import build_prompts, render
from ctxrely.models.attention import (
    base_model,
    capture_attention,
    diff_span,
    offsets_of,
    slot_char_span,
    token_mask,
)
from ctxrely.prompts import PromptFormat, get_format

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextAttention:
    """Per example the attention mass on the context (None: no context, or its tokens not found), and
    counts: contexts shortened to fit the window (measured on what the model saw), contexts not found."""

    values: list[float | None]
    n_shortened: int = 0
    n_unlocated: int = 0


def context_char_span(ex: ConflictExample, fmt: PromptFormat, tokenizer: Any, text: str,
                      suffix: str | None = None) -> tuple[int, int] | None:
    """``(start, end)`` of the context inside the rendered prompt ``text`` (full or shortened), or None.

    Prompts prebuilt by the data (AdaCAD pairs) take the part where the prompt with context differs
    from the one without; others locate the context slot through the format's template.
    """
    if ex.meta and ex.meta.get("prebuilt_prompt") is not None:
        bare = render(ex, fmt, tokenizer, context="")
        return diff_span(text, bare.rstrip() if text == text.rstrip() else bare)
    if not ex.context.strip():
        return None
    return slot_char_span(text, lambda c: render(ex, fmt, tokenizer, context=c, suffix=suffix), ex.context)


def context_attention_stats(
    model: Any,
    tokenizer: Any,
    examples: Sequence[ConflictExample],
    *,
    fmt: str | PromptFormat = "raw",
    indicator: str | None = None,
    batch_size: int = 8,
    max_len: int | None = None,
) -> ContextAttention:
    """Mean attention mass from the answer position to the context, per example, with the counts.

    Args:
        fmt: the prompt format used for scoring (so the positions match).
        indicator: text appended to the question, as in scoring.
        max_len: the window prompts are shortened to (default: the model's).
    """
    from ctxrely.models.load import model_max_length

    pf = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
    max_len = max_len or model_max_length(base_model(model), tokenizer)
    out: list[float | None] = [None] * len(examples)
    todo = [i for i, ex in enumerate(examples) if ex.context.strip()]
    built = build_prompts([examples[i] for i in todo], pf, tokenizer, max_len, suffix=indicator)
    n_short = sum(b.context_truncated for b in built)
    ids: list[list[int]] = []
    masks: list[list[bool]] = []
    keep: list[int] = []
    n_lost = 0
    encs = offsets_of(tokenizer, [b.text for b in built], not pf.chat) if built else {"offset_mapping": []}
    for i, b, offs in zip(todo, built, encs["offset_mapping"], strict=True):
        span = context_char_span(examples[i], pf, tokenizer, b.text, suffix=indicator)
        mask = token_mask(offs, [span] if span else [])
        if not any(mask):
            n_lost += 1
            continue
        ids.append(list(b.ids))
        masks.append(mask)
        keep.append(i)
    if n_short:
        log.warning("context attention: %d/%d contexts were shortened to fit the window (%s tokens); their "
                    "mass is over the part kept", n_short, len(todo), max_len)
    if n_lost:
        log.warning("context attention: the context of %d/%d prompts has no tokens in the prompt; no value "
                    "for those", n_lost, len(todo))
    if ids:
        _measure(model, tokenizer, ids, masks, keep, out, batch_size)
    return ContextAttention(out, n_short, n_lost)


def _measure(model: Any, tokenizer: Any, ids: list[list[int]], masks: list[list[bool]], keep: list[int],
             out: list[float | None], batch_size: int) -> None:
    import torch

    device = next(model.parameters()).device
    acc: dict[str, Any] = {}

    def reduce(_layer: int, w: Any) -> None:
        # the last query row only: (batch, heads, keys) -> mass on the context per row, mean over heads
        with torch.autocast(device_type=w.device.type, enabled=False):
            mass = (w[:, :, -1, :].float() * acc["ctx"][:, None, :]).sum(-1).mean(1)
        acc["sum"] = mass if acc.get("sum") is None else acc["sum"] + mass
        acc["layers"] += 1

    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with capture_attention(model, reduce), inference_context(model):  # no_grad under FSDP / ZeRO-3
            for idx in length_sorted_batches(ids, batch_size):
                batch_ids, attn_mask, pos = left_pad([ids[j] for j in idx], pad_id_of(tokenizer), device)
                width = batch_ids.shape[1]
                ctx = torch.zeros((len(idx), width), dtype=torch.float32, device=device)
                for r, j in enumerate(idx):
                    ctx[r, width - len(masks[j]):] = torch.tensor(masks[j], dtype=torch.float32, device=device)
                acc.update(ctx=ctx, sum=None, layers=0)
                model(input_ids=batch_ids, attention_mask=attn_mask, position_ids=pos, use_cache=False,
                      logits_to_keep=1)
                mass = acc["sum"] / acc["layers"]
                for r, j in enumerate(idx):
                    out[keep[j]] = float(mass[r])
    finally:
        if was_training:
            model.train()


def context_attention(
    model: Any,
    tokenizer: Any,
    examples: Sequence[ConflictExample],
    *,
    fmt: str | PromptFormat = "raw",
    indicator: str | None = None,
    batch_size: int = 8,
    max_len: int | None = None,
) -> list[float | None]:
    """The values of :func:`context_attention_stats` (shortened contexts are measured and logged)."""
    return context_attention_stats(model, tokenizer, examples, fmt=fmt, indicator=indicator,
                                   batch_size=batch_size, max_len=max_len).values
