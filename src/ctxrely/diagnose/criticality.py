"""Context-criticality of training examples: the response's mean token NLL with and without context.

``gain = nll_without - nll_with`` is what the context is worth to the model. Classes (Goyal et al.
2024): ``S`` has no context; ``C+S`` (non-context-critical) is answerable without the context, i.e.
``nll_without <= cs_threshold`` (default 1.0 nat/token, perplexity <= e); ``C`` (context-critical) is
the rest. :func:`classify` also takes a quantile threshold over a whole dataset.

Examples become token sequences by :func:`ctxrely.diagnose.attention_score.encode_example` (chat template,
Alpaca or plain text, with a role per token). Logits are computed only at response positions (a
boolean ``logits_to_keep`` mask, so the LM head never runs over prompt tokens), in length-sorted
batches; an example without context is run once.

Example:
    >>> rows = score_criticality(model, tok, load_sft("train.jsonl").examples)  # doctest: +SKIP
    >>> rows[0]["nll_with"], rows[0]["nll_without"], rows[0]["cls"]  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

from ctxrely.data.sft import SFTExample, as_examples
from ctxrely.diagnose.attention_score import Encoded, encode_example
from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of
from ctxrely.registry import SCORERS

CLASSES = ("C", "C+S", "S")
DEFAULT_CS_THRESHOLD = 1.0


def classify(nll_without: float | None, has_context: bool, *, cs_threshold: float = DEFAULT_CS_THRESHOLD) -> str:
    """``S`` without context; ``C+S`` when ``nll_without <= cs_threshold``; else ``C``.

    Example:
        >>> classify(0.4, True), classify(2.3, True), classify(0.4, False)
        ('C+S', 'C', 'S')
    """
    if not has_context:
        return "S"
    if nll_without is None or math.isnan(nll_without):
        return "skipped"
    return "C+S" if nll_without <= cs_threshold else "C"


def quantile_threshold(rows: Sequence[dict[str, Any]], q: float) -> float:
    """The ``q``-quantile of ``nll_without`` over rows with context (a data-relative C+S cut-off).

    Rows at or below it are ``round(q * n)`` of the ``n`` rows with context (ties aside).
    """
    vals = sorted(r["nll_without"] for r in rows if r.get("has_context") and r.get("nll_without") is not None)
    k = min(len(vals), int(round(q * len(vals))))  # as `ctxrely filter --drop q`: round(q * n) rows
    return vals[k - 1] if k else float("-inf")


def reclassify(rows: list[dict[str, Any]], *, cs_threshold: float | None = None,
               cs_quantile: float | None = None) -> float:
    """Set ``cls`` on every row from an absolute threshold or a dataset quantile; returns the threshold."""
    thr = quantile_threshold(rows, cs_quantile) if cs_quantile is not None else (
        DEFAULT_CS_THRESHOLD if cs_threshold is None else cs_threshold)
    for r in rows:
        if r.get("skipped"):
            continue
        r["cls"] = classify(r.get("nll_without"), bool(r.get("has_context")), cs_threshold=thr)
    return thr


def _supports_keep(model: Any) -> bool:
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401
    except ImportError:
        return False
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def response_nll(model: Any, tokenizer: Any, seqs: Sequence[Encoded], *, batch_size: int = 8,
                 on_batch: Any = None) -> list[float]:
    """Mean NLL (nats/token) of each sequence's response tokens, in length-sorted batches."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    pad, use_keep = pad_id_of(tokenizer), _supports_keep(model)
    inputs = [s.ids[:-1] for s in seqs]
    out = [float("nan")] * len(seqs)
    for idx in length_sorted_batches(inputs, batch_size):
        ids, mask, pos = left_pad([inputs[i] for i in idx], pad, device)
        keep = torch.zeros_like(ids, dtype=torch.bool)
        targets = []
        for row, i in enumerate(idx):
            s, w = seqs[i], ids.shape[1]
            off = w - len(inputs[i])
            keep[row, off + s.resp_start - 1:] = True
            targets.append(torch.tensor(s.ids[s.resp_start:], dtype=torch.long))
        if use_keep:
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                           logits_to_keep=keep).logits
            logits = logits.reshape(-1, logits.shape[-1])
        else:
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[keep]
        nll = F.cross_entropy(logits.float(), torch.cat(targets).to(device), reduction="none")
        for i, part in zip(idx, nll.split([len(t) for t in targets]), strict=True):
            out[i] = float(part.mean())
        if on_batch:
            on_batch(len(idx))
    return out


