"""Per-run Wilson intervals of the IC-Train probe scores, counted from the logged outputs.

The strategy table (:mod:`ctxrely.icl.report`) gives the spread over seeds; this gives each run's
item-level uncertainty: with 32 probe items a score of 0.80 could be anything in [0.63, 0.91].
Counts come from ``trajectory_examples.jsonl`` (one row per probe item and evaluated step), so the
interval is over exactly the items scored, not a guess from the rounded score.

Example:
    >>> print(interval_markdown("runs/icl-lab").splitlines()[0])  # doctest: +SKIP
    | run | ICL-score [95% CI] | IWL-score [95% CI] | Copy-score [95% CI] | IWL-score by step |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctxrely.engine.resume import finished_runs
from ctxrely.errors import DataError
from ctxrely.metrics.stats import wilson_ci
from ctxrely.track.trajectory import EXAMPLES

# score name -> (suite, per-item flag): as ctxrely.icl.probes.ICL_METRICS define the three probes
COUNTED = {"icl_score": ("icl_probe", "cf_hit"), "iwl_score": ("iwl_probe", "param_hit"),
           "copy_score": ("iwl_probe", "cf_hit")}
STRATEGY_ORDER = ("zero", "random", "similar", "contrastive")


def logged_evals(run_dir: str | Path) -> list[tuple[int, list[dict[str, Any]]]]:
    """``(step, per-item rows)`` of every evaluation a run logged in ``trajectory_examples.jsonl``
    (empty if absent); a damaged line raises :class:`~ctxrely.errors.DataError` naming file and line."""
    path = Path(run_dir) / EXAMPLES
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines() if path.exists() else [], 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            rows, step = rec["rows"], int(rec["step"])
            if not isinstance(rows, list):
                raise TypeError("'rows' is not a list")
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n}: not a logged evaluation (needs 'step' and 'rows'): {e}") from None
        out.append((step, rows))
    return out


def item_counts(run_dir: str | Path) -> dict[int, dict[str, tuple[int, int]]]:
    """``{step: {score: (hits, items)}}`` from a run's ``trajectory_examples.jsonl`` (empty if absent)."""
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for step, rows in logged_evals(run_dir):
        counts = {}
        for name, (suite, flag) in COUNTED.items():
            flags = [r.get(flag) for r in rows if r.get("suite") == suite and r.get(flag) is not None]
            if flags:
                counts[name] = (sum(bool(f) for f in flags), len(flags))
        out[step] = counts
    return out


def _cell(c: tuple[int, int] | None) -> str:
    if not c:
        return "-"
    lo, hi = wilson_ci(*c)
    return f"{c[0] / c[1]:.2f} [{lo:.2f}, {hi:.2f}]"


def interval_markdown(out: str | Path) -> str:
    """One row per finished run: the last step's ICL, IWL and Copy scores with 95% Wilson intervals,
    then the IWL-score at every evaluated step."""
    rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    runs = [d for _, _, d in sorted(finished_runs(out), key=lambda t: (rank.get(t[0], len(rank)), t[0], t[1]))]
    n_items = 0
    lines = []
    for d in runs:
        counts = item_counts(d)
        if not counts:
            continue
        last = counts[max(counts)]
        n_items = max([n_items, *(n for _, n in last.values())])
        steps = ", ".join(f"{s}: {c['iwl_score'][0] / c['iwl_score'][1]:.2f}"
                          for s, c in sorted(counts.items()) if "iwl_score" in c)
        lines.append(f"| {d.name} | " + " | ".join(_cell(last.get(k)) for k in COUNTED) + f" | {steps or '-'} |")
    head = (f"| run | ICL-score [95% CI, {n_items} items] | IWL-score [95% CI] | Copy-score [95% CI] | "
            "IWL-score by step |")
    return "\n".join([head, "|---|---|---|---|---|", *lines]) + "\n"


def write_intervals(out: str | Path) -> dict[str, Any]:
    """Write ``icl_intervals.md`` into ``out``; returns ``{"path", "runs"}``."""
    out = Path(out)
    md = interval_markdown(out)
    path = out / "icl_intervals.md"
    path.write_text(md, encoding="utf-8")
    return {"path": str(path), "runs": len(md.splitlines()) - 2}
