"""Small statistics helpers: means with bootstrap confidence intervals, Wilson intervals for proportions.

Example:
    >>> m = mean_ci([1, 0, 1, 1], n_boot=200, seed=0)
    >>> m["mean"], m["n"]
    (0.75, 4)
    >>> [round(x, 3) for x in wilson_ci(8, 10)]
    [0.49, 0.943]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def mean_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Mean with a percentile bootstrap CI: ``{"mean", "ci_low", "ci_high", "n"}`` (None when empty; the
    bounds are None for ``n_boot <= 0``: no interval, rather than one of width 0)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    n = int(arr.size)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(arr.mean())
    if n_boot <= 0:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": n}
    if n == 1:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": n}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = arr[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return {"mean": mean, "ci_low": float(lo), "ci_high": float(hi), "n": n}


def wilson_ci(successes: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion ``successes / n`` (95% for ``z=1.96``); ``(None, None)`` for
    ``n == 0``. Unlike the bootstrap it is not degenerate at 0 or n successes."""
    if n <= 0:
        return None, None
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_ci: successes={successes} is not within 0..n={n}")
    p = successes / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)
