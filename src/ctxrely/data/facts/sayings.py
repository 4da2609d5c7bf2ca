"""Well-known English sayings, split into a stem and the usual last word (``proverbs.json``).

Example:
    >>> from ctxrely.data.facts import load_proverbs
    >>> p = load_proverbs()[0]
    >>> f"{p.stem} {p.ending}"
    'Absence makes the heart grow fonder'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Proverb:
    """A saying: ``stem`` + " " + ``ending`` is the familiar form; ``aliases`` are other endings."""

    stem: str
    ending: str
    aliases: tuple[str, ...] = ()


@cache
def _load() -> tuple[Proverb, ...]:
    text = resources.files("ctxrely.data.facts").joinpath("proverbs.json").read_text(encoding="utf-8")
    rows = json.loads(text)["proverbs"]
    return tuple(Proverb(r[0], r[1], tuple(r[2]) if len(r) > 2 else ()) for r in rows)


def load_proverbs() -> list[Proverb]:
    """All shipped sayings, in file order."""
    return list(_load())
