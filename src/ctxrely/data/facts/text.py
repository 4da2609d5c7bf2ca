"""Small text helpers shared by the suite builders: capitalising, answer clashes, picking distractors.

Example:
    >>> cap("the Eiffel Tower stands in Paris.")
    'The Eiffel Tower stands in Paris.'
    >>> clashes(["Bach", "J. S. Bach"], ["Johann Sebastian Bach"])
    True
    >>> clashes(["Lyon"], ["Paris"])
    False
    >>> tidy("The capital moved to Washington, D.C.. It grew.")
    'The capital moved to Washington, D.C. It grew.'
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TypeVar

from ctxrely.metrics.matching import normalize_answer

T = TypeVar("T")


def cap(text: str) -> str:
    """Upper-case the first character only ("the Louvre ..." -> "The Louvre ...")."""
    return text[:1].upper() + text[1:]


def tidy(text: str) -> str:
    """Drop the doubled full stop left when a name ending in "." closes a sentence ("D.C.." -> "D.C.")."""
    return re.sub(r"\.\.(?=\s|$)", ".", text)


@lru_cache(maxsize=8192)
def _padded(text: str) -> str:
    return f" {normalize_answer(text)} "


def clashes(a: Iterable[str], b: Iterable[str]) -> bool:
    """Whether any form in ``a`` occurs in any form in ``b`` (or the reverse) as whole words.

    Uses the same normalisation as the answer metrics, so two answers that clash here could be
    confused by a containment match.
    """
    na, nb = [_padded(x) for x in a], [_padded(y) for y in b]
    return any(x.strip() and y.strip() and (x in y or y in x) for x in na for y in nb)


def pick_other(rng: random.Random, pool: Sequence[T], avoid: Iterable[str], forms=lambda x: [str(x)]) -> T:
    """A random element of ``pool`` none of whose ``forms`` clash with ``avoid``.

    Args:
        rng: the caller's seeded generator (never the global one).
        pool: candidates, in a stable order.
        avoid: surface forms the pick must not overlap with (the true answer and its aliases).
        forms: maps a candidate to its surface forms (default: ``[str(candidate)]``).

    Raises:
        ValueError: when no candidate is left.
    """
    avoid = list(avoid)
    ok = [c for c in pool if not clashes(forms(c), avoid)]
    if not ok:
        raise ValueError(f"no candidate in a pool of {len(pool)} avoids {avoid!r}")
    return rng.choice(ok)
