"""How well ``score-data`` recovers the lab's true classes: precision and recall of its C / C+S / S
classes, and of the rows each ``filter`` run drops, against the labels the lab built the mixture with.

The lab knows every training row's class (``cls``: C for invented entities, C+S for known facts with
a context, S closed-book); a user's dataset does not, and ``ctxrely score-data`` guesses it from the
base model's response NLL without the context (C+S when at most ``cs_threshold`` nats/token). These
numbers say whether ``filter`` can stand in for the ``no_ccs`` oracle. The scores are the ones the
``filter`` runs cached (``<out>/data/criticality.json``), so no model runs here.

Example:
    >>> scores = [{"has_context": True, "nll_without": 0.2}, {"has_context": True, "nll_without": 3.0},
    ...           {"has_context": False, "nll_without": 0.1}, {"has_context": True, "nll_without": 0.5}]
    >>> r = class_recovery(scores, ["C+S", "C", "S", "C"], drop=0.34)
    >>> r["classes"]["C+S"]["precision"], r["classes"]["C+S"]["recall"], r["filters"]["filter"]["precision"]
    (0.5, 1.0, 1.0)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.diagnose.criticality import CLASSES, DEFAULT_CS_THRESHOLD, classify


def _pr(tp: int, n_pred: int, n_true: int) -> dict[str, Any]:
    return {"tp": tp, "n_pred": n_pred, "n_true": n_true, "precision": tp / n_pred if n_pred else None,
            "recall": tp / n_true if n_true else None}


def class_recovery(scores: Sequence[dict[str, Any]], labels: Sequence[str], *, drop: float = 0.25,
                   cs_threshold: float = DEFAULT_CS_THRESHOLD) -> dict[str, Any]:
    """Precision/recall of the score classes and of the two filters' dropped rows vs the true labels.

    Args:
        scores: ``score_criticality`` rows (``has_context``, ``nll_without``), aligned with ``labels``.
        labels: the true class of each row (``C``, ``C+S`` or ``S``).
        drop: the quantile filter's share (the ``filter`` run's ``filter_drop``).
        cs_threshold: ``score-data``'s C+S threshold (nats/token).

    Returns:
        ``{"n", "cs_threshold", "classes": {cls: {tp, n_pred, n_true, precision, recall}},
        "confusion": {true: {predicted: count}}, "filters": {"filter": ..., "filter_class": ...}}``;
        a filter's precision is the share of its dropped rows that are true C+S, its recall the share
        of true C+S rows it drops.
    """
    from ctxrely.mitigate.filter import filter_rows

    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    pred = [classify(s.get("nll_without"), bool(s.get("has_context")), cs_threshold=cs_threshold) for s in scores]
    confusion = {t: {p: sum(1 for a, b in zip(labels, pred, strict=True) if a == t and b == p)
                     for p in (*CLASSES, "skipped")} for t in CLASSES}
    classes = {c: _pr(confusion[c][c], sum(1 for p in pred if p == c), sum(1 for t in labels if t == c))
               for c in CLASSES}
    n_cs = sum(1 for t in labels if t == "C+S")
    filters = {}
    classed = [dict(s, cls=p) for s, p in zip(scores, pred, strict=True)]
    for name, kw in (("filter", {"drop": drop}), ("filter_class", {"by": "class", "classes": ("C+S",)})):
        _, manifest = filter_rows(list(range(len(scores))), classed, **kw)  # type: ignore[arg-type]
        dropped = [d["index"] for d in manifest["dropped"]]
        filters[name] = {**_pr(sum(1 for i in dropped if labels[i] == "C+S"), len(dropped), n_cs),
                         "cutoff": manifest["cutoff"],
                         "dropped_by_class": {c: sum(1 for i in dropped if labels[i] == c) for c in CLASSES}}
    return {"n": len(scores), "cs_threshold": cs_threshold, "drop": drop, "classes": classes,
            "confusion": confusion, "filters": filters, "separability": separability(scores, labels)}


def separability(scores: Sequence[dict[str, Any]], labels: Sequence[str], *, precision: float = 0.95
                 ) -> dict[str, Any]:
    """How well NLL without context separates true C+S from true C rows, whatever the cut-off.

    Returns:
        ``{"auc", "n_cs", "n_c", "precision", "threshold", "recall"}``: AUC = P(a C+S row's NLL < a C
        row's), ties count half; the highest recall of C+S at ``precision`` or better when dropping
        every context row with NLL <= ``threshold`` (None if no cut-off reaches it).
    """
    pts = sorted((float(s["nll_without"]), t == "C+S") for s, t in zip(scores, labels, strict=True)
                 if t in ("C", "C+S") and s.get("nll_without") is not None)
    n_cs = sum(1 for _, cs in pts if cs)
    n_c = len(pts) - n_cs
    auc, seen_c, i = 0.0, 0, 0
    best: tuple[float, float] | None = None
    tp = fp = 0
    while i < len(pts):  # walk tied values together
        j = i
        while j < len(pts) and pts[j][0] == pts[i][0]:
            j += 1
        cs_here = sum(1 for _, cs in pts[i:j] if cs)
        c_here = (j - i) - cs_here
        auc += cs_here * (n_c - seen_c - c_here / 2)
        seen_c += c_here
        tp, fp = tp + cs_here, fp + c_here
        if tp / (tp + fp) >= precision and n_cs:
            best = (pts[j - 1][0], tp / n_cs)
        i = j
    return {"auc": auc / (n_cs * n_c) if n_cs and n_c else None, "n_cs": n_cs, "n_c": n_c, "precision": precision,
            "threshold": best[0] if best else None, "recall": best[1] if best else None}


def experiment_recovery(folder: str | Path) -> dict[str, Any] | None:
    """:func:`class_recovery` of a lab experiment from its cached scores (None before any ``filter`` run)."""
    data = Path(folder) / "data"
    if not (data / "criticality.json").exists() or not (data / "mixture.jsonl").exists():
        return None
    scores = json.loads((data / "criticality.json").read_text(encoding="utf-8"))
    labels = [json.loads(line)["cls"] for line in (data / "mixture.jsonl").read_text(encoding="utf-8").splitlines()
              if line.strip()]
    preset = json.loads((Path(folder) / "preset.json").read_text(encoding="utf-8"))
    out = class_recovery(scores, labels, drop=float(preset.get("filter_drop", 0.25)))
    out["source"] = str(data / "criticality.json")
    return out
