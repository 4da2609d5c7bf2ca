"""Command-line options of the inference-time fixes, shared by ``ctxrely eval`` and ``ctxrely nih``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_intervention_arguments(p)
    >>> intervention_kwargs(p.parse_args(["--decode", "cad", "--steer", "pasta:alpha=0.05"]))
    {'decode': 'cad', 'cad_alpha': 1.0, 'cad_floor': None, 'steer': 'pasta:alpha=0.05'}
"""

from __future__ import annotations

import argparse
from typing import Any


def add_intervention_arguments(p: argparse.ArgumentParser | argparse._ActionsContainer) -> None:
    """``--decode``, ``--cad-alpha``, ``--cad-floor``, ``--steer``."""
    g = p.add_argument_group("inference-time fixes (ctxrely.steer)") if isinstance(p, argparse.ArgumentParser) else p
    g.add_argument("--decode", default="plain", choices=["plain", "cad", "adacad"],
                   help="plain greedy; cad: (1+a) log p(y|ctx,q) - a log p(y|q); adacad: a = JSD per step")
    g.add_argument("--cad-alpha", type=float, default=1.0, help="CAD's alpha (>= 0; 0 = plain greedy)")
    g.add_argument("--cad-floor", type=float, default=None, help="AdaCAD: lower bound on alpha_t (0..ln 2)")
    g.add_argument("--steer", default=None, metavar="pasta[:alpha=A,heads=FILE,target=context|user]",
                   help="PASTA attention steering toward the context (alpha default 0.01, heads default all)")


def intervention_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`ctxrely.evaluate` for the parsed options."""
    return {"decode": args.decode, "cad_alpha": args.cad_alpha, "cad_floor": args.cad_floor, "steer": args.steer}


def check_intervention(args: argparse.Namespace) -> Any:
    """Validate the options before any model loads (raises ``SteerError``); the parsed Intervention."""
    from ctxrely.steer.plan import Intervention

    return Intervention.parse(**intervention_kwargs(args))
