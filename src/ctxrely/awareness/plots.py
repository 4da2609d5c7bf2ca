"""Plots and HTML report sections of the awareness measurements.

``nih_heatmap.png/.svg``: mean keyword recall per depth (rows) x context length (columns);
``attention_roles.png/.svg``: attention mass per token role, one bar group per template. Each
``*_html`` returns a report section (images embedded); ``*_report`` writes a one-page
``report.html`` beside the summary.

Example:
    >>> paths = nih_heatmap(summary, Path("runs/nih"))  # doctest: +SKIP
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ctxrely.report.html import SCRIPT, STYLE, img_tag
from ctxrely.report.plots import new_figure, save_figure

ROLES = ("bos", "user", "template", "assistant")


def _grid(summary: dict[str, Any]) -> tuple[list[int], list[float], list[list[float | None]]]:
    cells = summary["cells"]
    lengths = sorted({c["length"] for c in cells})
    depths = sorted({c["depth"] for c in cells})
    grid: list[list[float | None]] = []
    for d in depths:
        row: list[float | None] = []
        for n in lengths:
            vals = [c["recall"] for c in cells if c["depth"] == d and c["length"] == n]
            row.append(sum(vals) / len(vals) if vals else None)
        grid.append(row)
    return lengths, depths, grid


def nih_heatmap(summary: dict[str, Any], out_dir: Path, stem: str = "nih_heatmap") -> list[Path]:
    """Depth x length heatmap of mean keyword recall (PNG + SVG); [] when no cell ran."""
    import numpy as np

    if not summary["cells"]:
        return []
    lengths, depths, grid = _grid(summary)
    arr = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
    fig = new_figure(1.6 + 0.9 * len(lengths), 1.4 + 0.45 * len(depths))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(arr, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}%" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            if not np.isnan(arr[i, j]):
                ax.text(j, i, f"{arr[i, j]:.2f}", ha="center", va="center", fontsize=8)
    cfg = summary.get("config", {})
    ax.set_title(f"NIH keyword recall: {cfg.get('model')} ({cfg.get('template')})", fontsize=9)
    fig.colorbar(im, ax=ax, label="recall")
    return save_figure(fig, out_dir, stem)


def _page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{frag}" for h, frag in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>{body}\n<script>{SCRIPT}</script>\n</body></html>\n")


def nih_html(summary: dict[str, Any], plots: list[Path]) -> str:
    """A report section: the heatmap, mean recall / strict, skipped cells and some outputs."""
    cfg = summary.get("config", {})
    imgs = "".join(f"<figure>{img_tag(p, p.stem)}</figure>" for p in plots if p.suffix == ".png")
    mean, strict = summary["mean_recall"], summary["mean_strict"]
    head = (f"<p>{html.escape(str(cfg.get('model')))}, template <code>{html.escape(str(cfg.get('template')))}</code>"
            f"{', indicator ' + html.escape(cfg['indicator']) if cfg.get('indicator') else ''}: mean keyword recall "
            f"<b>{'&ndash;' if mean is None else f'{mean:.3f}'}</b>, strict "
            f"{'&ndash;' if strict is None else f'{strict:.3f}'} over "
            f"{summary['n_cells']} cells.</p>")
    skipped = ""
    if summary["skipped"]:
        skipped = (f"<p class=\"bad\">{len(summary['skipped'])} cells skipped (longer than the model window): lengths "
                   + ", ".join(sorted({str(s['length']) for s in summary['skipped']})) + "</p>")
    rows = "".join(f"<tr><td>{c['length']}</td><td>{c['depth']:g}</td><td>{c['recall']:.2f}</td>"
                   f"<td>{html.escape(c['output'][:160])}</td></tr>" for c in summary["cells"][:12])
    table = ("<table><thead><tr><th>length</th><th>depth</th><th>recall</th><th>output</th></tr></thead><tbody>"
             + rows + "</tbody></table>")
    return head + imgs + skipped + table


def nih_report(summary: dict[str, Any], out_dir: Path) -> Path:
    """Heatmap + ``report.html`` in ``out_dir``."""
    plots = nih_heatmap(summary, out_dir)
    path = out_dir / "report.html"
    path.write_text(_page("ctxrely nih: needle in a haystack", [("Needle in a haystack", nih_html(summary, plots))]),
                    encoding="utf-8")
    return path


def attention_bars(summary: dict[str, Any], out_dir: Path, stem: str = "attention_roles") -> list[Path]:
    """Grouped bars: mean attention share per role, one group per template (and the retrieval head)."""
    per = summary["templates"]
    views = [(t, "mean", per[t]["roles"]) for t in per] + [
        (t, "retrieval head", per[t]["retrieval_head"]["roles"]) for t in per if per[t].get("retrieval_head")]
    fig = new_figure(7.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(views))
    colors = ["#1f77b4", "#d62728", "#aec7e8", "#ff9896", "#2ca02c", "#98df8a"]
    for k, (t, view, roles) in enumerate(views):
        xs = [i + (k - (len(views) - 1) / 2) * width for i in range(len(ROLES))]
        ax.bar(xs, [roles[r] for r in ROLES], width, label=f"{t} ({view})", color=colors[k % len(colors)])
    ax.set_xticks(range(len(ROLES)), list(ROLES))
    ax.set_ylabel("attention share of the answer positions")
    ax.set_ylim(0, 1)
    ax.set_title(f"Attention allocation by token role: {summary.get('config', {}).get('model')}", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, stem)


def attention_html(summary: dict[str, Any], plots: list[Path]) -> str:
    """A report section: the bars and a table of role shares per template and view."""
    imgs = "".join(f"<figure>{img_tag(p, p.stem)}</figure>" for p in plots if p.suffix == ".png")
    rows = []
    for t, s in summary["templates"].items():
        views = [("mean over layers and heads", s["roles"]), ("without template tokens", s["roles_no_template"])]
        if s.get("retrieval_head"):
            rh = s["retrieval_head"]
            views.append((f"retrieval head (layer {rh['layer']}, head {rh['head']})", rh["roles"]))
        for name, roles in views:
            rows.append(f"<tr><td>{html.escape(t)}</td><td>{html.escape(name)}</td>"
                        + "".join(f"<td class=\"num\">{roles.get(r, 0.0):.3f}</td>" for r in ROLES) + "</tr>")
    head = "".join(f"<th>{r}</th>" for r in ROLES)
    return (f"<p>Attention of the answer positions, split by token role (n = {summary['n_examples']} prompts per "
            "template). Roles come from the rendered chat template's offsets: <code>bos</code> is the first token "
            "(and any system turn), <code>template</code> the role markers and other markup.</p>" + imgs
            + f"<table><thead><tr><th>template</th><th>view</th>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def attention_report(summary: dict[str, Any], out_dir: Path) -> Path:
    """Bars + ``report.html`` in ``out_dir``."""
    plots = attention_bars(summary, out_dir)
    path = out_dir / "report.html"
    path.write_text(_page("ctxrely attention: where the answer looks",
                          [("Attention allocation", attention_html(summary, plots))]), encoding="utf-8")
    return path
