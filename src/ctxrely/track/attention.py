"""Attention to the context: how much attention the answer position pays to the context tokens.

For each example the prompt is rendered as for scoring; the *answer position* is the last prompt
token (the one whose output predicts the first answer token). Its attention weights are summed
over the context tokens, then averaged over heads and layers: the quantity of Fig. 3b of Goyal et
al. 2024, which falls as context reliance inverts. Attention weights need the eager kernel; the
model is switched to it for the call and switched back in a ``finally``.

Example:
    >>> from ctxrely.models.tiny import tiny_model
    >>> model, tok = tiny_model("llama")  # doctest: +SKIP
    >>> context_attention(model, tok, examples[:4], fmt="raw")  # doctest: +SKIP
    [0.61, 0.58, 0.66, 0.60]
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from ctxrely.data.schema import ConflictExample
from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of
from ctxrely.engine.prompting import render
from ctxrely.prompts import PromptFormat, get_format

log = logging.getLogger(__name__)


def _base_model(model: Any) -> Any:
    """The ``PreTrainedModel`` under PEFT / DDP wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and not hasattr(model, "config"):
            model = model.module
        else:
            return model


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Temporarily switch a transformers model to eager attention (which can return its weights)."""
    base = _base_model(model)
    before = getattr(getattr(base, "config", None), "_attn_implementation", None)
    switched = before is not None and before != "eager" and hasattr(base, "set_attn_implementation")
    if switched:
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switched:
            base.set_attn_implementation(before)


def context_token_mask(tokenizer: Any, text: str, context: str, add_special_tokens: bool) -> tuple[list[int], list[bool]]:
    """Token ids of ``text`` and, per token, whether it overlaps the (first) occurrence of ``context``.

    Example:
        >>> ids, mask = context_token_mask(tok, "Ctx here.\\nQuestion: q", "Ctx here.", False)  # doctest: +SKIP
    """
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    start = text.find(context) if context else -1
    if start < 0:
        return list(enc["input_ids"]), [False] * len(enc["input_ids"])
    end = start + len(context)
    mask = [e > s and s < end and e > start for s, e in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


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
    """Mean attention mass from the answer position to the context, per example (None: no context/too long).

    Args:
        fmt: the prompt format used for scoring (so the positions match).
        indicator: text appended to the question, as in scoring.
        max_len: skip prompts longer than this (default: the model window).
    """
    import torch

    from ctxrely.models.load import model_max_length

    pf = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
    max_len = max_len or model_max_length(_base_model(model), tokenizer) or 10**9
    ids: list[list[int]] = []
    masks: list[list[bool]] = []
    keep: list[int] = []
    for i, ex in enumerate(examples):
        if not ex.context.strip():
            continue
        text = render(ex, pf, tokenizer, suffix=indicator)
        t_ids, t_mask = context_token_mask(tokenizer, text, ex.context, not pf.chat)
        if not any(t_mask) or len(t_ids) > max_len:
            continue
        ids.append(t_ids)
        masks.append(t_mask)
        keep.append(i)
    out: list[float | None] = [None] * len(examples)
    if not ids:
        return out
    device = next(model.parameters()).device
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with eager_attention(model), torch.inference_mode():
            for idx in length_sorted_batches(ids, batch_size):
                batch_ids, attn_mask, pos = left_pad([ids[j] for j in idx], pad_id_of(tokenizer), device)
                res = model(input_ids=batch_ids, attention_mask=attn_mask, position_ids=pos,
                            output_attentions=True, use_cache=False, logits_to_keep=1)
                if not res.attentions or res.attentions[0] is None:
                    raise RuntimeError(f"{type(_base_model(model)).__name__} returned no attention weights")
                # (layers, batch, heads, key positions): attention of the last position
                last = torch.stack([a[:, :, -1, :].float() for a in res.attentions])
                width = batch_ids.shape[1]
                ctx = torch.zeros((len(idx), width), dtype=torch.float32, device=device)
                for r, j in enumerate(idx):
                    m = masks[j]
                    ctx[r, width - len(m):] = torch.tensor(m, dtype=torch.float32, device=device)
                mass = (last * ctx[None, :, None, :]).sum(-1).mean(dim=(0, 2))  # -> (batch,)
                for r, j in enumerate(idx):
                    out[keep[j]] = float(mass[r])
    finally:
        if was_training:
            model.train()
    return out
