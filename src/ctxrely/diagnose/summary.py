"""Summary of a scored training file: class shares, score statistics, histograms, extreme examples.

Writes ``DIR/summary.json`` and, when matplotlib is installed, ``DIR/hist_nll.png``,
``DIR/hist_gain.png`` and ``DIR/hist_attention.png`` (each with an ``.svg`` beside it).

Example:
    >>> s = summarize_scores(rows, examples, "runs/scores", cs_threshold=1.0)  # doctest: +SKIP
    >>> s["class_shares"]  # doctest: +SKIP
    {'C': 0.5, 'C+S': 0.25, 'S': 0.25}
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.data.sft import SFTExample
from ctxrely.diagnose.criticality import CLASSES

log = logging.getLogger(__name__)
STATS = ("nll_with", "nll_without", "gain", "attn_score")


def _stats(vals: list[float]) -> dict[str, float] | None:
    vals = sorted(v for v in vals if v is not None and not math.isnan(v))
    if not vals:
        return None

    def q(p: float) -> float:
        return vals[min(len(vals) - 1, int(p * (len(vals) - 1) + 0.5))]

    return {"n": len(vals), "mean": sum(vals) / len(vals), "min": vals[0], "p25": q(0.25), "median": q(0.5),
            "p75": q(0.75), "max": vals[-1]}


def _preview(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def extremes(rows: Sequence[dict[str, Any]], examples: Sequence[SFTExample], k: int = 10
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``k`` most and least context-critical examples with context (by ``gain``)."""
    by_id = {ex.id: ex for ex in examples}
    scored = [r for r in rows if r.get("has_context") and r.get("gain") is not None]
    scored.sort(key=lambda r: r["gain"], reverse=True)

    def card(r: dict[str, Any]) -> dict[str, Any]:
        ex = by_id.get(r["id"])
        return {"id": r["id"], "line": r.get("line"), "cls": r.get("cls"), "gain": r["gain"],
                "nll_with": r["nll_with"], "nll_without": r["nll_without"], "attn_score": r.get("attn_score"),
                "prompt": _preview(ex.prompt_with_context) if ex else None,
                "response": _preview(ex.response) if ex else None}

    return [card(r) for r in scored[:k]], [card(r) for r in scored[::-1][:k]]


def summarize_scores(rows: Sequence[dict[str, Any]], examples: Sequence[SFTExample], out_dir: str | Path, *,
              cs_threshold: float, attn_threshold: float = 0.6, top_k: int = 10,
              config: dict[str, Any] | None = None, errors: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``summary.json`` (+ PNG histograms) and return the summary dict."""
    from ctxrely.provenance import provenance

    out = Path(out_dir)
    counts = Counter(r.get("cls") for r in rows)
    n = len(rows)
    most, least = extremes(rows, examples, top_k)
    att = [r["attn_score"] for r in rows if r.get("attn_score") is not None]
    summary: dict[str, Any] = {
        "n": n,
        "n_skipped": counts.get("skipped", 0),
        "n_bad_rows": len(errors),
        "class_counts": {c: counts.get(c, 0) for c in CLASSES},
        "class_shares": {c: (counts.get(c, 0) / n if n else 0.0) for c in CLASSES},
        "cs_threshold": cs_threshold,
        "stats": {k: _stats([r.get(k) for r in rows]) for k in STATS},
        "attn_threshold": attn_threshold,
        "share_attn_above_threshold": (sum(a > attn_threshold for a in att) / len(att)) if att else None,
        "most_context_critical": most,
        "least_context_critical": least,
        "histograms": plot_histograms(rows, out, cs_threshold=cs_threshold, attn_threshold=attn_threshold),
        "config": config or {},
        "provenance": provenance(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def plot_histograms(rows: Sequence[dict[str, Any]], out: Path, *, cs_threshold: float,
                    attn_threshold: float) -> list[str]:
    """Histograms of the NLLs, the gain and the attention score (PNG and SVG, reproducible, drawn on
    the Agg canvas without touching pyplot's backend); returns the PNG file names."""
    from ctxrely.report.plots import new_figure, save_figure

    try:
        import matplotlib  # noqa: F401  (only to know it is installed)
    except ImportError:
        log.warning("matplotlib is not installed; no histograms (pip install 'ctxrely[plot]')")
        return []
    out.mkdir(parents=True, exist_ok=True)

    def vals(key: str, only_ctx: bool = False) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None and (r.get("has_context") or not only_ctx)]

    written = []
    panels = [
        ("hist_nll", "response NLL (nats/token), rows with context",
         [("with context", vals("nll_with", True)), ("without context", vals("nll_without", True))],
         cs_threshold, "C+S threshold"),
        ("hist_gain", "gain = NLL without - NLL with context", [("gain", vals("gain", True))], 0.0, "no gain"),
        ("hist_attention", "attention-based context dependency", [("score", vals("attn_score"))],
         attn_threshold, "indicator threshold"),
    ]
    for name, title, series, line, label in panels:
        if not any(v for _, v in series):
            continue
        fig = new_figure(6, 3.5)
        ax = fig.add_subplot(1, 1, 1)
        everything = [x for _, v in series for x in v]
        lo, hi = min(everything), max(everything)
        k = min(30, max(5, len(everything) // 4))
        edges = [lo + (hi - lo) * i / k for i in range(k + 1)] if hi > lo else k  # shared bins
        for lab, v in series:
            if v:
                ax.hist(v, bins=edges, alpha=0.6, label=lab)
        ax.axvline(line, color="k", linestyle="--", linewidth=1, label=label)
        ax.set_title(title)
        ax.set_ylabel("examples")
        ax.legend(fontsize=8)
        save_figure(fig, out, name)
        written.append(f"{name}.png")
    return written


summarize = summarize_scores  # former name, kept (``summarize`` is the evaluation's, in ctxrely.engine.api)
