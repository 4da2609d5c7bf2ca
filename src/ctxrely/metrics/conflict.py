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

from ctxrely.metrics import table
from ctxrely.metrics.matching import MatchMode, contains
from ctxrely.metrics.stats import mean_ci

BUCKETS = tuple(m.name for m in table.metrics(family="conflict", mode="generate") if m.aggregation == "share")


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


# the per-example field whose presence says a pass ran, and the one that is None without a param answer
_PASSES = {"generate": ("cf_hit", "param_hit"), "logits": ("logp_cf", "m_c")}


def aggregate(rows: list[dict[str, Any]], n_boot: int = 1000) -> dict[str, Any]:
    """Suite-level metrics from per-example rows (as written to ``examples.jsonl``), as the metric
    table (:mod:`ctxrely.metrics.table`) declares them: ``{name: mean_ci}`` for ``mean`` metrics,
    ``{"buckets": {"counts", "rates"}}`` for the ``share`` ones; None where a parametric answer is needed
    and the data has none."""
    out: dict[str, Any] = {"n": len(rows)}
    for mode, (ran, param_key) in _PASSES.items():
        if not rows or ran not in rows[0]:
            continue
        has_param = any(r.get(param_key) is not None for r in rows)
        shares = []
        for m in table.metrics(family="conflict", mode=mode):
            if m.aggregation == "share":
                shares.append(m.name)
            else:
                out[m.name] = _rate(rows, m.row_key or m.name, n_boot) if has_param or not m.needs_param else None
        if shares:
            counts = {b: sum(1 for r in rows if r.get("bucket") == b) for b in shares}
            out["buckets"] = {"counts": counts, "rates": {b: c / len(rows) for b, c in counts.items()}} \
                if has_param else None
    if any("f1" in r for r in rows):  # gold-answer-only rows (reading comprehension)
        for m in table.metrics(family="rc"):
            key = m.row_key or m.name
            out[m.name] = _rate([r for r in rows if key in r], key, n_boot)
    return out


def flat_metrics(agg: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """Flatten an aggregate into ``{"<prefix>/<metric>": mean}`` scalars for loggers (the table's
    ``flat`` conflict metrics present in ``agg``)."""
    flat: dict[str, float | None] = {}
    buckets = agg.get("buckets")
    for m in [*table.metrics(family="conflict", flat=True), *table.metrics(family="rc", flat=True)]:
        if m.aggregation == "share":
            if buckets:
                flat[f"{prefix}/{m.name}"] = buckets["rates"][m.name]
        elif m.name in agg:
            flat[f"{prefix}/{m.name}"] = None if agg[m.name] is None else agg[m.name]["mean"]
    return flat
