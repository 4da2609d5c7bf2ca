"""Where the context (or all user text) lies in a rendered prompt, in characters and in tokens.

The context's place comes from :func:`ctxrely.engine.attention.context_char_span` (the template
rendered with a sentinel context, so a shortened context is found too; prebuilt AdaCAD prompts by
difference); ``target="user"`` takes the user message's span from the chat template's offsets
(:func:`ctxrely.models.attention.chat_spans`), or the whole prompt for plain formats. Characters map
to tokens through the fast tokenizer's offsets (:mod:`ctxrely.models.attention`).

Example:
    >>> char_to_token_spans([(0, 5), (5, 6), (6, 11)], [(6, 11)])
    [(2, 3)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ctxrely.data.schema import ConflictExample
from ctxrely.engine.attention import context_char_span as context_char_span  # moved there
from ctxrely.models.attention import char_to_token_spans as char_to_token_spans  # moved there
from ctxrely.models.attention import chat_spans, offsets_of
from ctxrely.models.attention import diff_span as _diff_span  # noqa: F401  (old private name)
from ctxrely.prompts import PromptFormat

Target = Literal["context", "user"]


def user_char_span(ex: ConflictExample, fmt: PromptFormat, tokenizer: Any, text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the user message in ``text`` (the whole prompt for plain formats)."""
    if not fmt.chat:
        return (0, len(text)) if text else None
    user = fmt.user_text(ex.context, ex.question)
    rendered, spans = chat_spans(tokenizer, [{"role": "user", "content": user}])
    s, e, _ = spans[0]
    return (s, e) if text.startswith(rendered[:s]) and text[s:e] == rendered[s:e] else None


def token_spans(tokenizer: Any, texts: Sequence[str], ids: Sequence[Sequence[int]],
                chars: Sequence[tuple[int, int] | None], add_special_tokens: bool) -> list[list[tuple[int, int]]]:
    """Token spans of one character span per text; ``ids`` must be the texts' own tokenisation."""
    if not texts:
        return []
    enc = offsets_of(tokenizer, list(texts), add_special_tokens)
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
