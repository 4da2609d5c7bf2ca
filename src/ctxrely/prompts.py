"""Prompt formats: how a (context, question) pair becomes model input text.

Every format is a template string (or the tokenizer's own chat template) and carries a hash of
its text that goes into every result, so a prompt change can never silently change a score.
Each base format has a context-adhering twin, ``<name>-ctx``, that asks to answer from the context.

Example:
    >>> fmt = get_format("raw")
    >>> fmt.render("Paris moved to Lyon.", "Capital of France?")
    'Paris moved to Lyon.\\nQuestion: Capital of France?\\nAnswer:'
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from typing import Any

from ctxrely.errors import ConfigError
from ctxrely.registry import FORMATS

ADHERE = "Answer the question based on the context only, even if it disagrees with what you know."


@dataclass(frozen=True)
class PromptFormat:
    """A named prompt format.

    Attributes:
        name: registry name.
        template: text with ``{context}`` and ``{question}`` (and optionally ``{instruction}``);
            for ``chat`` formats, the *user message* template.
        chat: render through ``tokenizer.apply_chat_template`` with a generation prompt.
        adhere: include the context-adhering instruction.
        version: bump when the template text changes on purpose.
    """

    name: str
    template: str
    chat: bool = False
    adhere: bool = False
    version: str = "1"
    description: str = ""
    template_no_context: str | None = None  # used when the context is empty (e.g. Alpaca's no-input form)

    @property
    def hash(self) -> str:
        key = f"{self.template}|{self.template_no_context}|chat={self.chat}|adhere={self.adhere}"
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def user_text(self, context: str, question: str) -> str:
        """The text before any chat wrapping; empty instruction/context lines are dropped."""
        empty = not context.strip()
        template = self.template_no_context if empty and self.template_no_context else self.template
        if not self.adhere:
            template = template.replace("{instruction}\n", "").replace("{instruction}", "")
        if empty:
            template = template.replace("{context}\n\n", "").replace("{context}\n", "")
        return template.format(context=context, question=question, instruction=ADHERE)

    def render(self, context: str, question: str, tokenizer: Any = None) -> str:
        """The full prompt text. ``tokenizer`` is required for chat formats."""
        text = self.user_text(context, question)
        if not self.chat:
            return text
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"format {self.name!r} needs a tokenizer with a chat template; "
                "this tokenizer has none (use --format raw/alpaca/tulu)"
            )
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )

    def chat_hash(self, tokenizer: Any = None) -> str:
        """Format hash, extended with the tokenizer's chat template for chat formats."""
        if not self.chat:
            return self.hash
        tmpl = getattr(tokenizer, "chat_template", None) or ""
        return hashlib.sha256(f"{self.hash}|{tmpl}".encode()).hexdigest()[:12]


_ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n{question}\n\n### Response:\n"
)
_BASE: dict[str, tuple[str, bool, str]] = {
    "raw": ("{instruction}\n{context}\nQuestion: {question}\nAnswer:", False,
            "plain text, answer after 'Answer:'"),
    "alpaca": (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n{question}\n\n### Input:\n{context}\n\n### Response:\n",
        False, "Stanford Alpaca instruction/input/response",
    ),
    "tulu": ("<|user|>\n{instruction}\n{context}\n\n{question}\n<|assistant|>\n", False,
             "Tulu user/assistant markers"),
    "chat": ("{instruction}\n{context}\n\n{question}", True, "the tokenizer's own chat template"),
}


def _add_builtin(name: str, template: str, chat: bool, description: str) -> None:
    no_ctx = _ALPACA_NO_INPUT if name == "alpaca" else None
    fmt = PromptFormat(name=name, template=template, chat=chat, description=description,
                       template_no_context=no_ctx)
    FORMATS.add(name, fmt, description=description)
    ctx = PromptFormat(name=f"{name}-ctx", template=template, chat=chat, adhere=True,
                       description=f"{description}, context-adhering instruction", template_no_context=no_ctx)
    FORMATS.add(f"{name}-ctx", ctx, description=ctx.description)


for _name, (_tmpl, _chat, _desc) in _BASE.items():
    _add_builtin(_name, _tmpl, _chat, _desc)

# Reading comprehension, the prompt of Wang et al. (2024); chat+indicator is rc-chat with --indicator.
RC_TEMPLATE = "{context}\nAnswer the question according to the above passage: {question}"
for _name, _tmpl, _chat, _desc in (
        ("rc", RC_TEMPLATE, False, "reading comprehension (Wang et al. 2024), bare text"),
        ("rc-qa", RC_TEMPLATE + "\nAnswer:", False,
         "reading comprehension (Wang et al. 2024), bare text then a plain Answer: cue"),
        ("rc-chat", RC_TEMPLATE, True, "reading comprehension (Wang et al. 2024), in the chat template")):
    FORMATS.add(_name, PromptFormat(name=_name, template=_tmpl, chat=_chat, description=_desc), description=_desc)


PLACEHOLDERS = ("context", "question", "instruction")


def check_template(template: str) -> str:
    r"""Validate a user template and decode the escapes a shell leaves in it (``\n``, ``\t``).

    A template must hold ``{context}`` and ``{question}``; ``{instruction}`` is optional; a literal
    brace is written ``{{`` or ``}}``.

    Example:
        >>> check_template("Passage: {context}\\nQ: {question}\\nA:")
        'Passage: {context}\nQ: {question}\nA:'
        >>> check_template("Q: {question}")
        Traceback (most recent call last):
        ...
        ctxrely.errors.ConfigError: prompt template 'Q: {question}' has no {context} placeholder ...
    """
    text = template.replace("\\n", "\n").replace("\\t", "\t")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise ConfigError(f"prompt template {template!r}: {e} (write {{{{ or }}}} for a literal brace)") from None
    bad = sorted({f for f in fields if f not in PLACEHOLDERS})
    if bad:
        raise ConfigError(f"prompt template {template!r}: unknown placeholder(s) "
                          f"{', '.join('{' + f + '}' for f in bad)}; use {{context}}, {{question}}, {{instruction}}")
    for need in ("context", "question"):
        if need not in fields:
            raise ConfigError(f"prompt template {template!r} has no {{{need}}} placeholder "
                              f"(a template needs both {{context}} and {{question}})")
    return text


def get_format(name_or_template: str) -> PromptFormat:
    """A registered format by name, or a user format from a template string.

    A string holding a ``{`` is taken as a template (see :func:`check_template`); anything else
    must be a registered name (unknown names raise with suggestions).
    """
    if "{" in name_or_template or "}" in name_or_template:
        template = check_template(name_or_template)
        h = hashlib.sha256(template.encode()).hexdigest()[:8]
        return PromptFormat(name=f"custom-{h}", template=template, description="user template")
    return FORMATS.get(name_or_template)


def register_format(name: str, template: str, chat: bool = False, adhere: bool = False) -> PromptFormat:
    """Register a user format so it can be named on the command line."""
    fmt = PromptFormat(name=name, template=template, chat=chat, adhere=adhere, description="user format")
    FORMATS.add(name, fmt, description="user format")
    return fmt
