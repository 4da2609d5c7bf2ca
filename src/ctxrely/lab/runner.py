"""Run a lab experiment end to end: probe -> data -> one fine-tuning run per (variant, seed) ->
comparison table -> report. Resumable: a run folder with a ``lab_done.json`` marker is skipped on
restart, the probe and the mixture are cached, and with ``save_steps`` an interrupted run resumes
from its last checkpoint.

Output folder::

    <out>/preset.json                 the resolved preset (a restart must match it)
    <out>/data/                       probe, mixture, ID rows, conflict items, scorer caches
    <out>/runs/<variant>-s<seed>/     one ``run_train`` folder each (trajectory.jsonl, ...)
    <out>/comparison.{json,md}        per run and per variant (mean ± sd over seeds)
    <out>/report/index.html           the tracking report with the comparison

Example:
    >>> from ctxrely.lab.presets import get_preset
    >>> outcome = run_lab(get_preset("short"), "runs/lab-short")  # doctest: +SKIP
    >>> print(outcome.report)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxrely.engine.resume import DONE
from ctxrely.errors import ConfigError
from ctxrely.lab.presets import LabPreset, preset_from_dict

log = logging.getLogger(__name__)
# fields that may change between restarts of one experiment (more seeds/runs, another device)
RESTART_FREE = ("runs", "seeds", "device", "eval_batch_size")


@dataclass
class LabOutcome:
    """Where a lab experiment's results are."""

    out_dir: Path
    run_dirs: dict[tuple[str, int], Path] = field(default_factory=dict)
    data_stats: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None


def check_preset(preset: LabPreset, out: Path) -> None:
    """Write ``preset.json``, or check that an existing one describes the same experiment."""
    from ctxrely.engine.resume import atomic_write, read_json

    path = out / "preset.json"
    if path.exists():
        old = preset_from_dict(read_json(path, "the experiment's settings"), where=str(path))
        diff = [k for k, v in preset.to_dict().items() if k not in RESTART_FREE and getattr(old, k) != v]
        if diff:
            raise ConfigError(f"{out} holds an experiment with other settings ({', '.join(diff)} differ); "
                              "use another --out, or delete the folder to start over")
    atomic_write(path, json.dumps(preset.to_dict(), indent=2) + "\n")


def resolve_model(preset: LabPreset, out: Path) -> str:
    """The model to load: ``tiny`` is a random tiny Llama saved once to ``<out>/tiny-model``."""
    if preset.model != "tiny":
        return preset.model
    path = out / "tiny-model"
    if not (path / "config.json").exists():
        from ctxrely.models.tiny import save_tiny

        save_tiny(path, arch="llama", seed=0)
    return str(path)


def train_config(preset: LabPreset, variant: str, seed: int, run_dir: Path, fmt: str, overrides: dict[str, Any],
                 model_name: str) -> Any:
    """The ``TrainConfig`` of one run."""
    from ctxrely.lab.heldout import SUITE
    from ctxrely.train.config import LoraSection, TrainConfig

    resume = "last" if any(run_dir.glob("checkpoint-*")) else None
    return TrainConfig(
        model=model_name, output_dir=str(run_dir), run_name=f"{variant}-s{seed}", dataset_format="prompt_completion",
        max_steps=preset.max_steps, lr=preset.lr, lr_scheduler=preset.lr_scheduler, warmup_steps=preset.warmup_steps,
        batch_size=preset.batch_size, max_length=preset.max_length, seed=seed, finetune=preset.finetune,  # type: ignore[arg-type]
        lora=LoraSection(rank=preset.lora_rank, alpha=preset.lora_alpha, dropout=preset.lora_dropout),
        eval_every=preset.eval_every, suites=[], eval_limit=None, eval_mode=preset.eval_mode,  # type: ignore[arg-type]
        eval_format=fmt, metric=f"{SUITE}/{'cf_acc' if preset.eval_mode == 'generate' else 'logit_cf_rate'}",
        attention_subset=preset.attention_subset, logging_steps=max(1, min(10, preset.eval_every)),
        save_steps=preset.save_steps or None, resume=resume, device=preset.device, dtype=preset.dtype,  # type: ignore[arg-type]
        save_final=preset.finetune == "lora", **overrides)


def run_lab(preset: LabPreset, out_dir: str | Path, *, progress: bool = True, report: bool = True,
            say: Callable[[str], None] | None = None) -> LabOutcome:
    """Run every (variant, seed) of ``preset`` not yet done, then compare and report.

    Args:
        out_dir: the experiment folder (see the module docstring); reruns resume in it.
        report: build ``<out>/report/index.html`` (the demo builds one combined report instead).
        say: where progress lines go (default: the log).
    """
    from ctxrely.engine.resume import RunLock

    say = say or log.info
    out = Path(out_dir)
    check_preset(preset, out)
    with RunLock(out):  # one lab per folder: a second one is refused with one line
        return _run_lab(preset, out, progress, report, say)


