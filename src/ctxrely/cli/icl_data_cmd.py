"""``ctxrely icl-data``: IC-Train rows (k in-context demonstrations + the target) for ``ctxrely train``.

Example:
    $ ctxrely icl-data --data pairs.jsonl --k 4 --strategy contrastive --p 0.5 --eps 0.1 \\
          --similarity bm25 --format alpaca --out ic_train.jsonl
"""

from __future__ import annotations

import argparse

NAME = "icl-data"
HELP = "build in-context training rows (zero/random/similar/contrastive demonstrations) from input/output pairs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="JSONL/JSON/CSV of {input, output} pairs (optional id): the pool")
    p.add_argument("--k", type=int, default=4, help="demonstrations per row (default 4)")
    p.add_argument("--strategy", default="contrastive", help="zero, random, similar or contrastive (default)")
    p.add_argument("--p", type=float, default=0.5, help="contrastive: chance that one slot is similar (default 0.5)")
    p.add_argument("--eps", type=float, default=0.1,
                   help="contrastive: chance that the similar slot is a near-duplicate of the target (default 0.1)")
    p.add_argument("--similarity", default="chrf", help="bm25, chrf (default) or embed (see docs/icl.md)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the output is deterministic for a seed)")
    p.add_argument("--format", default="alpaca", help="alpaca (default), chat or prompt-completion")
    p.add_argument("--prompt-format", default="raw", help="prompt-completion only: the ctxrely prompt format (raw)")
    p.add_argument("--out", required=True, help="output JSONL")


def run(args: argparse.Namespace) -> int:
    import json
    from collections import Counter
    from pathlib import Path

    from ctxrely.icl.rows import build_rows, check_params, read_pool

    pool = read_pool(args.data)
    check_params(args.k, args.p, args.eps, args.strategy, args.similarity, args.format, len(pool), args.data)
    rows = build_rows(pool, k=args.k, strategy=args.strategy, p=args.p, eps=args.eps, similarity=args.similarity,
                      seed=args.seed, fmt=args.format, prompt_format=args.prompt_format, path=args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    buckets = Counter(r["icl"]["bucket"] for r in rows)
    kinds = Counter(k for r in rows for k in r["icl"]["demo_kinds"])
    print(f"{len(rows)} rows ({args.strategy}, k={args.k}, {args.similarity}) -> {out}")
    print("max-similarity buckets: " + ", ".join(f"{b} {buckets.get(b, 0)}" for b in ("zero", "low", "medium", "high")))
    if kinds:
        print("demonstrations: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return 0
