"""Built-in knowledge-conflict suites, generated deterministically from shipped fact tables.

Each suite module registers a builder with :func:`register_suite`; :func:`load_suite` builds it.

Example:
    >>> from ctxrely.data.suites import load_suite
    >>> suite = load_suite("cf_capitals")  # doctest: +SKIP
    >>> suite.version, len(suite.examples) >= 150  # doctest: +SKIP
    ('1', True)
"""

from __future__ import annotations

from functools import cache

from ctxrely.data.schema import Suite
from ctxrely.data.suites.base import Builder as Builder
from ctxrely.data.suites.base import register_suite as register_suite
from ctxrely.registry import SUITES


@cache
def _build(name: str) -> Suite:
    entry = SUITES.entry(name)
    return Suite(name=name, version=str(entry.meta["version"]), examples=list(entry.obj()))


def load_suite(name: str, limit: int | None = None) -> Suite:
    """Build (once, cached) the built-in suite ``name``; ``limit`` keeps the first n examples."""
    suite = _build(name)
    if limit is None:
        return suite
    return Suite(name=suite.name, version=suite.version, examples=suite.examples[:limit], source=suite.source)


# Importing the suite modules registers them.
from ctxrely.data.suites import bio, capitals, graded, quotes, world_facts  # noqa: E402,F401
