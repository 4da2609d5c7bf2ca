"""Similarity buckets of a target's *maximum* similarity to its in-context examples (Malu et al. Fig. 3).

Low ``[0, 1/3)``, Medium ``[1/3, 2/3)``, High ``[2/3, 1]``; no demonstrations at all is ``zero``.
(The paper writes 0-0.33, 0.33-0.67, 0.67-1; we cut at exact thirds, lower bound inclusive.)

Example:
    >>> [bucket_of(x) for x in (None, 0.0, 0.33, 1/3, 0.66, 2/3, 1.0)]
    ['zero', 'low', 'low', 'medium', 'medium', 'high', 'high']
"""

from __future__ import annotations

BUCKETS = ("zero", "low", "medium", "high")
EDGES = (1 / 3, 2 / 3)


def bucket_of(max_similarity: float | None) -> str:
    """The bucket of a context whose best demonstration has ``max_similarity`` (None: no demos)."""
    if max_similarity is None:
        return "zero"
    if not 0.0 <= max_similarity <= 1.0 + 1e-9:
        raise ValueError(f"similarity {max_similarity} is outside [0, 1]")
    if max_similarity < EDGES[0]:
        return "low"
    return "medium" if max_similarity < EDGES[1] else "high"
