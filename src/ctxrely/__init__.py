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
from typing import Any

__version__ = "0.1.0"

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
    "steer_attention": "ctxrely.steer.attention",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctxrely' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
