"""Answer matching: SQuAD-style normalisation and containment (with a raw, case-sensitive mode).

Example:
    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    >>> contains("It is in Herat, the new capital.", ["herat"])
    True
    >>> contains("Kabul", ["herat", "Kabul"], mode="raw")
    True
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable
from typing import Literal

MatchMode = Literal["squad", "raw"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}


def normalize_answer(text: str) -> str:
    """Lower-case (NFKC), turn punctuation into spaces, drop articles, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def contains(text: str, targets: Iterable[str], mode: MatchMode = "squad") -> bool:
    """Whether any target occurs in ``text`` (as whole words after normalisation in squad mode)."""
    if mode == "raw":
        return any(t and t in text for t in targets)
    hay = f" {normalize_answer(text)} "
    for t in targets:
        needle = normalize_answer(t)
        if needle and f" {needle} " in hay:
            return True
    return False
