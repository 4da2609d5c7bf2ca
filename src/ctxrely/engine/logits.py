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

from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of


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


def encode_pairs(tokenizer: Any, prompts: Sequence[str], conts: Sequence[Sequence[str]],
                 add_special_tokens: bool, prompt_ids: Sequence[Sequence[int]] | None = None,
                 ) -> list[tuple[list[int], list[list[int]]]]:
    """:func:`encode_pair` for many prompts at once, with (at most) two batched tokenizer calls.

    Returns ``(prompt_ids, [cont_ids per continuation])`` per prompt; the split equals
    ``encode_pair(tokenizer, prompt, cont)`` for every continuation. ``prompt_ids`` (the prompts
    already encoded with the same ``add_special_tokens``) saves re-encoding prompts that do not
    end in whitespace.
    """
    heads, wholes = [], []
    for p, cs in zip(prompts, conts, strict=True):
        n_spaces = len(p) - len(p.rstrip())
        head = p[:-n_spaces] if n_spaces else p
        heads.append(head)
        wholes.extend(head + p[len(head):] + c for c in cs)
    todo = [i for i, (h, p) in enumerate(zip(heads, prompts, strict=True)) if prompt_ids is None or h != p]
    ctx: list[Any] = [None if prompt_ids is None else prompt_ids[i] for i in range(len(heads))]
    if todo:
        encoded = tokenizer([heads[i] for i in todo], add_special_tokens=add_special_tokens)["input_ids"]
        for i, ids in zip(todo, encoded, strict=True):
            ctx[i] = ids
    whole = tokenizer(wholes, add_special_tokens=add_special_tokens)["input_ids"] if wholes else []
    out, k = [], 0
    for c_ids, cs in zip(ctx, conts, strict=True):
        out.append((list(c_ids), [list(w[len(c_ids):]) for w in whole[k:k + len(cs)]]))
        k += len(cs)
    return out


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
    # rows that need more than their first token: (prompt b, continuation j), in buckets of similar
    # length so one long answer does not pad every other continuation to its width
    rows = [(b, j) for b, cs in enumerate(conts) for j, c in enumerate(cs) if len(c) > 1]
    tails: dict[tuple[int, int], tuple[float, bool]] = {}
    past = out.past_key_values
    for bucket in tail_buckets([len(conts[b][j]) - 1 for b, j in rows]):
        brows = [rows[r] for r in bucket]
        sel = torch.tensor([b for b, _ in brows], device=device)
        width = max(len(conts[b][j]) - 1 for b, j in brows)
        inp = [list(conts[b][j][:-1]) for b, j in brows]
        t_ids = torch.tensor([c + [pad] * (width - len(c)) for c in inp], dtype=torch.long, device=device)
        t_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in inp], dtype=mask.dtype, device=device)
        target = torch.tensor([list(conts[b][j][1:]) + [0] * (width - len(c))
                               for (b, j), c in zip(brows, inp, strict=True)], dtype=torch.long, device=device)
        t_pos = pos[sel, -1:] + 1 + torch.arange(width, device=device)[None, :]
        full_mask = torch.cat([mask[sel], t_mask], dim=1)
        t_out = model(input_ids=t_ids, attention_mask=full_mask, position_ids=t_pos,
                      past_key_values=_select_rows(past, sel), use_cache=True)
        lp = torch.log_softmax(t_out.logits.float(), dim=-1)
        real = t_mask.bool()
        tok_lp = torch.where(real, lp.gather(-1, target[..., None]).squeeze(-1), 0.0).sum(-1).tolist()
        greedy = ((lp.argmax(-1) == target) | ~real).all(-1).tolist()
        for r, bj in enumerate(brows):
            tails[bj] = (tok_lp[r], bool(greedy[r]))
    results: list[list[ContScore]] = []
    for b, cs in enumerate(conts):
        per: list[ContScore] = []
        for j, c in enumerate(cs):
            f = float(first[b, c[0]])
            rest, rest_greedy = tails.get((b, j), (0.0, True))
            per.append(ContScore(f + rest, len(c), f, first_arg[b] == c[0] and rest_greedy))
        results.append(per)
    return results


def tail_buckets(lengths: Sequence[int], slack: int = 2) -> list[list[int]]:
    """Indices of ``lengths`` grouped longest first, each group at most ``slack`` x (its shortest + 1) wide.

    Example:
        >>> tail_buckets([1, 40, 2, 3, 30])
        [[1, 4], [3, 2, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[buckets[-1][0]] <= slack * (lengths[i] + 1):
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def _select_rows(past: Any, sel: Any) -> Any:
    """A view of the prefill cache holding rows ``sel`` that leaves ``past`` itself untouched.

    Layers are shallow-copied before ``batch_select_indices`` rebinds their tensors (indexing makes
    new tensors), so the full cache stays valid for the next bucket without copying all of it.
    """
    import copy

    layers = getattr(past, "layers", None)
    if layers is None:
        sub = copy.deepcopy(past)
    else:
        sub = copy.copy(past)
        sub.layers = [copy.copy(layer) for layer in layers]
    sub.batch_select_indices(sel)
    return sub
