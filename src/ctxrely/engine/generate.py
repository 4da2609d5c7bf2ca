"""Batched greedy decoding with a KV cache and stop strings.

Prompts are length-sorted and left-padded; logits are computed only at the last position; a batch
stops as soon as every sequence has hit EOS or a stop string.

Example:
    >>> texts = greedy_generate(model, tok, ["Q: 2+2?\\nA:"], max_new_tokens=8, stop=["\\n"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of

DEFAULT_STOP = ("\n\n", "\nQuestion:", "###", "<|user|>", "<|im_end|>", "<|endoftext|>", "</s>", "<end_of_turn>")


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` at the earliest stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def greedy_generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 32,
    stop: Sequence[str] = DEFAULT_STOP,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy continuations of pre-tokenised prompts, cut at the first stop string.

    Args:
        prompt_ids: token ids per prompt (already rendered and shortened to fit).
        on_batch: called with the number of prompts finished after each batch (progress bars).
    """
    import torch

    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    eos_ids = _eos_ids(model, tokenizer)
    outputs: list[str] = [""] * len(prompt_ids)
    with torch.inference_mode():
        for idx in length_sorted_batches(prompt_ids, batch_size):
            texts = _generate_batch(model, tokenizer, [prompt_ids[i] for i in idx], pad, eos_ids,
                                    max_new_tokens, stop, device)
            for i, t in zip(idx, texts, strict=True):
                outputs[i] = t
            if on_batch:
                on_batch(len(idx))
    return outputs


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config, tokenizer):
        v = getattr(src, "eos_token_id", None)
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return ids


def _generate_batch(model: Any, tokenizer: Any, seqs: list[Sequence[int]], pad: int, eos_ids: set[int],
                    max_new_tokens: int, stop: Sequence[str], device: Any, choose: Callable[[Any], Any] | None = None,
                    streams: int = 1) -> list[str]:
    """``streams`` > 1: ``seqs`` holds that many variants of n prompts (rows i, n + i, ... belong
    together); ``choose(last_logits)`` picks one token per prompt, fed to every row of the prompt
    (context-aware decoding, ``ctxrely.steer.cad``). Default: argmax, one stream."""
    import torch

    ids, mask, pos = left_pad(seqs, pad, device)
    n_rows = len(seqs)
    n = n_rows // streams
    new_tokens: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    past = out.past_key_values
    last_pos = pos[:, -1:]
    window = _stop_window(stop)
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1, :].argmax(-1) if choose is None else choose(out.logits[:, -1, :])
        for i, tok in enumerate(nxt.tolist()):
            if done[i]:
                continue
            if tok in eos_ids:
                done[i] = True
                continue
            new_tokens[i].append(tok)
            if stop and _hit_stop(tokenizer, new_tokens[i], stop, window):
                done[i] = True
        if all(done) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((n_rows, 1), dtype=mask.dtype, device=device)], dim=1)
        last_pos = last_pos + 1
        out = model(input_ids=nxt.repeat(streams)[:, None], attention_mask=mask, position_ids=last_pos,
                    past_key_values=past, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    return [_clean(truncate_at_stop(tokenizer.decode(t, skip_special_tokens=False), stop), specials)
            for t in new_tokens]


def _clean(text: str, specials: Sequence[str]) -> str:
    for s in specials:
        text = text.replace(s, "")
    return text.strip()


def _stop_window(stop: Sequence[str]) -> int:
    """Tokens to decode when checking for stop strings: every token decodes to at least one byte, so a
    stop string of n bytes that just completed lies within the last n + 1 tokens."""
    return max([8] + [len(s.encode("utf-8")) + 2 for s in stop if s])


def _hit_stop(tokenizer: Any, tokens: list[int], stop: Sequence[str], window: int = 8) -> bool:
    """Whether a stop string occurs in the decoded last ``window`` tokens (checked after every token,
    so a stop string that completed earlier was already seen then)."""
    tail = tokenizer.decode(tokens[-window:], skip_special_tokens=False)
    return any(s and s in tail for s in stop)
