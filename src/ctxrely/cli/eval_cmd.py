"""``ctxrely eval``: knowledge-conflict evaluation of any causal LM.

Example:
    $ ctxrely eval --model smollm2-135m-instruct --suites cf_capitals,cf_quotes --format chat \\
        --mode both --out runs/eval-smollm2
    $ ctxrely eval --model ./my-model --data ../shared/data/cf_capitals/country_capitals_only.json --out runs/x
    $ accelerate launch -m ctxrely eval --model ./my-7b --suites cf_capitals --out runs/x  # one process per GPU
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "eval"
HELP = "measure context reliance under knowledge conflicts (writes summary.json + examples.jsonl)"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model/--device/--dtype/--trust-remote-code, shared by every command that loads a model."""
    p.add_argument("--model", required=True, help="zoo name (ctxrely models), local folder or hub id")
    p.add_argument("--device", default="auto",
                   help="auto (this process's GPU when there is one, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto: float32 on CPU, bfloat16 on GPUs that support it")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (off)")


def add_source_arguments(g: argparse._ActionsContainer) -> None:
    """--suites/--data/--mapping, shared by eval and export-lm-eval."""
    g.add_argument("--suites", default=None, help="comma-separated built-in suites (see ctxrely ls)")
    g.add_argument("--data", action="append", default=None,
                   help="a published-format file (auto-detected) or hub dataset id; repeatable")
    g.add_argument("--mapping", default=None,
                   help="column mapping for generic JSONL/CSV, e.g. context=passage,question=q,cf_answer=a")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_source_arguments(p.add_argument_group("what to evaluate (one or more)"))
    p.add_argument("--format", default="raw", help="prompt format name or a template with {context}/{question}")
    p.add_argument("--mode", default="both", choices=["generate", "logits", "both"])
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=None,
                   help="prompts per batch (alone: a fixed count; with --batch-tokens: a cap)")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="padded tokens per length-sorted batch, prompt plus new tokens (default 8192 "
                        "when --batch-size is not given); batching never changes an answer")
    p.add_argument("--limit", type=int, default=None, help="first n examples of each suite")
    p.add_argument("--match", default="squad", choices=["squad", "raw"], help="answer matching")
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable; replaces defaults)")
    p.add_argument("--indicator", nargs="?", const="[IND]", default=None,
                   help="append an indicator token to each question (default token: [IND])")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs")
    p.add_argument("--out", default=None, help="output folder (default: runs/eval-<model>)")
    p.add_argument("--no-progress", action="store_true")
    from ctxrely.steer.options import add_intervention_arguments

    add_intervention_arguments(p)


def run(args: argparse.Namespace) -> int:
    import os

    from ctxrely.data.loaders import parse_mapping
    from ctxrely.engine.api import check_options, evaluate, resolve_suites
    from ctxrely.models.load import load_model, resolve_device
    from ctxrely.prompts import get_format
    from ctxrely.registry import load_builtins

    check_options(args.limit, args.max_new_tokens, args.mode, args.batch_size, args.batch_tokens)
    load_builtins()
    suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else []
    if not suites and not args.data:
        raise SystemExit("error: pass --suites and/or --data")
    out = Path(args.out or f"runs/eval-{Path(args.model).name}")
    check_eval_args(args, out)
    fmt = get_format(args.format)
    mapping = parse_mapping(args.mapping) if args.mapping else None
    from ctxrely.steer.options import check_intervention, intervention_kwargs

    check_intervention(args)
    # read every suite and data file before the (slow) model load, so a typo or bad row fails fast
    suite_objs = resolve_suites(suites, args.data, None, args.limit, mapping)
    device = resolve_device(args.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under `accelerate launch` / torchrun: join the group
        from accelerate import PartialState

        PartialState(cpu=device.startswith("cpu"))  # gloo on CPU, nccl on GPUs
    model, tok = load_model(args.model, dtype=args.dtype, device=device,
                            trust_remote_code=args.trust_remote_code)
    res = evaluate(model, tok, suite_objs, fmt=fmt, mode=args.mode,
                   limit=args.limit, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                   batch_tokens=args.batch_tokens,
                   stop=args.stop, match=args.match, indicator=args.indicator, n_boot=args.n_boot,
                   progress=not args.no_progress, out_dir=out, model_name=args.model,
                   **intervention_kwargs(args))
    from ctxrely.track.distributed import world_info

    if world_info()[0] == 0:  # the main process reports
        print_result(res, out)
    return 0


def check_eval_args(args: argparse.Namespace, out: Path) -> None:
    """Refuse option values that would crash later or measure nothing (one-line ConfigError)."""
    from ctxrely.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file; pass a folder (results go in summary.json and "
                          "examples.jsonl inside it)")


def print_result(res: object, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ctxrely eval", show_lines=False)
    for col in ("suite", "metric", "mean [95% CI]"):
        table.add_column(col)
    for row in res.table():  # type: ignore[attr-defined]
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"wrote {out / 'summary.json'} and {out / 'examples.jsonl'}")
