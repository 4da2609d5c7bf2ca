"""Token roles from rendered offsets, and the attention-based context-dependency score (Wang et al. 2024).

Roles (``system``, ``user``, ``assistant``, ``response``, ``template``) come from where each message's
content lies in the rendered text, never from token ids: the chat template is rendered once with
sentinel contents to learn its literal pieces, the real rendering is matched against them, and each
token takes the role of the first non-space character it covers (``return_offsets_mapping``). Any chat
template that prints message contents verbatim works; Alpaca and plain text are rendered here.

The score of an example: at one layer (default: the middle one), for each response token, the
largest attention mass over heads on user tokens; averaged over the response. Only that layer's
attention is computed eagerly: the forward pass stops right after it.

Example:
    >>> enc = encode_example(ex, tok, template="chat")  # doctest: +SKIP
    >>> [r for r in enc.roles][:3]  # doctest: +SKIP
    ['template', 'template', 'user']
    >>> context_dependency(model, tok, examples, layer=1)  # doctest: +SKIP
    [0.71, 0.42, ...]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from ctxrely.data.schema import DataError
from ctxrely.data.sft import SFTExample, as_examples
from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of
from ctxrely.engine.distributed import inference_context, is_sharded
from ctxrely.models.attention import Span, attention_layers, capture_attention, chat_spans, token_roles
from ctxrely.models.attention import attention_layers as attention_modules  # noqa: F401  (old name)
from ctxrely.models.attention import eager_attention as eager_attention  # re-exported (old home)
from ctxrely.registry import SCORERS

ALPACA_WITH = ("Below is an instruction that describes a task, paired with an input that provides further context. "
               "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
               "### Input:\n{input}\n\n### Response:\n{response}")
ALPACA_WITHOUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                  "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{response}")
TEMPLATE_MODES = ("auto", "chat", "plain")  # the chat template, plain text, or by the row's layout
TEMPLATES = TEMPLATE_MODES  # former name, kept


@dataclass(frozen=True)
class Encoded:
    """Token ids of one rendered example (cut after the response), a role per token, response start."""

    ids: list[int]
    roles: list[str]
    resp_start: int


def resolve_template(ex: SFTExample, template: str, tokenizer: Any) -> str:
    """``chat``, ``alpaca`` or ``plain`` for this example (``auto``: chat for chat data, Alpaca for Alpaca)."""
    if template not in TEMPLATE_MODES:
        raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATE_MODES)}")
    chatty = ex.fmt == "messages" or len(ex.user_path) > 1
    if template == "chat" or (template == "auto" and chatty and getattr(tokenizer, "chat_template", None)):
        return "chat"
    return "alpaca" if ex.fmt == "alpaca" else "plain"


def render(ex: SFTExample, tokenizer: Any, *, with_context: bool = True, template: str = "auto"
           ) -> tuple[str, list[Span], bool]:
    """``(text, role spans, add_special_tokens)`` for an example; the response role is ``response``."""
    user = ex.prompt_with_context if with_context else ex.prompt_without_context
    style = resolve_template(ex, template, tokenizer)
    if style == "chat":
        msgs = [*ex.history, {"role": "user", "content": user}, {"role": "assistant", "content": ex.response}]
        text, spans = chat_spans(tokenizer, msgs)
        s, e, _ = spans[-1]
        return text, [*spans[:-1], (s, e, "response")], False
    if style == "alpaca":
        instr, inp = ex.raw["instruction"], ex.context if with_context else ""
        tmpl = ALPACA_WITH if inp.strip() else ALPACA_WITHOUT
        text, spans = _fill(tmpl, {"instruction": (instr, "user"), "input": (inp, "user"),
                                   "response": (ex.response, "response")})
        return text, spans, True
    parts, spans, pos = [], [], 0
    turns = [*ex.history, {"role": "user", "content": user}] if ex.history or len(ex.user_path) > 1 else []
    for m in turns:  # plain chat: Tulu-style role markers
        head = f"<|{m['role']}|>\n"
        spans.append((pos + len(head), pos + len(head) + len(m["content"]), m["role"]))
        parts.append(f"{head}{m['content']}\n")
        pos += len(parts[-1])
    if turns:
        parts.append("<|assistant|>\n")
    else:
        parts.append(user)
        spans.append((0, len(user), "user"))
    pos = sum(map(len, parts))
    return "".join(parts) + ex.response, [*spans, (pos, pos + len(ex.response), "response")], True


def _fill(tmpl: str, values: dict[str, tuple[str, str]]) -> tuple[str, list[Span]]:
    out, spans, pos = [], [], 0
    for i, piece in enumerate(re.split(r"\{(\w+)\}", tmpl)):
        if i % 2:
            text, role = values[piece]
            spans.append((pos, pos + len(text), role))
            piece = text
        out.append(piece)
        pos += len(piece)
    return "".join(out), spans


def encode_example(ex: SFTExample, tokenizer: Any, *, with_context: bool = True, template: str = "auto") -> Encoded:
    """Tokenize a rendered example with a role per token, cut after the last response token."""
    text, spans, special = render(ex, tokenizer, with_context=with_context, template=template)
    try:
        enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    except NotImplementedError as e:
        raise TypeError(f"{type(tokenizer).__name__} gives no character offsets; token roles need a fast "
                        "(tokenizers-backed) tokenizer") from e
    roles = token_roles(text, spans, enc["offset_mapping"])
    resp = [i for i, r in enumerate(roles) if r == "response"]
    if not resp or resp[0] == 0:
        raise DataError(f"row {ex.id}: the response has no tokens after the prompt", line=ex.line,
                        field=".".join(map(str, ex.response_path)))
    end = resp[-1] + 1
    return Encoded(list(enc["input_ids"][:end]), roles[:end], resp[0])


# ---- attention score ------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised from the hook to end the forward pass after the chosen layer."""


