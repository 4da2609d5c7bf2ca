"""IC-Train lab figures and tables: accuracy per max-similarity bucket (Malu et al. Fig. 3) and the
ICL / IWL / Copy probe curves over training steps (Fig. 4), averaged over seeds per strategy.

Example:
    >>> summary = write_icl_report("runs/icl-lab", ["zero", "random", "similar", "contrastive"])  # doctest: +SKIP
    >>> summary["per_strategy"]["contrastive"]["final"]["icl_score"]  # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.engine.resume import finished_runs
from ctxrely.icl.buckets import BUCKETS
from ctxrely.icl.intervals import logged_evals, write_intervals
from ctxrely.icl.probes import probe_scores
from ctxrely.report.plots import COLORS, new_figure, save_figure
from ctxrely.track.trajectory import TrajectoryStore

PROBES = ("icl_score", "iwl_score", "copy_score")


def _mean(vals: Sequence[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return sum(v) / len(v) if v else None


def _se(vals: Sequence[float | None]) -> float | None:
    """Standard error of the mean over seeds (None below two values)."""
    v = [x for x in vals if x is not None]
    if len(v) < 2:
        return None
    m = sum(v) / len(v)
    return (sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) ** 0.5


def _word_level(run_dir: Path, suite: str, score: Any) -> dict[int, float]:
    """Per evaluated step, ``sum(score(item, output)) / sum(weight)`` over the suite's logged outputs."""
    items = {e["id"]: e for e in TrajectoryStore(run_dir).probe_set() if e.get("suite") == suite}
    out: dict[int, float] = {}
    for step, rows in logged_evals(run_dir):
        hits = total = 0.0
        for r in rows:
            if r.get("suite") == suite and r.get("id") in items:
                h, n = score(items[r["id"]], str(r.get("output") or "").split())
                hits, total = hits + h, total + n
        if total:
            out[step] = hits / total
    return out


def word_accuracy(run_dir: Path, suite: str = "iwl_probe") -> dict[int, float]:
    """Per evaluated step: the share of taught-label words the output gets right *at their position*
    (word ``i`` of the output equals word ``i`` of the label); a finer IWL reading than whole-label
    accuracy while the lexicon is half learned. Read from ``probe_set.jsonl`` and ``trajectory_examples.jsonl``."""
    def score(e: dict[str, Any], words: list[str]) -> tuple[int, int]:
        gold = (e["param_answer"] or e["cf_answer"]).split()
        return sum(1 for i, w in enumerate(gold) if i < len(words) and words[i] == w), len(gold)

    return _word_level(run_dir, suite, score)


def word_copy_rate(run_dir: Path, suite: str = "iwl_probe") -> dict[int, float]:
    """Per evaluated step: the share of IWL-probe outputs holding at least one word of a dissimilar
    demonstration's label that is not a word of the taught label (word-level blind copying; the
    Copy-score counts whole labels only)."""
    def score(e: dict[str, Any], words: list[str]) -> tuple[int, int]:
        demo = {w for lab in [e["cf_answer"], *e["cf_aliases"]] for w in lab.split()}
        return int(bool((demo - set((e["param_answer"] or "").split())) & set(words))), 1

    return _word_level(run_dir, suite, score)


def collect(out: Path, strategies: Sequence[str]) -> dict[str, Any]:
    """Per run: the named scores at every evaluated step; per strategy: the mean over seeds."""
    runs: dict[str, Any] = {}
    for strategy, _, d in finished_runs(out):
        rows = TrajectoryStore(d).rows()
        if not rows:
            continue
        words, copies = word_accuracy(d), word_copy_rate(d)
        runs[d.name] = {"strategy": strategy, "steps": [r["step"] for r in rows],
                        "scores": [{**probe_scores(r), "iwl_word_acc": words.get(int(r["step"])),
                                    "copy_word_rate": copies.get(int(r["step"]))} for r in rows]}
    per: dict[str, Any] = {}
    for st in strategies:
        mine = [r for r in runs.values() if r["strategy"] == st]
        if not mine:
            continue
        steps = sorted(set.intersection(*(set(r["steps"]) for r in mine)))
        curves = {name: [_mean([r["scores"][r["steps"].index(s)][name] for r in mine]) for s in steps]
                  for name in mine[0]["scores"][0]}
        finals = {k: [r["scores"][r["steps"].index(steps[-1])][k] for r in mine] for k in curves}
        per[st] = {"n_seeds": len(mine), "seeds": sorted(int(n.rsplit("-s", 1)[1]) for n, r in runs.items()
                                                          if r["strategy"] == st),
                   "steps": steps, "curves": curves, "step0": {k: v[0] for k, v in curves.items()},
                   "final": {k: v[-1] for k, v in curves.items()},
                   "final_se": {k: _se(v) for k, v in finals.items()}}
    return {"runs": runs, "per_strategy": per}


