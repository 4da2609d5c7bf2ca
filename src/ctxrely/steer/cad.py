"""Context-aware decoding (CAD, Shi et al. 2024) and AdaCAD (Wang et al. 2025) as an engine decode strategy.

Next-token scores are ``(1 + a) * log p(y | context, question) - a * log p(y | question)``. CAD uses a
fixed ``a``; AdaCAD sets ``a_t`` per sequence and step to the Jensen-Shannon divergence (natural
log, so in [0, ln 2]) between the two next-token distributions, optionally raised to a floor.
(Log-probs and logits differ by a per-row constant, so the argmax and the softmax are the
papers'.) :class:`CADDecode` plugs into :class:`ctxrely.engine.hf.HFBackend` (the
``DecodeStrategy`` seam): both streams of a batch run in ONE forward, rows ``0..n-1`` holding the
prompts with context and rows ``n..2n-1`` the same prompts without it, sharing one KV cache; every
token the backend feeds (answer tails, forced tokens, decode steps) goes to both rows of a pair, so
the two streams always hold the same generated tokens (the CAD demo sliced the wrong axis and its
"no-context" stream still saw the context; AdaCAD's sign-of-weight split pairs nothing on its own
data). The backend sees only the contrasted log-probs, so answers and answer scores both use them.

Example:
    >>> texts = cad_generate(model, tok, ctx_ids, bare_ids, alpha=1.0, max_new_tokens=8)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ctxrely.engine.backend import DecodeStrategy, Request, Stream
from ctxrely.engine.generate import DEFAULT_STOP
from ctxrely.engine.intervention import check_cad as check_cad  # moved there
from ctxrely.engine.logits import ContScore


def jsd(lp: Any, lq: Any) -> Any:
    """Jensen-Shannon divergence (nats) between distributions given as log-probs, over the last axis."""
    import torch

    m = torch.logaddexp(lp, lq) - torch.log(torch.tensor(2.0, dtype=lp.dtype, device=lp.device))
    kl_p = (lp.exp() * (lp - m)).sum(-1)
    kl_q = (lq.exp() * (lq - m)).sum(-1)
    return (0.5 * (kl_p + kl_q)).clamp(min=0.0)


def contrast(lc: Any, lq: Any, alpha: float, adaptive: bool = False, floor: float | None = None) -> Any:
    """Log-probs of the contrasted distribution from the two streams' log-probs (``(..., vocab)``)."""
    import torch

    if adaptive:
        a = jsd(lc, lq)
        if floor is not None:
            a = a.clamp(min=floor)
        a = a[..., None]
    elif alpha == 0:
        return lc
    else:
        a = alpha
    return torch.log_softmax(lc + a * (lc - lq), dim=-1)


class CADDecode:
    """The CAD / AdaCAD :class:`~ctxrely.engine.backend.DecodeStrategy` (see the module docstring).

    Args:
        bare_prompt: token ids of a request's prompt without its context (used where the request
            carries no ``context_free`` ids of its own).
        base: the strategy that prefills the ``2n`` rows (default: the plain model; attention
            steering passes its own, and the context-free rows, having no ``text``, stay unsteered).
    """

    rows_per_request = 2  # both streams share the batch: the backend halves its token budget

    def __init__(self, bare_prompt: Callable[[Request], Sequence[int]], alpha: float = 1.0, adaptive: bool = False,
                 floor: float | None = None, base: DecodeStrategy | None = None, pad_id: int = 0) -> None:
        check_cad(alpha, floor)
        self.pad_id = pad_id  # never attended to (the mask is 0 there)
        self.bare_prompt, self.alpha, self.adaptive, self.floor = bare_prompt, float(alpha), adaptive, floor
        if base is None:
            from ctxrely.engine.hf import PlainDecode

            base = PlainDecode()
        self.base = base

    def mix(self, logits: Any) -> Any:
        """Contrasted log-probs of the first half of the rows (with context) against the second."""
        import torch

        lp = torch.log_softmax(logits.float(), dim=-1)
        n = lp.shape[0] // 2
        return contrast(lp[:n], lp[n:], self.alpha, self.adaptive, self.floor)

    def start(self, model: Any, ids: Any, mask: Any, requests: Sequence[Request]) -> tuple[Any, Stream]:
        import torch

        from ctxrely.engine.batching import left_pad

        bare = [list(r.context_free if r.context_free is not None else self.bare_prompt(r)) for r in requests]
        if any(not b for b in bare):
            raise ValueError("CAD: a prompt without its context tokenises to nothing")
        width = max(ids.shape[1], max(len(b) for b in bare))
        b_ids, b_mask, _ = left_pad(bare, self.pad_id, ids.device)
        both_ids = torch.cat([_left_extend(ids, width, self.pad_id), _left_extend(b_ids, width, self.pad_id)])
        both_mask = torch.cat([_left_extend(mask, width, 0), _left_extend(b_mask.to(mask.dtype), width, 0)])
        reqs = list(requests) + [Request(b, example=r.example) for b, r in zip(bare, requests, strict=True)]
        last, stream = self.base.start(model, both_ids, both_mask, reqs)
        return self.mix(last), CADStream(stream, self, len(requests))


