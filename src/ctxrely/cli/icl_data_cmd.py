"""``ctxrely icl-data``: IC-Train rows (k in-context demonstrations + the target) for ``ctxrely train``.

Example:
    $ ctxrely icl-data --data pairs.jsonl --k 4 --strategy contrastive --p 0.5 --eps 0.1 \\
          --similarity bm25 --format alpaca --out ic_train.jsonl \\
          --probes runs/icl-probes --novel novel_pairs.jsonl --test heldout_pairs.jsonl
    $ ctxrely train model=M dataset=ic_train.jsonl eval_mode=generate suites= \\
          eval_data=[runs/icl-probes/icl_probe.jsonl,runs/icl-probes/iwl_probe.jsonl] \\
          metric=icl_probe/cf_acc
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
    from ctxrely.cli.options import add_renamed_argument

    add_renamed_argument(p, "--row-format", "--format", dest="format", default="alpaca",
                         help="layout of the written rows: alpaca (default), chat or prompt-completion")
    p.add_argument("--prompt-format", default="raw", help="prompt-completion only: the ctxrely prompt format (raw)")
    p.add_argument("--out", required=True, help="output JSONL")
    p.add_argument("--probes", default=None, metavar="DIR",
                   help="also write the ICL/IWL/copy probe suites (and, with --test, the similarity buckets) "
                        "there as JSONL, for ctxrely train eval_data=[...] or ctxrely eval --data")
    p.add_argument("--novel", default=None, help="--probes: pairs whose labels the training never teaches (ICL)")
    p.add_argument("--test", default=None, help="--probes: held-out pairs of the task (bucketed accuracy)")
    p.add_argument("--n-taught", type=int, default=32, help="--probes: pool rows used as IWL/copy targets (32)")


def run(args: argparse.Namespace) -> int:
    import json
    from collections import Counter
    from pathlib import Path

    from ctxrely.icl.rows import build_rows, check_params, read_pool

    pool = read_pool(args.data)
    check_params(args.k, args.p, args.eps, args.strategy, args.similarity, args.format, len(pool), args.data)
    novel, test = _probe_inputs(args)
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
    if args.probes:
        from ctxrely.icl.probes import bucket_examples, probe_examples, write_probe_suites

        suites = probe_examples(pool, novel, pool[:args.n_taught], k=args.k, similarity=args.similarity,
                                seed=args.seed)
        if test:
            suites.update(bucket_examples(pool, test, k=args.k, similarity=args.similarity, seed=args.seed))
        paths = write_probe_suites(args.probes, suites)
        print("probe suites: " + ", ".join(f"{p.stem} {len(suites[p.stem])}" for p in paths) + f" -> {args.probes}")
        print("track them: ctxrely train ... eval_mode=generate suites= metric=icl_probe/cf_acc "
              "eval_data=[" + ",".join(str(p) for p in paths) + "]")
    return 0


def _probe_inputs(args: argparse.Namespace) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The --novel and --test pairs (read before any output is written); bad combinations raise."""
    from ctxrely.errors import ConfigError
    from ctxrely.icl.rows import read_pool

    if not args.probes:
        if args.novel or args.test:
            raise ConfigError("--novel and --test go with --probes DIR")
        return [], []
    if not args.novel:
        raise ConfigError("--probes needs --novel: pairs whose labels the training never teaches (the ICL-score)")
    if args.n_taught < 1:
        raise ConfigError("--n-taught must be >= 1")
    return read_pool(args.novel), read_pool(args.test) if args.test else []
