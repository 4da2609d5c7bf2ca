"""Split a probe set across ranks and gather the results, for evaluation under ``accelerate``/``torchrun``.

Each rank scores ``items[rank::world]``; ``gather_in_order`` collects every rank's results on every
rank and puts them back in the original order, so the pooled metrics equal a single-process run.
Every rank takes part in each gather, even one whose evaluation failed (it sends its error
instead), so a failure never leaves the other ranks waiting.

Example:
    >>> rank, world = world_info()
    >>> (rank, world)
    (0, 1)
    >>> shard([10, 11, 12, 13, 14], rank=1, world=2)
    [(1, 11), (3, 13)]
    >>> gather_in_order([(1, "b"), (0, "a")])
    ['a', 'b']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:  # torch is optional for `import ctxrely`
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def world_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def shard(items: Sequence[T], rank: int | None = None, world: int | None = None) -> list[tuple[int, T]]:
    """This rank's ``(index, item)`` pairs: every ``world``-th item starting at ``rank``."""
    if rank is None or world is None:
        rank, world = world_info()
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of size {world}")
    return [(i, items[i]) for i in range(rank, len(items), world)]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable, produced in-process), on every rank; ``[obj]`` without a group."""
    dist = _dist()
    if dist is None:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_in_order(pairs: list[tuple[int, Any]]) -> list[Any]:
    """Gather ``(index, value)`` pairs from all ranks and return the values sorted by index."""
    merged = [p for part in all_gather(pairs) for p in part]
    merged.sort(key=lambda p: p[0])
    return [v for _, v in merged]

