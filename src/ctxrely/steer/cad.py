"""Context-aware decoding (CAD, Shi et al. 2024) and AdaCAD (Wang et al. 2025), greedy and batched.

Next-token scores are ``(1 + a) * log p(y | context, question) - a * log p(y | question)``. CAD uses a
fixed ``a``; AdaCAD sets ``a_t`` per sequence and step to the Jensen-Shannon divergence (natural
log, so in [0, ln 2]) between the two next-token distributions, optionally raised to a floor.
(Log-probs and logits differ by a per-row constant, so the argmax and the softmax are the
papers'.) Both streams of a batch run in ONE forward: rows ``0..n-1`` hold the prompts with
context, rows ``n..2n-1`` the same prompts without it, sharing one KV cache, and every step feeds
the chosen token to both rows of a pair, so the two streams always hold the same generated tokens
(the CAD demo sliced the wrong axis and its "no-context" stream still saw the context; AdaCAD's
sign-of-weight split pairs nothing on its own data).

Example:
    >>> texts = cad_generate(model, tok, ctx_ids, bare_ids, alpha=1.0, max_new_tokens=8)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of
from ctxrely.engine.generate import DEFAULT_STOP, _eos_ids, _generate_batch
from ctxrely.engine.logits import ContScore
from ctxrely.steer.heads import SteerError


def check_cad(alpha: float, floor: float | None = None) -> None:
    """CAD's alpha must be finite and >= 0; AdaCAD's floor in [0, ln 2]."""
    import math

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise SteerError(f"--cad-alpha must be a finite number >= 0, got {alpha!r}")
    if floor is not None and not (isinstance(floor, (int, float)) and 0 <= floor <= math.log(2)):
        raise SteerError(f"--cad-floor must lie in [0, ln 2 = 0.693], got {floor!r}")


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


def cad_generate(model: Any, tokenizer: Any, ctx_ids: Sequence[Sequence[int]], bare_ids: Sequence[Sequence[int]],
                 *, alpha: float = 1.0, adaptive: bool = False, floor: float | None = None,
                 max_new_tokens: int = 32, stop: Sequence[str] = DEFAULT_STOP, batch_size: int = 16,
                 on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy CAD / AdaCAD continuations; ``bare_ids[i]`` is prompt ``i`` without its context."""
    import torch

    check_cad(alpha, floor)
    if len(ctx_ids) != len(bare_ids):
        raise ValueError("one prompt without context is needed per prompt with context")
    device = next(model.parameters()).device
    pad, eos = pad_id_of(tokenizer), _eos_ids(model, tokenizer)
    outputs: list[str] = [""] * len(ctx_ids)
    with torch.inference_mode():
        for idx in length_sorted_batches(ctx_ids, batch_size):
            seqs = [ctx_ids[i] for i in idx] + [bare_ids[i] for i in idx]
            texts = _cad_batch(model, tokenizer, seqs, pad, eos, max_new_tokens, stop, device, alpha, adaptive, floor)
            for i, t in zip(idx, texts, strict=True):
                outputs[i] = t
            if on_batch:
                on_batch(len(idx))
    return outputs


def _cad_batch(model: Any, tokenizer: Any, seqs: list[Sequence[int]], pad: int, eos: set[int], max_new_tokens: int,
               stop: Sequence[str], device: Any, alpha: float, adaptive: bool, floor: float | None) -> list[str]:
    """The engine's decoding loop with two streams: rows ``i`` and ``n + i`` get the same token."""
    import torch

    n = len(seqs) // 2

    def choose(last: Any) -> Any:
        lp = torch.log_softmax(last.float(), dim=-1)
        return contrast(lp[:n], lp[n:], alpha, adaptive, floor).argmax(-1)

    return _generate_batch(model, tokenizer, seqs, pad, eos, max_new_tokens, stop, device, choose=choose, streams=2)


def score_full(model: Any, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], conts: Sequence[Sequence[Sequence[int]]],
               bare_ids: Sequence[Sequence[int]] | None = None, *, alpha: float = 1.0, adaptive: bool = False,
               floor: float | None = None, batch_size: int = 16,
               on_batch: Callable[[int], None] | None = None) -> list[list[ContScore]]:
    """Log-probs of continuations, each scored as one full sequence (no shared cache, so steering
    matches every row to its prompt); with ``bare_ids``, under the CAD-adjusted distribution."""
    import torch

    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    results: list[list[ContScore]] = [[] for _ in prompt_ids]
    with torch.inference_mode():
        for idx in length_sorted_batches(prompt_ids, batch_size):
            rows = [(b, j) for b in idx for j in range(len(conts[b]))]
            seqs = [list(prompt_ids[b]) + list(conts[b][j]) for b, j in rows]
            if bare_ids is not None:
                seqs += [list(bare_ids[b]) + list(conts[b][j]) for b, j in rows]
            width = max(len(conts[b][j]) for b, j in rows)
            ids, mask, pos = left_pad(seqs, pad, device)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=width + 1).logits
            lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # position t predicts token t + 1
            r = len(rows)
            if bare_ids is not None:
                lp = contrast(lp[:r], lp[r:], alpha, adaptive, floor)
            for k, (b, j) in enumerate(rows):
                c = list(conts[b][j])
                tok_lp = lp[k, width - len(c):]
                got = tok_lp.gather(-1, torch.tensor(c, device=device)[:, None]).squeeze(-1)
                greedy = bool((tok_lp.argmax(-1) == torch.tensor(c, device=device)).all())
                results[b].append(ContScore(float(got.sum()), len(c), float(got[0]), greedy))
            if on_batch:
                on_batch(len(idx))
    return results
