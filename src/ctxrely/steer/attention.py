"""Attention steering (PASTA, Zhang et al. 2024): scale chosen heads' attention away from non-context tokens.

Inside ``steer_attention`` the selected heads of every selected layer add ``log(alpha)`` to the
pre-softmax scores of the tokens to de-emphasise (``mode="exclude"``: every prompt token outside
the spans; ``"include"``: the span tokens themselves), i.e. multiply their attention weights by
``alpha`` before renormalisation. The bias is built per layer and added to a *copy* of that layer's
mask (eager) or passed as sdpa's ``position_bias``; the mask transformers shares across layers is
never written to, so every layer sees the same factor (the PASTA fork's in-place edit compounds it
to alpha^(l+1)). It works through transformers' attention-function interface, so eager and sdpa
attention both work, with left-padded batches and during cached generation: decode steps keep
steering the prompt positions (tokens generated later are never scaled).

Which tokens to emphasise is found per row at every prefill (a forward call with an empty cache):
either a ``(batch, seq)`` mask given up front, or prompts registered with :meth:`Steerer.add` and
looked up by their token ids, so any generation loop (ours, ``model.generate``) is steered as is.
A row with no span (nothing to steer toward) is left unsteered and counted.

Example:
    >>> with steer_attention(model, span_mask, alpha=0.01, heads="all") as st:  # doctest: +SKIP
    ...     logits = model(input_ids=ids, attention_mask=mask).logits
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from ctxrely.engine.intervention import check_alpha as check_alpha  # moved there
from ctxrely.steer.heads import HeadSpec, SteerError, resolve_heads

Mode = Literal["exclude", "include"]
_ATTR = "_ctxrely_steer"
_IMPL = {"eager": "ctxrely_steer_eager", "sdpa": "ctxrely_steer_sdpa"}
_registered = False


class Steerer:
    """State of one steering scope: the factor, the heads per layer, and the rows' emphasis masks."""

    def __init__(self, alpha: float, mode: Mode, heads: dict[int, tuple[int, ...]], n_heads: int) -> None:
        self.alpha, self.mode, self.heads, self.n_heads = alpha, mode, heads, n_heads
        self.log_alpha = math.log(alpha)
        self.prompts: dict[tuple[int, ...], tuple[tuple[int, int], ...]] = {}
        self.scale: Any = None  # (batch, width) bool: positions whose attention weight is multiplied by alpha
        self.fixed: Any = None  # a mask given up front, used at the next prefill of the same shape
        self.n_rows = 0  # rows seen at prefills
        self.n_unsteered = 0  # rows with nothing to steer toward
        self._bias: dict[tuple[int, Any, Any], Any] = {}

    def add(self, ids: Sequence[int], spans: Sequence[tuple[int, int]]) -> None:
        """Register a prompt (token ids) and the token spans ``[start, end)`` to emphasise in it."""
        self.prompts[tuple(int(t) for t in ids)] = tuple((int(s), int(e)) for s, e in spans if e > s)

    # -- called by the model's forward pre-hook, once per forward --------------------------------
    def _on_forward(self, input_ids: Any, attention_mask: Any, past: Any) -> None:
        import torch

        if input_ids is None:
            raise SteerError("steering needs input_ids (inputs_embeds alone cannot be matched to spans)")
        prefill = past is None or _cache_len(past) == 0
        if not prefill:
            if self.scale is not None and self.scale.shape[0] != input_ids.shape[0]:
                raise SteerError("the batch changed during cached decoding; steering cannot follow row selection")
            return
        self._bias.clear()
        b, w = input_ids.shape
        if self.fixed is not None and tuple(self.fixed.shape) == (b, w):
            emph = self.fixed.to(device=input_ids.device, dtype=torch.bool)
            real = torch.ones_like(emph) if attention_mask is None else attention_mask[:, -w:].bool()
        else:
            emph = torch.zeros((b, w), dtype=torch.bool)
            real = (torch.ones((b, w), dtype=torch.bool) if attention_mask is None
                    else attention_mask[:, -w:].bool().cpu())
            for i in range(b):
                pos = real[i].nonzero().flatten().tolist()
                spans = self.prompts.get(tuple(input_ids[i, pos].tolist()), ())
                for s, e in spans:
                    emph[i, pos[s:e]] = True
            emph, real = emph.to(input_ids.device), real.to(input_ids.device)
        active = emph.any(-1, keepdim=True)
        self.n_rows += b
        self.n_unsteered += int((~active).sum())
        self.scale = (real & ~emph & active) if self.mode == "exclude" else emph

    # -- called by the attention function of each steered layer --------------------------------
    def bias(self, layer: int, query: Any, key: Any) -> Any:
        """``(batch, heads, 1, keys)`` additive bias for one layer, or None where nothing is scaled."""
        import torch

        heads = self.heads.get(layer)
        if heads is None or self.scale is None or self.log_alpha == 0.0:
            return None
        b, n_q, k = query.shape[0], query.shape[1], key.shape[-2]
        if self.scale.shape[0] != b:
            raise SteerError(f"steering spans cover {self.scale.shape[0]} rows, the batch has {b}")
        w = self.scale.shape[1]
        if k < w:
            raise SteerError(f"layer {layer} sees {k} keys, fewer than the {w} prompt tokens (sliding-window "
                             "caches are not supported)")
        key_ = (k, query.dtype, query.device)
        row = self._bias.get(key_)
        if row is None:
            row = torch.zeros((b, k), dtype=query.dtype, device=query.device)
            row[:, :w] = self.scale.to(query.device).to(query.dtype) * self.log_alpha
            self._bias[key_] = row
        if len(heads) == n_q:
            return row[:, None, None, :]
        out = row.new_zeros((b, n_q, 1, k))
        out[:, list(heads), 0, :] = row[:, None, :]
        return out


