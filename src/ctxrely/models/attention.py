"""Attention internals, written once: unwrap, eager switch, attention layers, per-layer hooks, and
where text lies in tokens (roles from a chat template's offsets, character spans to token spans).

Every attention measurement (the callback's context mass, ``score-data``'s attention score,
attention allocation, steering spans, NIH) goes through this module. Hooks reduce each layer's
weights to the query rows a measurement needs as the layer runs, so no ``n x n`` map outlives its
layer: peak memory is one layer's weights plus ``layers x heads x length`` reductions, never
``output_attentions=True`` over the whole model. Nothing here imports ``ctxrely`` beyond this
package's level (engine, track, awareness, diagnose and steer import it, not the other way round).

Example:
    >>> char_to_token_spans([(0, 5), (5, 6), (6, 11)], [(6, 11)])
    [(2, 3)]
    >>> slot_char_span("Context: abc\\nQ: q", lambda c: f"Context: {c}\\nQ: q")
    (9, 12)
    >>> with capture_attention(model, lambda layer, w: rows.append(w[:, :, -1])):  # doctest: +SKIP
    ...     model(input_ids=ids)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

Span = tuple[int, int, str]
SENTINEL = "\x00CTXRELYCONTEXT\x00"
_WRAPPERS = ("DistributedDataParallel", "FullyShardedDataParallel", "DataParallel")


# ---- the model under its wrappers ----------------------------------------------------------------


def base_model(model: Any) -> Any:
    """The ``PreTrainedModel`` under PEFT, DDP, FSDP (v1), ``DataParallel`` and ``torch.compile`` wrappers.

    Example:
        >>> base_model(DistributedDataParallel(peft_model)) is peft_model.get_base_model()  # doctest: +SKIP
        True
    """
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif type(model).__name__ in _WRAPPERS or (hasattr(model, "module") and not hasattr(model, "config")):
            model = model.module  # FSDP forwards attribute reads, so it is matched by name
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _impl(base: Any) -> str | None:
    return getattr(getattr(base, "config", None), "_attn_implementation", None)


def _set_impl(base: Any, impl: str) -> None:
    if hasattr(base, "set_attn_implementation"):
        base.set_attn_implementation(impl)
    else:
        base.config._attn_implementation = impl


@contextmanager
def eager_attention(model: Any) -> Iterator[Any]:
    """Switch the (unwrapped) model to eager attention, which returns its weights; yields the base model.

    The previous implementation (e.g. ``sdpa``) is restored in a ``finally``, also after an exception.
    """
    base = base_model(model)
    before = _impl(base)
    switched = before is not None and before != "eager"
    if switched:
        _set_impl(base, "eager")
    try:
        yield base
    finally:
        if switched:
            _set_impl(base, before)


def n_layers(model: Any) -> int | None:
    """The decoder's number of layers from its (text) config, or None."""
    cfg = getattr(base_model(model), "config", None)
    if cfg is None:
        return None
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n = getattr(cfg, "num_hidden_layers", None)
    return int(n) if isinstance(n, int) else None


def attention_layers(model: Any) -> list[Any]:
    """The self-attention module of each decoder layer, in layer order (any HF causal LM).

    Modules whose class name contains ``Attention`` and that carry an integer ``layer_idx`` (Llama,
    Gemma 3, GPT-2, Qwen2, GPT-NeoX, Phi-3, Mistral, ...); else the outermost ``*Attention`` modules in
    module order. Cross-attention modules are left out.

    Raises:
        ValueError: the count differs from the config's number of layers.
    """
    base = base_model(model)
    mods = [m for m in base.modules() if "Attention" in type(m).__name__
            and isinstance(getattr(m, "layer_idx", None), int) and not getattr(m, "is_cross_attention", False)]
    mods.sort(key=lambda m: m.layer_idx)
    if not mods:
        names: list[str] = []
        for name, mod in base.named_modules():
            if type(mod).__name__.endswith("Attention") and not any(name.startswith(n + ".") for n in names):
                names.append(name)
                mods.append(mod)
    n = n_layers(base)
    if n is not None and len(mods) != n:
        raise ValueError(f"found {len(mods)} attention modules for {n} layers in {type(base).__name__}")
    return mods


