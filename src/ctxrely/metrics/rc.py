"""Reading-comprehension metrics: ``contains``, ``exact_match`` and ``f1`` against gold answers.

Normalisation is SQuAD's official one (lower-case, punctuation removed, articles removed, spaces
collapsed); each metric is the max over the gold answers. ``contains``: the normalised gold
occurs in the normalised output as whole words. The facts of each metric are declared once in
``RC_METRICS`` (name, mode, higher_is_better, aggregation) for the metric table.

Example:
    >>> f = rc_flags("It was the Denver Broncos.", ["Denver Broncos", "Broncos"])
    >>> f["contains"], f["exact_match"], round(f["f1"], 3)
    (True, False, 0.667)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

RC_METRICS: dict[str, dict[str, Any]] = {
    "contains": {"mode": "generate", "higher_is_better": True, "aggregation": "mean",
                 "description": "normalised gold answer inside the normalised output (max over golds)"},
    "exact_match": {"mode": "generate", "higher_is_better": True, "aggregation": "mean",
                    "description": "normalised output equals a normalised gold answer (SQuAD official)"},
    "f1": {"mode": "generate", "higher_is_better": True, "aggregation": "mean",
           "description": "token F1 against the best gold answer (SQuAD official normalisation)"},
}
_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's ``normalize_answer``: lower, drop punctuation, drop articles, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, gold: str) -> float:
    """Token-level F1 of the normalised strings (SQuAD official)."""
    p, g = squad_normalize(prediction).split(), squad_normalize(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def rc_flags(output: str, golds: Sequence[str]) -> dict[str, Any]:
    """``contains``, ``exact_match`` and ``f1`` of one output, each the max over ``golds``."""
    if not golds:
        raise ValueError("no gold answers")
    out = squad_normalize(output)
    norm = [squad_normalize(g) for g in golds]
    return {"contains": any(g and f" {g} " in f" {out} " for g in norm),
            "exact_match": any(out == g for g in norm),
            "f1": max(f1_score(output, g) for g in golds)}