@SCORERS.register("context_criticality", description="response NLL/perplexity with vs without context; "
                  "classes C / C+S / S (Goyal et al. 2024)")
def score_criticality(model: Any, tokenizer: Any, examples: Sequence[SFTExample | dict[str, Any]], *,
                      batch_size: int = 8,
                      progress: bool = True, template: str = "auto", cs_threshold: float = DEFAULT_CS_THRESHOLD,
                      max_length: int | None = None) -> list[dict[str, Any]]:
    """Score each example's response with and without its context.

    Args:
        examples: normalized rows (:func:`ctxrely.data.sft.load_sft`) or raw rows in any
            supported format (Alpaca, ``messages``, ``prompt``/``completion``; a ``context`` field is used).
        batch_size: sequences per forward pass (with and without context count separately).
        template: ``auto`` (chat for chat data, Alpaca for Alpaca, plain text otherwise), ``chat``, ``plain``.
        cs_threshold: ``C+S`` when the no-context NLL is at most this (nats/token).
        max_length: longer sequences are skipped (row kept, ``skipped`` says why); default: the model's window.

    Returns:
        One dict per example: id, line, has_context, n_response_tokens, nll_with, nll_without,
        ppl_with, ppl_without, gain, cls (and ``skipped`` with a reason where it could not be scored).
    """
    from ctxrely.models.load import model_max_length

    limit = max_length or model_max_length(model, tokenizer)
    examples = as_examples(examples)
    rows: list[dict[str, Any]] = []
    seqs: list[Encoded] = []
    slots: list[tuple[int, int]] = []  # (index of with-context seq, index of without-context seq) per row
    for ex in examples:
        row: dict[str, Any] = {"id": ex.id, "line": ex.line, "has_context": ex.has_context}
        w = encode_example(ex, tokenizer, with_context=True, template=template)
        wo = encode_example(ex, tokenizer, with_context=False, template=template) if ex.has_context else w
        row.update(n_response_tokens=len(w.ids) - w.resp_start, n_tokens_with=len(w.ids),
                   n_tokens_without=len(wo.ids))
        if limit and len(w.ids) > limit:
            row["skipped"] = f"too long: {len(w.ids)} tokens > model window {limit}"
            slots.append((-1, -1))
        else:
            seqs.append(w)
            if wo is not w:
                seqs.append(wo)
            slots.append((len(seqs) - (2 if wo is not w else 1), len(seqs) - 1))
        rows.append(row)
    bar = None
    if progress and seqs:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(seqs), desc="context-criticality", unit="seq")
    was_training = model.training
    model.eval()
    try:
        from ctxrely.engine.distributed import inference_context

        with inference_context(model):  # no_grad under FSDP / ZeRO-3
            nll = response_nll(model, tokenizer, seqs, batch_size=batch_size, on_batch=bar.update if bar else None)
    finally:
        model.train(was_training)
        if bar:
            bar.close()
    for row, (a, b) in zip(rows, slots, strict=True):
        if a < 0:
            row.update(nll_with=None, nll_without=None, ppl_with=None, ppl_without=None, gain=None, cls="skipped")
            continue
        row.update(nll_with=nll[a], nll_without=nll[b], ppl_with=_exp(nll[a]), ppl_without=_exp(nll[b]),
                   gain=nll[b] - nll[a])
        row["cls"] = classify(nll[b], row["has_context"], cs_threshold=cs_threshold)
    return rows


def _exp(x: float) -> float:
    return math.exp(min(x, 700.0))
