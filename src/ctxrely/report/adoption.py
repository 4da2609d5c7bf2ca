"""The two adoption curves of graded-conflict runs (ClashEval, Wu et al. 2024), as a figure and an HTML page.

Left: adoption of the context's value against the perturbation degree (one line per suite and run;
the control, an unchanged passage, at 0). Right: adoption against the prior probability of the true
answer (bins of ``summary.json["adoption"][suite]["by_prior"]``, at each bin's mean). Bars are the
bootstrap 95% intervals. Several runs (plain, ``--decode cad``, a fine-tuned checkpoint) overlay.

Example:
    >>> plot_adoption(["runs/graded", "runs/graded-cad"], "runs/graded/adoption.png")  # doctest: +SKIP
    >>> build_adoption_report(["runs/graded", "runs/graded-cad"], "runs/graded-report")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.report.plots import COLORS, new_figure, save_figure

MARKERS = ["o", "s", "^", "D", "v", "P"]


def load_adoption(run_dir: str | Path) -> dict[str, Any]:
    """``summary.json["adoption"]`` of an eval/graded run folder (ValueError naming it when absent)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise ValueError(f"{run_dir}: no summary.json here (is it a folder of ctxrely eval or ctxrely graded?)")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not summary.get("adoption"):
        raise ValueError(f"{path}: no adoption curves (evaluate a graded_* suite, or run ctxrely graded)")
    return summary


def run_label(summary: dict[str, Any], run_dir: str | Path) -> str:
    """``decode`` / steering of the run where set, else the folder name."""
    iv = summary.get("config", {}).get("intervention")
    name = Path(run_dir).name
    fix = iv.get("decode", "steer") if isinstance(iv, dict) else None
    return name if fix is None or fix == name else f"{name} ({fix})"


def _err(points: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float], list[float]]:
    ys = [p[key]["mean"] for p in points]
    lo = [m - p[key]["ci_low"] for m, p in zip(ys, points, strict=True)]
    hi = [p[key]["ci_high"] - m for m, p in zip(ys, points, strict=True)]
    return ys, lo, hi


def plot_adoption(run_dirs: Sequence[str | Path], out_png: str | Path, key: str = "adopt") -> Path:
    """Both curves for every graded suite of every run into one PNG (and an SVG beside it)."""
    fig = new_figure(11, 4.4)
    ax_d, ax_p = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    k = 0
    ticks: dict[int, list[str]] = {}
    for run in run_dirs:
        summary = load_adoption(run)
        label = run_label(summary, run)
        for suite, a in summary["adoption"].items():
            if suite == "all" and len(summary["adoption"]) > 1:
                continue
            color, marker = COLORS[k % len(COLORS)], MARKERS[k % len(MARKERS)]
            k += 1
            pts = [p for p in a["by_degree"] if p[key]["mean"] is not None]
            if pts:
                ys, lo, hi = _err(pts, key)
                ax_d.errorbar([p["degree_rank"] for p in pts], ys, yerr=[lo, hi], color=color, marker=marker,
                              capsize=3, label=f"{label}: {suite}")
                for p in pts:
                    if str(p["degree_label"]) not in ticks.setdefault(p["degree_rank"], []):
                        ticks[p["degree_rank"]].append(str(p["degree_label"]))
            bins = [b for b in a["by_prior"] if b["n"] and b[key]["mean"] is not None]
            if bins:
                ys, lo, hi = _err(bins, key)
                ax_p.errorbar([max(b["prior_mean"], 1e-6) for b in bins], ys, yerr=[lo, hi], color=color,
                              marker=marker, capsize=3, label=f"{label}: {suite}")
    ax_d.set_xticks(sorted(ticks), ["/".join(ticks[r]) for r in sorted(ticks)])
    ax_d.set(xlabel="perturbation degree (0 = unchanged passage)", ylabel=f"{key} rate (95% CI)",
             ylim=(-0.03, 1.03), title="adoption vs perturbation")
    ax_p.set(xscale="log", xlabel="prior p(true answer | question), bin mean", ylabel=f"{key} rate (95% CI)",
             ylim=(-0.03, 1.03), title="adoption vs prior confidence (perturbed passages)")
    ax_d.legend(fontsize=7)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out.parent, out.stem)[0]


