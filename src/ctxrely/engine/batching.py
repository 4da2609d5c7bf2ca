"""Length-sorted batches (by count or by token budget) and left padding, shared by generation,
scoring and diagnostics.

Example:
    >>> list(length_sorted_batches([[1], [1, 2, 3], [1, 2]], batch_size=2))
    [[1, 2], [0]]
    >>> token_budget_batches([3, 1, 2, 5], batch_tokens=8)
    [[3], [0, 2], [1]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

DEFAULT_BATCH_TOKENS = 8192  # padded tokens per batch when neither a batch size nor a budget is given


def length_sorted_batches(seqs: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``seqs`` in batches, longest first (padding waste is small; OOM shows early)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def token_budget_batches(lengths: Sequence[int], batch_tokens: int, max_batch: int | None = None,
                         extra: int = 0) -> list[list[int]]:
    """Indices grouped longest first so that ``rows x (longest + extra) <= batch_tokens``.

    ``extra`` counts tokens every row will grow by (new tokens to generate); a row that alone exceeds
    the budget gets a batch of its own; ``max_batch`` caps the rows per batch.
    """
    if batch_tokens < 1:
        raise ValueError("batch_tokens must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        cur = out[-1] if out else None
        width = (lengths[cur[0]] + extra) if cur else 0  # the first row of a batch is its longest
        if cur and (len(cur) + 1) * width <= batch_tokens and (max_batch is None or len(cur) < max_batch):
            cur.append(i)
        else:
            out.append([i])
    return out


def plan_batches(lengths: Sequence[int], batch_size: int | None = None, batch_tokens: int | None = None,
                 extra: int = 0) -> list[list[int]]:
    """The engine's batching rule: a fixed count (``batch_size`` alone), a token budget
    (``batch_tokens``, capped at ``batch_size`` rows when both are given), or the default budget."""
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if batch_tokens is None and batch_size is not None:
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return token_budget_batches(lengths, batch_tokens or DEFAULT_BATCH_TOKENS, batch_size, extra)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any = "cpu") -> tuple[Any, Any, Any]:
    """Left-pad to one length: ``(input_ids, attention_mask, position_ids)`` tensors."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def pad_id_of(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        v = getattr(tokenizer, attr, None)
        if v is not None:
            return int(v)
    return 0
