"""Moved to :mod:`ctxrely.cli.options` (the flags several commands share); these names stay as aliases.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_intervention_arguments(p)
    >>> intervention_kwargs(p.parse_args(["--decode", "cad", "--steer", "pasta:alpha=0.05"]))
    {'decode': 'cad', 'cad_alpha': 1.0, 'cad_floor': None, 'steer': 'pasta:alpha=0.05'}
"""

from __future__ import annotations

from ctxrely.cli.options import add_intervention_arguments, check_intervention, intervention_kwargs

__all__ = ["add_intervention_arguments", "check_intervention", "intervention_kwargs"]
