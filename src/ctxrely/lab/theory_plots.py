"""Plots of the theory sandbox: attention scores and M_C against gradient steps, one colour per setting.

Example:
    >>> from ctxrely.lab.theory import TheoryConfig, run_experiments
    >>> from ctxrely.lab.theory_plots import plot_theory
    >>> paths = plot_theory(run_experiments(TheoryConfig(steps=50)), "runs/theory")  # doctest: +SKIP
    >>> [p.name for p in paths]                                                    # doctest: +SKIP
    ['theory.png', 'theory.svg']
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctxrely.lab.theory_config import TheoryTrace


def plot_theory(traces: dict[str, TheoryTrace], out_dir: str | Path, stem: str = "theory") -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg`` into ``out_dir``.

    Panel 1: theta_C^T W_KQ phi(r) (solid) and theta_S^T W_KQ phi(r) (dashed) per setting.
    Panel 2: M_C on held-out conflicts per setting, the peak marked.

    Args:
        traces: ``{setting name: trace}`` as returned by ``run_experiments``.
        out_dir: folder, created if missing.
        stem: file name without extension.

    Returns:
        The paths written, PNG first.
    """
    import matplotlib

    from ctxrely.report.plots import new_figure, save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = new_figure(11, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, tr) in enumerate(traces.items()):
        c = colors[i % len(colors)]
        ax1.plot(tr.step, tr.attn_context, color=c, lw=1.8, label=f"{name}: context θ_C")
        ax1.plot(tr.step, tr.attn_subject, color=c, lw=1.8, ls="--", label=f"{name}: subject θ_S")
        ax2.plot(tr.step, tr.m_c, color=c, lw=1.8, label=name)
        s = tr.summary()
        ax2.plot([s["peak_step"]], [s["peak_m_c"]], marker="o", color=c, ms=5)
    ax1.axhline(0, color="0.7", lw=0.8)
    ax1.set(xlabel="gradient step", ylabel="θ^T W_KQ φ(r)", title="attention scores")
    ax1.legend(fontsize=7, ncol=1)
    ax2.set(xlabel="gradient step", ylabel="M_C", title="context reliance on held-out conflicts",
            ylim=(0, 1))
    ax2.legend(fontsize=8)
    return save_figure(fig, out, stem)
