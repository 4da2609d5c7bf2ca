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
from collections.abc import Callable

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
    "graded_cmd",
]


def _load_commands() -> list:
    return [importlib.import_module(f"ctxrely.cli.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    from ctxrely.version import __version__

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
    from ctxrely.cli.preflight import preflight

    def run() -> int:
        preflight(args, sys.argv[1:] if argv is None else argv)  # outputs, ranges, device: before any work
        return int(args._run(args) or 0)

    return guarded(run, debug=args.debug)


def guarded(run: Callable[[], int | None], *, debug: bool = False) -> int:
    """Run a command body; a user error (or a known OS/library error) becomes one ``error:`` line on
    stderr and exit status 2, Ctrl-C 130; anything else (a bug) keeps its traceback. The ``ctxrely``
    commands and the ``python -m`` labs end the same way.

    Example:
        >>> from ctxrely.errors import ConfigError
        >>> def bad() -> int:
        ...     raise ConfigError("runs/x/settings.json: other settings")
        >>> guarded(bad)
        2
    """
    from ctxrely.errors import CtxrelyError

    try:
        return int(run() or 0)
    except CtxrelyError as e:
        if debug:
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = boundary_message(e)
        if message is None or debug:
            raise
        print(f"error: {_one_line(message)} (--debug shows the traceback)", file=sys.stderr)
        return 2


def _one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def boundary_message(e: BaseException) -> str | None:
    """One line for an operating-system or library error that reached the command line (files,
    safetensors weights, chat templates, CSV, devices); None for anything else (a bug: traceback).

    Example:
        >>> boundary_message(PermissionError(13, "Permission denied", "runs/x/summary.json"))
        'cannot write or read runs/x/summary.json: Permission denied'
        >>> boundary_message(KeyError("x")) is None
        True
    """
    import csv

    kind, text = type(e), str(e)
    if isinstance(e, OSError):
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        if where:
            return f"cannot write or read {where}: {e.strerror or text}"
        return f"{kind.__name__}: {text}"
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({text}); re-save it as UTF-8"
    if isinstance(e, csv.Error):
        return f"bad CSV: {text}"
    if kind.__name__ == "SafetensorError":
        return f"corrupt or truncated model weights (model.safetensors): {text}; re-save or re-download the model"
    if any(c.__module__.startswith("jinja2") for c in kind.__mro__):
        return (f"the tokenizer's chat template failed ({kind.__name__}: {text}); fix chat_template in the "
                "model's tokenizer_config.json or use a plain format (--format raw)")
    if isinstance(e, (RuntimeError, AssertionError)) and ("CUDA" in text or "NVIDIA" in text):
        return f"CUDA is not available here ({text}); use --device cpu"
    return None


if __name__ == "__main__":
    sys.exit(main())
