"""One self-contained HTML page for tracked runs: plots (embedded), a summary table per run, and the
per-example flips (answered from the context at the peak, from memory at the end).

Nothing is fetched: images are base64 ``data:`` URIs, the style is inline. A few lines of script
mark ``<body data-images="ok">`` once every image has decoded (``broken:N`` otherwise), so a
headless browser can check the page.

Example:
    >>> page = build_report(["runs/baseline", "runs/qk-only"], "runs/report")  # doctest: +SKIP
    >>> page.name  # doctest: +SKIP
    'report.html'
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctxrely.report.plots import plot_runs
from ctxrely.report.summary import flips, labels_for, load_run, run_summary

MAX_FLIPS = 50
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #eee}.muted{color:#777;font-size:.85rem}.bad{color:#b00020}
"""
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.body.setAttribute('data-images', broken ? 'broken:' + broken : 'ok');
  document.body.setAttribute('data-image-count', String(imgs.length));
});
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "&ndash;"
    return f"{v:.{digits}f}" if isinstance(v, float) else _e(v)


def img_tag(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG at ``path`` inlined (base64), so a report is one self-contained file."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _summary_table(summaries: list[dict[str, Any]], labels: list[str]) -> str:
    head = ("run", "metric", "step 0", "peak", "step of peak", "final", "drop", "inversion at",
            "ID acc (0 / peak / final)", "attention to context (0 / final)", "evals")
    rows = []
    for s, label in zip(summaries, labels, strict=True):
        id_txt = " / ".join(_num(s[f"id_acc_{w}"]) for w in ("step0", "peak", "final")) if s["id_acc_metric"] else "&ndash;"
        attn = " / ".join(_num(s[f"attn_{w}"]) for w in ("step0", "final")) if s["attn_metric"] else "&ndash;"
        inv = f'<span class="bad">step {s["inversion_step"]}</span>' if s["inversion_step"] is not None else "none"
        cells = [_e(label), _e(s["metric"]), _num(s["step0"]), _num(s["peak"]), _e(s["peak_step"]), _num(s["final"]),
                 f'{s["drop"]:.1f} {s["drop_unit"]}', inv, id_txt, attn, _e(s["n_evals"])]
        rows.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i > 1 else f"<td>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _flips_table(run_dir: Path, summary: dict[str, Any], label: str) -> str:
    items = flips(run_dir)
    title = (f"<h3>{_e(label)}: {len(items)} example(s) answered from the context at the peak (step "
             f"{summary['peak_step']}) and from memory at the end (step {summary['final_step']})</h3>")
    if not items:
        return title + '<p class="muted">No flips.</p>'
    has_out = any(f.get("output_end") is not None for f in items)
    head = ["suite", "id", "question", "context answer", "memory answer",
            "margin peak → end" if not has_out else "output peak → end"]
    rows = []
    for f in items[:MAX_FLIPS]:
        change = (f"{_e(f['output_peak'])} → {_e(f['output_end'])}" if has_out
                  else f"{_num(f['margin_peak'], 2)} → {_num(f['margin_end'], 2)}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in (
            _e(f["suite"]), _e(f["id"]), f'<span title="{_e(f["context"])}">{_e(f["question"])}</span>',
            _e(f["cf_answer"]), _e(f["param_answer"]), change)) + "</tr>")
    more = f'<p class="muted">... and {len(items) - MAX_FLIPS} more.</p>' if len(items) > MAX_FLIPS else ""
    return (title + "<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + more)


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path, *, title: str = "ctxrely report",
                 extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Plots + summary table + flips for the runs as ``<out_dir>/report.html``; returns its path.

    Args:
        run_dirs: tracked run folders (several are overlaid, e.g. baseline vs mitigations).
        out_dir: where the page and the PNG/SVG plots go.
        title: page title.
        extra_sections: ``(heading, html_fragment)`` pairs inserted after the summary (fragments are
            trusted HTML; embed any images in them as data URIs).
    """
    from ctxrely.version import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dirs = [Path(d) for d in run_dirs]
    runs = [load_run(d) for d in dirs]
    labels = labels_for(runs)
    summaries = [run_summary(r) for r in runs]
    plots = plot_runs(dirs, out)
    pngs = [p for p in plots if p.suffix == ".png"]
    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="muted">ctxrely {_e(__version__)}, generated '
             f'{datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}; runs: '
             + ", ".join(f"<code>{_e(d)}</code>" for d in dirs) + "</p>",
             "<h2>Context reliance during fine-tuning</h2>"]
    parts += [f"<figure>{img_tag(p, p.stem)}<figcaption class=\"muted\">{_e(p.stem)} "
              f"(SVG: <code>{_e(p.with_suffix('.svg').name)}</code>)</figcaption></figure>" for p in pngs]
    parts += ["<h2>Summary</h2>", _summary_table(summaries, labels),
              '<p class="muted">drop = peak &minus; final (percentage points for rates). ID acc: teacher-forced greedy '
              "match on the in-distribution probe. Inversion: a drop above the threshold for the configured number "
              "of consecutive evaluations.</p>"]
    for heading, fragment in extra_sections:
        parts += [f"<h2>{_e(heading)}</h2>", fragment]
    parts.append("<h2>Flips: context at the peak, memory at the end</h2>")
    parts += [_flips_table(d, s, label) for d, s, label in zip(dirs, summaries, labels, strict=True)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts)
            + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