def attention_weights(output: Any, layer: int, model: Any = None) -> Any:
    """The ``(batch, heads, queries, keys)`` weights from an attention module's forward output.

    Raises:
        RuntimeError: the module returned none (not running eager attention).
    """
    w = output[1] if isinstance(output, tuple) and len(output) > 1 else None
    if w is None or getattr(w, "ndim", 0) != 4:
        name = type(base_model(model)).__name__ if model is not None else "the model"
        raise RuntimeError(f"{name} returned no attention weights at layer {layer} (eager attention needed)")
    return w


@contextmanager
def capture_attention(model: Any, reduce: Callable[[int, Any], None],
                      layers: Sequence[int] | None = None) -> Iterator[list[Any]]:
    """Eager attention plus a forward hook on each attention layer that calls ``reduce(layer, weights)``.

    ``reduce`` keeps what it needs (e.g. ``weights[:, :, rows, :]`` reduced over keys); the full
    weights are freed with their layer. An exception raised by ``reduce`` propagates (a way to stop
    the forward pass early). Yields the attention modules; on exit, also after an exception, exactly
    the hooks added here are removed and the attention implementation is restored.

    Args:
        layers: indices of the layers to hook (negative counts from the end); default: all.
    """
    mods = attention_layers(model)
    picked = range(len(mods)) if layers is None else [i % len(mods) for i in layers]

    def make(i: int) -> Callable[..., None]:
        def hook(_mod: Any, _args: Any, output: Any) -> None:
            reduce(i, attention_weights(output, i, model))
        return hook

    handles = []
    try:
        with eager_attention(model):
            for i in picked:
                handles.append(mods[i].register_forward_hook(make(i)))
            yield mods
    finally:
        for h in handles:
            h.remove()


# ---- where text lies in tokens ---------------------------------------------------------------------


