"""``ctxrely`` entry point: builds the argument parser from one module per subcommand.

Each command module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
and imports nothing heavy (torch, transformers) at module level.

Example:
    $ ctxrely ls
    $ ctxrely eval --model path/to/model --suites cf_capitals --mode both --out runs/eval
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Module names under ctxrely.cli, in the order `ctxrely --help` lists them.
COMMANDS = [
    "eval_cmd",
    "ls_cmd",
    "export_lm_eval_cmd",
    "train_cmd",
    "report_cmd",
    "score_data_cmd",
    "filter_cmd",
    "augment_cmd",
    "icl_data_cmd",
    "models_cmd",
    "theory_cmd",
    "lab_cmd",
    "lab_table_cmd",
    "steer_cmd",
    "demo_cmd",
    "nih_cmd",
    "attention_cmd",
]


def _load_commands() -> list:
    return [importlib.import_module(f"ctxrely.cli.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    from ctxrely import __version__

    parser = argparse.ArgumentParser(
        prog="ctxrely", description="Does my model still listen to the context it is given?"
    )
    parser.add_argument("--version", action="version", version=f"ctxrely {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _load_commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from ctxrely.errors import CtxrelyError

    try:
        return int(args._run(args) or 0)
    except CtxrelyError as e:
        if args.debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
