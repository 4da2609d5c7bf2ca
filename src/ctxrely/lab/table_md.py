"""Render :func:`ctxrely.lab.table.build_table`'s table as markdown (docs, CLI) or HTML (the demo's report).

Example:
    >>> print(markdown({"metric": "m", "runs": [], "by_variant": {}, "ranking": [], "missing": []}))  # doctest: +ELLIPSIS
    Metric: `m` ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctxrely.lab.table import NOISE_Z

COLS = (("step0", "step 0", 2), ("peak", "peak", 2), ("peak_step", "step of peak", 0), ("final", "final", 2),
        ("drop", "drop (pts)", 1), ("drop_se", "paired SE (pts)", 1), ("id_acc_final", "ID acc", 2))


def _f(v: Any, d: int = 2) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def _ms(agg: dict[str, Any], d: int) -> str:
    m, sd = agg["mean"], agg["sd"]
    return "-" if m is None else f"{m:.{d}f}" + (f" ± {sd:.{d}f}" if sd is not None else "")


def _pm(d: dict[str, Any], sign: str = "") -> str:
    """``diff ± se`` of a paired comparison (``± se`` only when there is one), one decimal."""
    return f"{d['diff']:{sign}.1f}" + (f" ± {d['se']:.1f}" if d["se"] is not None else "")


def _verdict(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "-"
    return f"{'yes' if r['verdict'] else 'no'} ({r['pass']}/{r['n']})"


def _best(b: dict[str, Any] | None) -> str:
    if not b or not b["cf"]["n"]:
        return "-"
    return f"{_ms(b['cf'], 2)} ({_ms(b['step'], 0)}; n={b['cf']['n']})"


def variant_rows(table: dict[str, Any]) -> list[str]:
    """The per-variant table: mean ± sd over seeds, drop vs baseline, keep_peak, recipe."""
    head = (["run", "seeds"] + [lab for _, lab, _ in COLS]
            + ["drop vs baseline (pts, paired by seed)", "removed", "final vs baseline (pts, paired)", "keep_peak: cf", "keep_peak: ID acc",
               "recipe met", "recipe met within noise", "keep_peak meets ID bar", "best step with ID acc >= bar: cf (step)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, a in table["by_variant"].items():
        seeds = ",".join(str(s) for s in a["seeds"])
        if a.get("recorded_seeds"):
            seeds += " (recorded)" if a["recorded_seeds"] == a["seeds"] else (
                " (" + ",".join(str(s) for s in a["recorded_seeds"]) + " recorded)")
        vs = a.get("vs_baseline")
        vs_cell = "-" if not vs else _pm(vs) + f" (n={vs['n']})"
        removed = "-" if not vs or vs["removed"] is None else f"{100 * vs['removed']:.0f}%"
        fv = a.get("final_vs_baseline")
        fv_cell = "-" if not fv else _pm(fv, "+") + f" (n={fv['n']})"
        cells = [v, seeds] + [_ms(a[f], d) for f, _, d in COLS] + [
            vs_cell, removed, fv_cell, _ms(a["peak"], 2), _ms(a["id_acc_peak"], 2), _verdict(a["recipe"]),
            _verdict(a["recipe_noise"]) if "recipe_noise" in a else "-", _verdict(a["keep_peak_recipe"]), _best(a.get("keep_best_id"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def compact_rows(table: dict[str, Any]) -> list[str]:
    """The short table (README, demo): per run its seeds, peak (step), final, drop, what it changes
    against the baseline, ID accuracy and the recipe verdicts; the baseline, then best first by final
    cf reliance against the baseline's (paired by seed), runs without a paired seed last."""
    head = ["run", "seeds", "step 0", "peak (step)", "final", "drop from peak (pts)", "removes of the baseline's drop",
            "final vs baseline (pts)", "ID acc", "recipe (strict / within noise)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def key(v: str) -> tuple[bool, float]:
        fv = table["by_variant"][v].get("final_vs_baseline")
        return v != "baseline", -fv["diff"] if fv else float("inf")

    order = sorted(table["by_variant"], key=key)
    for v in order:
        a = table["by_variant"][v]
        vs, fv = a.get("vs_baseline"), a.get("final_vs_baseline")
        removed = "-" if not vs or vs["removed"] is None else (
            f"{100 * vs['removed']:.0f}%" + (f" ({vs['diff']:.1f} ± {vs['se']:.1f})" if vs["se"] is not None else ""))
        fv_cell = "-" if not fv else _pm(fv, "+")
        strict, near = a["recipe"], a.get("recipe_noise")
        verdict = f"{strict['pass']}/{strict['n']}" + (f" / {near['pass']}/{near['n']}" if near else "")
        lines.append(f"| `{v}` | {len(a['seeds'])} | {_ms(a['step0'], 2)} | {_ms(a['peak'], 2)} ({_ms(a['peak_step'], 0)}) "
                     f"| {_ms(a['final'], 2)} | {_ms(a['drop'], 1)} | {removed} | {fv_cell} | "
                     f"{_ms(a['id_acc_final'], 2)} | {verdict} |")
    return lines


def run_rows(table: dict[str, Any]) -> list[str]:
    """One line per (run, seed)."""
    head = ["run", "seed", "step 0", "peak", "step of peak", "final", "drop (pts)", "paired SE", "z",
            "ID acc at peak", "ID acc final", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table["runs"]:
        sha = str(r.get("commit") or "?")[:7]
        src = f"recorded ({sha})" if r["recorded"] else f"measured ({sha})"
        lines.append(f"| {r['variant']} | {r['seed']} | {_f(r['step0'])} | {_f(r['peak'])} | "
                     f"{_f(r['peak_step'], 0)} | {_f(r['final'])} | {_f(r['drop'], 1)} | {_f(r['drop_se'], 1)} | "
                     f"{_f(r['z'], 1)} | {_f(r['id_acc_peak'])} | {_f(r['id_acc_final'])} | {src} |")
    return lines


def trajectory_rows(table: dict[str, Any]) -> list[str]:
    """Per run, the watched metric at every evaluation (``step: value``), and ID accuracy where kept."""
    lines = ["| run | seed | cf reliance (step: value) | ID acc (step: value) |", "|---|---|---|---|"]
    for r in sorted(table["runs"], key=lambda r: (r["variant"], r["seed"])):
        s = r.get("series") or []
        if not s:
            continue
        ids = ", ".join(f"{st}: {a:.2f}" for st, _, a in s if a is not None) or "-"
        lines.append(f"| {r['variant']} | {r['seed']} | " + ", ".join(f"{st}: {v:.2f}" for st, v, _ in s)
                     + f" | {ids} |")
    return lines if len(lines) > 2 else []


def classes_rows(rec: dict[str, Any]) -> list[str]:
    """``score-data``'s classes and the filters' dropped rows vs the lab's true labels."""
    lines = [f"`score-data`'s classes (C+S when the base model's NLL without context <= {rec['cs_threshold']} "
             f"nats/token) against the lab's true labels, {rec['n']} training rows:", "",
             "| class | predicted | true | correct | precision | recall |", "|---|---|---|---|---|---|"]
    for c, r in rec["classes"].items():
        lines.append(f"| {c} | {r['n_pred']} | {r['n_true']} | {r['tp']} | {_f(r['precision'])} | "
                     f"{_f(r['recall'])} |")
    lines += ["", "Rows each filter drops (precision: share of them that are true C+S; recall: share of the true "
              "C+S rows dropped):", "", "| run | rule | dropped | C | C+S | S | precision | recall |",
              "|---|---|---|---|---|---|---|---|"]
    rules = {"filter": f"lowest {rec['drop']:.0%} NLL without context (of rows with context)",
             "filter_class": "class C+S"}
    for name, r in rec["filters"].items():
        by = r["dropped_by_class"]
        lines.append(f"| {name} | {rules.get(name, name)} | {r['n_pred']} | {by['C']} | {by['C+S']} | {by['S']} | "
                     f"{_f(r['precision'])} | {_f(r['recall'])} |")
    sep = rec.get("separability") or {}
    if sep.get("auc") is not None:
        lines += ["", f"Whatever the cut-off, NLL without context separates true C+S from true C rows with AUC "
                  f"{sep['auc']:.3f}; the largest share of C+S rows a cut-off drops at precision >= "
                  f"{sep['precision']:.2f} is " + (f"{sep['recall']:.2f} (NLL <= {sep['threshold']:.2f} nats/token)."
                                                    if sep["recall"] is not None else "none.")]
    return lines


def markdown(table: dict[str, Any]) -> str:
    """The whole table: per variant, ranking, recipe verdict, per run, classes vs labels, missing runs."""
    lines = [f"Metric: `{table['metric']}` (drop and SE in points). Mean ± sample sd over seeds.", ""]
    lines += variant_rows(table)
    if table["ranking"]:
        lines += ["", "Mitigations ranked by the share of the baseline's drop they remove (paired by seed):", ""]
        lines += [f"{i + 1}. {r['variant']}: removes {100 * r['removed']:.0f}% (drop {r['diff']:.1f}"
                  + (f" ± {r['se']:.1f}" if r["se"] is not None else "") + f" pts smaller, n={r['n']})"
                  for i, r in enumerate(table["ranking"])]
    finals = sorted(((v, a["final_vs_baseline"]) for v, a in table["by_variant"].items()
                     if a.get("final_vs_baseline")), key=lambda x: -x[1]["diff"])
    if finals:
        lines += ["", "Ranked by where training ends (final cf reliance minus the baseline's, paired by seed):", ""]
        lines += [f"{i + 1}. {v}: {_pm(f, '+')}"
                  + f" pts (n={f['n']})" for i, (v, f) in enumerate(finals)]
    if table.get("recipe_id_bar") is not None:
        met = [v for v, a in table["by_variant"].items() if a["recipe"]["verdict"]]
        near = [v for v, a in table["by_variant"].items() if a.get("recipe_noise", {}).get("verdict")]
        lines += ["", f"Recipe goal: final cf reliance >= the run's own peak and final ID accuracy >= "
                  f"{table['recipe_id_bar']:.3f} (98% of the baseline's {table['baseline_id_acc']:.3f}), in every "
                  f"seed: met by {', '.join(met) if met else 'no run'}. Within noise (final below the peak by "
                  f"less than {NOISE_Z:g} paired SE, same ID bar): met by {', '.join(near) if near else 'no run'}."]
    lines += ["", *run_rows(table)]
    traj = trajectory_rows(table)
    if traj:
        lines += ["", "Every evaluation of every run:", "", *traj]
    if table.get("classes"):
        lines += ["", *classes_rows(table["classes"])]
    if table["missing"]:
        groups: dict[tuple[str, str], list[int]] = {}
        for m in table["missing"]:
            groups.setdefault((m["variant"], m["why"]), []).append(m["seed"])
        lines += ["", "Missing runs:", ""] + [
            f"- {v} seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}: {why}" for (v, why), s in groups.items()]
    if table.get("partial"):
        lines += ["", "Unfinished runs so far (not in the table above; `step: value` of the watched metric):", ""]
        lines += [f"- {name}: " + ", ".join(f"{st}: {v:.2f}" for st, v in vals)
                  for name, vals in table["partial"].items() if vals]
    return "\n".join(lines) + "\n"


def html(table: dict[str, Any], caption: str = "") -> str:
    """The table as an HTML fragment, with an optional caption paragraph (escaped)."""
    import html as _html

    from ctxrely.lab.compare import markdown_html

    head = f"<p><strong>{_html.escape(caption)}</strong></p>" if caption else ""
    return head + markdown_html(markdown(table))


def write_table(table: dict[str, Any], *, json_path: str | Path | None = None,
                md_path: str | Path | None = None) -> None:
    """Write the table as JSON (what the demo reads) and/or markdown."""
    for path, text in ((json_path, json.dumps(table, indent=2) + "\n"), (md_path, markdown(table))):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