def format_ci(v: dict[str, Any], absent: str = "-") -> str:
    """``"0.53 [0.41, 0.66]"`` for a mean with its interval; ``absent`` when there is none.

    Example:
        >>> format_ci({"mean": 0.5, "ci_low": 0.25, "ci_high": 0.75}), format_ci({"mean": None})
        ('0.50 [0.25, 0.75]', '-')
    """
    return absent if v["mean"] is None else f"{v['mean']:.2f} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]"


def _ci(v: dict[str, Any]) -> str:
    return format_ci(v, "&ndash;")


def _bin_rows(bins: Sequence[dict[str, Any]]) -> list[str]:
    return [f"<tr><td>[{b['prior_lo']:g}, {b['prior_hi']:g}]</td><td>{b['n']}</td>"
            + "".join(f"<td>{_ci(b[k])}</td>" for k in ("adopt", "prior_kept", "neither", "logit_adopt")) + "</tr>"
            for b in bins]


def adoption_tables(run_dirs: Sequence[str | Path]) -> str:
    """HTML tables: per run and suite, adoption / prior kept / logit adoption by degree and by prior bin."""
    from html import escape

    parts = []
    for run in run_dirs:
        summary = load_adoption(run)
        for suite, a in summary["adoption"].items():
            head = "<tr><th>{}</th><th>n</th><th>adopt</th><th>prior kept</th><th>neither</th><th>logit adopt</th></tr>"
            rows = [f"<tr><td>{escape(str(p['degree_label']))}</td><td>{p['n']}</td>"
                    + "".join(f"<td>{_ci(p[k])}</td>" for k in ("adopt", "prior_kept", "neither", "logit_adopt"))
                    + "</tr>" for p in a["by_degree"]]
            brows, arows = _bin_rows(a["by_prior"]), _bin_rows(a.get("by_prior_answer", []))
            ce = a["clasheval"]
            parts.append(f"<h3>{escape(run_label(summary, run))}: {escape(suite)}</h3>"
                         f"<table>{head.format('degree')}{''.join(rows)}</table>"
                         f"<table>{head.format('prior p')}{''.join(brows)}</table>"
                         + (f"<table>{head.format('closed-book answer p')}{''.join(arows)}</table>" if arows else "")
                         + f"<p>accuracy {_ci(ce['accuracy'])}; context bias {_ci(ce['context_bias'])}; "
                         f"prior bias {_ci(ce['prior_bias'])}</p>")
    return "\n".join(parts)


def adoption_section(run_dirs: Sequence[str | Path], out_dir: str | Path) -> str:
    """An HTML fragment: the two curves (``<out_dir>/adoption.png``, inlined) and their tables."""
    from ctxrely.report.html import img_tag

    png = plot_adoption(run_dirs, Path(out_dir) / "adoption.png")
    return (f"<figure>{img_tag(png, 'adoption curves')}<figcaption class=\"muted\">adoption of the context's "
            "value by perturbation degree (left) and by the closed-book probability of the true answer (right); "
            f"bars: bootstrap 95% intervals</figcaption></figure>{adoption_tables(run_dirs)}")


def build_adoption_report(run_dirs: Sequence[str | Path], out_dir: str | Path,
                          title: str = "ctxrely: graded conflicts") -> Path:
    """One self-contained ``report.html`` with the two curves and their tables (``ctxrely report`` on eval runs)."""
    from ctxrely.report.html import SCRIPT, STYLE, _e

    out = Path(out_dir)
    body = f"<h1>{_e(title)}</h1><h2>Adoption of the context's value</h2>{adoption_section(run_dirs, out)}"
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
