"""The measured table of one or more lab experiments: every run as mean ± sd over seeds, the drop
paired by seed against the baseline, the ``keep_peak`` view, the recipe verdict and what is missing.

Inputs are lab experiment folders (``<out>/runs/<run>-s<seed>/``, see :mod:`ctxrely.lab.runner`;
only runs with ``lab_done.json`` count) and, optionally, *recorded* runs: a JSON file of run
summaries whose folders no longer exist, with their provenance (``docs/data/*.json``). Per run it
takes :func:`ctxrely.lab.compare.summarize_run` (step 0, peak, step of peak, final, drop, paired SE
from the per-item logs, ID accuracy at the peak and at the end). Per variant:

* mean ± sample sd over seeds of each field, and the seeds it has;
* ``drop vs baseline``: ``d_s = drop_baseline_s - drop_variant_s`` over the seeds both have
  (paired by seed), mean ± ``sd(d)/sqrt(n)``; ``removed = mean(d) / mean(drop_baseline)`` over those
  seeds, the share of the baseline's drop the mitigation removes (ranked);
* ``final vs baseline``: the run's final cf reliance minus the baseline's, paired by seed, in points
  (where training *ends*: a run can remove the drop by peaking lower, which this column shows);
* ``keep_peak``: what the callback's best-reliance checkpoint holds: cf reliance and ID accuracy at
  the step of the peak (selected on the same conflict set, so optimistic); and ``keep_best_id``, the
  evaluated step with the highest cf reliance among those whose ID accuracy clears the recipe's bar
  (a checkpoint rule a user could apply, equally optimistic);
* the recipe goal: final cf reliance >= the run's own peak (i.e. the last evaluation is the peak)
  and final ID accuracy >= 98% of the baseline's mean final ID accuracy, per seed; and the same goal
  *within noise*: the drop from the peak under ``NOISE_Z`` paired SE (the peak is the best of many
  noisy evaluations, so a run that plateaus rarely ends exactly on it).

Example:
    >>> t = build_table(collect(["runs/lab-long"]), runs=["baseline", "filter"], seeds=[0, 1, 2])  # doctest: +SKIP
    >>> print(markdown(t))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ctxrely.errors import ConfigError

FIELDS = ("step0", "peak", "peak_step", "final", "drop", "drop_se", "id_acc_peak", "id_acc_final")
RECIPE_ID_SHARE = 0.98
NOISE_Z = 2.0  # a drop under this many paired SE counts as "within noise" for the recipe
# preset fields that may differ between the sources of one table (they do not change the numbers)
FREE = ("runs", "seeds", "device", "eval_batch_size", "save_steps")


def _setting(preset: dict[str, Any], key: str) -> Any:
    """A preset's value for ``key``; a field the source predates counts as the field's default."""
    if key in preset:
        return preset[key]
    from dataclasses import MISSING, fields

    from ctxrely.lab.presets import LabPreset

    f = next((f for f in fields(LabPreset) if f.name == key), None)
    if f is None:
        return None
    return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]


def _split(name: str) -> tuple[str, int] | None:
    variant, sep, seed = name.rpartition("-s")
    return (variant, int(seed)) if sep and seed.isdigit() else None


def scan_experiment(folder: str | Path) -> tuple[list[dict[str, Any]], dict[tuple[str, int], str], dict[str, Any]]:
    """Finished runs, unfinished runs (with why) and the preset of one lab experiment folder (its
    ``partial`` entry: the watched metric of each unfinished run so far, ``[[step, value], ...]``)."""
    from ctxrely.lab.compare import summarize_run
    from ctxrely.report.summary import load_run
    from ctxrely.track.trajectory import TrajectoryStore

    out = Path(folder)
    if not (out / "preset.json").exists():
        raise ConfigError(f"{out}: no preset.json (not a lab experiment folder)")
    preset = json.loads((out / "preset.json").read_text(encoding="utf-8"))
    done, pending, partial = [], {}, {}
    for d in sorted((out / "runs").glob("*-s*")) if (out / "runs").is_dir() else []:
        key = _split(d.name)
        if key is None or not d.is_dir():
            continue
        if not (d / "lab_done.json").exists():
            store = TrajectoryStore(d)
            steps = sorted(int(r["step"]) for r in store.rows())
            metric = store.settings().get("metric")
            partial[key] = sorted([int(r["step"]), r[metric]] for r in store.rows() if r.get(metric) is not None)
            pending[key] = (f"unfinished: last evaluation at step {steps[-1]} of {preset.get('max_steps')}"
                            if steps else "unfinished: started, no evaluation yet") + f" ({d})"
            continue
        try:
            s = summarize_run(d)
        except (FileNotFoundError, ValueError) as e:  # marked done, yet nothing to read
            pending[key] = f"finished but unreadable: {e}"
            continue
        run = load_run(d)
        ids = dict(run.series(run.id_metric())) if run.id_metric() else {}
        series = [[st, v, ids.get(st)] for st, v in run.series(s["metric"])]
        marker = json.loads((d / "lab_done.json").read_text(encoding="utf-8"))
        done.append({"variant": key[0], "seed": key[1], **{k: s.get(k) for k in FIELDS}, "z": s.get("z"),
                     "metric": s["metric"], "source": str(d), "recorded": False,
                     "commit": (marker.get("provenance") or {}).get("git", {}).get("sha"), "series": series})
    return done, pending, {"source": str(out), "preset": preset, "partial": partial}


def load_recorded(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Runs from a recorded-results file: ``{"provenance": {...}, "preset": {...}, "runs": [...]}``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: cannot read recorded runs ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list) or not doc["runs"]:
        raise ConfigError(f'{p}: no recorded runs; expected {{"runs": [{{"variant", "seed", ...}}, ...]}}')
    runs = []
    for i, r in enumerate(doc["runs"]):
        if not isinstance(r, dict):
            raise ConfigError(f"{p}: runs[{i}]: expected an object, got {type(r).__name__}")
        missing = [k for k in ("variant", "seed", "peak", "final", "drop") if k not in r]
        if missing:
            raise ConfigError(f"{p}: runs[{i}]: missing field(s) {', '.join(missing)}")
        runs.append({**{k: r.get(k) for k in FIELDS}, "variant": r["variant"], "seed": int(r["seed"]),
                     "z": r.get("z"), "metric": doc.get("metric"), "source": str(p), "recorded": True,
                     "commit": doc.get("provenance", {}).get("commit"),
                     "series": [[int(st), v, None] for st, v in sorted((r.get("trajectory") or {}).items(),
                                                                       key=lambda kv: int(kv[0]))]})
    return runs, {"source": str(p), "preset": doc.get("preset", {}), "provenance": doc.get("provenance", {})}


def collect(folders: Sequence[str | Path], recorded: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Every finished run of the folders and recorded files (a folder's run wins over a recorded one).

    Raises:
        ConfigError: the sources ran different settings (other than :data:`FREE`) or another metric.
    """
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    pending: dict[tuple[str, int], str] = {}
    sources = []
    for path in recorded:
        rs, info = load_recorded(path)
        sources.append(info)
        runs.update({(r["variant"], r["seed"]): r for r in rs})
    for folder in folders:
        rs, pend, info = scan_experiment(folder)
        sources.append(info)
        runs.update({(r["variant"], r["seed"]): r for r in rs})
        pending.update(pend)
    pending = {k: v for k, v in pending.items() if k not in runs}
    partial = {f"{k[0]}-s{k[1]}": v for s in sources for k, v in s.pop("partial", {}).items() if k in pending}
    ref = next((s for s in sources if s["preset"]), None)
    for s in sources:
        diff = sorted(k for k in set(ref["preset"]) | set(s["preset"]) if k not in FREE and s["preset"]
                      and _setting(ref["preset"], k) != _setting(s["preset"], k)) if ref else []
        if diff:
            raise ConfigError(f"{s['source']} ran other settings than {ref['source']} ({', '.join(diff)} differ); "
                              "one table needs one experiment")
    metrics = {r["metric"] for r in runs.values() if r.get("metric")}
    if len(metrics) > 1:
        raise ConfigError(f"the sources watch different metrics: {', '.join(sorted(metrics))}")
    return {"runs": [runs[k] for k in sorted(runs)], "pending": pending, "partial": partial, "sources": sources,
            "metric": next(iter(metrics), None), "preset": ref["preset"] if ref else {}}


