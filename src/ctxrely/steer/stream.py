"""Attention steering as an engine decode strategy: every model call of a batch runs steered.

:class:`SteerDecode` plugs into :class:`ctxrely.engine.hf.HFBackend` (the ``DecodeStrategy`` seam).
At the prefill it finds each request's spans (from ``request.text``, the rendered prompt, and its
example), builds the batch's emphasis mask in left-padded coordinates and runs the base strategy's
prefill inside :func:`~ctxrely.steer.attention.steer_attention`; the returned stream keeps that
batch's scaled positions and re-enters the steering scope around each later call (answer tails on
row-selected cache views, decode steps, rows leaving a compacted batch), so the prompt's positions
stay steered and tokens fed later are never scaled. Requests without ``text`` (e.g. CAD's
context-free rows) or without a context run unsteered.

Example:
    >>> backend = HFBackend(model, tok, SteerDecode(tok, get_format("raw"), SteerSpec()))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ctxrely.engine.backend import DecodeStrategy, Request, Stream
from ctxrely.prompts import PromptFormat


class SteerDecode:
    """Prefill and every later call of a batch under PASTA steering (see the module docstring).

    Args:
        spec: a :class:`ctxrely.steer.plan.SteerSpec` (alpha, heads, target, mode).
        base: the strategy that runs the prefill (default: the plain model).
    """

    def __init__(self, tokenizer: Any, fmt: PromptFormat, spec: Any, base: DecodeStrategy | None = None) -> None:
        if base is None:
            from ctxrely.engine.hf import PlainDecode

            base = PlainDecode()
        self.tokenizer, self.fmt, self.spec, self.base = tokenizer, fmt, spec, base
        self._heads: list[tuple[int, int]] | None = None

    def spans(self, requests: Sequence[Request]) -> list[list[tuple[int, int]]]:
        """Token spans ``[start, end)`` to emphasise in each request's prompt (empty: unsteered): the
        request's ``steer_spans``, else found from its ``text`` and ``example``."""
        from ctxrely.steer.spans import prompt_spans

        out: list[list[tuple[int, int]]] = [list(r.steer_spans or []) for r in requests]  # given by the builder
        todo = [i for i, r in enumerate(requests)
                if r.steer_spans is None and r.text is not None and r.example is not None]
        if not todo:
            return out
        found = prompt_spans([requests[i].example for i in todo], [requests[i].text for i in todo],
                             [requests[i].prompt for i in todo], self.fmt, self.tokenizer, self.spec.target)
        for i, sp in zip(todo, found, strict=True):
            out[i] = sp
        return out

    def prompt_spans(self, examples: Sequence[Any], texts: Sequence[str],
                     ids: Sequence[Sequence[int]]) -> list[list[tuple[int, int]]]:
        """Token spans to emphasise in rendered prompts (``texts``, token ``ids``) of ``examples``."""
        from ctxrely.steer.spans import prompt_spans

        return prompt_spans(examples, texts, ids, self.fmt, self.tokenizer, self.spec.target)

    def scope(self, model: Any, emphasis: Any = None) -> Any:
        """A :func:`steer_attention` context with this strategy's settings (heads resolved once)."""
        from ctxrely.steer.attention import model_shape, steer_attention
        from ctxrely.steer.heads import resolve_heads

        if self._heads is None:
            resolved = resolve_heads(self.spec.heads if isinstance(self.spec.heads, str) else list(self.spec.heads),
                                     *model_shape(model))
            self._heads = [(layer, h) for layer, hs in resolved.items() for h in hs]
        return steer_attention(model, emphasis, alpha=self.spec.alpha, heads=self._heads, mode=self.spec.mode)

    def start(self, model: Any, ids: Any, mask: Any, requests: Sequence[Request]) -> tuple[Any, Stream]:
        import torch

        width = ids.shape[1]
        emph = torch.zeros(ids.shape, dtype=torch.bool)
        for i, (r, sp) in enumerate(zip(requests, self.spans(requests), strict=True)):
            off = width - len(r.prompt)
            for s, e in sp:
                emph[i, off + s:off + e] = True
        with self.scope(model, emph) as st:
            last, stream = self.base.start(model, ids, mask, requests)
            scale = st.scale
        return last, SteeredStream(stream, self, model, scale)


class SteeredStream:
    """A base stream whose calls run steered, with the batch's scaled prompt positions per row."""

    def __init__(self, inner: Stream, strategy: SteerDecode, model: Any, scale: Any) -> None:
        self.inner, self.strategy, self.model, self.scale = inner, strategy, model, scale

    def extend(self, ids: Any, mask: Any) -> Any:
        with self.strategy.scope(self.model) as st:
            st.scale = self.scale
            return self.inner.extend(ids, mask)

    def select(self, rows: Any) -> SteeredStream:
        scale = None if self.scale is None else self.scale[rows.to(self.scale.device)]
        return SteeredStream(self.inner.select(rows), self.strategy, self.model, scale)