@SCORERS.register("attention_dependency", description="largest head's attention mass on user tokens at one "
                  "layer, averaged over the response (Wang et al. 2024)")
def context_dependency(model: Any, tokenizer: Any, examples: Sequence[SFTExample | dict[str, Any]], *,
                       layer: int | None = None,
                       batch_size: int = 4, template: str = "auto", progress: bool = False) -> list[float]:
    """Attention-based context-dependency score per example (0..1; higher = response reads the user turn).

    Args:
        examples: normalized or raw rows, as for :func:`ctxrely.diagnose.criticality.score_criticality`.
        layer: 0-based decoder layer (negative counts from the end); default: ``num_layers // 2``.
        template: as in :func:`ctxrely.diagnose.criticality.score_criticality`.
    """
    n = len(attention_layers(model))
    layer = n // 2 if layer is None else layer
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} out of range for a model with {n} layers")
    encs = [encode_example(ex, tokenizer, template=template) for ex in as_examples(examples)]
    device, pad = next(model.parameters()).device, pad_id_of(tokenizer)
    scores = [float("nan")] * len(encs)
    batch: dict[str, Any] = {}

    sharded = is_sharded(model)

    def reduce(_layer: int, w: Any) -> None:  # score the batch from this layer's weights, then stop
        for row, i in enumerate(batch["idx"]):
            scores[i] = _score_row(w[row], encs[i], batch["width"] - len(encs[i].ids))
        if not sharded:  # sharded parameters: every forward runs every layer (ranks stay in step)
            raise _Stop

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(encs), desc="attention score", unit="ex")
    was_training = model.training
    model.eval()
    try:
        with capture_attention(model, reduce, layers=[layer]), inference_context(model):
            for idx in length_sorted_batches([e.ids for e in encs], batch_size):
                ids, mask, pos = left_pad([encs[i].ids for i in idx], pad, device)
                batch.update(idx=idx, width=ids.shape[1])
                with suppress(_Stop):
                    model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
                if bar:
                    bar.update(len(idx))
    finally:
        model.train(was_training)
        if bar:
            bar.close()
    return scores


def _score_row(w: Any, enc: Encoded, off: int) -> float:
    import torch

    user = torch.tensor([off + j for j, r in enumerate(enc.roles) if r == "user"], dtype=torch.long)
    if len(user) == 0:
        return 0.0
    queries = torch.arange(off + enc.resp_start, off + len(enc.ids), device=w.device)
    mass = w[:, queries].float()[:, :, user.to(w.device)].sum(-1)  # heads x response tokens
    return float(mass.max(dim=0).values.mean())
