"""``ctxrely filter``: drop non-context-critical rows (or mark context-dependent ones with an indicator).

Reads ``ctxrely score-data`` output and writes the kept rows in their original format, plus
``OUT.manifest.json`` saying what was dropped (or marked) and why.

Example:
    $ ctxrely filter --scores runs/scores --drop 0.25 --out train.filtered.jsonl
    $ ctxrely filter --scores runs/scores --by class --classes C+S --out train.filtered.jsonl
    $ ctxrely filter --scores runs/scores --indicator --threshold 0.6 --out train.ind.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "filter"
HELP = "drop the least context-critical training rows (by NLL without context or class); keeps the format"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, help="output folder of `ctxrely score-data`")
    p.add_argument("--out", required=True, help="filtered file (.jsonl, .json or .csv)")
    p.add_argument("--drop", type=float, default=None,
                   help="share to drop, lowest NLL without context first (default 0.25; 0 with --indicator)")
    p.add_argument("--by", default="nll_without", choices=["nll_without", "gain", "class"],
                   help="rank by NLL without context (default) or by gain from the context, or drop --classes")
    p.add_argument("--classes", default="C+S", help="comma-separated classes to drop with --by class")
    p.add_argument("--scope", default="context", choices=["context", "all"],
                   help="rank only rows with a context (default) or all rows")
    p.add_argument("--indicator", nargs="?", const="[IND]", default=None,
                   help="append this token (default [IND]) to the user turn of rows with attn_score > --threshold")
    p.add_argument("--threshold", type=float, default=0.6, help="attention-score threshold for --indicator")


def run(args: argparse.Namespace) -> int:
    from ctxrely.data.records import file_type_of, write_rows
    from ctxrely.diagnose.shards import read_scores
    from ctxrely.errors import CtxrelyError
    from ctxrely.mitigate.filter import filter_rows
    from ctxrely.mitigate.indicator import apply_indicator
    from ctxrely.paths import refuse_overwrite

    scores, meta = read_scores(args.scores)
    src, cfg = meta.get("source", {}), meta.get("config", {})
    refuse_overwrite(args.out, [("the --data file scored into --scores", src.get("path")),
                                ("--scores", Path(args.scores) / "scores.jsonl")])
    ftype = file_type_of(args.out)
    rows = [s["row"] for s in scores]
    marked: list[str] = []
    if args.indicator:
        if all(s.get("attn_score") is None for s in scores):
            raise CtxrelyError(f"{args.scores} has no attention scores (scored with --no-attention?)")
        new = apply_indicator(rows, scores, args.threshold, args.indicator, fmt=src.get("fmt"),
                              context_field=cfg.get("context_field"), context_template=cfg.get("context_template"))
        marked = [s["id"] for s, a, b in zip(scores, rows, new, strict=True) if a is not b]
        rows = new
    drop = args.drop if args.drop is not None else (0.0 if args.indicator else 0.25)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    kept, manifest = filter_rows(rows, scores, drop=drop, by=args.by, classes=classes, scope=args.scope)
    write_rows(args.out, kept, ftype, columns=src.get("columns"))
    bad = Path(args.scores) / "errors.jsonl"
    manifest.update(
        scores=str(args.scores), source=src, out=str(args.out),
        malformed_rows_left_out=[json.loads(x)["error"] for x in bad.read_text().splitlines()] if bad.exists() else [],
        indicator={"token": args.indicator, "threshold": args.threshold, "n_marked": len(marked),
                   "marked_ids": marked} if args.indicator else None,
    )
    mpath = Path(f"{args.out}.manifest.json")
    mpath.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    what = f"dropped {manifest['n_dropped']}" + (f", marked {len(marked)} with {args.indicator}" if marked else "")
    print(f"kept {manifest['n_kept']} of {manifest['n_in']} rows ({what}); wrote {args.out} and {mpath}")
    return 0
