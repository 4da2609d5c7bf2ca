"""``ctxrely lab-table``: the measured table of one or more lab experiments (mean ± sd over seeds).

Reads the finished runs of each experiment folder (and of recorded-results files whose folders are
gone), and prints per run type: step 0, peak, step of peak, final, drop with its paired SE, the drop
against the baseline paired by seed, the share of the baseline's drop removed (ranked), ID accuracy,
the ``keep_peak`` view, the recipe verdict, how ``score-data``'s classes recover the lab's labels
(when a ``filter`` run cached its scores) and exactly which runs of the grid are missing.

Example:
    $ ctxrely lab-table runs/lab-long
    $ ctxrely lab-table runs/lab-long --recorded docs/data/lab-long-reduced-2026-11-21.json \\
        --runs baseline,no_ccs,filter --seeds 0,1,2 --md runs/table.md --json runs/table.json
"""

from __future__ import annotations

import argparse

NAME = "lab-table"
HELP = "the measured table of lab experiments: mean ± sd over seeds, drop vs baseline, recipe, missing runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="*", help="lab experiment folders (ctxrely lab --out ...)")
    p.add_argument("--recorded", action="append", default=[], metavar="FILE",
                   help="recorded-results JSON of runs whose folders are gone (repeatable)")
    p.add_argument("--runs", default=None, help="comma-separated runs the table should have (default: the "
                                                "experiment's preset's, plus any found)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds the table should have (default: the "
                                                 "preset's, plus any found)")
    p.add_argument("--md", default=None, help="also write the markdown here")
    p.add_argument("--json", default=None, help="also write the table as JSON here (what the demo shows)")
    p.add_argument("--note", default=None, help="a line stored with the table (e.g. which commit ran the runs)")


def run(args: argparse.Namespace) -> int:
    from ctxrely.errors import ConfigError
    from ctxrely.lab.labels import experiment_recovery
    from ctxrely.lab.table import build_table, collect
    from ctxrely.lab.table_md import markdown, write_table

    if not args.folders and not args.recorded:
        raise ConfigError("lab-table: give at least one experiment folder or --recorded FILE")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
    table = build_table(collect(args.folders, args.recorded), runs=runs, seeds=seeds)
    table["classes"] = next((c for c in map(experiment_recovery, args.folders) if c), None)
    table["note"] = args.note
    write_table(table, json_path=args.json, md_path=args.md)
    print(markdown(table), end="")
    return 0
