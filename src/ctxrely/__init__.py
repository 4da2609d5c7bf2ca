"""ctxrely: does my model still listen to the context it is given?

A light facade: ``import ctxrely`` imports neither torch nor transformers; the heavy pieces load on
first use.

Example:
    >>> import ctxrely
    >>> result = ctxrely.evaluate(model, tokenizer, suites=["cf_capitals"], mode="logits")  # doctest: +SKIP
    >>> result.metrics["cf_capitals/logit_cf_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; mirrors _LAZY (a test keeps the two equal)
    from ctxrely.awareness.allocation import attention_allocation
    from ctxrely.awareness.nih_run import run_nih
    from ctxrely.data.loaders import load_data
    from ctxrely.data.schema import ConflictExample, Suite
    from ctxrely.data.suites import load_suite
    from ctxrely.engine.api import evaluate
    from ctxrely.engine.result import EvalResult
    from ctxrely.models.load import load_model
    from ctxrely.prompts import get_format, register_format
    from ctxrely.steer.attention import steer_attention
    from ctxrely.track.callback import ContextRelianceCallback

from ctxrely.version import __version__ as __version__  # noqa: E402  (a leaf; see version.py)

# public name -> module that defines it (imported lazily on first attribute access)
_LAZY = {
    "evaluate": "ctxrely.engine.api",
    "EvalResult": "ctxrely.engine.result",
    "ConflictExample": "ctxrely.data.schema",
    "Suite": "ctxrely.data.schema",
    "load_suite": "ctxrely.data.suites",
    "load_data": "ctxrely.data.loaders",
    "load_model": "ctxrely.models.load",
    "get_format": "ctxrely.prompts",
    "register_format": "ctxrely.prompts",
    "ContextRelianceCallback": "ctxrely.track.callback",
    "run_nih": "ctxrely.awareness.nih_run",
    "attention_allocation": "ctxrely.awareness.allocation",
    "steer_attention": "ctxrely.steer.attention",
}

__all__ = [  # written out so linters see the TYPE_CHECKING names used; a test keeps it equal to _LAZY
    "__version__", "evaluate", "EvalResult", "ConflictExample", "Suite", "load_suite", "load_data", "load_model",
    "get_format", "register_format", "ContextRelianceCallback", "run_nih", "attention_allocation", "steer_attention",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctxrely' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
