"""Inversion detector: a running peak of a context-reliance metric and a confirmed drop from it.

Context-parametric inversion (Goyal et al. 2024) shows as a rise of counterfactual accuracy early
in fine-tuning, then a fall while the training loss keeps improving. The detector watches one
scalar per evaluation, keeps its running peak, and raises one ``inversion`` event when the drop
from the peak exceeds ``drop_threshold`` points for ``patience`` consecutive evaluations.
It is pure (no torch); the callback replays it over a saved trajectory on resume.

Example:
    >>> det = InversionDetector(drop_threshold=10, patience=2)
    >>> [det.update(s, v) is not None for s, v in [(0, .5), (5, .8), (10, .65), (15, .6)]]
    [False, False, False, True]
    >>> det.event.peak_step, det.event.step, round(det.event.drop, 1)
    (5, 15, 20.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


def points_scale(metric: str) -> float:
    """100 for rates in [0, 1] (drops are in percentage points), 1 for anything else; the unit comes
    from the metric table (:mod:`ctxrely.metrics.table`).

    Example:
        >>> points_scale("cf_capitals/logit_cf_rate"), points_scale("all/logp_margin"), points_scale("id/x/acc")
        (100.0, 1.0, 100.0)
    """
    from ctxrely.metrics.table import is_rate

    return 100.0 if is_rate(metric) else 1.0


@dataclass(frozen=True)
class InversionEvent:
    """A confirmed inversion.

    Attributes:
        step: the evaluation step at which the drop was confirmed (the ``patience``-th in a row).
        first_step: the first evaluation of the run of drops.
        peak_step / peak: where the running peak was, and its value.
        value: the metric at ``step``.
        drop: ``peak - value`` in points.
    """

    step: int
    first_step: int
    peak_step: int
    peak: float
    value: float
    drop: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InversionDetector:
    """Running peak, drop from the peak (points) and a once-only inversion event.

    Args:
        drop_threshold: the drop (points; percentage points for rates) that counts as a fall.
        patience: how many consecutive evaluations must show the fall (k >= 1).
        scale: multiplier from metric units to points (100 for rates in [0, 1]).

    Missing values (``None``/NaN) are skipped: they neither extend nor break a run of drops.
    """

    drop_threshold: float = 10.0
    patience: int = 2
    scale: float = 100.0
    peak: float | None = None
    peak_step: int | None = None
    last_drop: float = 0.0
    streak: int = 0
    streak_start: int | None = None
    event: InversionEvent | None = None
    history: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (isinstance(self.drop_threshold, (int, float)) and self.drop_threshold > 0):
            raise ValueError(f"drop_threshold must be a positive number of points, got {self.drop_threshold!r}")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ValueError(f"patience must be an integer >= 1, got {self.patience!r}")

    def update(self, step: int, value: float | None) -> InversionEvent | None:
        """Feed one evaluation; returns the event the first time an inversion is confirmed."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        value = float(value)
        self.history.append((step, value))
        if self.peak is None or value > self.peak:
            self.peak, self.peak_step = value, step
        self.last_drop = (self.peak - value) * self.scale
        if self.last_drop > self.drop_threshold:
            self.streak += 1
            if self.streak == 1:
                self.streak_start = step
        else:
            self.streak, self.streak_start = 0, None
        if self.event is None and self.streak >= self.patience:
            assert self.peak_step is not None and self.streak_start is not None
            self.event = InversionEvent(step=step, first_step=self.streak_start, peak_step=self.peak_step,
                                        peak=self.peak, value=value, drop=self.last_drop)
            return self.event
        return None

    @property
    def inverted(self) -> bool:
        return self.event is not None

    def state(self) -> dict[str, Any]:
        """Scalars for logging: running peak, its step, current drop (points), inversion flag."""
        return {"peak": self.peak, "peak_step": self.peak_step, "drop": self.last_drop,
                "inverted": float(self.inverted)}


def detect(values: Iterable[tuple[int, float | None]], drop_threshold: float = 10.0, patience: int = 2,
           scale: float = 100.0) -> InversionDetector:
    """Replay ``(step, value)`` pairs through a fresh detector and return it.

    Example:
        >>> detect([(0, .9), (5, .7), (10, .7)]).event.step
        10
    """
    det = InversionDetector(drop_threshold=drop_threshold, patience=patience, scale=scale)
    for step, value in values:
        det.update(step, value)
    return det