def _cache_len(past: Any) -> int:
    try:
        return int(past.get_seq_length())
    except (AttributeError, TypeError):
        return 0


def _eager_fn(module: Any) -> Any:
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        from transformers.models.llama.modeling_llama import eager_attention_forward as fn
    return fn


def _causal(query: Any, key: Any) -> Any:
    import torch

    q, k = query.shape[-2], key.shape[-2]
    allowed = torch.ones((q, k), dtype=torch.bool, device=query.device).tril(k - q)
    return torch.zeros((q, k), dtype=query.dtype, device=query.device).masked_fill(
        ~allowed, torch.finfo(query.dtype).min)[None, None]


def _steered_eager(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, *args: Any,
                   **kwargs: Any) -> Any:
    st = getattr(module, _ATTR, None)
    bias = None if st is None else st[0].bias(st[1], query, key)
    if bias is not None:
        mask = _causal(query, key) if attention_mask is None else attention_mask[:, :, :, :key.shape[-2]]
        attention_mask = mask + bias  # a new tensor: the shared mask is never written to
    return _eager_fn(module)(module, query, key, value, attention_mask, *args, **kwargs)


def _steered_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, *args: Any,
                  **kwargs: Any) -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    st = getattr(module, _ATTR, None)
    bias = None if st is None else st[0].bias(st[1], query, key)
    if bias is not None:
        pb = kwargs.pop("position_bias", None)
        kwargs["position_bias"] = bias.expand(-1, query.shape[1], -1, -1) if pb is None else pb + bias
    return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask

    AttentionInterface.register(_IMPL["eager"], _steered_eager)
    AttentionInterface.register(_IMPL["sdpa"], _steered_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(_IMPL["eager"], eager_mask)
    ALL_MASK_ATTENTION_FUNCTIONS.register(_IMPL["sdpa"], sdpa_mask)
    _registered = True


def attention_layers(model: Any) -> list[Any]:
    """The model's self-attention modules in layer order (:func:`ctxrely.models.attention.attention_layers`).

    Raises:
        SteerError: their number differs from the model's number of layers.
    """
    from ctxrely.models.attention import attention_layers as layers

    try:
        return layers(model)
    except ValueError as e:
        raise SteerError(f"{e}; cannot steer {type(model).__name__}") from e


def model_shape(model: Any) -> tuple[int, int]:
    """``(n_layers, n_query_heads)`` of a decoder."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(cfg.num_hidden_layers), int(cfg.num_attention_heads)



@contextmanager
def steer_attention(model: Any, spans: Any = None, *, alpha: float = 0.01, heads: HeadSpec = "all",
                    mode: Mode = "exclude") -> Iterator[Steerer]:
    """Steer ``model``'s attention toward ``spans`` inside the ``with`` block.

    Args:
        spans: a ``(batch, seq)`` 0/1 mask of the tokens to emphasise, aligned with the ``input_ids``
            of the next prefill; or None and register prompts on the yielded :class:`Steerer`
            (``st.add(ids, [(start, end)])``) to steer every forward whose rows match them.
        alpha: factor on the attention weights of de-emphasised tokens (PASTA's default 0.01).
        heads: ``"all"``, ``[(layer, head), ...]`` or a head file (PASTA JSON or pairs).
        mode: ``"exclude"`` scales every prompt token outside the spans; ``"include"`` the spans.

    Raises:
        SteerError: alpha out of range, unknown heads, an attention implementation other than
            eager or sdpa.
    """
    import torch

    alpha = check_alpha(alpha)
    if mode not in ("exclude", "include"):
        raise SteerError(f"steering mode must be 'exclude' or 'include', got {mode!r}")
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl not in _IMPL:
        raise SteerError(f"steering works with eager or sdpa attention; this model uses {impl!r} "
                         "(load it with attn_implementation='sdpa')")
    n_layers, n_heads = model_shape(model)
    layers = attention_layers(model)
    if len(layers) != n_layers:
        raise SteerError(f"found {len(layers)} attention modules with a layer index in a {n_layers}-layer model; "
                         f"cannot steer {type(model).__name__}")
    st = Steerer(alpha, mode, resolve_heads(heads, n_layers, n_heads), n_heads)
    if spans is not None:
        st.fixed = torch.as_tensor(spans).bool()
    _register()
    configs = {id(c): c for c in [model.config, *(getattr(m, "config", None) for m in model.modules())]
               if c is not None and hasattr(c, "_attn_implementation_internal")}
    saved = {k: c._attn_implementation_internal for k, c in configs.items()}

    def pre_hook(_mod: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        past = kwargs.get("past_key_values", kwargs.get("cache"))
        st._on_forward(ids, kwargs.get("attention_mask"), past)

    handle = None
    try:
        for c in configs.values():
            c._attn_implementation_internal = _IMPL[impl]
        for m in layers:
            setattr(m, _ATTR, (st, m.layer_idx))
        handle = model.register_forward_pre_hook(pre_hook, with_kwargs=True)
        yield st
    finally:
        if handle is not None:
            handle.remove()
        for m in layers:
            if hasattr(m, _ATTR):
                delattr(m, _ATTR)
        for k, c in configs.items():
            c._attn_implementation_internal = saved[k]