def _run_lab(preset: LabPreset, out: Path, progress: bool, report: bool, say: Callable[[str], None]) -> LabOutcome:
    from ctxrely.lab.compare import compare_runs, write_comparison
    from ctxrely.lab.prepare import prepare_data
    from ctxrely.lab.variants import make_variant
    from ctxrely.models.load import load_model
    from ctxrely.train.sft import run_train

    outcome = LabOutcome(out_dir=out)
    model_name = resolve_model(preset, out)
    say(f"loading {preset.model}")
    model, tok = load_model(model_name, dtype=preset.dtype, device=preset.device)
    data = prepare_data(preset, model, tok, out, progress=progress, say=say)
    outcome.data_stats = data.stats
    say(f"mixture {data.stats['train_classes']}; conflict items {data.stats['eval_sets']}; "
        f"ID rows {len(data.id_rows)}")
    todo = [(v, s) for s in preset.seeds for v in preset.runs]  # every run of seed 0 first: comparable early
    for i, (variant, seed) in enumerate(todo):
        run_dir = out / "runs" / f"{variant}-s{seed}"
        if (run_dir / DONE).exists():
            say(f"[{i + 1}/{len(todo)}] {variant} seed {seed}: done earlier, skipped")
            outcome.run_dirs[(variant, seed)] = run_dir
            continue
        v = make_variant(variant, data.train, preset, model, tok, out / "data", fmt=data.fmt, seed=seed,
                         progress=progress)
        say(f"[{i + 1}/{len(todo)}] training {variant} seed {seed}: {v.manifest}")
        t0 = time.perf_counter()
        # run_train adapts the model in place (LoRA, QK freezing, an indicator token): give it copies
        run_model, run_tok = copy.deepcopy(model), copy.deepcopy(tok)
        run_model.train()
        cfg = train_config(preset, variant, seed, run_dir, data.fmt, v.overrides, preset.model)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "lab_variant.json").write_text(json.dumps(v.manifest, indent=2) + "\n", encoding="utf-8")
        run_train(cfg, model=run_model, tokenizer=run_tok, train_rows=v.rows, eval_examples=data.eval_sets,
                  id_rows=data.id_rows, probes=_awareness_probes(preset, cfg.indicator), progress=progress)
        del run_model
        gc.collect()
        wall = time.perf_counter() - t0
        from ctxrely.provenance import provenance

        (run_dir / DONE).write_text(json.dumps({"variant": variant, "seed": seed, "wall_seconds": round(wall, 1),
                                                **v.manifest, "provenance": provenance()}, indent=2) + "\n",
                                    encoding="utf-8")
        outcome.run_dirs[(variant, seed)] = run_dir
        say(f"[{i + 1}/{len(todo)}] {variant} seed {seed} finished in {wall:.0f} s")
    outcome.comparison = compare_runs(outcome.run_dirs)
    write_comparison(outcome.comparison, out)
    if report and outcome.run_dirs:
        outcome.report = build_lab_report(outcome, title=f"ctxrely lab: preset {preset.name} ({preset.model})")
    return outcome


def data_html(stats: dict[str, Any]) -> str:
    """The experiment's data counts as an HTML fragment."""
    import html

    rel = "".join(f"<tr><td>{html.escape(r)}</td><td>{a}</td><td>{b}</td></tr>"
                  for r, (a, b) in stats.get("per_relation", {}).items())
    return (f"<p>Prompt format: {html.escape(str(stats.get('format')))}. Closed-book probe: the model knows "
            f"{stats.get('known')} of {stats.get('probed')} facts; {stats.get('heldout_facts')} known facts are "
            f"held out as conflict items, {stats.get('train_facts')} feed the C+S and S points. Training mixture: "
            f"{html.escape(json.dumps(stats.get('train_classes')))}; ID rows {html.escape(json.dumps(stats.get('id')))}; "
            f"conflict sets {html.escape(json.dumps(stats.get('eval_sets')))}.</p>"
            f"<table><thead><tr><th>relation</th><th>probed</th><th>known</th></tr></thead><tbody>{rel}"
            "</tbody></table>")


def build_lab_report(outcome: LabOutcome, *, title: str, extra_sections: list[tuple[str, str]] | None = None,
                     out_dir: str | Path | None = None, after_sections: list[tuple[str, str]] | None = None) -> Path:
    """The tracking report of every run plus the comparison and data sections (``extra_sections``
    before the comparison, ``after_sections`` right after it)."""
    from ctxrely.lab.compare import html_table
    from ctxrely.report.html import build_report

    sections = list(extra_sections or [])
    sections.append(("Lab comparison: baseline vs mitigations", html_table(outcome.comparison)))
    sections += list(after_sections or [])
    sections.append(("Lab data", data_html(outcome.data_stats)))
    dirs = [outcome.run_dirs[k] for k in sorted(outcome.run_dirs)]
    return build_report(dirs, Path(out_dir) if out_dir else outcome.out_dir / "report", title=title,
                        extra_sections=sections)


def _awareness_probes(preset: LabPreset, indicator: str | None) -> list[Any]:
    """NIH recall and attention-role probes (chat template) when ``preset.awareness_lengths`` is set."""
    if not preset.awareness_lengths:
        return []
    from ctxrely.awareness.probes import AttentionRoleProbe, NIHProbe

    return [NIHProbe(lengths=preset.awareness_lengths, depths=(0, 50, 100), indicator=indicator, max_new_tokens=32),
            AttentionRoleProbe(lengths=preset.awareness_lengths[:1], max_new_tokens=8)]
