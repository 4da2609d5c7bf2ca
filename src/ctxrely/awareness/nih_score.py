"""Needle-in-a-haystack scoring: keyword recall (Wang et al. 2024's re-evaluation) and strict recall.

An output is lower-cased and its punctuation turned into spaces; a keyword counts when it is one
of the resulting words (a several-word keyword: those words in a row). Recall is the share of keywords present; strict is 1 when all are.

Example:
    >>> score_output("Eat a sandwich, and sit in Dolores-Park!", ("eat", "sandwich", "park", "sunny"))
    {'recall': 0.75, 'strict': 0.0}
"""

from __future__ import annotations

import string
from collections.abc import Sequence

_TABLE = str.maketrans({c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014"})


def normalize(text: str) -> str:
    """Lower-cased words of ``text`` with punctuation as separators, joined by single spaces."""
    return " ".join(text.lower().translate(_TABLE).split())


def score_output(output: str, keywords: Sequence[str]) -> dict[str, float]:
    """``{"recall": share of keywords present, "strict": 1.0 if all are}``."""
    if not keywords:
        raise ValueError("no keywords to score against")
    have = f" {normalize(output)} "
    hits = sum(1 for k in keywords if f" {normalize(k)} " in have)
    return {"recall": hits / len(keywords), "strict": float(hits == len(keywords))}
