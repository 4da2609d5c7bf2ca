"""Compare the runs of a lab experiment: per run, and per variant across seeds (mean and spread).

Per run (from :func:`ctxrely.report.summary.run_summary`): step-0, peak, step of peak, final, drop
from the peak (points), ID accuracy at the end. Added here, from the per-item logs of the two
evaluations (``trajectory_examples.jsonl``): the paired standard error of the drop (items scored at
the peak and at the end; ``se = sd(win_peak - win_final) / sqrt(n)``) and ``z = drop / se``, and the
binomial standard error of one evaluation at the peak. The peak is the maximum of several noisy
evaluations, so a drop of a few standard errors can come from noise alone; ``docs/lab.md`` says more.

Per variant: mean, sample standard deviation and n over seeds; mitigations are ranked by the share
of the baseline's mean drop they remove, ``1 - drop(variant) / drop(baseline)``.

Example:
    >>> table = compare_runs({("baseline", 0): "runs/lab/runs/baseline-s0"})  # doctest: +SKIP
    >>> print(markdown(table))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIELDS = ("step0", "peak", "peak_step", "final", "drop", "drop_se", "id_acc_final")
LABELS = {"step0": "step 0", "peak": "peak", "peak_step": "step of peak", "final": "final",
          "drop": "drop (pts)", "drop_se": "paired SE (pts)", "id_acc_final": "ID acc"}


def paired_drop(run_dir: str | Path, metric: str, peak_step: int, final_step: int) -> dict[str, Any]:
    """Paired statistics of the drop between two evaluations, from the per-item logs.

    Returns:
        ``{"n", "drop_se", "z", "noise_se"}`` in points (None where the logs lack the items).
    """
    from ctxrely.track.trajectory import TrajectoryStore

    suite, kind = metric.rsplit("/", 1)
    key = {"logit_cf_rate": "cf_wins", "cf_acc": "cf_hit", "m_c": "m_c"}.get(kind)
    by_step = {int(r["step"]): r["rows"] for r in TrajectoryStore(run_dir).example_rows()}
    a, b = by_step.get(peak_step), by_step.get(final_step)
    if key is None or a is None or b is None:
        return {"n": None, "drop_se": None, "z": None, "noise_se": None}
    end = {(r["suite"], r["id"]): r.get(key) for r in b}
    diffs, peak_vals = [], []
    for r in a:
        k = (r["suite"], r["id"])
        if (suite == "all" or r["suite"] == suite) and r.get(key) is not None and end.get(k) is not None:
            diffs.append(float(r[key]) - float(end[k]))
            peak_vals.append(float(r[key]))
    n = len(diffs)
    if n < 2:
        return {"n": n, "drop_se": None, "z": None, "noise_se": None}
    se = statistics.stdev(diffs) / math.sqrt(n)
    p = sum(peak_vals) / n
    mean = sum(diffs) / n
    return {"n": n, "drop_se": 100 * se, "z": (mean / se) if se > 0 else None,
            "noise_se": 100 * (statistics.stdev(peak_vals) / math.sqrt(n) if kind == "m_c" else
                               math.sqrt(p * (1 - p) / n))}


def summarize_run(run_dir: str | Path) -> dict[str, Any]:
    """``run_summary`` plus the paired drop statistics of one run folder."""
    from ctxrely.report.summary import run_summary

    s = run_summary(run_dir)
    s["id_acc_final"] = s.get("id_acc_final")
    s.update(paired_drop(run_dir, s["metric"], s["peak_step"], s["final_step"]))
    return s


def _agg(values: list[float | None]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "n": len(vals)}


def compare_runs(run_dirs: Mapping[tuple[str, int], str | Path]) -> dict[str, Any]:
    """Per-run summaries, per-variant mean/spread and the mitigation ranking.

    Args:
        run_dirs: ``{(variant, seed): run folder}`` (folders without a trajectory are skipped).
    """
    runs = []
    for (variant, seed), d in sorted(run_dirs.items()):
        try:
            s = summarize_run(d)
        except (FileNotFoundError, ValueError):
            continue
        runs.append({"variant": variant, "seed": seed, **{k: s.get(k) for k in FIELDS},
                     "z": s.get("z"), "noise_se": s.get("noise_se"), "n_items": s.get("n"),
                     "metric": s["metric"], "inversion_step": s.get("inversion_step"), "dir": str(d)})
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    by_variant = {v: {f: _agg([r[f] for r in runs if r["variant"] == v]) for f in FIELDS} for v in variants}
    base = by_variant.get("baseline", {}).get("drop", {}).get("mean")
    ranking = []
    if base:
        for v in variants:
            if v != "baseline" and by_variant[v]["drop"]["mean"] is not None:
                ranking.append({"variant": v, "drop": by_variant[v]["drop"]["mean"],
                                "removed": 1 - by_variant[v]["drop"]["mean"] / base})
        ranking.sort(key=lambda r: -r["removed"])
    return {"metric": runs[0]["metric"] if runs else None, "runs": runs, "by_variant": by_variant,
            "baseline_drop": base, "ranking": ranking}


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{v:.{digits}f}"


def markdown(table: dict[str, Any]) -> str:
    """The comparison as markdown: per run, per variant (mean ± sd over seeds), ranking."""
    cols = list(FIELDS)
    lines = [f"Metric: `{table['metric']}` (drop and SE in points).", "",
             "| run | seed | " + " | ".join(LABELS[c] for c in cols) + " | z |",
             "|---|---|" + "---|" * (len(cols) + 1)]
    for r in table["runs"]:
        cells = [_f(r[c], 0 if c == "peak_step" else (1 if c in ("drop", "drop_se") else 2)) for c in cols]
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + f" | {_f(r['z'], 1)} |")
    lines += ["", "| variant | seeds | " + " | ".join(LABELS[c] for c in cols if c != "drop_se") + " |",
              "|---|---|" + "---|" * (len(cols) - 1)]
    for v, agg in table["by_variant"].items():
        cells = []
        for c in cols:
            if c == "drop_se":
                continue
            m, sd = agg[c]["mean"], agg[c]["sd"]
            d = 0 if c == "peak_step" else (1 if c == "drop" else 2)
            cells.append("-" if m is None else f"{m:.{d}f}" + (f" ± {sd:.{d}f}" if sd is not None else ""))
        lines.append(f"| {v} | {agg['peak']['n']} | " + " | ".join(cells) + " |")
    if table["ranking"]:
        lines += ["", f"Mitigations by share of the baseline's mean drop ({table['baseline_drop']:.1f} pts) "
                  "they remove:", ""]
        lines += [f"{i + 1}. {r['variant']}: drop {r['drop']:.1f} pts, removes {100 * r['removed']:.0f}%"
                  for i, r in enumerate(table["ranking"])]
    return "\n".join(lines) + "\n"


def html_table(table: dict[str, Any]) -> str:
    """The comparison as an HTML fragment (for ``build_report(extra_sections=...)``)."""
    return markdown_html(markdown(table))


def markdown_html(md: str) -> str:
    """Paragraphs and pipe tables of a markdown text as an HTML fragment (escaped).

    Example:
        >>> markdown_html("Hi `x`")
        '<p>Hi x</p>'
    """
    import html

    out, rows = [], []

    def flush() -> None:
        if rows:
            head, *body = rows
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                           for r in body) + "</tbody></table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                rows.append(cells)
        else:
            flush()
            if line.strip():
                out.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    flush()
    return "\n".join(out)


def write_comparison(table: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``comparison.json`` and ``comparison.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / "comparison.json", out / "comparison.md"
    j.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    m.write_text(markdown(table), encoding="utf-8")
    return j, m
