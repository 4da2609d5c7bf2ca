"""The ``utils.py`` that ``ctxrely export-lm-eval`` copies next to every exported lm-eval task.

This module is deliberately standalone: it imports nothing from ctxrely (only the standard library,
and ``datasets``, which lm-eval already needs), so an exported task folder runs with lm-eval alone.
The answer normalisation below is a verbatim copy of :mod:`ctxrely.metrics.matching`; a test keeps
the two equal.

lm-eval calls:

- ``load(**kwargs)`` (``custom_dataset``): the ``data.jsonl`` beside this file, as ``{"test": Dataset}``;
- ``with_param(docs)`` (``process_docs`` of the multiple-choice task): docs that have a parametric answer;
- ``process_generation(doc, results)``: cf_acc, param_acc and the four buckets of one generated answer;
- ``process_choice(doc, results)``: acc (= ctxrely's ``logit_cf_rate``: log p(cf) > log p(param)),
  m_c and logp_margin from the two log-likelihoods.

Example:
    >>> doc = {"cf_targets": ["Herat"], "param_targets": ["Kabul"], "match": "squad"}
    >>> process_generation(doc, ["Herat, not Kabul."])["both"]
    1.0
    >>> round(process_choice(doc, [(-1.0, False), (-2.0, True)])["m_c"], 3)
    0.731
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DATA_FILE = "data.jsonl"

# ---- copied from ctxrely.metrics.matching (keep identical; tests/test_lmeval_export.py checks) ----
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}


def normalize_answer(text: str) -> str:
    """Lower-case (NFKC), turn punctuation into spaces, drop articles, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def contains(text: str, targets: Iterable[str], mode: str = "squad") -> bool:
    """Whether any target occurs in ``text`` (as whole words after normalisation in squad mode)."""
    if mode == "raw":
        return any(t and t in text for t in targets)
    hay = f" {normalize_answer(text)} "
    for t in targets:
        needle = normalize_answer(t)
        if needle and f" {needle} " in hay:
            return True
    return False
# ---- end of copy ----


def read_rows(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The exported examples (``data.jsonl`` beside this file unless ``path`` is given)."""
    p = Path(path) if path is not None else Path(__file__).resolve().parent / DATA_FILE
    with open(p, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load(**kwargs: Any) -> dict[str, Any]:
    """lm-eval ``custom_dataset``: ``{"test": datasets.Dataset}`` of the rows in ``data.jsonl``.

    lm-eval passes the task's ``metadata`` and ``dataset_kwargs`` as keyword arguments; a
    ``data_file`` keyword overrides the file's location.
    """
    import datasets

    return {"test": datasets.Dataset.from_list(read_rows(kwargs.get("data_file")))}


def with_param(docs: Any) -> Any:
    """lm-eval ``process_docs``: keep the docs that have a parametric answer (needed for two choices)."""
    return docs.filter(lambda d: d["param_answer"] is not None)


def process_generation(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Per-doc generation metrics, exactly as ``ctxrely.metrics.conflict.gen_flags`` computes them.

    ``param_acc`` is absent for docs without a parametric answer (ctxrely averages it over the
    docs that have one); the four buckets are 0 for them (ctxrely divides bucket counts by all docs).
    """
    out = results[0]
    mode = doc.get("match") or "squad"
    cf = contains(out, doc["cf_targets"], mode)
    scores = {"cf_acc": float(cf)}
    if not doc["param_targets"]:
        return {**scores, "cf_only": 0.0, "param_only": 0.0, "both": 0.0, "neither": 0.0}
    pa = contains(out, doc["param_targets"], mode)
    scores["param_acc"] = float(pa)
    scores.update(cf_only=float(cf and not pa), param_only=float(pa and not cf), both=float(cf and pa),
                  neither=float(not cf and not pa))
    return scores


def process_choice(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    """Per-doc log-likelihood metrics from ``[(ll_cf, greedy), (ll_param, greedy)]``.

    ``acc`` is 1 when log p(cf) > log p(param) (strictly, as ctxrely's ``cf_wins``; lm-eval's default
    argmax would count an exact tie as correct).
    """
    (ll_cf, _), (ll_param, _) = results[0], results[1]
    diff = ll_param - ll_cf
    mc = 1.0 / (1.0 + math.exp(diff)) if diff < 700 else 0.0
    return {"acc": float(ll_cf > ll_param), "m_c": mc, "logp_margin": ll_cf - ll_param}
