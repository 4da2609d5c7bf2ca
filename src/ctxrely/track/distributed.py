"""Moved to :mod:`ctxrely.engine.distributed` (``engine/`` must not import ``track/``); this alias keeps
``from ctxrely.track.distributed import shard, world_info, ...`` working.

Example:
    >>> from ctxrely.track.distributed import shard
    >>> shard([1, 2, 3], rank=0, world=2)
    [(0, 1), (2, 3)]
"""

from __future__ import annotations

from ctxrely.engine.distributed import all_gather, gather_in_order, shard, world_info

__all__ = ["all_gather", "gather_in_order", "shard", "world_info"]