def plot_buckets(per: dict[str, Any], out: Path) -> list[Path]:
    """Fig. 3: final accuracy per bucket (zero-context first), one bar group per bucket."""
    fig = new_figure(8.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    names = list(per)
    width = 0.8 / max(1, len(names))
    for i, st in enumerate(names):
        vals = [per[st]["final"].get(f"icl_acc_{b}") for b in BUCKETS]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(BUCKETS))]
        ax.bar(xs, [v if v is not None else 0 for v in vals], width, color=COLORS[i % len(COLORS)], label=st)
    ax.set_xticks(range(len(BUCKETS)), ["zero-context", "Low [0, 1/3)", "Medium [1/3, 2/3)", "High [2/3, 1]"])
    ax.set_ylabel("task accuracy (end of training)")
    ax.set_ylim(0, 1.03)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="IC-Train strategy", fontsize=8, title_fontsize=8)
    ax.set_title("Accuracy per bucket of the target's max similarity to its examples")
    return save_figure(fig, out, "icl_buckets")


def plot_probes(per: dict[str, Any], out: Path) -> list[Path]:
    """Fig. 4: ICL-, IWL- and Copy-score against the step, one panel each, one line per strategy."""
    fig = new_figure(11.0, 3.8)
    for j, name in enumerate(PROBES):
        ax = fig.add_subplot(1, 3, j + 1)
        for i, (st, d) in enumerate(per.items()):
            ys = d["curves"][name]
            pts = [(s, y) for s, y in zip(d["steps"], ys, strict=True) if y is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), "-o", ms=3, color=COLORS[i % len(COLORS)], label=st)
            extra = {"iwl_score": "iwl_word_acc", "copy_score": "copy_word_rate"}.get(name, "")
            words = [(s, y) for s, y in zip(d["steps"], d["curves"].get(extra, []), strict=False) if y is not None]
            if words:
                ax.plot(*zip(*words, strict=True), "--", lw=1, color=COLORS[i % len(COLORS)])
        ax.set_title({"icl_score": "ICL-score", "iwl_score": "IWL-score", "copy_score": "Copy-score"}[name])
        ax.set_xlabel("optimizer step")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.legend(fontsize=8)
        if name in ("iwl_score", "copy_score"):
            ax.set_xlabel("optimizer step (dashed: word level)")
    return save_figure(fig, out, "icl_probes")


def _cell(d: dict[str, Any], c: str) -> str:
    if d["final"].get(c) is None:
        return "-"
    se = (d.get("final_se") or {}).get(c)
    pm = f" ± {se:.2f}" if se is not None else ""
    return f"{d['final'][c]:.2f}{pm} ({d['step0'][c]:.2f})"


def markdown(per: dict[str, Any]) -> str:
    """The final scores per strategy as a Markdown table: mean over seeds (± SE over seeds where
    there are two or more), the step-0 value in brackets; the second column lists the seeds."""
    cols = [*PROBES, "iwl_word_acc", "copy_word_rate", *(f"icl_acc_{b}" for b in BUCKETS)]
    lines = ["| strategy | seeds | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for st, d in per.items():
        seeds = ",".join(map(str, d.get("seeds") or [])) or str(d["n_seeds"])
        lines.append(f"| {st} | {seeds} | " + " | ".join(_cell(d, c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_icl_report(out_dir: str | Path, strategies: Sequence[str]) -> dict[str, Any]:
    """Write ``icl_summary.{json,md}``, the per-run intervals (``icl_intervals.md``), the two figures and
    ``report/report.html``; return the summary."""
    from ctxrely.report.html import build_report, img_tag

    out = Path(out_dir)
    summary = collect(out, strategies)
    (out / "icl_summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    table = markdown(summary["per_strategy"])
    (out / "icl_summary.md").write_text(table, encoding="utf-8")
    write_intervals(out)
    per = summary["per_strategy"]
    if not per:
        return summary
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    figs = [p for p in plot_buckets(per, rep) + plot_probes(per, rep) if p.suffix == ".png"]
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")) + "</tr>"
                   for line in table.splitlines()[2:])
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in table.splitlines()[0].strip("|").split("|"))
    frag = ("".join(f"<figure>{img_tag(p, p.stem)}</figure>" for p in figs)
            + f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            '<p class="muted">End of training (step 0 in brackets), mean over seeds. ICL-score: near-duplicate of a '
            "novel item in context; IWL-score: taught items among dissimilar examples; Copy-score: outputs holding "
            "a dissimilar example's label. Definitions: docs/icl.md.</p>")
    dirs = [out / "runs" / name for name in summary["runs"]]
    summary["report"] = str(build_report(dirs, rep, title="ctxrely lab: in-context example sampling (IC-Train)",
                                         extra_sections=[("IC-Train: accuracy per similarity bucket and probes",
                                                          frag)]))
    return summary
