"""The awareness lab's tables: per run and measurement format, mean over seeds with a paired view.

Reads ``<out>/base/*.json`` and ``<out>/runs/<run>-s<seed>/eval/*.json`` (whatever exists: a
table of an unfinished experiment lists what is measured and names what is missing) and writes
``awareness_summary.json`` and ``awareness_table.md``, with the per-run item intervals
(``awareness_intervals.md``) and attention by depth (``awareness_layers.md``) of
:mod:`ctxrely.awareness.lab_intervals` beside them.

Example:
    >>> write_awareness_table("runs/awareness-lab")["rows"][0]["run"]  # doctest: +SKIP
    'base'
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from ctxrely.engine.resume import DONE, finished_runs

RUN_LABELS = {"base": "base (before)", "template": "template SFT", "plain": "plain SFT",
              "template_indicator": "template SFT + indicator", "template_dep_only": "template SFT, dep. rows only"}
FORMAT_LABELS = {"chat": "chat template", "qa": "plain Q/A", "chat+ind": "chat template + [IND]"}
ROLES = ("bos", "user", "template", "assistant")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _measures(folder: Path) -> dict[str, dict[str, Any]]:
    """``{tag: {"nih", "squad", "attention"}}`` from one eval folder."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.glob("*.json")):
        m = re.fullmatch(r"(nih|squad|attention)-(.+)\.json", p.name)
        if m:
            out.setdefault(m.group(2), {})[m.group(1)] = _load(p)
    return out


def _scalars(m: dict[str, Any]) -> dict[str, float | None]:
    nih, sq, att = m.get("nih"), m.get("squad"), m.get("attention")
    vals: dict[str, float | None] = {
        "nih_recall": nih["mean_recall"] if nih else None, "nih_strict": nih["mean_strict"] if nih else None,
        "squad_contains": sq["contains"] if sq else None, "squad_f1": sq["f1"] if sq else None}
    for r in ROLES:
        vals[f"attn_{r}"] = att["roles"].get(r) if att else None
    return vals


def _mean_se(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else None)


def collect(out: str | Path) -> dict[str, Any]:
    """Every measured (run, format): per-seed scalars and their mean +- SE over seeds."""
    out = Path(out)
    groups: dict[tuple[str, str], dict[int, dict[str, float | None]]] = {}
    for tag, m in _measures(out / "base").items():
        groups[("base", tag)] = {-1: _scalars(m)}
    for run, seed, d in finished_runs(out):
        for tag, meas in _measures(d / "eval").items():
            groups.setdefault((run, tag), {})[seed] = _scalars(meas)
    rows = []
    order = list(RUN_LABELS)
    for (run, tag), by_seed in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order
                                                                     else 99, kv[0][1])):
        keys = next(iter(by_seed.values())).keys()
        stats = {k: _mean_se([v[k] for v in by_seed.values()]) for k in keys}
        rows.append({"run": run, "format": tag, "seeds": sorted(s for s in by_seed if s >= 0),
                     "per_seed": {str(s): v for s, v in by_seed.items()},
                     "mean": {k: v[0] for k, v in stats.items()}, "se": {k: v[1] for k, v in stats.items()}})
    settings = _load(out / "settings.json") or {}
    missing = [f"{r}-s{s}" for s in settings.get("seeds", []) for r in settings.get("runs", [])
               if not (out / "runs" / f"{r}-s{s}" / DONE).exists()]
    info = {}
    for d in sorted((out / "runs").glob("template_indicator-s*")):
        i = _load(d / "run_info.json")
        if i and i.get("indicator"):
            info[d.name] = i["indicator"]
    return {"rows": rows, "missing": missing, "indicator": info, "settings": settings}


def _cell(mean: float | None, se: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" ± {se:.2f}" if se is not None else "")


def to_markdown(summary: dict[str, Any]) -> str:
    """The template-vs-plain / indicator table (first column the run, second its seeds)."""
    head = ("| run | seeds | measured in | NIH recall | NIH strict | SQuAD contains | SQuAD F1 | attn user | "
            "attn assistant | attn template | attn bos |")
    lines = [head, "|" + "---|" * 11]
    for r in summary["rows"]:
        m, se = r["mean"], r["se"]
        seeds = ",".join(map(str, r["seeds"])) or "-"
        lines.append(f"| {RUN_LABELS.get(r['run'], r['run'])} | {seeds} | {FORMAT_LABELS.get(r['format'], r['format'])}"
                     " | " + " | ".join(_cell(m[k], se[k]) for k in (
                         "nih_recall", "nih_strict", "squad_contains", "squad_f1", "attn_user", "attn_assistant",
                         "attn_template", "attn_bos")) + " |")
    if summary["missing"]:
        lines.append("")
        lines.append("Not yet measured: " + ", ".join(summary["missing"]) + ".")
    return "\n".join(lines) + "\n"


def write_awareness_table(out: str | Path) -> dict[str, Any]:
    """Write ``awareness_summary.json``, ``awareness_table.md``, ``awareness_intervals.md`` and
    ``awareness_layers.md`` into ``out``; returns the summary (``"intervals"``: the per-run rows)."""
    from ctxrely.awareness.lab_intervals import interval_markdown, interval_rows, layer_markdown

    out = Path(out)
    summary = collect(out)
    summary["intervals"] = interval_rows(out)
    (out / "awareness_summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / "awareness_table.md").write_text(to_markdown(summary), encoding="utf-8")
    (out / "awareness_intervals.md").write_text(interval_markdown(out, RUN_LABELS, FORMAT_LABELS), encoding="utf-8")
    (out / "awareness_layers.md").write_text(layer_markdown(out, RUN_LABELS, FORMAT_LABELS), encoding="utf-8")
    return summary
