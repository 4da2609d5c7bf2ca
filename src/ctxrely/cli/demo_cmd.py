"""``ctxrely demo``: the whole story on a CPU in one command (what ``make demo`` runs).

Theory sandbox -> step-0 knowledge-conflict eval of SmolLM2-135M-Instruct on the built-in suites ->
the short lab preset (baseline and a mitigation, tracked) -> one HTML report, whose path is printed.
``--quick`` uses a tiny random model (no download; about a minute; numbers meaningless).

Example:
    $ ctxrely demo                   # ~10 min on 2 CPU cores, SmolLM2 converted once on first use
    $ ctxrely demo --quick --out runs/demo-quick
"""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "theory sandbox + step-0 eval + short lab preset on SmolLM2, in one report (make demo)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny random model and tiny settings (no download)")
    p.add_argument("--out", default=None, help="output folder (default: runs/demo, runs/demo-quick with --quick)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ctxrely.lab.demo import DemoConfig, run_demo

    out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    report = run_demo(DemoConfig(quick=args.quick, out=out, device=args.device, progress=not args.no_progress))
    print(f"report: {report}")
    return 0
