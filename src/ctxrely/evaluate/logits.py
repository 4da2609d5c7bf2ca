"""Log-probabilities of several answers as continuations of one prompt, sharing one prefill.

The prompt runs once (logits only at its last position); the KV cache is then gathered once per
continuation and only the continuation tokens run again. Tokenisation follows lm-evaluation-harness
(``whole = enc(prompt + cont)``; ``cont_ids = whole[len(enc(prompt)):]``, trailing prompt whitespace
moved onto the continuation), so numbers match its loglikelihood requests.

Example:
    >>> scores = score_continuations(model, tok, [[5, 6, 7]], [[[8], [9, 10]]])  # doctest: +SKIP
    >>> scores[0][1].logp  # log p(9, 10 | 5 6 7)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ctxrely.evaluate.batching import left_pad, length_sorted_batches, pad_id_of


@dataclass(frozen=True)
class ContScore:
    logp: float  # sum of token log-probs
    n_tokens: int
    first_logp: float  # log-prob of the first token alone
    greedy: bool  # every token is the argmax


def encode_pair(tokenizer: Any, prompt: str, cont: str, add_special_tokens: bool) -> tuple[list[int], list[int]]:
    """lm-eval's split: ``(prompt_ids, cont_ids)`` with trailing prompt whitespace moved onto ``cont``."""
    n_spaces = len(prompt) - len(prompt.rstrip())
    if n_spaces:
        cont = prompt[-n_spaces:] + cont
        prompt = prompt[:-n_spaces]
    ctx = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    whole = tokenizer(prompt + cont, add_special_tokens=add_special_tokens)["input_ids"]
    return ctx, whole[len(ctx):]


def score_continuations(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    conts: Sequence[Sequence[Sequence[int]]],
    *,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[ContScore]]:
    """Score ``conts[i][j]`` (token ids) after ``prompt_ids[i]`` for every i, j."""
    import torch

    for i, cs in enumerate(conts):
        if any(len(c) == 0 for c in cs):
            raise ValueError(f"prompt {i}: a continuation tokenises to no tokens (empty answer?)")
    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    results: list[list[ContScore]] = [[] for _ in prompt_ids]
    with torch.inference_mode():
        for idx in length_sorted_batches(prompt_ids, batch_size):
            batch = _score_batch(model, [prompt_ids[i] for i in idx], [conts[i] for i in idx], pad, device)
            for i, r in zip(idx, batch, strict=True):
                results[i] = r
            if on_batch:
                on_batch(len(idx))
    return results


def _score_batch(model: Any, prompts: list[Sequence[int]], conts: list[Sequence[Sequence[int]]], pad: int,
                 device: Any) -> list[list[ContScore]]:
    import torch

    ids, mask, pos = left_pad(prompts, pad, device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
    first_arg = first.argmax(-1).tolist()
    # rows that need more than their first token: (prompt b, continuation j)
    rows = [(b, j) for b, cs in enumerate(conts) for j, c in enumerate(cs) if len(c) > 1]
    tails: dict[tuple[int, int], tuple[float, bool]] = {}
    if rows:
        sel = torch.tensor([b for b, _ in rows], device=device)
        past = out.past_key_values
        past.batch_select_indices(sel)
        width = max(len(conts[b][j]) - 1 for b, j in rows)
        t_ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
        t_mask = torch.zeros((len(rows), width), dtype=mask.dtype, device=device)
        for r, (b, j) in enumerate(rows):
            c = list(conts[b][j][:-1])
            t_ids[r, :len(c)] = torch.tensor(c, device=device)
            t_mask[r, :len(c)] = 1
        t_pos = pos[sel, -1:] + 1 + torch.arange(width, device=device)[None, :]
        full_mask = torch.cat([mask[sel], t_mask], dim=1)
        t_out = model(input_ids=t_ids, attention_mask=full_mask, position_ids=t_pos, past_key_values=past,
                      use_cache=True)
        lp = torch.log_softmax(t_out.logits.float(), dim=-1)
        for r, (b, j) in enumerate(rows):
            target = torch.tensor(list(conts[b][j][1:]), device=device)
            k = len(target)
            tok_lp = lp[r, :k].gather(-1, target[:, None]).squeeze(-1)
            greedy = bool((lp[r, :k].argmax(-1) == target).all())
            tails[(b, j)] = (float(tok_lp.sum()), greedy)
    results: list[list[ContScore]] = []
    for b, cs in enumerate(conts):
        per: list[ContScore] = []
        for j, c in enumerate(cs):
            f = float(first[b, c[0]])
            rest, rest_greedy = tails.get((b, j), (0.0, True))
            per.append(ContScore(f + rest, len(c), f, first_arg[b] == c[0] and rest_greedy))
        results.append(per)
    return results
