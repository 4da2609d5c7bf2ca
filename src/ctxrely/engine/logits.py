"""Log-probabilities of several answers as continuations of one prompt, sharing one prefill.

The prompt runs once (logits only at its last position); the KV cache is then gathered once per
continuation and only the continuation tokens run again (see :mod:`ctxrely.engine.hf`). Tokenisation follows lm-evaluation-harness
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
    batch_size: int | None = 16,
    batch_tokens: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[ContScore]]:
    """Score ``conts[i][j]`` (token ids) after ``prompt_ids[i]`` for every i, j."""
    from ctxrely.engine.backend import make_backend

    done = (lambda idx, _: on_batch(len(idx))) if on_batch else None
    return make_backend(model, tokenizer).loglikelihood(prompt_ids, conts, batch_size=batch_size,
                                                    batch_tokens=batch_tokens, on_batch=done)


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
