"""``ctxrely theory``: simulate the one-layer model of the context-parametric inversion paper.

Runs the named settings of :data:`ctxrely.lab.theory.SETTINGS` (baseline C + C+S + S mixture,
``no_ccs``, ``more_subject_only``), writes ``theory.json``, ``theory.png`` and ``theory.svg`` into
``--out`` and prints peak M_C, its step, final M_C and the drop per setting.

Example:
    $ ctxrely theory --out runs/theory
    $ ctxrely theory --steps 600 --seed 3
    $ ctxrely theory --train-value --n-answers 64 --d 512
"""

from __future__ import annotations

import argparse

NAME = "theory"
HELP = "simulate the paper's one-layer model: M_C rises then falls (context-parametric inversion)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/theory", metavar="DIR",
                   help="output folder for theory.json and the plots (default: runs/theory)")
    p.add_argument("--steps", type=int, default=None, help="gradient steps (default: TheoryConfig's)")
    p.add_argument("--seed", type=int, default=None, help="seed of embeddings, facts and data")
    p.add_argument("--train-value", action="store_true",
                   help="train W_V together with W_KQ (Proposition 3); default trains W_KQ only")
    p.add_argument("--n-answers", type=int, default=None, metavar="K",
                   help="answer vocabulary size (default: TheoryConfig's; 64 with --d 512 shows the "
                        "Proposition 3 regime, see docs/theory.md)")
    p.add_argument("--d", type=int, default=None, help="embedding dimension (default: TheoryConfig's)")
    p.add_argument("--settings", nargs="+", default=None, metavar="NAME",
                   help="subset of settings to run (default: all)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from ctxrely.lab.theory import SETTINGS, TheoryConfig, run_experiments, save_traces
    from ctxrely.lab.theory_plots import plot_theory

    overrides = {"train_value": bool(args.train_value)}
    if args.steps is not None:
        overrides["steps"] = args.steps
    for flag, key in (("seed", "seed"), ("n_answers", "n_answers"), ("d", "d")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    cfg = TheoryConfig.from_dict(overrides)
    traces = run_experiments(cfg, settings=args.settings)
    out = Path(args.out)
    written = [save_traces(traces, out / "theory.json"), *plot_theory(traces, out)]

    t = Table(title=f"M_C on held-out conflicts ({cfg.steps} steps, seed {cfg.seed}, "
                    f"{'W_KQ + W_V' if cfg.train_value else 'W_KQ only'})")
    for c in ("setting", "C/C+S/S", "start", "peak", "peak step", "final", "drop"):
        t.add_column(c, justify="left" if c == "setting" else "right", no_wrap=True)
    for name, tr in traces.items():
        s = tr.summary()
        n = tr.counts
        t.add_row(name, f"{n['C']}/{n['C+S']}/{n['S']}", f"{s['start_m_c']:.3f}", f"{s['peak_m_c']:.3f}",
                  str(s["peak_step"]), f"{s['final_m_c']:.3f}", f"{s['drop']:.3f}")
    console = Console()
    console.print(t)
    for name in traces:
        console.print(f"  {name}: {SETTINGS[name][0]}")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return 0
