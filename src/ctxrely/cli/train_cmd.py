"""``ctxrely train``: supervised fine-tuning (TRL ``SFTTrainer``) with context-reliance tracking.

Example:
    $ ctxrely train --config examples/run.yaml
    $ ctxrely train --config examples/run.yaml lr=1e-4 finetune=lora lora.rank=8 output_dir=runs/lora
    $ ctxrely train --config runs/lora/ctxrely_config.yaml resume=last      # continue a run
    $ ctxrely train --list-fields
"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "fine-tune with TRL SFTTrainer while tracking context reliance (trajectory.jsonl, inversion detector)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML config (fields: ctxrely train --list-fields)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config fields, e.g. lr=1e-4 lora.rank=8 suites=cf_capitals,cf_bio")
    p.add_argument("--list-fields", action="store_true", help="print every config field with its default and help")
    p.add_argument("--dry-run", action="store_true", help="resolve and print the config, then stop")
    p.add_argument("--report", action="store_true", help="build the HTML report in <output_dir>/report at the end")


def run(args: argparse.Namespace) -> int:
    from ctxrely.train.config import field_help, load_config

    if args.list_fields:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="ctxrely train config fields")
        for col in ("field", "default", "help"):
            table.add_column(col)
        for row in field_help():
            table.add_row(*row)
        Console().print(table)
        return 0
    if not args.config and not args.overrides:
        raise SystemExit("error: pass --config run.yaml and/or KEY=VALUE overrides (see --list-fields)")
    cfg = load_config(args.config, args.overrides)
    from ctxrely.paths import check_out_dir

    check_out_dir(cfg.output_dir, "output_dir")  # before any data is read or model loaded
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if cfg.suites:  # fail on a typo before loading a model
        from ctxrely.data.suites import load_suite

        for s in cfg.suites:
            load_suite(s)
    from ctxrely.train.sft import run_train

    run_dir = run_train(cfg)
    from ctxrely.report.summary import run_summary

    s = run_summary(run_dir)
    inv = f"inversion at step {s['inversion_step']}" if s["inversion_step"] is not None else "no inversion"
    print(f"{s['metric']}: step 0 {s['step0']:.3f}, peak {s['peak']:.3f} (step {s['peak_step']}), "
          f"final {s['final']:.3f}, drop {s['drop']:.1f} {s['drop_unit']}; {inv}")
    print(f"run folder: {run_dir}  (ctxrely report {run_dir})")
    if args.report:
        from ctxrely.report.html import build_report

        print(f"report: {build_report([run_dir], run_dir / 'report')}")
    return 0
