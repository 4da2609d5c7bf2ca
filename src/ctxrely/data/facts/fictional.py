"""Invented entity names (countries, cities, people) for context-critical examples.

A model cannot know a fact about an entity that does not exist, so questions about these names can
only be answered from the context.

Example:
    >>> from ctxrely.data.facts import fictional_names, fictional_people
    >>> "Aldovia" in fictional_names("country")
    True
    >>> fictional_people(2, seed=0) == fictional_people(2, seed=0)
    True
"""

from __future__ import annotations

import json
import random
from functools import cache
from importlib import resources
from typing import Literal

Kind = Literal["country", "city", "first_name", "surname"]
_KEYS = {"country": "countries", "city": "cities", "first_name": "first_names", "surname": "surnames"}


@cache
def _table() -> dict[str, tuple[str, ...]]:
    text = resources.files("ctxrely.data.facts").joinpath("fictional.json").read_text(encoding="utf-8")
    return {k: tuple(v) for k, v in json.loads(text).items() if not k.startswith("_")}


def fictional_names(kind: Kind) -> list[str]:
    """The shipped invented names of ``kind`` ("country", "city", "first_name", "surname")."""
    if kind not in _KEYS:
        raise KeyError(f"unknown kind {kind!r} (known: {', '.join(_KEYS)})")
    return list(_table()[_KEYS[kind]])


def fictional_people(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct invented full names ("Amara Varnholt", ...), deterministic for a seed.

    At most ``len(first_names) * len(surnames)`` (1600) names exist.
    """
    firsts, lasts = fictional_names("first_name"), fictional_names("surname")
    pairs = [(f, s) for f in firsts for s in lasts]
    if n > len(pairs):
        raise ValueError(f"only {len(pairs)} fictional people can be made, asked for {n}")
    random.Random(seed).shuffle(pairs)
    return [f"{f} {s}" for f, s in pairs[:n]]
