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
    "models_cmd",
    "theory_cmd",
    "lab_cmd",
    "steer_cmd",
    "demo_cmd",
]


def _load_commands() -> list:
    mods = []
    for name in COMMANDS:
        try:
            mods.append(importlib.import_module(f"ctxrely.cli.{name}"))
        except ModuleNotFoundError as e:
            if e.name != f"ctxrely.cli.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    from ctxrely import __version__

    parser = argparse.ArgumentParser(
        prog="ctxrely", description="Does my model still listen to the context it is given?"
    )
    parser.add_argument("--version", action="version", version=f"ctxrely {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
    from ctxrely.errors import USER_ERRORS

    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
