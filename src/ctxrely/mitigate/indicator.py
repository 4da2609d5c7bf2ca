"""Indicator-token conditional fine-tuning (Wang et al. 2024).

Rows whose attention-based context-dependency score exceeds a threshold get an indicator token
(default ``[IND]``) after the question of their user turn; the token joins the tokenizer with an
embedding set to the mean of the existing ones. At evaluation, ``ctxrely eval --indicator`` (or
``evaluate(..., indicator="[IND]")``) appends the same `` [IND]`` to the question, so the model is
asked to read its context.

Where the suffix goes: Alpaca, the end of ``instruction`` (where ``evaluate`` puts the question);
with a ``--context-template`` holding ``{question}``, the end of the question; otherwise the end
of the user turn.

Example:
    >>> rows = apply_indicator(rows, scores, threshold=0.6)  # doctest: +SKIP
    >>> tid = add_indicator_token(model, tokenizer)  # before training  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

from ctxrely.data.sft import SFTExample, detect_format, get_path, parse_row, set_path
from ctxrely.registry import MITIGATIONS

DEFAULT_TOKEN = "[IND]"
DEFAULT_THRESHOLD = 0.6


def with_user_suffix(ex: SFTExample, suffix: str) -> dict[str, Any]:
    """A copy of ``ex.raw`` with ``" " + suffix`` after the question of the user turn."""
    raw = copy.deepcopy(ex.raw)
    user = get_path(raw, ex.user_path)
    at = len(user.rstrip()) if ex.suffix_at is None else ex.suffix_at
    set_path(raw, ex.user_path, f"{user[:at]} {suffix}{user[at:]}")
    return raw


def _score(s: Any) -> float | None:
    v = s.get("attn_score") if isinstance(s, dict) else s
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


@MITIGATIONS.register("indicator", description="append an indicator token ([IND]) to the user turn of rows whose "
                      "attention context-dependency exceeds a threshold; same suffix at eval (Wang et al. 2024)")
def apply_indicator(rows: Sequence[dict[str, Any]], scores: Sequence[Any], threshold: float = DEFAULT_THRESHOLD,
                    token: str = DEFAULT_TOKEN, *, fmt: str | None = None, context_field: str | None = None,
                    context_template: str | None = None) -> list[dict[str, Any]]:
    """Rows with ``token`` appended to the user turn where ``score > threshold`` (others unchanged).

    Args:
        scores: per row, a float or a ``scores.jsonl`` dict (its ``attn_score``); None is never marked.
        fmt / context_field / context_template: as for :func:`ctxrely.data.sft.load_sft`.
    """
    if len(rows) != len(scores):
        raise ValueError(f"{len(rows)} rows but {len(scores)} scores")
    out = []
    for i, (row, s) in enumerate(zip(rows, scores, strict=True)):
        v = _score(s)
        if v is None or v <= threshold:
            out.append(row)
            continue
        f = fmt or detect_format(row)
        ex = parse_row(row, fmt=f, index=i, line=i + 1, context_field=context_field,
                       context_template=context_template)
        out.append(with_user_suffix(ex, token))
    return out


def add_indicator_token(model: Any, tokenizer: Any, token: str = DEFAULT_TOKEN) -> int:
    """Add ``token`` to the tokenizer (as a special token) and give it the mean embedding; returns its id.

    The input embedding row is set to the mean of the existing rows, and so is the output embedding
    row when the output layer is not tied to the input. A token already in the vocabulary is left as
    it is (it may be trained).
    """
    import torch
    from tokenizers import AddedToken

    if token in tokenizer.get_vocab():
        return int(tokenizer.convert_tokens_to_ids(token))
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False)])
    tid = int(tokenizer.convert_tokens_to_ids(token))
    emb = model.get_input_embeddings()
    n_base = min(emb.weight.shape[0], tid)
    if tid >= emb.weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    with torch.no_grad():
        emb.weight[tid] = emb.weight[:n_base].mean(0)
        if out is not None and out.weight.data_ptr() != emb.weight.data_ptr():
            out.weight[tid] = out.weight[:n_base].mean(0)
            if getattr(out, "bias", None) is not None:
                out.bias[tid] = out.bias[:n_base].mean()
    return tid
