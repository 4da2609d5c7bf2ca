"""The metric catalogue shown by ``ctxrely ls``: the metric table (:mod:`ctxrely.metrics.table`),
which registers every metric into ``ctxrely.registry.METRICS``. Kept so ``load_builtins`` and old
imports keep working."""

from __future__ import annotations

from ctxrely.metrics.table import Metric, get_metric, metrics, register_metric

__all__ = ["Metric", "get_metric", "metrics", "register_metric"]