def char_to_token_spans(offsets: Sequence[tuple[int, int]], chars: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token spans ``[start, end)`` of the tokens whose characters overlap each character span.

    Example:
        >>> char_to_token_spans([(0, 5), (5, 6), (6, 11)], [(0, 6)])
        [(0, 2)]
    """
    out = []
    for cs, ce in chars:
        toks = [i for i, (a, b) in enumerate(offsets) if b > a and a < ce and b > cs]
        if toks:
            out.append((toks[0], toks[-1] + 1))
    return out


def token_mask(offsets: Sequence[tuple[int, int]], chars: Sequence[tuple[int, int]]) -> list[bool]:
    """Per token, whether it overlaps any of the character spans."""
    return [b > a and any(a < ce and b > cs for cs, ce in chars) for a, b in offsets]


def offsets_of(tokenizer: Any, text: str | list[str], add_special_tokens: bool) -> Any:
    """The tokenizer's encoding of ``text`` with ``offset_mapping`` (a fast tokenizer is needed)."""
    try:
        return tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    except NotImplementedError as e:
        raise TypeError(f"{type(tokenizer).__name__} gives no character offsets; token spans need a fast "
                        "(tokenizers-backed) tokenizer") from e


def token_spans_in(tokenizer: Any, text: str, ids: Sequence[int], chars: Sequence[tuple[int, int]],
                   add_special_tokens: bool = False) -> list[tuple[int, int]] | None:
    """Token spans of ``chars`` within ``ids``, which must end with the tokenisation of ``text`` (tokens in
    front of it, such as a BOS, shift the spans); None where ``ids`` do not.

    Example:
        >>> token_spans_in(tok, "Doc. Q?", [tok.bos_token_id, *tok("Doc. Q?")["input_ids"]], [(0, 4)])  # doctest: +SKIP
        [(1, 3)]
    """
    enc = offsets_of(tokenizer, text, add_special_tokens)
    own = list(enc["input_ids"])
    shift = len(ids) - len(own)
    if shift < 0 or list(ids[shift:]) != own:
        return None
    return [(s + shift, e + shift) for s, e in char_to_token_spans(enc["offset_mapping"], chars)]


def diff_span(with_ctx: str, without: str) -> tuple[int, int] | None:
    """The middle part of ``with_ctx`` that ``without`` lacks (common prefix and suffix removed).

    Example:
        >>> diff_span("A ctx. Q?", "A Q?")
        (2, 7)
    """
    n = min(len(with_ctx), len(without))
    a = 0
    while a < n and with_ctx[a] == without[a]:
        a += 1
    b = 0
    while b < n - a and with_ctx[-1 - b] == without[-1 - b]:
        b += 1
    end = len(with_ctx) - b
    return (a, end) if end > a else None


def slot_char_span(text: str, fill: Callable[[str], str], content: str | None = None) -> tuple[int, int] | None:
    """``(start, end)`` of the slot that ``fill(slot_content)`` fills inside ``text``, or None.

    The template is rendered once with a sentinel; its fixed head and tail locate the slot in
    ``text`` whatever the slot holds, so a context shortened to fit the window is found as well as
    the full one. Where the template does not frame ``text`` (trailing whitespace stripped is allowed),
    the first occurrence of ``content`` is taken.
    """
    head, sep, tail = fill(SENTINEL).partition(SENTINEL)
    tail = tail if text.endswith(tail) else tail.rstrip()
    if sep and text.startswith(head) and text.endswith(tail) and len(head) + len(tail) <= len(text):
        s, e = len(head), len(text) - len(tail)
        return (s, e) if e > s else None
    if content:
        at = text.find(content)
        return (at, at + len(content)) if at >= 0 else None
    return None


def chat_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list[Span]]:
    """Render ``messages`` with the tokenizer's chat template; ``(text, [(start, end, role), ...])``.

    The template is rendered once with sentinel contents to learn its literal pieces; the real
    rendering is matched against them (or, for templates that depend on the content, each content is
    found in order).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; use --template plain")
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    marks = [f"CTXRELYSENTINEL{i}X" for i in range(len(messages))]
    probe = tokenizer.apply_chat_template([{**m, "content": s} for m, s in zip(messages, marks, strict=True)],
                                          tokenize=False)
    pieces = re.split("|".join(marks), probe)
    spans: list[Span] = []
    m = None
    if len(pieces) == len(messages) + 1:
        rx = "(.*?)".join(re.escape(p) for p in pieces)
        m = re.fullmatch(rx, text, flags=re.DOTALL)
    if m is not None:
        spans = [(m.start(i + 1), m.end(i + 1), msg["role"]) for i, msg in enumerate(messages)]
    else:  # the template depends on the content: find each content in order
        cur = 0
        for i, msg in enumerate(messages):
            c = msg["content"].strip()
            at = text.find(c, cur)
            if at < 0:
                raise ValueError(f"the chat template does not print message {i} ({msg['role']}) verbatim; "
                                 "cannot find token roles (use --template plain)")
            spans.append((at, at + len(c), msg["role"]))
            cur = at + len(c)
    return text, spans


def token_roles(text: str, spans: Sequence[Span], offsets: Sequence[tuple[int, int]]) -> list[str]:
    """The role of each token: that of the first non-space character it covers (``template`` outside
    every span, and for tokens with no characters, such as an added BOS).

    Example:
        >>> token_roles("Hi there", [(3, 8, "user")], [(0, 0), (0, 2), (2, 8)])
        ['template', 'template', 'user']
    """
    char_role = ["template"] * (len(text) + 1)
    for s, e, role in spans:
        char_role[s:e] = [role] * (e - s)
    roles = []
    for s, e in offsets:
        if s == e:
            roles.append("template")
            continue
        k = next((j for j in range(s, e) if not text[j].isspace()), s)
        roles.append(char_role[k])
    return roles
