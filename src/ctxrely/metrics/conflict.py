"""Knowledge-conflict metrics: per-example flags and suite-level aggregates.

Generation: does the output contain the counterfactual (context) answer, the parametric (memory)
answer, both or neither. Logits: log p(cf) vs log p(param) as continuations of the prompt,
M_C = p_cf / (p_cf + p_param) (Theorem 1 of Goyal et al. 2024) and the rate of p_cf > p_param.
Metrics that need a parametric answer are ``None`` (absent) when the data has none, never 0.

Example:
    >>> gen_flags("Herat.", ["Herat"], ["Kabul"])
    {'cf_hit': True, 'param_hit': False, 'bucket': 'cf_only'}
    >>> round(m_c(-1.0, -2.0), 3)
    0.731
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ctxrely.metrics.matching import MatchMode, contains
from ctxrely.metrics.rc import RC_METRICS
from ctxrely.metrics.stats import mean_ci

BUCKETS = ("cf_only", "param_only", "both", "neither")


def gen_flags(output: str, cf_targets: Sequence[str], param_targets: Sequence[str],
              mode: MatchMode = "squad") -> dict[str, Any]:
    """Containment flags and the 4-way bucket for one generated answer."""
    cf = contains(output, cf_targets, mode)
    if not param_targets:
        return {"cf_hit": cf, "param_hit": None, "bucket": None}
    pa = contains(output, param_targets, mode)
    bucket = "both" if cf and pa else "cf_only" if cf else "param_only" if pa else "neither"
    return {"cf_hit": cf, "param_hit": pa, "bucket": bucket}


def m_c(logp_cf: float, logp_param: float) -> float:
    """p_cf / (p_cf + p_param), computed stably from log-probabilities."""
    return 1.0 / (1.0 + math.exp(logp_param - logp_cf)) if logp_param - logp_cf < 700 else 0.0


def logit_flags(logp_cf: float, logp_param: float | None) -> dict[str, Any]:
    """Per-example logit-mode values (None where there is no parametric answer)."""
    if logp_param is None:
        return {"m_c": None, "cf_wins": None, "logp_margin": None}
    return {"m_c": m_c(logp_cf, logp_param), "cf_wins": logp_cf > logp_param,
            "logp_margin": logp_cf - logp_param}


def _rate(rows: list[dict[str, Any]], key: str, n_boot: int) -> dict[str, Any]:
    vals = [None if r.get(key) is None else float(r[key]) for r in rows]
    return mean_ci(vals, n_boot=n_boot)


def aggregate(rows: list[dict[str, Any]], n_boot: int = 1000) -> dict[str, Any]:
    """Suite-level metrics from per-example rows (as written to ``examples.jsonl``)."""
    out: dict[str, Any] = {"n": len(rows)}
    if rows and "cf_hit" in rows[0]:
        out["cf_acc"] = _rate(rows, "cf_hit", n_boot)
        has_param = any(r.get("param_hit") is not None for r in rows)
        out["param_acc"] = _rate(rows, "param_hit", n_boot) if has_param else None
        if has_param:
            counts = {b: sum(1 for r in rows if r.get("bucket") == b) for b in BUCKETS}
            out["buckets"] = {"counts": counts, "rates": {b: c / len(rows) for b, c in counts.items()}}
        else:
            out["buckets"] = None
    if any("f1" in r for r in rows):  # gold-answer-only rows (reading comprehension)
        for key in RC_METRICS:
            out[key] = _rate([r for r in rows if key in r], key, n_boot)
    if rows and "logp_cf" in rows[0]:
        has_param = any(r.get("m_c") is not None for r in rows)
        out["logit_cf_rate"] = _rate(rows, "cf_wins", n_boot) if has_param else None
        out["m_c"] = _rate(rows, "m_c", n_boot) if has_param else None
        out["logp_margin"] = _rate(rows, "logp_margin", n_boot) if has_param else None
        out["logp_cf"] = _rate(rows, "logp_cf", n_boot)
    return out


def flat_metrics(agg: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """Flatten an aggregate into ``{"<prefix>/<metric>": mean}`` scalars for loggers."""
    flat: dict[str, float | None] = {}
    for key in ("cf_acc", "param_acc", "logit_cf_rate", "m_c", "logp_margin", *RC_METRICS):
        if key in agg:
            flat[f"{prefix}/{key}"] = None if agg[key] is None else agg[key]["mean"]
    if agg.get("buckets"):
        for b, r in agg["buckets"]["rates"].items():
            flat[f"{prefix}/{b}"] = r
    return flat
