"""``ctxrely lab``: reproduce context-parametric inversion on a real pretrained LM, with mitigations.

Probes which facts the model knows, builds a C / C+S / S instruction mixture from the shipped fact
tables, fine-tunes (LoRA by default) with the tracking callback, once per (run, seed), and writes a
comparison table (JSON + markdown) and the report. Rerunning the same command resumes.

Example:
    $ ctxrely lab --preset short --out runs/lab-short
    $ ctxrely lab --preset long --seeds 0,1,2 --device cuda --out runs/lab-long
    $ ctxrely lab --preset long --runs baseline,no_ccs --set max_steps=200 --set n_heldout=200
    $ ctxrely lab --list-fields
"""

from __future__ import annotations

import argparse

NAME = "lab"
HELP = "fine-tune a real LM on a C / C+S / S fact mixture and compare mitigations (context-parametric inversion)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="short", help="short (SmolLM2, minutes), long (Gemma 3 270M base, hours on "
                                                     "CPU) or quick (tiny random model, for tests)")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the preset's)")
    p.add_argument("--runs", default=None, help="comma-separated runs: baseline, filter, no_ccs, qk_only, augment, "
                                                "indicator, filter_class, filter_augment, filter_qk, augment_qk "
                                                "(default: the preset's)")
    p.add_argument("--model", default=None, help="another model than the preset's (zoo name, folder or hub id)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any preset field (repeatable), e.g. --set max_steps=200; see --list-fields")
    p.add_argument("--out", default=None, help="experiment folder (default: runs/lab-<preset>)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list-fields", action="store_true", help="print every preset field with its help and exit")


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["max_steps=200", "seeds=0,1", "probe=false"]`` -> typed values, by the preset's field types
    (the one config loader, :mod:`ctxrely.config`).

    Raises:
        ConfigError: no ``=``, an unknown field, or a value of the wrong type.
    """
    from ctxrely import config
    from ctxrely.lab.presets import LabPreset

    return config.typed_fields(LabPreset, config.parse_overrides(items, "--set"), "--set")


def run(args: argparse.Namespace) -> int:
    from ctxrely.lab.presets import get_preset, help_table

    if args.list_fields:
        for name, default, text in help_table():
            print(f"{name:22s} {default:28s} {text}")
        return 0
    overrides = parse_overrides(args.overrides)
    if args.seeds:
        overrides["seeds"] = parse_overrides([f"seeds={args.seeds}"])["seeds"]
    if args.runs:
        overrides["runs"] = [r.strip() for r in args.runs.split(",") if r.strip()]
    for key in ("model", "device"):
        if getattr(args, key):
            overrides[key] = getattr(args, key)
    preset = get_preset(args.preset, **overrides)
    out = args.out or f"runs/lab-{preset.name}"

    from rich.console import Console

    from ctxrely.lab.runner import run_lab

    console = Console(stderr=True, quiet=args.no_progress)
    outcome = run_lab(preset, out, progress=not args.no_progress, report=not args.no_report,
                      say=lambda m: console.print(f"[bold cyan]lab[/] {m}", highlight=False, soft_wrap=True))
    print((outcome.out_dir / "comparison.md").read_text(encoding="utf-8"))
    print(f"comparison: {outcome.out_dir / 'comparison.json'}")
    if outcome.report:
        print(f"report: {outcome.report}")
    return 0
