"""Where the context (or all user text) lies in a rendered prompt, in characters and in tokens.

The context's place comes from rendering the same example with a sentinel context (so a shortened
context is found too); prompts prebuilt by the data (AdaCAD pairs) take the part where the prompt
with context differs from the one without; ``target="user"`` takes the user message's span from the
chat template's offsets (:func:`ctxrely.diagnose.attention_score.chat_spans`), or the whole prompt
for plain formats. Characters map to tokens through the fast tokenizer's offsets.

Example:
    >>> char_to_token_spans([(0, 5), (5, 6), (6, 11)], [(6, 11)])
    [(2, 3)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ctxrely.data.schema import ConflictExample
from ctxrely.prompts import PromptFormat

Target = Literal["context", "user"]
_SENTINEL = "\x00CTXRELYCONTEXT\x00"


def context_char_span(ex: ConflictExample, fmt: PromptFormat, tokenizer: Any, text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the context inside the rendered prompt ``text``, or None (no context)."""
    if ex.meta and ex.meta.get("prebuilt_prompt") is not None:
        from ctxrely.engine.prompting import render

        bare = render(ex, fmt, tokenizer, context="")
        return _diff_span(text, bare.rstrip() if text == text.rstrip() else bare)
    if not ex.context.strip():
        return None
    probe = fmt.render(_SENTINEL, ex.question, tokenizer)
    head, sep, tail = probe.partition(_SENTINEL)
    tail = tail if text.endswith(tail) else tail.rstrip()  # scoring drops the prompt's trailing whitespace
    if sep and text.startswith(head) and text.endswith(tail) and len(head) + len(tail) < len(text):
        return len(head), len(text) - len(tail)
    at = text.find(ex.context)
    return (at, at + len(ex.context)) if at >= 0 else None


def user_char_span(ex: ConflictExample, fmt: PromptFormat, tokenizer: Any, text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the user message in ``text`` (the whole prompt for plain formats)."""
    if not fmt.chat:
        return (0, len(text)) if text else None
    from ctxrely.diagnose.attention_score import chat_spans

    user = fmt.user_text(ex.context, ex.question)
    rendered, spans = chat_spans(tokenizer, [{"role": "user", "content": user}])
    s, e, _ = spans[0]
    return (s, e) if text.startswith(rendered[:s]) and text[s:e] == rendered[s:e] else None


def _diff_span(with_ctx: str, without: str) -> tuple[int, int] | None:
    """The middle part of ``with_ctx`` that ``without`` lacks (common prefix and suffix removed)."""
    n = min(len(with_ctx), len(without))
    a = 0
    while a < n and with_ctx[a] == without[a]:
        a += 1
    b = 0
    while b < n - a and with_ctx[-1 - b] == without[-1 - b]:
        b += 1
    end = len(with_ctx) - b
    return (a, end) if end > a else None


def char_to_token_spans(offsets: Sequence[tuple[int, int]], chars: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token spans ``[start, end)`` of the tokens whose characters overlap each character span."""
    out = []
    for cs, ce in chars:
        toks = [i for i, (a, b) in enumerate(offsets) if b > a and a < ce and b > cs]
        if toks:
            out.append((toks[0], toks[-1] + 1))
    return out


def token_spans(tokenizer: Any, texts: Sequence[str], ids: Sequence[Sequence[int]],
                chars: Sequence[tuple[int, int] | None], add_special_tokens: bool) -> list[list[tuple[int, int]]]:
    """Token spans of one character span per text; ``ids`` must be the texts' own tokenisation."""
    if not texts:
        return []
    try:
        enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    except NotImplementedError as e:
        raise TypeError(f"{type(tokenizer).__name__} gives no character offsets; steering spans need a fast "
                        "(tokenizers-backed) tokenizer") from e
    out = []
    for i, (span, offs) in enumerate(zip(chars, enc["offset_mapping"], strict=True)):
        if span is None:
            out.append([])
            continue
        if list(enc["input_ids"][i]) != list(ids[i]):
            raise ValueError(f"prompt {i}: its token ids are not the tokenisation of its text")
        out.append(char_to_token_spans(offs, [span]))
    return out


def prompt_spans(examples: Sequence[ConflictExample], texts: Sequence[str], ids: Sequence[Sequence[int]],
                 fmt: PromptFormat, tokenizer: Any, target: Target = "context") -> list[list[tuple[int, int]]]:
    """Token spans to emphasise per prompt (empty where there is no context to steer toward)."""
    find = context_char_span if target == "context" else user_char_span
    chars = [find(ex, fmt, tokenizer, t) for ex, t in zip(examples, texts, strict=True)]
    return token_spans(tokenizer, texts, ids, chars, add_special_tokens=not fmt.chat)
