"""The transformers backend: one prefill per batch serves the answer log-probs and the greedy decode.

Per batch (length-sorted, left-padded, by count or token budget): the prompt runs once with logits
at its last position only; the answer tails run on row-selected views of that KV cache, in buckets
of similar length; then greedy decoding continues on the cache itself, one token per step (again
last-position logits only), stopping when every row hit EOS, a stop string or its token limit.
Uses the ``cache=`` argument of current transformers (``past_key_values=`` on older versions).

Example:
    >>> backend = HFBackend(model, tok)  # doctest: +SKIP
    >>> out = backend.run([Request([5, 6, 7], conts=[[8], [9, 10]], max_new_tokens=8)], stop=["\\n"])  # doctest: +SKIP
    >>> out[0].scores[1].logp, out[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ctxrely.engine.backend import Backend, DecodeStrategy, Outcome, Request, Stream
from ctxrely.engine.batching import DEFAULT_BATCH_TOKENS, left_pad, pad_id_of, plan_batches
from ctxrely.engine.distributed import inference_context
from ctxrely.engine.generate import clean_output, eos_ids, hit_stop, stop_window
from ctxrely.engine.logits import ContScore, tail_buckets


def _cache_arg(model: Any) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: Any) -> Any:
    fields = getattr(type(out), "__dataclass_fields__", {})
    return out["cache"] if "cache" in fields else out.past_key_values


class HFStream:
    """A KV cache with its attention mask; positions follow the mask (left padding never counts)."""

    def __init__(self, model: Any, cache: Any, mask: Any, cache_arg: str) -> None:
        self.model, self.cache, self.mask, self.cache_arg = model, cache, mask, cache_arg

    def extend(self, ids: Any, mask: Any) -> Any:
        import torch

        full = torch.cat([self.mask, mask.to(self.mask.dtype)], dim=1)
        pos = (full.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        out = self.model(input_ids=ids, attention_mask=full, position_ids=pos, use_cache=True,
                         **{self.cache_arg: self.cache})
        self.cache, self.mask = _cache_of(out), full
        return out.logits

    def select(self, rows: Any) -> HFStream:
        return HFStream(self.model, select_cache_rows(self.cache, rows), self.mask[rows], self.cache_arg)


class PlainDecode:
    """The default strategy: the model as it is."""

    def start(self, model: Any, ids: Any, mask: Any, requests: Sequence[Request]) -> tuple[Any, Stream]:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :], HFStream(model, _cache_of(out), mask, _cache_arg(model))


class HFBackend(Backend):
    """:class:`Backend` over an in-memory transformers causal LM (see the module docstring)."""

    supports_attention = True

    def __init__(self, model: Any, tokenizer: Any, strategy: DecodeStrategy | None = None,
                 compact: bool = True) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.strategy = strategy or PlainDecode()
        self.compact = compact  # drop finished rows from a decoding batch (see ``_decode``)

    def run(self, requests: Sequence[Request], *, stop: Sequence[str] = (),
            batch_size: int | None = None, batch_tokens: int | None = None,
            on_batch: Callable[[list[int], list[Outcome]], None] | None = None) -> list[Outcome]:
        for i, r in enumerate(requests):
            if any(len(c) == 0 for c in r.conts):
                raise ValueError(f"prompt {i}: a continuation tokenises to no tokens (empty answer?)")
        extra = max([max([len(c) for c in r.conts], default=0) + r.max_new_tokens + len(r.forced)
                     for r in requests], default=0)
        rows = getattr(self.strategy, "rows_per_request", 1)  # CAD runs two rows per request
        if rows > 1 and (batch_tokens is not None or batch_size is None):
            batch_tokens = max(1, (batch_tokens or DEFAULT_BATCH_TOKENS) // rows)
        batches = plan_batches([len(r.prompt) for r in requests], batch_size, batch_tokens, extra)
        results: list[Outcome] = [Outcome() for _ in requests]
        with inference_context(self.model):  # no_grad under FSDP / ZeRO-3
            for idx in batches:
                outs = self._run_batch([requests[i] for i in idx], stop)
                for i, o in zip(idx, outs, strict=True):
                    results[i] = o
                if on_batch:
                    on_batch(idx, outs)
        return results

    def context_attention(self, examples: Sequence[Any], fmt: Any, indicator: str | None = None) -> list[Any]:
        from ctxrely.engine.attention import context_attention

        return context_attention(self.model, self.tokenizer, list(examples), fmt=fmt, indicator=indicator)

    def _run_batch(self, reqs: list[Request], stop: Sequence[str]) -> list[Outcome]:

        device = next(self.model.parameters()).device
        ids, mask, _ = left_pad([r.prompt for r in reqs], pad_id_of(self.tokenizer), device)
        last, stream = self.strategy.start(self.model, ids, mask, reqs)
        outs = [Outcome() for _ in reqs]
        if any(r.conts for r in reqs):
            self._score(reqs, last, stream, outs, device)
        if any(r.wants_generation for r in reqs):
            self._decode(reqs, last, stream, outs, stop, device)
        return outs

    def _score(self, reqs: list[Request], last: Any, stream: Stream, outs: list[Outcome], device: Any) -> None:
        """First tokens from the prefill logits; tails on row-selected cache views, bucketed by length."""
        import torch

        first = torch.log_softmax(last.float(), dim=-1)
        first_arg = first.argmax(-1).tolist()
        pad = pad_id_of(self.tokenizer)
        todo = [(b, j) for b, r in enumerate(reqs) for j, c in enumerate(r.conts) if len(c) > 1]
        tails: dict[tuple[int, int], tuple[float, bool]] = {}
        for bucket in tail_buckets([len(reqs[b].conts[j]) - 1 for b, j in todo]):
            brows = [todo[k] for k in bucket]
            inp = [list(reqs[b].conts[j][:-1]) for b, j in brows]
            width = max(len(c) for c in inp)
            t_ids = torch.tensor([c + [pad] * (width - len(c)) for c in inp], dtype=torch.long, device=device)
            t_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in inp], dtype=torch.long,
                                  device=device)
            target = torch.tensor([list(reqs[b].conts[j][1:]) + [0] * (width - len(c))
                                   for (b, j), c in zip(brows, inp, strict=True)], dtype=torch.long, device=device)
            sel = torch.tensor([b for b, _ in brows], device=device)
            lp = torch.log_softmax(stream.select(sel).extend(t_ids, t_mask).float(), dim=-1)
            real = t_mask.bool()
            tok_lp = torch.where(real, lp.gather(-1, target[..., None]).squeeze(-1), 0.0).sum(-1).tolist()
            greedy = ((lp.argmax(-1) == target) | ~real).all(-1).tolist()
            for k, bj in enumerate(brows):
                tails[bj] = (tok_lp[k], bool(greedy[k]))
        for b, r in enumerate(reqs):
            for j, c in enumerate(r.conts):
                f = float(first[b, c[0]])
                rest, rest_greedy = tails.get((b, j), (0.0, True))
                outs[b].scores.append(ContScore(f + rest, len(c), f, first_arg[b] == c[0] and rest_greedy))

    def _decode(self, reqs: list[Request], last: Any, stream: Stream, outs: list[Outcome], stop: Sequence[str],
                device: Any) -> None:
        """Greedy decoding on the prefill cache; ``forced`` tokens go in first and are not returned.

        Finished rows leave the batch once they are a quarter of it (``compact``), so a batch whose
        answers are mostly short does not keep computing its finished rows until the longest ends.
        """
        import torch

        tok = self.tokenizer
        eos = eos_ids(self.model, tok)
        window = stop_window(stop)
        new: list[list[int]] = [[] for _ in reqs]
        fed = [0] * len(reqs)
        done = [not r.wants_generation for r in reqs]
        rows = list(range(len(reqs)))  # the request behind each row of the stream
        logits = last
        while True:
            arg = logits.argmax(-1)
            nxt = arg.tolist()
            top_lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, arg[:, None])[:, 0].tolist()
            feed = list(nxt)
            for k, b in enumerate(rows):
                r = reqs[b]
                if done[b]:
                    continue
                if fed[b] < len(r.forced):
                    feed[k] = r.forced[fed[b]]
                    fed[b] += 1
                elif nxt[k] in eos:
                    done[b] = True
                else:
                    new[b].append(nxt[k])
                    outs[b].token_logps.append(top_lp[k])
                    if len(new[b]) >= r.max_new_tokens or (stop and hit_stop(tok, new[b], stop, window)):
                        done[b] = True
            keep = [k for k, b in enumerate(rows) if not done[b]]
            if not keep:
                break
            if self.compact and 4 * (len(rows) - len(keep)) >= len(rows):
                stream = stream.select(torch.tensor(keep, device=device))
                rows, feed = [rows[k] for k in keep], [feed[k] for k in keep]
            step = torch.tensor(feed, device=device)[:, None]
            logits = stream.extend(step, torch.ones_like(step))[:, -1, :]
        specials = [t for t in getattr(tok, "all_special_tokens", []) if t]
        for b, r in enumerate(reqs):
            if r.wants_generation:
                outs[b].text = clean_output(tok.decode(new[b], skip_special_tokens=False), stop, specials)


def select_cache_rows(past: Any, sel: Any) -> Any:
    """A view of a KV cache holding rows ``sel`` that leaves ``past`` itself untouched.

    Layers are shallow-copied before ``batch_select_indices`` rebinds their tensors (indexing makes
    new tensors), so the full cache stays valid for the next bucket and for decoding.
    """
    layers = getattr(past, "layers", None)
    if layers is None:
        sub = copy.deepcopy(past)
    else:
        sub = copy.copy(past)
        sub.layers = [copy.copy(layer) for layer in layers]
    sub.batch_select_indices(sel)
    return sub
