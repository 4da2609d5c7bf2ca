"""Adoption metrics of graded conflicts (ClashEval, Wu et al. 2024): when does a model take the context's value?

Per row (one graded passage, scored with its prior, see :mod:`ctxrely.engine.prior`):

- ``adopt``: the answer contains the context's value and not the true one (on the control passage,
  whose value is the true one: the answer contains it);
- ``prior_kept``: the answer contains the true (memorised) value and not the context's;
- ``neither``: anything else; ``logit_adopt``: log p(context value) > log p(true value) given the passage.

Aggregates (means with bootstrap CIs): overall on the perturbed rows, ``by_degree`` (one point per
ladder step, the control first), ``by_prior`` (bins of the closed-book probability of the true answer,
:data:`PRIOR_EDGES`), ``by_prior_answer`` (bins of the mean token probability of the model's own
closed-book answer, ClashEval's prior confidence, :data:`ANSWER_EDGES`), least-squares ``trend``s with bootstrap CIs (adoption per ladder step; per
decade of prior probability), and ClashEval's table: ``accuracy``, ``context_bias`` (adopts a wrong
context when the prior was right), ``prior_bias`` (misses a right context when the prior was wrong),
plain and under its two fixes: ``tpc`` (token-probability correction: keep the with-context answer
when its mean token probability exceeds that of the closed-book answer, else give the closed-book
answer) and ``calibrated`` (the two probabilities as percentiles of a held-out half, compared with a
threshold fitted on that half; reported on the other half, beside plain and ``tpc`` on the same half).

Example:
    >>> rows = [{"degree_rank": 1, "degree_label": "1y", "degree": 1, "perturb": "year", "cf_hit": True,
    ...          "param_hit": False, "prior_p": 0.3, "prior_correct": True}] * 4
    >>> s = adoption_summary(rows, n_boot=0)
    >>> s["overall"]["adopt"]["mean"], s["by_degree"][0]["degree_label"], s["clasheval"]["context_bias"]["mean"]
    (1.0, '1y', 1.0)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ctxrely.metrics.stats import mean_ci

PRIOR_EDGES: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1, 0.5, 1.0)
ANSWER_EDGES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
OUTCOMES = ("adopt", "prior_kept", "neither")
CORRECTIONS = ("tpc", "calibrated")


def _rank(row: dict[str, Any]) -> int:
    """The ladder step; rows of ungraded suites (``prior=True`` on e.g. cf_capitals) count as perturbed (1)."""
    return int(row.get("degree_rank", 1))


def outcome(row: dict[str, Any]) -> str | None:
    """``adopt`` / ``prior_kept`` / ``neither`` for a generated answer; None without one."""
    if row.get("cf_hit") is None:
        return None
    if _rank(row) == 0:
        return "adopt" if row["cf_hit"] else "neither"
    if row["cf_hit"] and not row.get("param_hit"):
        return "adopt"
    if row.get("param_hit") and not row["cf_hit"]:
        return "prior_kept"
    return "neither"


def correct(row: dict[str, Any]) -> bool | None:
    """Whether the with-context answer is right (the control: the context's value; else the true one)."""
    o = outcome(row)
    if o is None:
        return None
    return o == "adopt" if _rank(row) == 0 else o == "prior_kept"


def rates(rows: Sequence[dict[str, Any]], n_boot: int = 1000) -> dict[str, Any]:
    """``{n, adopt, prior_kept, neither, logit_adopt}`` (each a mean with CI; absent passes give n 0)."""
    outs = [outcome(r) for r in rows]
    out: dict[str, Any] = {"n": len(rows)}
    for name in OUTCOMES:
        out[name] = mean_ci([None if o is None else float(o == name) for o in outs], n_boot=n_boot)
    out["logit_adopt"] = mean_ci([None if r.get("cf_wins") is None else float(r["cf_wins"]) for r in rows],
                                 n_boot=n_boot)
    return out


def by_degree(rows: Sequence[dict[str, Any]], n_boot: int = 1000) -> list[dict[str, Any]]:
    """One point per (perturbation kind, ladder step), the controls (rank 0) first within a kind."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r.get("perturb", "conflict")), _rank(r)), []).append(r)
    return [{"perturb": k, "degree_rank": rank, "degree": g[0].get("degree"), "degree_label": g[0].get("degree_label", "conflict"),
             **rates(g, n_boot)} for (k, rank), g in sorted(groups.items())]


def by_prior(rows: Sequence[dict[str, Any]], edges: Sequence[float] = PRIOR_EDGES, n_boot: int = 1000,
             key: str = "prior_p") -> list[dict[str, Any]]:
    """Perturbed rows binned by ``key`` (bins ``[lo, hi)``, the last closed); empty bins have n 0."""
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = i == len(edges) - 2
        g = [r for r in rows if r.get(key) is not None and lo <= r[key] and (r[key] < hi or last)]
        ps = [r[key] for r in g]
        out.append({"bin": i, "prior_lo": lo, "prior_hi": hi, "prior_mean": float(np.mean(ps)) if ps else None,
                    **rates(g, n_boot)})
    return out


def trend(xs: Sequence[float], ys: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Least-squares slope of ``ys`` on ``xs`` with a percentile bootstrap CI (rows resampled).

    Example:
        >>> trend([0, 1, 2, 3], [1, 1, 0, 0], n_boot=0)["slope"]
        -0.4
    """
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.size < 3 or np.ptp(x) == 0:
        return {"slope": None, "ci_low": None, "ci_high": None, "n": int(x.size)}

    def slope(xx: np.ndarray, yy: np.ndarray) -> float:
        xc = xx - xx.mean()
        den = float((xc * xc).sum())
        return float((xc * (yy - yy.mean())).sum() / den) if den > 0 else float("nan")

    s = slope(x, y)
    if n_boot <= 0:
        return {"slope": round(s, 6), "ci_low": None, "ci_high": None, "n": int(x.size)}
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    boots = np.array([slope(x[i], y[i]) for i in idx])
    lo, hi = np.nanquantile(boots, [0.025, 0.975])
    return {"slope": s, "ci_low": float(lo), "ci_high": float(hi), "n": int(x.size)}


def _ctx_p(row: dict[str, Any]) -> float | None:
    """The with-context answer's mean token probability (else the context value's, teacher-forced)."""
    if row.get("output_p") is not None:
        return float(row["output_p"])
    if row.get("logp_cf") is None or not row.get("n_tok_cf"):
        return None
    return math.exp(row["logp_cf"] / row["n_tok_cf"])


def _table(rows: Sequence[dict[str, Any]], choose: Sequence[bool | None], n_boot: int) -> dict[str, Any]:
    """Accuracy, context bias and prior bias when row i answers from the context iff ``choose[i]``."""
    acc, cbias, pbias = [], [], []
    for r, ctx in zip(rows, choose, strict=True):
        if ctx is None or outcome(r) is None:
            continue
        right = correct(r) if ctx else bool(r.get("prior_correct"))
        acc.append(float(right))
        control = _rank(r) == 0
        if not control and r.get("prior_correct"):
            cbias.append(float(ctx and outcome(r) == "adopt"))
        if control and not r.get("prior_correct"):
            pbias.append(float(not right))
    return {"accuracy": mean_ci(acc, n_boot=n_boot), "context_bias": mean_ci(cbias, n_boot=n_boot),
            "prior_bias": mean_ci(pbias, n_boot=n_boot)}


def _held_out(row: dict[str, Any]) -> bool:
    """The calibration half: a fixed hash of the question (all ladder steps of a question together)."""
    key = f"{row.get('suite')}|{row.get('source_id', row.get('id'))}"
    return hashlib.sha256(key.encode()).digest()[0] % 2 == 0


def _percentile(ref: np.ndarray, v: float) -> float:
    return float(np.searchsorted(np.sort(ref), v, side="right")) / max(1, ref.size)


def clasheval(rows: Sequence[dict[str, Any]], corrections: Sequence[str] = CORRECTIONS, n_boot: int = 1000
              ) -> dict[str, Any]:
    """ClashEval's table (see the module docstring); corrections need both modes and the prior pass."""
    out: dict[str, Any] = {"plain": _table(rows, [True] * len(rows), n_boot)}
    out.update(out["plain"])
    pc = [(_ctx_p(r), r.get("prior_output_p")) for r in rows]
    usable = [i for i, (c, p) in enumerate(pc) if c is not None and p is not None and outcome(rows[i]) is not None]
    if not corrections:
        return out
    if not usable:
        out["corrections"] = "need generated answers (--mode generate or both) and the prior pass"
        return out
    if "tpc" in corrections:
        out["tpc"] = _table(rows, [None if c is None or p is None else c > p for c, p in pc], n_boot)
    if "calibrated" in corrections:
        cal = [i for i in usable if _held_out(rows[i])]
        test = [i for i in usable if not _held_out(rows[i])]
        if len(cal) < 4 or not test:
            out["calibrated"] = "too few items for a held-out split"
            return out
        ref_c = np.array([pc[i][0] for i in cal])
        ref_p = np.array([pc[i][1] for i in cal])

        def diff(i: int) -> float:
            return _percentile(ref_c, pc[i][0]) - _percentile(ref_p, pc[i][1])  # type: ignore[arg-type]

        cands = sorted({diff(i) for i in cal} | {-2.0})
        cal_rows = [rows[i] for i in cal]
        best = max(cands, key=lambda t: (_table(cal_rows, [diff(i) > t for i in cal], 0)["accuracy"]["mean"] or 0,
                                         -abs(t)))
        test_rows = [rows[i] for i in test]
        out["calibrated"] = {
            "threshold": best, "n_calibration": len(cal), "n_test": len(test),
            "plain": _table(test_rows, [True] * len(test), n_boot),
            "tpc": _table(test_rows, [pc[i][0] > pc[i][1] for i in test], n_boot),  # type: ignore[operator]
            "calibrated": _table(test_rows, [diff(i) > best for i in test], n_boot),
        }
    return out


def adoption_summary(rows: Sequence[dict[str, Any]], n_boot: int = 1000, edges: Sequence[float] = PRIOR_EDGES,
                     corrections: Sequence[str] = CORRECTIONS) -> dict[str, Any]:
    """Everything above for one suite's rows (or several suites' rows pooled)."""
    pert = [r for r in rows if _rank(r) != 0]
    gen = [r for r in pert if outcome(r) is not None]
    logit = [r for r in pert if r.get("cf_wins") is not None]
    with_prior = [r for r in pert if r.get("prior_p") is not None and r["prior_p"] > 0]
    degree_trend = trend([_rank(r) for r in gen], [float(outcome(r) == "adopt") for r in gen], n_boot)
    prior_trend = trend([math.log10(r["prior_p"]) for r in with_prior if outcome(r) is not None],
                        [float(outcome(r) == "adopt") for r in with_prior if outcome(r) is not None], n_boot)
    return {
        "n": len(rows), "n_perturbed": len(pert), "n_control": len(rows) - len(pert),
        "prior_edges": list(edges),
        "overall": rates(pert, n_boot),
        "by_degree": by_degree(rows, n_boot),
        "by_prior": by_prior(pert, edges, n_boot),
        "by_prior_answer": by_prior(pert, ANSWER_EDGES, n_boot, key="prior_output_p"),
        "trend_degree": {"per": "ladder step", **degree_trend},
        "trend_prior": {"per": "decade of prior probability", **prior_trend},
        "trend_prior_answer": {"per": "unit of the closed-book answer's mean token probability", **trend(
            [r["prior_output_p"] for r in gen if r.get("prior_output_p") is not None],
            [float(outcome(r) == "adopt") for r in gen if r.get("prior_output_p") is not None], n_boot)},
        "trend_degree_logit": {"per": "ladder step", **trend([_rank(r) for r in logit],
                                                            [float(r["cf_wins"]) for r in logit], n_boot)},
        "clasheval": clasheval(rows, corrections, n_boot),
    }


def adoption_flat(summary: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """Scalars for trackers: ``<prefix>/adopt_rate``, ``.../adopt@degree=<label>``, ``.../adopt@prior<hi>``, ..."""
    flat: dict[str, float | None] = {}
    for name in (*OUTCOMES, "logit_adopt"):
        flat[f"{prefix}/{name}_rate"] = summary["overall"][name]["mean"]
    for p in summary["by_degree"]:
        flat[f"{prefix}/adopt@degree={p['perturb']}:{p['degree_label']}"] = p["adopt"]["mean"]
        flat[f"{prefix}/logit_adopt@degree={p['perturb']}:{p['degree_label']}"] = p["logit_adopt"]["mean"]
    for b in summary["by_prior"]:
        flat[f"{prefix}/adopt@prior<={b['prior_hi']:g}"] = b["adopt"]["mean"]
    for b in summary.get("by_prior_answer", []):
        flat[f"{prefix}/adopt@prior_answer<={b['prior_hi']:g}"] = b["adopt"]["mean"]
    for k in ("accuracy", "context_bias", "prior_bias"):
        flat[f"{prefix}/{k}"] = summary["clasheval"][k]["mean"]
        tpc = summary["clasheval"].get("tpc")
        if isinstance(tpc, dict):
            flat[f"{prefix}/tpc_{k}"] = tpc[k]["mean"]
    return flat
