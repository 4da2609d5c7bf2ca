"""Plots of tracked runs, in the style of Fig. 2 of the inversion paper (Goyal et al. 2024).

``reliance.png/.svg``: the watched counterfactual metric (solid) and its parametric counterpart
(dashed) against the training step, in-distribution accuracy on a second axis (dotted), the peak
(star) and the inversion (vertical line) marked; several runs overlaid, labelled from their config.
``attention.png/.svg``: attention mass from the answer position to the context (Fig. 3b), when
recorded. Uses matplotlib's Agg canvas directly (no pyplot state, no display needed).

Example:
    >>> paths = plot_runs(["runs/baseline", "runs/qk-only"], "runs/report")  # doctest: +SKIP
    >>> [p.name for p in paths]  # doctest: +SKIP
    ['reliance.png', 'reliance.svg', 'attention.png', 'attention.svg']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.report.summary import Run, labels_for, load_run, param_series, run_summary

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def new_figure(width: float = 8.0, height: float = 4.8) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot state; safe in threads and servers).

    Example:
        >>> fig = new_figure(4, 3); ax = fig.add_subplot(1, 1, 1)  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` (120 dpi, what reports embed) and ``<stem>.svg``; returns both paths.

    The files are byte-for-byte reproducible: no date stamp, and the SVG's element ids are salted
    with ``stem`` instead of a random value, so a figure committed to the docs changes only when
    its data does.

    Example:
        >>> fig = new_figure(4, 3); _ = fig.add_subplot(1, 1, 1).plot([0, 1])  # doctest: +SKIP
        >>> save_figure(fig, Path("out"), "curve")  # doctest: +SKIP
        [PosixPath('out/curve.png'), PosixPath('out/curve.svg')]
    """
    import matplotlib

    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        fig.savefig(paths[0], dpi=120)
        fig.savefig(paths[1], metadata={"Date": None})
    return paths


def plot_reliance(runs: Sequence[Run], labels: Sequence[str], out_dir: Path) -> list[Path]:
    """Counterfactual and parametric curves, ID accuracy on a second axis, peak and inversion marked."""
    from matplotlib.lines import Line2D

    fig = new_figure(8.0, 5.4)
    ax = fig.add_subplot(1, 1, 1)
    ax2 = None
    kinds = sorted({r.metric for r in runs})
    twins: set[str] = set()
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        color = COLORS[i % len(COLORS)]
        s = run_summary(run)
        xs, ys = zip(*run.series(run.metric), strict=True)
        ax.plot(xs, ys, "-o", color=color, ms=3.5, lw=1.8, label=label)
        twin = param_series(run)
        if twin:
            twins.add(twin[0])
            px, py = zip(*twin[1], strict=True)
            ax.plot(px, py, "--", color=color, lw=1.2, alpha=0.8)
        ax.plot([s["peak_step"]], [s["peak"]], marker="*", ms=13, color=color, mec="black", mew=0.6, ls="none")
        if s["inversion_step"] is not None:
            ax.axvline(s["inversion_step"], color=color, ls=(0, (1, 2)), lw=1.5)
            ax.annotate(f"inversion\nstep {s['inversion_step']}", (s["inversion_step"], 0.98),
                        xycoords=ax.get_xaxis_transform(), xytext=(3, 0), textcoords="offset points", va="top",
                        fontsize=8, color=color)
        if s["id_acc_metric"]:
            ax2 = ax2 or ax.twinx()
            ix, iy = zip(*run.series(s["id_acc_metric"]), strict=True)
            ax2.plot(ix, iy, ":s", color=color, ms=3, lw=1.2, alpha=0.9)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("context reliance")
    if all(0 <= v <= 1 for r in runs for _, v in r.series(r.metric)):
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    if ax2 is not None:
        ax2.set_ylabel("in-distribution accuracy (dotted)")
        ax2.set_ylim(-0.03, 1.03)
    styles = [Line2D([], [], color="black", ls="-", marker="o", ms=3.5, label="counterfactual: " + ", ".join(kinds))]
    styles += [Line2D([], [], color="black", ls="--", label=t) for t in sorted(twins)]
    if ax2 is not None:
        styles.append(Line2D([], [], color="black", ls=":", marker="s", ms=3, label="ID accuracy (right axis)"))
    styles.append(Line2D([], [], color="black", marker="*", ms=11, ls="none", label="peak"))
    if any(run_summary(r)["inversion_step"] is not None for r in runs):
        styles.append(Line2D([], [], color="black", ls=(0, (1, 2)), label="inversion"))
    fig.legend(handles=styles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    ax.legend(title="run", fontsize=8, title_fontsize=8, loc="best", framealpha=0.85)
    ax.set_title("Context reliance during fine-tuning")
    return save_figure(fig, out_dir, "reliance")


def plot_attention(runs: Sequence[Run], labels: Sequence[str], out_dir: Path) -> list[Path]:
    """Attention mass from the answer position to the context against the step (empty if unrecorded)."""
    series = [(run.series("attn/context_mass"), label, COLORS[i % len(COLORS)])
              for i, (run, label) in enumerate(zip(runs, labels, strict=True))]
    if not any(s for s, _, _ in series):
        return []
    fig = new_figure(8.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for s, label, color in series:
        if s:
            xs, ys = zip(*s, strict=True)
            ax.plot(xs, ys, "-o", ms=3, color=color, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("attention to context")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Attention mass from the answer position to the context (mean over layers, heads)")
    return save_figure(fig, out_dir, "attention")


def plot_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Write ``reliance.png/.svg`` (and ``attention.png/.svg`` when recorded) for the runs; return the paths."""
    if not run_dirs:
        raise ValueError("plot_runs needs at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    labels = labels_for(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return plot_reliance(runs, labels, out) + plot_attention(runs, labels, out)
