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

from ctxrely.cli.options import add_model_arguments, add_source_arguments  # kept importable from here

NAME = "eval"
HELP = "measure context reliance under knowledge conflicts (writes summary.json + examples.jsonl)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ctxrely.cli.options import add_eval_arguments, add_intervention_arguments

    add_model_arguments(p)
    add_source_arguments(p.add_argument_group("what to evaluate (one or more)"))
    add_eval_arguments(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/eval-<model>)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--shard", choices=("auto", "none", "fsdp2"), default="auto",
                   help="several processes: fsdp2 shards the model over them (fully_shard per decoder layer), none "
                        "loads a full copy in each; auto: fsdp2 under `accelerate launch` with an FSDP config")
    add_intervention_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ctxrely.cli.options import settings_from_args
    from ctxrely.data.loaders import parse_mapping
    from ctxrely.engine.api import evaluate, resolve_suites
    from ctxrely.engine.distributed import launch_info
    from ctxrely.models.load import load_model, resolve_device
    from ctxrely.registry import load_builtins

    settings = settings_from_args(args)  # every evaluation option, validated once
    load_builtins()
    suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else []
    if not suites and not args.data:
        raise SystemExit("error: pass --suites and/or --data")
    out = Path(args.out or f"runs/eval-{Path(args.model).name}")
    check_eval_args(args, out)
    mapping = parse_mapping(args.mapping) if args.mapping else None
    # read every suite and data file before the (slow) model load, so a typo or bad row fails fast
    suite_objs = resolve_suites(suites, args.data, None, settings.limit, mapping)
    device = resolve_device(args.device)
    shard = shard_mode(args.shard)
    if launch_info()[1] > 1:  # under `accelerate launch` / torchrun: join the group
        from accelerate import PartialState

        PartialState(cpu=device.startswith("cpu"))  # gloo on CPU, nccl on GPUs
    # sharded: every process loads on the CPU, and each layer moves to the device only as its shard
    model, tok = load_model(args.model, dtype=args.dtype, device="cpu" if shard == "fsdp2" else device,
                            trust_remote_code=args.trust_remote_code)
    if shard == "fsdp2":
        from ctxrely.engine.distributed import shard_fsdp2

        model = shard_fsdp2(model, device)
    res = evaluate(model, tok, suite_objs, settings=settings, progress=not args.no_progress, out_dir=out,
                   model_name=args.model)
    from ctxrely.track.distributed import world_info

    if world_info()[0] == 0:  # the main process reports
        print_result(res, out)
    return 0


def shard_mode(flag: str) -> str:
    """``--shard`` resolved: ``auto`` is ``fsdp2`` when launched on several processes with an FSDP
    accelerate config (``ACCELERATE_USE_FSDP``), else ``none``; ``fsdp2`` on one process is refused."""
    import os

    from ctxrely.engine.distributed import launch_info
    from ctxrely.errors import ConfigError

    world = launch_info()[1]
    if flag == "auto":
        return "fsdp2" if world > 1 and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" else "none"
    if flag == "fsdp2" and world == 1:
        raise ConfigError("--shard fsdp2 needs several processes: launch with accelerate launch or torchrun")
    return flag


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
