"""Length-sorted batches and left padding shared by generation, scoring and diagnostics.

Example:
    >>> list(length_sorted_batches([[1], [1, 2, 3], [1, 2]], batch_size=2))
    [[1, 2], [0]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def length_sorted_batches(seqs: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``seqs`` in batches, longest first (padding waste is small; OOM shows early)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


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