def _agg(values: list[Any]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    return {"mean": statistics.fmean(vals) if vals else None,
            "sd": statistics.stdev(vals) if len(vals) > 1 else None, "n": len(vals)}


def best_with_id(series: list[list[Any]] | None, bar: float | None) -> list[Any] | None:
    """``[step, cf, id_acc]`` of the evaluation with the highest cf reliance among those whose ID
    accuracy is at least ``bar`` (first such step), or None (no series, no bar, no step reaches it).

    Example:
        >>> best_with_id([[0, 0.3, 0.5], [15, 0.9, 0.6], [30, 0.7, 0.99], [45, 0.7, 1.0]], 0.98)
        [30, 0.7, 0.99]
    """
    ok = [e for e in series or [] if bar is not None and e[2] is not None and e[2] >= bar]
    return max(ok, key=lambda e: (e[1], -e[0])) if ok else None


def build_table(found: dict[str, Any], *, runs: Sequence[str] | None = None,
                seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Aggregate :func:`collect`'s runs; ``runs`` x ``seeds`` is the grid the table should have
    (default: the preset's), and every cell of it without a finished run is listed in ``missing``."""
    rows = found["runs"]
    preset = found.get("preset") or {}
    want_runs = list(runs or preset.get("runs") or [])
    want_runs += [v for v in dict.fromkeys(r["variant"] for r in rows) if v not in want_runs]
    want_seeds = sorted(set(seeds if seeds is not None else preset.get("seeds") or []) | {r["seed"] for r in rows})
    have = {(r["variant"], r["seed"]): r for r in rows}
    missing = [{"variant": v, "seed": s, "why": found["pending"].get((v, s), "not started")}
               for v in want_runs for s in want_seeds if (v, s) not in have]
    base = {r["seed"]: r for r in rows if r["variant"] == "baseline"}
    base_id = _agg([r["id_acc_final"] for r in base.values()])["mean"]
    id_bar = None if base_id is None else RECIPE_ID_SHARE * base_id
    by_variant: dict[str, Any] = {}
    for v in want_runs:
        mine = [r for r in rows if r["variant"] == v]
        if not mine:
            continue
        agg: dict[str, Any] = {f: _agg([r[f] for r in mine]) for f in FIELDS}
        agg["seeds"] = [r["seed"] for r in mine]
        agg["recorded_seeds"] = [r["seed"] for r in mine if r["recorded"]]
        paired = [(base[r["seed"]]["drop"], r["drop"]) for r in mine if r["seed"] in base]
        finals = [100 * (r["final"] - base[r["seed"]]["final"]) for r in mine if r["seed"] in base]
        if v != "baseline" and finals:
            agg["final_vs_baseline"] = {"n": len(finals), "diff": statistics.fmean(finals),
                                        "se": statistics.stdev(finals) / math.sqrt(len(finals))
                                        if len(finals) > 1 else None}
        if v != "baseline" and paired:
            d = [b - x for b, x in paired]
            mb = statistics.fmean(b for b, _ in paired)
            agg["vs_baseline"] = {"n": len(d), "diff": statistics.fmean(d),
                                  "se": statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else None,
                                  "removed": statistics.fmean(d) / mb if mb else None}
        id_ok = [id_bar is not None and r["id_acc_final"] is not None and r["id_acc_final"] >= id_bar for r in mine]
        passes = [r["final"] >= r["peak"] and ok for r, ok in zip(mine, id_ok, strict=True)]
        noise = [(r["final"] >= r["peak"] or (r.get("z") is not None and r["z"] < NOISE_Z)) and ok
                 for r, ok in zip(mine, id_ok, strict=True)]
        kp_ok = [id_bar is not None and r["id_acc_peak"] is not None and r["id_acc_peak"] >= id_bar for r in mine
                 if r["id_acc_peak"] is not None]
        agg["recipe"] = {"pass": sum(passes), "n": len(passes), "verdict": bool(passes) and all(passes)}
        agg["recipe_noise"] = {"pass": sum(noise), "n": len(noise), "verdict": bool(noise) and all(noise)}
        agg["keep_peak_recipe"] = {"pass": sum(kp_ok), "n": len(kp_ok), "verdict": bool(kp_ok) and all(kp_ok)}
        best = [b for b in (best_with_id(r.get("series"), id_bar) for r in mine) if b]
        agg["keep_best_id"] = {"cf": _agg([b[1] for b in best]), "step": _agg([b[0] for b in best]),
                               "id_acc": _agg([b[2] for b in best])}
        by_variant[v] = agg
    ranking = sorted(({"variant": v, "removed": a["vs_baseline"]["removed"], "diff": a["vs_baseline"]["diff"],
                       "se": a["vs_baseline"]["se"], "n": a["vs_baseline"]["n"]}
                      for v, a in by_variant.items() if a.get("vs_baseline", {}).get("removed") is not None),
                     key=lambda r: -r["removed"])
    return {"metric": found.get("metric"), "runs": rows, "by_variant": by_variant, "ranking": ranking,
            "missing": missing, "grid": {"runs": want_runs, "seeds": want_seeds},
            "baseline_id_acc": base_id, "recipe_id_bar": id_bar, "sources": found.get("sources", []),
            "partial": found.get("partial", {}),
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def __getattr__(name: str) -> Any:
    # ``write_table`` moved to :mod:`ctxrely.lab.table_md` (rendering depends on the table, not back)
    if name == "write_table":
        import importlib

        return importlib.import_module("ctxrely.lab.table_md").write_table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
