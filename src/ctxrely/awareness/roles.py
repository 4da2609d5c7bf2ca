"""Token roles of a prompt + answer for attention allocation: ``bos``, ``user``, ``template``, ``assistant``.

The prompt is the user turn, bare (``raw``) or in the tokenizer's chat template (``chat``), followed by
the model's answer. Roles come from where each message lies in the rendered text (the offsets code
``score-data`` uses, :func:`ctxrely.models.attention.chat_spans`), never from token ids:

- ``bos``: the first token (a BOS, or where the tokenizer adds none, the first token, which takes the
  attention-sink role either way) and any system message;
- ``user``: the user turn's content (document and question);
- ``assistant``: the answer so far;
- ``template``: everything else (role markers, a default system prompt the template inserts, newlines).

Example:
    >>> enc = encode_roles(tok, "Doc.\\nQuestion: q", "Paris", "chat")  # doctest: +SKIP
    >>> enc.roles[:3], enc.queries[:2]  # doctest: +SKIP
    (['bos', 'template', 'template'], [17, 18])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ctxrely.awareness.nih import QA_CUE, TEMPLATE_MODES, NIHError, extra_bos
from ctxrely.models.attention import chat_spans, token_roles

ROLES = ("bos", "user", "template", "assistant")
_MAP = {"user": "user", "assistant": "assistant", "system": "bos"}


@dataclass(frozen=True)
class RoleEncoding:
    """Token ids of prompt + answer, one role per token, and the query positions (those whose output
    predicts an answer token: the last prompt token and every answer token but the last)."""

    ids: list[int]
    roles: list[str]
    queries: list[int]


def encode_roles(tokenizer: Any, user: str, answer: str, template: str) -> RoleEncoding:
    """Render ``user`` + ``answer`` under ``template`` and give every token a role."""
    if template not in TEMPLATE_MODES:
        raise NIHError(f"unknown template {template!r}; choose from {', '.join(TEMPLATE_MODES)}")
    answer = answer.strip()
    if not answer:  # the model ended its turn at once: measure the last prompt token alone
        return _prompt_only(tokenizer, user, template)
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise NIHError(f"{getattr(tokenizer, 'name_or_path', 'this model')!r} has no chat template; "
                           "use --template raw")
        text, spans = chat_spans(tokenizer, [{"role": "user", "content": user},
                                             {"role": "assistant", "content": answer}])
        special = False
    elif template == "qa":
        text = f"{user}{QA_CUE} {answer}"
        spans = [(0, len(user), "user"), (len(text) - len(answer), len(text), "assistant")]
        special = True
    else:
        text = f"{user} {answer}"
        spans = [(0, len(user), "user"), (len(user) + 1, len(text), "assistant")]
        special = True
    ids, roles = _tokens(tokenizer, text, spans, special)
    resp = [i for i, r in enumerate(roles) if r == "assistant"]
    if not resp or resp[0] == 0:
        raise ValueError("the answer has no tokens after the prompt")
    end = resp[-1] + 1
    return RoleEncoding(ids[:end], roles[:end], list(range(resp[0] - 1, end - 1)))


def _tokens(tokenizer: Any, text: str, spans: list[tuple[int, int, str]], special: bool) -> tuple[list[int], list[str]]:
    enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    roles = [_MAP.get(r, "template") for r in token_roles(text, spans, enc["offset_mapping"])]
    ids = list(enc["input_ids"])
    cut = extra_bos(ids, tokenizer)  # one BOS only
    ids, roles = ids[cut:], roles[cut:]
    roles[0] = "bos"
    return ids, roles


def _prompt_only(tokenizer: Any, user: str, template: str) -> RoleEncoding:
    from ctxrely.awareness.nih import render_prompt

    text = render_prompt(tokenizer, user, template)
    at = text.rfind(user)
    ids, roles = _tokens(tokenizer, text, [(at, at + len(user), "user")], template != "chat")
    return RoleEncoding(ids, roles, [len(ids) - 1])