def _left_extend(x: Any, width: int, fill: int) -> Any:
    import torch

    if x.shape[1] >= width:
        return x
    return torch.cat([x.new_full((x.shape[0], width - x.shape[1]), fill), x], dim=1)


class CADStream:
    """Both streams of a CAD batch; every fed token goes to both rows of a pair."""

    def __init__(self, inner: Stream, cad: CADDecode, n: int) -> None:
        self.inner, self.cad, self.n = inner, cad, n  # n pairs: rows i and n + i of ``inner``

    def extend(self, ids: Any, mask: Any) -> Any:
        import torch

        return self.cad.mix(self.inner.extend(torch.cat([ids, ids]), torch.cat([mask, mask])))

    def select(self, rows: Any) -> CADStream:
        import torch

        return CADStream(self.inner.select(torch.cat([rows, rows + self.n])), self.cad, len(rows))


def _backend(model: Any, tokenizer: Any, alpha: float, adaptive: bool, floor: float | None) -> Any:
    """The engine's backend with the CAD / AdaCAD strategy (requests carry their ``context_free`` ids)."""
    from ctxrely.engine.backend import make_backend
    from ctxrely.steer.plan import Intervention

    return make_backend(model, tokenizer, Intervention.parse("adacad" if adaptive else "cad", alpha, floor))


def cad_generate(model: Any, tokenizer: Any, ctx_ids: Sequence[Sequence[int]], bare_ids: Sequence[Sequence[int]],
                 *, alpha: float = 1.0, adaptive: bool = False, floor: float | None = None,
                 max_new_tokens: int = 32, stop: Sequence[str] = DEFAULT_STOP, batch_size: int | None = 16,
                 batch_tokens: int | None = None, on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy CAD / AdaCAD continuations; ``bare_ids[i]`` is prompt ``i`` without its context."""
    check_cad(alpha, floor)
    if len(ctx_ids) != len(bare_ids):
        raise ValueError("one prompt without context is needed per prompt with context")
    reqs = [Request(p, (), max_new_tokens, context_free=b) for p, b in zip(ctx_ids, bare_ids, strict=True)]
    done = (lambda idx, _: on_batch(len(idx))) if on_batch else None
    outs = _backend(model, tokenizer, alpha, adaptive, floor).run(
        reqs, stop=stop, batch_size=batch_size, batch_tokens=batch_tokens, on_batch=done)
    return [o.text or "" for o in outs]


def score_full(model: Any, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], conts: Sequence[Sequence[Sequence[int]]],
               bare_ids: Sequence[Sequence[int]] | None = None, *, alpha: float = 1.0, adaptive: bool = False,
               floor: float | None = None, batch_size: int | None = 16,
               on_batch: Callable[[int], None] | None = None) -> list[list[ContScore]]:
    """Log-probs of continuations under the CAD-adjusted distribution (plain ones without ``bare_ids``)."""
    from ctxrely.engine.logits import score_continuations

    if bare_ids is None:
        return score_continuations(model, tokenizer, prompt_ids, conts, batch_size=batch_size, on_batch=on_batch)
    check_cad(alpha, floor)
    reqs = [Request(p, c, context_free=b) for p, c, b in zip(prompt_ids, conts, bare_ids, strict=True)]
    done = (lambda idx, _: on_batch(len(idx))) if on_batch else None
    outs = _backend(model, tokenizer, alpha, adaptive, floor).run(reqs, batch_size=batch_size, on_batch=done)
    return [o.scores for o in outs]
