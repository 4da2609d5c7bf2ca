"""Where the context sits in a row: paths into a raw row, and a user turn matched against a
``--context-template`` such as ``"Context: {context}\n\nQuestion: {question}"``.

Example:
    >>> get_path({"messages": [{"content": "hi"}]}, ("messages", 0, "content"))
    'hi'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ctxrely.errors import ConfigError

Path_ = tuple[Any, ...]  # a path into a raw row, e.g. ("messages", 3, "content")


def get_path(raw: Any, path: Path_) -> Any:
    """``raw[path[0]][path[1]]...``"""
    for k in path:
        raw = raw[k]
    return raw


def set_path(raw: Any, path: Path_, value: Any) -> None:
    """Set ``raw[path[0]]...[path[-1]] = value``."""
    get_path(raw, path[:-1])[path[-1]] = value


@dataclass(frozen=True)
class TemplateMatch:
    """Where the context (and question) sit in a user turn, and the span cut to remove the context."""

    context: tuple[int, int]
    question: tuple[int, int] | None
    cut: tuple[int, int] | None = None

    def without_context(self, text: str) -> str:
        a, b = self.cut or self.context
        if self.cut is None:  # a bare context: take the whitespace that follows it along
            b += len(text[b:]) - len(text[b:].lstrip())
        rest = text[b:]
        return text[:a] + rest if rest.strip() else text[:a].rstrip()


def match_template(template: str, text: str) -> TemplateMatch | None:
    r"""Match ``text`` against a template with ``{context}`` (and optionally ``{question}``, ``{any}``).

    The no-context cut runs from the start of the context's line (or the end of the placeholder before
    it on that line) to the end of the context plus the whitespace after it, so a label such as
    ``Context: `` goes with it.

    Example:
        >>> m = match_template("Context: {context}\n\nQ: {question}", "Context: Paris.\n\nQ: Where?")
        >>> m.without_context("Context: Paris.\n\nQ: Where?")
        'Q: Where?'
    """
    parts = re.split(r"\{(\w+)\}", template)
    if "context" not in parts[1::2]:
        raise ConfigError(f"context template {template!r} has no {{context}} placeholder")
    rx, seen = [r"\s*"], set()
    for i, part in enumerate(parts):
        if i % 2 == 0:
            rx.append(re.escape(part))
        else:
            rx.append(f"(?P={part})" if part in seen else f"(?P<{part}>.*?)")
            seen.add(part)
    m = re.fullmatch("".join(rx) + r"\s*", text, flags=re.DOTALL)
    if m is None:
        return None
    cs, ce = m.span("context")
    prev = max([m.end(g) for g in seen if g != "context" and m.end(g) <= cs] or [0])
    a = max(prev, text.rfind("\n", 0, cs) + 1)
    b = ce + len(text[ce:]) - len(text[ce:].lstrip())
    q = m.span("question") if "question" in seen else None
    return TemplateMatch(context=(cs, ce), question=q, cut=(a, b))
