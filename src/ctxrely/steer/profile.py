"""Head selection for PASTA by model profiling: steer one layer at a time, then the single heads of
the best layers, on a profiling split, and rank them by the gain in a metric over the unsteered model.

The metric comes from logit-mode scoring by default (``logp_margin``: mean log p(context answer) -
log p(memorised answer), the most sensitive on small splits); generation metrics (``cf_acc``) work
too. The profiling split is the LAST ``limit`` examples of each suite, so an evaluation on the
first ones does not see them. Output: a head file in PASTA's JSON shape (``{"layer": [head, ...]}``)
and the scores beside it (``<out>.scores.json``).

Example:
    >>> heads, scores = profile_heads(model, tok, ["cf_capitals"], limit=32, top_k=8)  # doctest: +SKIP
    $ ctxrely steer profile --model smollm2-135m-instruct --suites cf_capitals --limit 32 --top-k 8 --out heads.json
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.data.schema import Suite
from ctxrely.steer.attention import model_shape
from ctxrely.steer.heads import SteerError, write_head_file

log = logging.getLogger(__name__)
LOGIT_METRICS = ("logp_margin", "logit_cf_rate", "m_c")


def profiling_split(suites: Sequence[str | Suite], n: int) -> list[Suite]:
    """The last ``n`` examples of each suite."""
    from ctxrely.engine.api import resolve_suites

    return [Suite(s.name, s.version, s.examples[-n:], s.source) for s in resolve_suites(list(suites))]


def _metric(model: Any, tok: Any, suites: list[Suite], fmt: Any, metric: str, alpha: float,
            heads: Sequence[tuple[int, int]] | None, batch_size: int) -> float:
    from ctxrely.engine.api import evaluate
    from ctxrely.steer.plan import SteerSpec

    steer = None if heads is None else SteerSpec(alpha=alpha, heads=tuple(heads))
    res = evaluate(model, tok, suites, fmt=fmt, mode="logits" if metric in LOGIT_METRICS else "generate",
                   batch_size=batch_size, n_boot=0, progress=False, max_new_tokens=12, steer=steer)
    key = f"{'all' if len(suites) > 1 else suites[0].name}/{metric}"
    value = res.summary["flat"].get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise SteerError(f"metric {metric!r} is not available for these suites (try logp_margin or cf_acc)")
    return float(value)


def profile_heads(model: Any, tok: Any, suites: Sequence[str | Suite], *, limit: int = 32, top_k: int = 8,
                  top_layers: int = 3, alpha: float = 0.01, metric: str = "logp_margin", fmt: Any = "raw",
                  batch_size: int = 16, progress: bool = True) -> tuple[list[tuple[int, int]], dict[str, Any]]:
    """``(heads, scores)``: the ``top_k`` heads by gain, and every layer's and head's gain."""
    n_layers, n_heads = model_shape(model)
    split = profiling_split(suites, limit)
    bar = _bar(n_layers + top_layers * n_heads + 1, progress)
    base = _metric(model, tok, split, fmt, metric, alpha, None, batch_size)
    bar.update()
    layer_gain: dict[int, float] = {}
    for layer in range(n_layers):
        layer_gain[layer] = _metric(model, tok, split, fmt, metric, alpha,
                                    [(layer, h) for h in range(n_heads)], batch_size) - base
        bar.update()
    best = sorted(layer_gain, key=lambda x: -layer_gain[x])[:top_layers]
    head_gain: dict[tuple[int, int], float] = {}
    for layer in best:
        for h in range(n_heads):
            head_gain[(layer, h)] = _metric(model, tok, split, fmt, metric, alpha, [(layer, h)], batch_size) - base
            bar.update()
    bar.close()
    heads = sorted(head_gain, key=lambda lh: -head_gain[lh])[:top_k]
    scores = {"metric": metric, "alpha": alpha, "limit": limit, "base": base,
              "layer_gain": {str(k): v for k, v in layer_gain.items()},
              "head_gain": [[lh[0], lh[1], g] for lh, g in sorted(head_gain.items(), key=lambda x: -x[1])],
              "heads": [list(lh) for lh in heads]}
    return heads, scores


def save_profile(out: str | Path, heads: Sequence[tuple[int, int]], scores: dict[str, Any]) -> Path:
    """Write the head file (PASTA shape) and ``<out>.scores.json``."""
    path = write_head_file(out, heads)
    path.with_suffix(".scores.json").write_text(json.dumps(scores, indent=1) + "\n", encoding="utf-8")
    return path


def _bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="profile", unit="run", disable=not enabled, leave=False)
