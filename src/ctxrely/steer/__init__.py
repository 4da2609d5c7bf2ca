"""Inference-time fixes for context reliance: attention steering (PASTA) and context-aware decoding.

- :func:`steer_attention` (``attention.py``): scoped PASTA steering, eager and sdpa attention.
- :class:`CADDecode` (``cad.py``): CAD / AdaCAD as an engine ``DecodeStrategy`` (two streams, mixed
  logits), with :func:`cad_generate` / :func:`score_full` for token ids.
- :class:`SteerDecode` (``stream.py``): PASTA steering as an engine ``DecodeStrategy``.
- :class:`Intervention` (``plan.py``): ``--decode`` / ``--steer`` as one value the engine runs
  (``ctxrely.evaluate(..., decode="cad", steer="pasta")``, or ``score_examples(..., intervention=...)``).
- :func:`add_intervention_arguments` / :func:`intervention_kwargs` (``options.py``): the CLI flags,
  for any command that evaluates (``ctxrely eval``, ``ctxrely nih``).
- :func:`profile_heads` (``profile.py``), :func:`compare` (``compare.py``): ``ctxrely steer profile|compare``.

Importing this package imports no torch.

Example:
    >>> from ctxrely.steer import Intervention
    >>> Intervention.parse(decode="adacad", cad_floor=0.1).config()
    {'decode': 'adacad', 'cad_floor': 0.1, 'steer': None}
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "steer_attention": "ctxrely.steer.attention",
    "Steerer": "ctxrely.steer.attention",
    "CADDecode": "ctxrely.steer.cad",
    "SteerDecode": "ctxrely.steer.stream",
    "cad_generate": "ctxrely.steer.cad",
    "score_full": "ctxrely.steer.cad",
    "Intervention": "ctxrely.steer.plan",
    "SteerSpec": "ctxrely.steer.plan",
    "SteerError": "ctxrely.steer.heads",
    "add_intervention_arguments": "ctxrely.steer.options",
    "intervention_kwargs": "ctxrely.steer.options",
    "profile_heads": "ctxrely.steer.profile",
    "compare": "ctxrely.steer.compare",
    "no_conflict": "ctxrely.steer.compare",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctxrely.steer' has no attribute {name!r}")
