"""The ``utils.py`` that ``ctxrely export-lm-eval`` copies next to every exported lm-eval task.

The exported ``utils.py`` is standalone: it imports nothing from ctxrely (only the standard library,
and ``datasets``, which lm-eval already needs), so an exported task folder runs with lm-eval alone.
In this file the answer matching is imported from :mod:`ctxrely.metrics.matching`; at export time
:func:`ctxrely.integrations.lmeval.export.helper_source` replaces that import with the module's
source, so there is no hand copy to keep in step.

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
from pathlib import Path
from typing import Any

DATA_FILE = "data.jsonl"

# ---- matching: ctxrely export-lm-eval writes the source of ctxrely.metrics.matching here ----
from ctxrely.metrics.matching import contains, normalize_answer  # noqa: E402, F401

# ---- end of matching ----


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
