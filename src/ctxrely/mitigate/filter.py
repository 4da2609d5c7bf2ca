"""Drop non-context-critical training rows (Goyal et al. 2024): the lowest NLL-without-context
share (or lowest gain from the context), or a class, with a manifest saying what was dropped and why.

Example:
    >>> kept, manifest = filter_rows(rows, scores, drop=0.25)  # doctest: +SKIP
    >>> manifest["n_dropped"], manifest["dropped"][0]["reason"]  # doctest: +SKIP
    (2, 'nll_without 0.412 <= cutoff 0.530: lowest 25% of 8 rows with context')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ctxrely.errors import ConfigError
from ctxrely.registry import MITIGATIONS

CLASSES = ("C", "C+S", "S")  # the classes of ctxrely.diagnose.criticality

By = Literal["nll_without", "gain", "class"]


def _reason(key: str, v: float, cutoff: float, drop: float, n: int, scope: str) -> str:
    pool = "rows with context" if scope == "context" else "scored rows"
    return f"{key} {v:.3f} <= cutoff {cutoff:.3f}: lowest {drop:.0%} of {n} {pool}"


@MITIGATIONS.register("filter", description="drop the lowest-k% of rows by NLL without context, or a class "
                      "(C+S), keeping the original format; writes a manifest (Goyal et al. 2024)")
def filter_rows(rows: Sequence[dict[str, Any]], scores: Sequence[dict[str, Any]], *, drop: float = 0.25,
                by: By = "nll_without", classes: Sequence[str] = ("C+S",), scope: str = "context"
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Keep the rows that need their context.

    Args:
        rows: the original rows (any format); ``scores[i]`` belongs to ``rows[i]``.
        scores: rows of ``DIR/scores.jsonl`` (``nll_without``, ``has_context``, ``cls``, ``id``, ``line``).
        drop: share to drop when ranking (of the rows in ``scope``), in [0, 1).
        by: ``nll_without`` (lowest first: the model already knows the response), ``gain`` (lowest
            first: the context helps least), or ``class`` (drop rows whose class is in ``classes``).
        scope: ``context`` ranks only rows that have a context (rows without one are always kept);
            ``all`` ranks every scored row.

    Returns:
        ``(kept rows, manifest)``; the manifest lists each dropped row's index, id, line and reason.
    """
    if len(rows) != len(scores):
        raise ValueError(f"{len(rows)} rows but {len(scores)} scores")
    if not 0 <= drop < 1:
        raise ConfigError(f"drop must be a share in [0, 1), got {drop}")
    if by not in ("nll_without", "gain", "class"):
        raise ConfigError(f"by must be 'nll_without', 'gain' or 'class', got {by!r}")
    if scope not in ("context", "all"):
        raise ConfigError(f"scope must be 'context' or 'all', got {scope!r}")
    unknown = [c for c in classes if c not in CLASSES]
    if by == "class" and (unknown or not classes):
        raise ConfigError(f"unknown class(es) {unknown} for by='class'; choose from {', '.join(CLASSES)}"
                          if unknown else f"by='class' needs classes to drop, among {', '.join(CLASSES)}")
    reasons: dict[int, str] = {}
    cutoff = None
    if by != "class":
        pool = [i for i, s in enumerate(scores) if s.get(by) is not None
                and (scope == "all" or s.get("has_context"))]
        pool.sort(key=lambda i: (scores[i][by], i))
        k = int(round(drop * len(pool)))
        if k:
            cutoff = scores[pool[k - 1]][by]
            for i in pool[:k]:
                reasons[i] = _reason(by, scores[i][by], cutoff, drop, len(pool), scope)
    else:
        wanted = set(classes)
        for i, s in enumerate(scores):
            if s.get("cls") in wanted:
                v = s.get("nll_without")
                reasons[i] = f"class {s['cls']}" + (f" (nll_without {v:.3f})" if v is not None else "")
    kept = [r for i, r in enumerate(rows) if i not in reasons]
    manifest = {
        "by": by, "drop": drop if by != "class" else None, "classes": list(classes) if by == "class" else None,
        "scope": scope, "cutoff": cutoff, "n_in": len(rows), "n_kept": len(kept), "n_dropped": len(reasons),
        "n_unscored_kept": sum(1 for i, s in enumerate(scores) if s.get("nll_without") is None and i not in reasons),
        "dropped": [{"index": i, "id": scores[i].get("id"), "line": scores[i].get("line"),
                     "cls": scores[i].get("cls"), "nll_without": scores[i].get("nll_without"),
                     "gain": scores[i].get("gain"), "reason": reasons[i]}
                    for i in sorted(reasons)],
    }
    return kept, manifest
