"""``ctxrely report``: plots (PNG + SVG) and one self-contained HTML page for tracked runs.

Example:
    $ ctxrely report runs/baseline
    $ ctxrely report runs/baseline runs/qk-only runs/indicator --out runs/compare --title "Mitigations"
    $ ctxrely report runs/graded runs/graded-cad  # eval folders of graded suites: the adoption curves
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "plot tracked runs (several overlaid) and write one self-contained HTML page"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders holding trajectory.jsonl (or summary.json of graded evals)")
    p.add_argument("--out", default=None,
                   help="output folder (default: RUN_DIR/report for one run, ./ctxrely-report for several)")
    p.add_argument("--title", default="ctxrely report", help="page title")


def run(args: argparse.Namespace) -> int:
    from ctxrely.errors import CtxrelyError
    from ctxrely.report.html import build_report
    from ctxrely.report.summary import run_summary

    dirs = [Path(d) for d in args.run_dirs]
    if all((d / "summary.json").is_file() and not (d / "trajectory.jsonl").is_file() for d in dirs):
        return _graded_report(dirs, args)  # eval folders of graded suites: the two adoption curves
    for d in dirs:
        if not (d / "trajectory.jsonl").is_file():
            raise CtxrelyError(f"{d}: no trajectory.jsonl here (is it a run folder of ctxrely train or the callback?)")
    out = Path(args.out) if args.out else (dirs[0] / "report" if len(dirs) == 1 else Path("ctxrely-report"))
    try:
        page = build_report(dirs, out, title=args.title)
    except ValueError as e:
        raise CtxrelyError(str(e)) from e
    for d in dirs:
        s = run_summary(d)
        inv = f"inversion at step {s['inversion_step']}" if s["inversion_step"] is not None else "no inversion"
        print(f"{d}: {s['metric']} step0 {s['step0']:.3f} peak {s['peak']:.3f}@{s['peak_step']} "
              f"final {s['final']:.3f} drop {s['drop']:.1f} {s['drop_unit']}; {inv}")
    print(f"wrote {page} (+ PNG/SVG plots in {out})")
    return 0


def _graded_report(dirs: list[Path], args: argparse.Namespace) -> int:
    from ctxrely.errors import CtxrelyError
    from ctxrely.report.adoption import build_adoption_report

    out = Path(args.out) if args.out else (dirs[0] / "report" if len(dirs) == 1 else Path("ctxrely-report"))
    try:
        page = build_adoption_report(dirs, out, title=args.title)
    except ValueError as e:
        raise CtxrelyError(str(e)) from e
    print(f"wrote {page} (+ adoption.png/.svg in {out})")
    return 0
