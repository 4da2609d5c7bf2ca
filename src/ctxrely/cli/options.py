"""Command-line flags several commands share, and the :class:`~ctxrely.engine.settings.EvalSettings` they build.

One place per flag: ``--model/--device/--dtype/--trust-remote-code`` (every command that loads a
model), ``--suites/--data/--mapping`` (eval, export-lm-eval, steer), the evaluation flags
(``--format``, ``--mode``, batching, ``--limit``, ``--match``, ``--stop``, ``--indicator``,
``--n-boot``) and the inference-time fixes (``--decode``, ``--cad-alpha``, ``--cad-floor``,
``--steer``: eval, nih, steer). :func:`settings_from_args` turns parsed flags into one validated
settings object.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_eval_arguments(p); add_intervention_arguments(p)
    >>> s = settings_from_args(p.parse_args(["--mode", "logits", "--limit", "8", "--decode", "cad"]))
    >>> s.mode, s.limit, s.intervention.decode
    ('logits', 8, 'cad')
"""

from __future__ import annotations

import argparse
from typing import Any

Container = argparse.ArgumentParser | argparse._ActionsContainer


def add_model_arguments(p: Container) -> None:
    """--model/--device/--dtype/--trust-remote-code, shared by every command that loads a model."""
    p.add_argument("--model", required=True, help="zoo name (ctxrely models), local folder or hub id")
    p.add_argument("--device", default="auto",
                   help="auto (this process's GPU when there is one, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto: float32 on CPU, bfloat16 on GPUs that support it")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (off)")


def add_source_arguments(g: Container) -> None:
    """--suites/--data/--mapping, shared by eval, export-lm-eval and steer."""
    g.add_argument("--suites", default=None, help="comma-separated built-in suites (see ctxrely ls)")
    g.add_argument("--data", action="append", default=None,
                   help="a published-format file (auto-detected) or hub dataset id; repeatable")
    g.add_argument("--mapping", default=None,
                   help="column mapping for generic JSONL/CSV, e.g. context=passage,question=q,cf_answer=a")


class _RenamedFlag(argparse.Action):
    """A flag's former name: stores into the new flag's ``dest`` and says the new name on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kw: Any) -> None:
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import sys

        print(f"warning: {option_string} is deprecated in `{parser.prog}`; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed_argument(p: Container, new: str, old: str, **kw: Any) -> None:
    """Add flag ``new``; its former name ``old`` still works (hidden, with a deprecation line).

    Example:
        >>> p = argparse.ArgumentParser(prog="x")
        >>> add_renamed_argument(p, "--row-format", "--format", dest="fmt", default="auto")
        >>> p.parse_args(["--row-format", "alpaca"]).fmt
        'alpaca'
    """
    dest = kw.pop("dest", None) or new.lstrip("-").replace("-", "_")
    p.add_argument(new, dest=dest, **kw)
    p.add_argument(old, dest=dest, action=_RenamedFlag, new=new, type=kw.get("type"), choices=kw.get("choices"),
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _row_format(name: str) -> str:
    from ctxrely.data.sft import row_format_name

    return row_format_name(name)


def add_sft_data_arguments(p: Container) -> None:
    """--data/--row-format/--context-field/--context-template of training files (score-data, augment).

    ``--row-format`` (the layout of a training row) was ``--format`` in these commands, where it
    meant something else than ``eval``'s prompt format; ``--format`` still works here.
    """
    p.add_argument("--data", required=True, help="training file: .jsonl, .json or .csv")
    add_renamed_argument(p, "--row-format", "--format", dest="fmt", default="auto", type=_row_format,
                         choices=["auto", "alpaca", "messages", "prompt_completion"],
                         help="row layout (default: detect); prompt-completion and chat are accepted spellings")
    p.add_argument("--context-field", default=None,
                   help="top-level field holding the context (Alpaca: input; others: 'context' if present)")
    p.add_argument("--context-template", default=None,
                   help="template matched against the user turn, e.g. 'Context: {context}\\n\\nQuestion: {question}'")


def add_indicator_argument(p: Container) -> None:
    """--indicator [TOKEN] (eval, nih, attention)."""
    p.add_argument("--indicator", nargs="?", const="[IND]", default=None,
                   help="append an indicator token to each question (default token: [IND])")


def add_eval_arguments(p: Container, *, mode: str = "both", max_new_tokens: int = 32,
                       limit: int | None = None, batch_size: int | None = None) -> None:
    """The flags of one evaluation (``ctxrely eval``; ``steer compare`` takes a subset by its defaults)."""
    p.add_argument("--format", "--prompt-format", dest="format", default="raw",
                   help="prompt format name or a template with {context}/{question}")
    p.add_argument("--mode", default=mode, choices=["generate", "logits", "both"])
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help="prompts per batch (alone: a fixed count; with --batch-tokens: a cap)")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="padded tokens per length-sorted batch, prompt plus new tokens (default 8192 "
                        "when --batch-size is not given); batching never changes an answer")
    p.add_argument("--limit", type=int, default=limit, help="first n examples of each suite")
    p.add_argument("--match", default="squad", choices=["squad", "raw"], help="answer matching")
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable; replaces defaults)")
    add_indicator_argument(p)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs")


def add_intervention_arguments(p: Container) -> None:
    """``--decode``, ``--cad-alpha``, ``--cad-floor``, ``--steer`` (eval, nih, steer)."""
    g = p.add_argument_group("inference-time fixes (ctxrely.steer)") if isinstance(p, argparse.ArgumentParser) else p
    g.add_argument("--decode", default="plain", choices=["plain", "cad", "adacad"],
                   help="plain greedy; cad: (1+a) log p(y|ctx,q) - a log p(y|q); adacad: a = JSD per step")
    g.add_argument("--cad-alpha", type=float, default=1.0, help="CAD's alpha (>= 0; 0 = plain greedy)")
    g.add_argument("--cad-floor", type=float, default=None, help="AdaCAD: lower bound on alpha_t (0..ln 2)")
    g.add_argument("--steer", default=None, metavar="pasta[:alpha=A,heads=FILE,target=context|user]",
                   help="PASTA attention steering toward the context (alpha default 0.01, heads default all)")


# argparse dest -> EvalSettings field
_FLAGS = {"format": "fmt", "mode": "mode", "limit": "limit", "max_new_tokens": "max_new_tokens",
          "batch_size": "batch_size", "batch_tokens": "batch_tokens", "stop": "stop", "match": "match",
          "indicator": "indicator", "n_boot": "n_boot", "decode": "decode", "cad_alpha": "cad_alpha",
          "cad_floor": "cad_floor", "steer": "steer"}


def settings_from_args(args: argparse.Namespace, **fixed: Any) -> Any:
    """One validated :class:`~ctxrely.engine.settings.EvalSettings` from the flags a command has;
    ``fixed`` sets the rest (e.g. ``mode="generate"`` for a command without ``--mode``)."""
    from ctxrely.engine.settings import EvalSettings

    values = {field: getattr(args, dest) for dest, field in _FLAGS.items() if hasattr(args, dest)}
    return EvalSettings(**{**values, **fixed})


def intervention_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`ctxrely.evaluate` for the parsed ``--decode/--cad-*/--steer``."""
    return {"decode": args.decode, "cad_alpha": args.cad_alpha, "cad_floor": args.cad_floor, "steer": args.steer}


def check_intervention(args: argparse.Namespace) -> Any:
    """Validate the fix options before any model loads (raises ``SteerError``); the parsed Intervention."""
    from ctxrely.steer.plan import Intervention

    return Intervention.parse(**intervention_kwargs(args))
