"""``ctxrely steer``: inference-time fixes for context reliance (PASTA head profiling, comparisons).

Example:
    $ ctxrely steer profile --model smollm2-135m-instruct --suites cf_capitals,cf_world_facts --limit 16 \\
        --top-k 8 --out heads.json
    $ ctxrely steer compare --model smollm2-135m-instruct --suites cf_capitals --limit 40 --heads heads.json \\
        --out runs/steer-compare
    $ ctxrely eval --model smollm2-135m-instruct --suites cf_capitals --decode cad --steer pasta:heads=heads.json
"""

from __future__ import annotations

import argparse

NAME = "steer"
HELP = "PASTA head profiling and a plain / CAD / AdaCAD / PASTA comparison with a no-conflict control"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ctxrely.cli.options import add_model_arguments, add_source_arguments

    sub = p.add_subparsers(dest="steer_command", metavar="{profile,compare}", required=True)
    prof = sub.add_parser("profile", help="rank attention heads by the metric gain when steered (PASTA profiling)")
    cmp_ = sub.add_parser("compare", help="plain vs CAD vs AdaCAD vs PASTA (all / profiled heads) + control")
    for q in (prof, cmp_):
        add_model_arguments(q)
        add_source_arguments(q)
        q.add_argument("--format", "--prompt-format", dest="format", default="raw", help="prompt format (raw, chat, alpaca, ...)")
        q.add_argument("--limit", type=int, default=16, help="examples per suite")
        q.add_argument("--batch-size", type=int, default=16)
        q.add_argument("--out", required=True, help="head file (profile) or output folder (compare)")
        q.add_argument("--no-progress", action="store_true")
    prof.add_argument("--top-k", type=int, default=8, help="heads to keep")
    prof.add_argument("--top-layers", type=int, default=3, help="best layers whose single heads are profiled")
    prof.add_argument("--alpha", type=float, default=0.01, help="steering factor while profiling")
    prof.add_argument("--metric", default="first_margin",
                      help="first_margin (one prefill per prompt), logp_margin, logit_cf_rate, m_c or cf_acc")
    cmp_.add_argument("--heads", default=None, help="head file for the pasta-profiled variant")
    cmp_.add_argument("--variants", default=None, help="comma-separated subset of plain,cad,adacad,pasta-all,"
                                                       "pasta-profiled")
    cmp_.add_argument("--mode", default="both", choices=["generate", "logits", "both"])
    cmp_.add_argument("--max-new-tokens", type=int, default=16)


def run(args: argparse.Namespace) -> int:
    from ctxrely.engine.api import resolve_suites
    from ctxrely.models.load import load_model
    from ctxrely.prompts import get_format
    from ctxrely.steer.attention import check_alpha
    from ctxrely.steer.heads import SteerError

    suites = [s.strip() for s in (args.suites or "").split(",") if s.strip()]
    if not suites and not args.data:
        raise SteerError("pass --suites and/or --data")
    if args.limit < 1:
        raise SteerError(f"--limit must be >= 1, got {args.limit}")
    fmt = get_format(args.format)
    objs = resolve_suites(suites, args.data, None, None)  # fail fast on bad data, before the model loads
    if args.steer_command == "profile":
        check_alpha(args.alpha)
        from ctxrely.steer.profile import profile_heads, save_profile

        model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
        heads, scores = profile_heads(model, tok, objs, limit=args.limit, top_k=args.top_k,
                                      top_layers=args.top_layers, alpha=args.alpha, metric=args.metric, fmt=fmt,
                                      batch_size=args.batch_size, progress=not args.no_progress)
        path = save_profile(args.out, heads, scores)
        print(f"base {scores['metric']} = {scores['base']:.3f}; best layers (gain): "
              + ", ".join(f"{k}: {v:+.3f}" for k, v in sorted(scores["layer_gain"].items(),
                                                                key=lambda kv: -kv[1])[:args.top_layers]))
        print("top heads (layer, head, gain): " + ", ".join(f"({h[0]},{h[1]},{h[2]:+.3f})"
                                                            for h in scores["head_gain"][:args.top_k]))
        print(f"wrote {path} and {path.with_suffix('.scores.json')}")
        return 0
    from ctxrely.steer.compare import VARIANTS, compare, markdown

    variants = [v.strip() for v in args.variants.split(",")] if args.variants else list(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SteerError(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    from ctxrely.cli.options import settings_from_args

    settings = settings_from_args(args, n_boot=200)  # --format/--limit/--mode/--max-new-tokens/--batch-size
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    rows = compare(model, tok, [s for s in objs], heads=args.heads, out=args.out, variants=variants,
                   progress=not args.no_progress, settings=settings)
    print(markdown(rows))
    print(f"wrote {args.out}/table.md and table.json")
    return 0
