"""Head selection for PASTA by model profiling: steer one layer at a time, then the single heads of
the best layers, on a profiling split, and rank them by the gain in a metric over the unsteered model.

The default metric, ``first_margin``, is the mean log p - log p of the first token of the context's
answer vs the memorised one, from ONE steered prefill per prompt (cheap enough to run 60 steered
passes on a CPU); any metric of :func:`ctxrely.evaluate` works too (``logp_margin``, ``cf_acc``). The profiling split is the LAST ``limit`` examples of each suite, so an evaluation on the
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


class _FirstTokens:
    """Prompts (ids + context spans) and the first tokens of both answers, built once per profile."""

    def __init__(self, model: Any, tok: Any, suites: list[Suite], fmt: Any) -> None:
        from ctxrely.engine.logits import encode_pairs
        from ctxrely.engine.prompting import build_prompts, continuation
        from ctxrely.models.load import model_max_length
        from ctxrely.prompts import PromptFormat, get_format
        from ctxrely.steer.spans import prompt_spans

        pf = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
        exs = [ex for s in suites for ex in s.examples if ex.param_answer is not None]
        prompts = build_prompts(exs, pf, tok, model_max_length(model, tok), reserve=8)
        pairs = encode_pairs(tok, [p.text for p in prompts],
                             [[continuation(p.text, ex.cf_answer), continuation(p.text, ex.param_answer or "")]
                              for ex, p in zip(exs, prompts, strict=True)], not pf.chat,
                             prompt_ids=[p.ids for p in prompts])
        # the answers' first DIFFERING token, after the prompt and the tokens both answers share
        # (chat prompts end in a newline that scoring moves onto both answers)
        keep, self.ids, self.cf, self.param = [], [], [], []
        for i, (ids, (c, q)) in enumerate(pairs):
            k = next((j for j, (a, b) in enumerate(zip(c, q, strict=False)) if a != b), None)
            if k is not None:
                keep.append(i)
                self.ids.append(list(ids) + list(c[:k]))
                self.cf.append(c[k])
                self.param.append(q[k])
        spans = prompt_spans([exs[i] for i in keep], [prompts[i].text.rstrip() for i in keep],
                             [pairs[i][0] for i in keep], pf, tok)
        self.spans = spans
        if not self.ids:
            raise SteerError("no profiling example has two answers that differ")

    def margin(self, model: Any, tok: Any, heads: Sequence[tuple[int, int]] | None, alpha: float,
               batch_size: int) -> float:
        import torch

        from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of
        from ctxrely.steer.attention import steer_attention

        device = next(model.parameters()).device
        total = 0.0
        with torch.inference_mode(), steer_attention(model, alpha=alpha if heads else 1.0,
                                                     heads=list(heads) if heads else "all") as st:
            for ids, sp in zip(self.ids, self.spans, strict=True):
                st.add(ids, sp)
            for idx in length_sorted_batches(self.ids, batch_size):
                x, m, pos = left_pad([self.ids[i] for i in idx], pad_id_of(tok), device)
                lp = torch.log_softmax(model(input_ids=x, attention_mask=m, position_ids=pos,
                                             logits_to_keep=1).logits[:, -1].float(), -1)
                rows = torch.arange(len(idx), device=device)
                cf = torch.tensor([self.cf[i] for i in idx], device=device)
                pa = torch.tensor([self.param[i] for i in idx], device=device)
                total += float((lp[rows, cf] - lp[rows, pa]).sum())
        return total / len(self.ids)


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
                  top_layers: int = 3, alpha: float = 0.01, metric: str = "first_margin", fmt: Any = "raw",
                  batch_size: int = 16, progress: bool = True) -> tuple[list[tuple[int, int]], dict[str, Any]]:
    """``(heads, scores)``: the ``top_k`` heads by gain, and every layer's and head's gain."""
    n_layers, n_heads = model_shape(model)
    split = profiling_split(suites, limit)
    bar = _bar(n_layers + top_layers * n_heads + 1, progress)
    if metric == "first_margin":
        first = _FirstTokens(model, tok, split, fmt)

        def score(heads: Sequence[tuple[int, int]] | None) -> float:
            return first.margin(model, tok, heads, alpha, batch_size)
    else:
        def score(heads: Sequence[tuple[int, int]] | None) -> float:
            return _metric(model, tok, split, fmt, metric, alpha, heads, batch_size)
    base = score(None)
    bar.update()
    layer_gain: dict[int, float] = {}
    for layer in range(n_layers):
        layer_gain[layer] = score([(layer, h) for h in range(n_heads)]) - base
        bar.update()
    best = sorted(layer_gain, key=lambda x: -layer_gain[x])[:top_layers]
    head_gain: dict[tuple[int, int], float] = {}
    for layer in best:
        for h in range(n_heads):
            head_gain[(layer, h)] = score([(layer, h)]) - base
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
