"""How a built-in suite registers itself: :func:`register_suite` (the suite modules import this, not
their package, so the package and its suites do not import each other).

Example:
    >>> from ctxrely.data.suites.base import register_suite
    >>> @register_suite("cf_mine", version="1", description="my suite")  # doctest: +SKIP
    ... def build() -> list[ConflictExample]: ...
"""

from __future__ import annotations

from collections.abc import Callable

from ctxrely.data.schema import ConflictExample
from ctxrely.registry import SUITES

Builder = Callable[[], list[ConflictExample]]


def register_suite(name: str, version: str, description: str) -> Callable[[Builder], Builder]:
    """Register a deterministic suite builder under ``name`` with a version."""
    return SUITES.register(name, description=description, version=version)
