"""Read a tracked run folder and summarise it: step-0, peak, step of peak, final, drop, ID accuracy,
the inversion (if any) and the per-example flips between the peak and the end.

A run folder is anything ``ContextRelianceCallback`` wrote into (``trajectory.jsonl``,
``trajectory_examples.jsonl``, ``probe_set.jsonl``, ``tracking.json``), plus
``ctxrely_config.yaml`` when it came from ``ctxrely train``.

Example:
    >>> s = run_summary("runs/baseline")  # doctest: +SKIP
    >>> s["metric"], s["step0"], s["peak"], s["peak_step"], s["final"], s["drop"]  # doctest: +SKIP
    ('cf_capitals/logit_cf_rate', 0.42, 0.66, 150, 0.31, 35.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxrely.track.inversion import detect, points_scale
from ctxrely.track.trajectory import TrajectoryStore

TWINS = {"cf_acc": "param_acc", "logit_cf_rate": None, "m_c": None}


@dataclass
class Run:
    """Everything the report needs from one run folder."""

    dir: Path
    rows: list[dict[str, Any]]
    settings: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def metric(self) -> str:
        m = self.settings.get("metric") or next((r["metric"] for r in reversed(self.rows) if r.get("metric")), None)
        if not m:
            raise ValueError(f"{self.dir}: cannot tell which metric was watched (no tracking.json)")
        return str(m)

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r[key])) for r in self.rows if isinstance(r.get(key), (int, float))]

    def id_metric(self) -> str | None:
        """The first in-distribution accuracy key (``id/<set>/acc``), if any."""
        keys = sorted({k for r in self.rows for k in r if k.startswith("id/") and k.endswith("/acc")})
        return keys[0] if keys else None


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder; raise ``FileNotFoundError`` naming it if it has no trajectory."""
    run_dir = Path(run_dir)
    store = TrajectoryStore(run_dir)
    if not store.path.exists():
        raise FileNotFoundError(f"{run_dir}: no trajectory.jsonl (not a tracked run folder?)")
    rows = sorted(store.rows(), key=lambda r: int(r["step"]))
    if not rows:
        raise ValueError(f"{store.path}: no evaluations recorded yet")
    config: dict[str, Any] = {}
    cfg_path = run_dir / "ctxrely_config.yaml"
    if cfg_path.exists():
        import yaml

        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    return Run(dir=run_dir, rows=rows, settings=store.settings(), config=config)


def labels_for(runs: list[Run]) -> list[str]:
    """Legend labels from each run's config: ``run_name`` if set, else the config fields that differ
    between the runs (``train_modules=qk, lr=0.0001``), else the folder name."""
    out = []
    skip = {"output_dir", "run_name", "resume"}
    with_cfg = [r for r in runs if r.config]
    keys = sorted({k for r in with_cfg for k in r.config} - skip)
    differing = [k for k in keys if len({repr(r.config.get(k)) for r in with_cfg}) > 1] if len(with_cfg) > 1 else []
    for r in runs:
        if r.config.get("run_name"):
            out.append(str(r.config["run_name"]))
        elif differing and r.config:
            out.append(", ".join(f"{k}={r.config.get(k)}" for k in differing[:3]))
        else:
            out.append(r.dir.name or str(r.dir))
    if len(set(out)) < len(out):  # still ambiguous: prefix the folder
        out = [f"{r.dir.name}: {lab}" if lab != r.dir.name else lab for r, lab in zip(runs, out, strict=True)]
    return out


def param_series(run: Run) -> tuple[str, list[tuple[int, float]]] | None:
    """The parametric counterpart of the watched metric, with a label."""
    prefix, kind = run.metric.rsplit("/", 1)
    if kind == "cf_acc" and run.series(f"{prefix}/param_acc"):
        return "parametric accuracy", run.series(f"{prefix}/param_acc")
    if kind in ("logit_cf_rate", "m_c"):
        return f"parametric preferred (1 - {kind})", [(s, 1.0 - v) for s, v in run.series(run.metric)]
    return None


def _source(row: dict[str, Any], logit: bool) -> str:
    if logit and row.get("cf_wins") is not None:
        return "context" if row["cf_wins"] else "memory"
    return {"cf_only": "context", "param_only": "memory"}.get(row.get("bucket") or "", "other")


def flips(run_dir: str | Path, from_step: int | None = None, to_step: int | None = None) -> list[dict[str, Any]]:
    """Examples answered from the context at ``from_step`` (default: the peak) and from memory at
    ``to_step`` (default: the last evaluation)."""
    run = load_run(run_dir)
    s = run_summary(run)
    store = TrajectoryStore(run.dir)
    by_step = {int(r["step"]): r["rows"] for r in store.example_rows()}
    a, b = by_step.get(s["peak_step"] if from_step is None else from_step), by_step.get(
        s["final_step"] if to_step is None else to_step)
    if a is None or b is None:
        return []
    logit = run.metric.rsplit("/", 1)[-1] in ("logit_cf_rate", "m_c", "logp_margin")
    probe = {(e["suite"], e["id"]): e for e in store.probe_set()}
    end = {(r["suite"], r["id"]): r for r in b}
    out = []
    for r in a:
        key = (r["suite"], r["id"])
        if key in end and _source(r, logit) == "context" and _source(end[key], logit) == "memory":
            ex = probe.get(key, {})
            out.append({"suite": r["suite"], "id": r["id"], "question": ex.get("question", ""),
                        "context": ex.get("context", ""), "cf_answer": ex.get("cf_answer", ""),
                        "param_answer": ex.get("param_answer", ""), "margin_peak": r.get("logp_margin"),
                        "margin_end": end[key].get("logp_margin"), "output_peak": r.get("output"),
                        "output_end": end[key].get("output")})
    return out


def run_summary(run_dir: str | Path | Run) -> dict[str, Any]:
    """Step-0, peak, step of peak, final, drop (points), inversion step, ID accuracy and attention."""
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    metric = run.metric
    series = run.series(metric)
    if not series:
        raise ValueError(f"{run.dir}: the watched metric {metric!r} has no values in trajectory.jsonl")
    scale = float(run.settings.get("scale") or points_scale(metric))
    det = detect(series, float(run.settings.get("drop_threshold", 10.0)), int(run.settings.get("patience", 2)), scale)
    (step0_step, step0), (final_step, final) = series[0], series[-1]
    peak_step, peak = max(series, key=lambda sv: (sv[1], -sv[0]))
    out: dict[str, Any] = {
        "run": str(run.dir), "metric": metric, "n_evals": len(series), "step0_step": step0_step, "step0": step0,
        "peak": peak, "peak_step": peak_step, "final": final, "final_step": final_step,
        "drop": (peak - final) * scale, "drop_unit": "points" if scale == 100 else "units",
        "inversion_step": det.event.step if det.event else None,
        "inversion": det.event.to_dict() if det.event else None,
    }
    at = {int(r["step"]): r for r in run.rows}
    for name, key in (("id_acc", run.id_metric()), ("attn", "attn/context_mass")):
        vals = dict(run.series(key)) if key else {}
        out[f"{name}_metric"] = key if vals else None
        for where, step in (("step0", step0_step), ("peak", peak_step), ("final", final_step)):
            out[f"{name}_{where}"] = vals.get(step) if vals else None
    out["id_acc_max"] = max(dict(run.series(out["id_acc_metric"])).values()) if out["id_acc_metric"] else None
    out["eval_seconds"] = sum(float(at[s].get("eval_seconds") or 0) for s in at)
    return out
