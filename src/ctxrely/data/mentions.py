"""Find and replace every mention of an answer in a text, consistently (whole words only).

Shared by counterfactual augmentation (:mod:`ctxrely.mitigate.augment`) and the graded conflict
suites (:mod:`ctxrely.data.graded`): a name is replaced as a whole phrase everywhere and, for a
person's multi-word name, also by its last word alone (the surname, possessives included) unless a
capitalised word precedes it (another person of that name).

Example:
    >>> sub = replace_mentions("Niels Bohr", "Charles Darwin", surname=True)
    >>> sub("Niels Bohr was Danish. Bohr's model, unlike Aage Bohr's, was The Bohr model.")
    "Charles Darwin was Danish. Darwin's model, unlike Aage Bohr's, was The Darwin model."
    >>> replace_mentions("1789", "1790")("In 1789 (not 17890) it fell; 1789 is remembered.")
    'In 1790 (not 17890) it fell; 1790 is remembered.'
"""

from __future__ import annotations

import re
from collections.abc import Callable

STOP_WORDS = {"the", "a", "an", "it", "this", "that", "he", "she", "they", "we", "i", "in", "on", "yes", "no",
              "there"}
_CAP_BEFORE = re.compile(r"\b([A-Z][\w'’\-]*)[ \t]+$")


def word_pattern(text: str) -> re.Pattern[str]:
    """A regex matching ``text`` as a whole word/phrase (no letters or digits glued on either side)."""
    return re.compile(rf"(?<![\w]){re.escape(text)}(?![\w])")


def number_pattern(text: str) -> re.Pattern[str]:
    """Like :func:`word_pattern`, but a number is not matched inside a longer one ("8" in "8,849" or "1.5").

    Example:
        >>> [m.start() for m in number_pattern("8").finditer("8 legs, 8,849 m, 1.8 s, 8.")]
        [0, 24]
    """
    return re.compile(rf"(?<![\w.,]){re.escape(text)}(?![\w]|[.,]\d)")


def other_name_before(text: str) -> bool:
    """Whether ``text`` ends in a capitalised word that is not a stop word (``Aage `` before ``Bohr``)."""
    m = _CAP_BEFORE.search(text)
    return bool(m) and m.group(1).lower() not in STOP_WORDS


def replace_mentions(answer: str, new: str, surname: bool = False, numeric: bool = False) -> Callable[[str], str]:
    """A function replacing every whole-word mention of ``answer`` by ``new`` (see the module docstring).

    Args:
        surname: ``answer`` is a person's multi-word name: its last word alone is replaced too.
        numeric: match as :func:`number_pattern` does (not inside a longer number).
    """
    full = number_pattern(answer) if numeric else word_pattern(answer)
    words = answer.split()
    if not surname or len(words) < 2:
        return lambda s: full.sub(lambda _m: new, s)
    last, new_last = word_pattern(words[-1]), new.split()[-1]

    def sub(s: str) -> str:
        s = full.sub(lambda _m: new, s)
        return last.sub(lambda m: m.group(0) if other_name_before(s[:m.start()]) else new_last, s)

    return sub


def left_mentions(answer: str, text: str) -> bool:
    """Whether a capitalised word of ``answer`` (3+ letters), or ``answer`` itself, is still in ``text``."""
    return any(word_pattern(w).search(text) for w in answer.split() if len(w) >= 3 and w[0].isupper()) \
        or bool(word_pattern(answer).search(text))
