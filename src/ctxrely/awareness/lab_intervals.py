"""The awareness lab's per-run views: item-level 95% intervals and attention by depth.

The seed table (:mod:`ctxrely.awareness.lab_table`) says how much runs differ between seeds; these
say how much one run's score could move with other items: NIH recall with a bootstrap interval over
its cells, SQuAD ``contains`` with a Wilson interval and F1 with a bootstrap over its questions. The
per-layer view (Wang et al. Fig. 2) splits the answer tokens' attention into thirds of the layers.

Example:
    >>> print(interval_markdown("runs/awareness-lab").splitlines()[0])  # doctest: +SKIP
    | run | seed | measured in | NIH recall [95% CI] | SQuAD contains [95% CI] | SQuAD F1 [95% CI] |
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ctxrely.engine.resume import finished_runs
from ctxrely.metrics.stats import mean_ci, wilson_ci

RUN_ORDER = ("base", "template", "plain", "template_indicator", "template_dep_only")


def measured_folders(out: str | Path) -> Iterator[tuple[str, str, Path]]:
    """``(run, seed, eval folder)`` for the base model (seed ``-``) and every finished run, in table order."""
    yield "base", "-", Path(out) / "base"
    rank = {r: i for i, r in enumerate(RUN_ORDER)}
    for run, seed, d in sorted(finished_runs(out), key=lambda t: (rank.get(t[0], len(rank)), t[0], t[1])):
        yield run, str(seed), d / "eval"


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _ci(mean: float | None, lo: float | None, hi: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")


def interval_rows(out: str | Path) -> list[dict[str, Any]]:
    """One row per measured (run, seed, format) with the item-level intervals."""
    rows = []
    for run, seed, folder in measured_folders(out):
        for p in sorted(folder.glob("nih-*.json")):
            tag = p.stem[len("nih-"):]
            nih, sq = _load(p), _load(folder / f"squad-{tag}.json")
            row: dict[str, Any] = {"run": run, "seed": seed, "format": tag,
                                   "nih_recall": mean_ci([c["recall"] for c in nih["cells"]]),
                                   "nih_cells": len(nih["cells"])}
            if sq and sq.get("per_item"):
                items = sq["per_item"]
                k = sum(1 for r in items if r["contains"])
                lo, hi = wilson_ci(k, len(items))
                row["squad_contains"] = {"mean": k / len(items), "ci_low": lo, "ci_high": hi, "n": len(items)}
                row["squad_f1"] = mean_ci([r["f1"] for r in items])
            rows.append(row)
    return rows


def interval_markdown(out: str | Path, labels: dict[str, str] | None = None,
                      formats: dict[str, str] | None = None) -> str:
    """The interval rows as a Markdown table (run, seed, format, then the three measures)."""
    labels, formats = labels or {}, formats or {}
    rows = interval_rows(out)
    n_cells = max((r["nih_cells"] for r in rows), default=0)
    n_q = max((r["squad_contains"]["n"] for r in rows if "squad_contains" in r), default=0)
    lines = [f"| run | seed | measured in | NIH recall [95% CI, {n_cells} cells] | SQuAD contains [95% CI, {n_q} q.] | "
             "SQuAD F1 [95% CI] |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["nih_recall"], r.get("squad_contains"), r.get("squad_f1")]
        lines.append(f"| {labels.get(r['run'], r['run'])} | {r['seed']} | {formats.get(r['format'], r['format'])} | "
                     + " | ".join("-" if c is None else _ci(c["mean"], c["ci_low"], c["ci_high"]) for c in cells)
                     + " |")
    return "\n".join(lines) + "\n"


def layer_thirds(per_layer: list[dict[str, float]], role: str) -> list[float | None]:
    """Mean share of ``role`` over the first, middle and last third of the layers.

    Example:
        >>> layer_thirds([{"user": 0.1}, {"user": 0.2}, {"user": 0.3}], "user")
        [0.1, 0.2, 0.3]
    """
    n = len(per_layer)
    parts = [per_layer[i * n // 3:(i + 1) * n // 3] for i in range(3)]
    return [sum(x.get(role, 0.0) for x in p) / len(p) if p else None for p in parts]


def layer_markdown(out: str | Path, labels: dict[str, str] | None = None,
                   formats: dict[str, str] | None = None) -> str:
    """User and assistant shares of the answer's attention by thirds of the layers, per (run, seed, format)."""
    labels, formats = labels or {}, formats or {}
    rows = []
    n_layers = 0
    for run, seed, folder in measured_folders(out):
        for p in sorted(folder.glob("attention-*.json")):
            pl = (_load(p) or {}).get("per_layer") or []
            n_layers = max(n_layers, len(pl))
            vals = layer_thirds(pl, "user") + layer_thirds(pl, "assistant")
            rows.append(f"| {labels.get(run, run)} | {seed} | {formats.get(p.stem[10:], p.stem[10:])} | "
                        + " | ".join("-" if v is None else f"{v:.2f}" for v in vals) + " |")
    t = [(i * n_layers // 3 + 1, (i + 1) * n_layers // 3) for i in range(3)]
    names = [f"layers {a}-{b}" for a, b in t]
    head = ("| run | seed | measured in | " + " | ".join(f"user, {n}" for n in names) + " | "
            + " | ".join(f"assistant, {n}" for n in names) + " |")
    return "\n".join([head, "|---" * 9 + "|", *rows]) + "\n"
