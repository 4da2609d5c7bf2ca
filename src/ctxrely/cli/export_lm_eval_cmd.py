"""``ctxrely export-lm-eval``: write the suites as lm-evaluation-harness tasks.

Example:
    $ ctxrely export-lm-eval lmeval_tasks --suites cf_capitals,cf_quotes
    $ lm_eval --model hf --model_args pretrained=./my-model --include_path lmeval_tasks --tasks ctxrely
    $ ctxrely export-lm-eval lmeval_tasks --data ../shared/data/cf_capitals/country_capitals_only.json \\
        --format chat --tokenizer ./my-model
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ctxrely.cli.options import add_indicator_argument, add_source_arguments

NAME = "export-lm-eval"
HELP = "write lm-eval task YAMLs (generate_until + multiple_choice, with helpers) for the suites"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="output folder; pass it to lm_eval as --include_path")
    add_source_arguments(p.add_argument_group("what to export (default: every built-in suite)"))
    p.add_argument("--format", "--prompt-format", dest="format", default="raw", help="prompt format name or a template with {context}/{question}")
    p.add_argument("--tokenizer", default=None,
                   help="model folder, zoo name or hub id whose tokenizer renders chat formats and, with its "
                        "config, sets the window contexts are shortened to (as ctxrely eval does)")
    p.add_argument("--max-length", type=int, default=None,
                   help="shorten contexts to fit this many tokens (needs --tokenizer; default: its model window)")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the tokenizer (off)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="max_gen_toks of the generate task")
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable; replaces defaults)")
    p.add_argument("--match", default="squad", choices=["squad", "raw"], help="answer matching")
    add_indicator_argument(p)
    p.add_argument("--limit", type=int, default=None, help="first n examples of each suite")
    p.add_argument("--prefix", default="ctxrely", help="task-name prefix; also the name of the top group")


def run(args: argparse.Namespace) -> int:
    from ctxrely.cli.options import settings_from_args
    from ctxrely.errors import ConfigError
    from ctxrely.integrations.lmeval.export import export_lm_eval

    suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else None
    settings = settings_from_args(args, mode="generate")  # --format/--max-new-tokens/--stop/--match/--limit
    fmt = settings.prompt_format
    if args.max_length is not None and not args.tokenizer:
        raise ConfigError("--max-length needs --tokenizer (contexts are shortened in that tokenizer's tokens)")
    if fmt.chat and not args.tokenizer:
        raise ConfigError(f"format {fmt.name!r} renders through a chat template: pass --tokenizer MODEL")
    mapping = None
    if args.mapping:
        from ctxrely.data.loaders import parse_mapping

        mapping = parse_mapping(args.mapping)
    tok, window = (None, None) if not args.tokenizer else _load_tokenizer(args.tokenizer, args.trust_remote_code)
    tasks = export_lm_eval(args.dir, suites, data=args.data, mapping=mapping, tokenizer=tok,
                           max_length=args.max_length or window, prefix=args.prefix, settings=settings)
    _print(tasks, Path(args.dir), args.prefix)
    return 0


def _load_tokenizer(name: str, trust_remote_code: bool) -> tuple[Any, int | None]:
    """The tokenizer of a zoo name / folder / hub id and its model's window (from config.json)."""
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoTokenizer

    from ctxrely.errors import ModelLoadError
    from ctxrely.models import zoo
    from ctxrely.models.load import model_max_length, resolve_model_source

    kind, loc = resolve_model_source(name)
    if kind == "zoo":
        loc = str(zoo.ensure_local(loc))
    try:
        tok = AutoTokenizer.from_pretrained(loc, trust_remote_code=trust_remote_code)
        cfg = AutoConfig.from_pretrained(loc, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load the tokenizer of {name!r}: {e}") from e
    return tok, model_max_length(SimpleNamespace(config=cfg), tok)


def _print(tasks: list[Any], out: Path, prefix: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lm-eval tasks written")
    for col in ("task", "type", "docs", "yaml"):
        table.add_column(col)
    for t in tasks:
        table.add_row(t.name, t.kind, str(t.n_docs), str(t.yaml_path))
    console = Console()
    console.print(table)
    console.print(f"run: lm_eval --model hf --model_args pretrained=MODEL --include_path {out} --tasks {prefix}")
