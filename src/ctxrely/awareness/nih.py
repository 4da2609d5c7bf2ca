"""The needle-in-a-haystack grid: one prompt per (needle, context length, needle depth).

The haystack is cut to each length *in the model's own tokens*, minus room for the prompt, the
needle and the answer (``max_new_tokens``), so prompt + answer fill the length. The needle goes in
at the sentence boundary at or before ``depth`` percent of the cut haystack (0: first, 100: last;
a word boundary where the sentence is long against the context, see :func:`insert_needle`).
The user turn is the paper's; ``chat`` wraps it in the tokenizer's chat template with a generation
prompt, ``raw`` sends the bare text. Token ids carry one BOS at most (never the chat template's
plus the tokenizer's). Cells longer than the model's window are returned as skipped, never cut.

Example:
    >>> parse_grid("0:100:5", "depths")
    [0.0, 25.0, 50.0, 75.0, 100.0]
    >>> parse_grid("1000,2000", "lengths")
    [1000, 2000]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ctxrely.awareness.haystack import Needle
from ctxrely.errors import CtxrelyError

log = logging.getLogger(__name__)
NIH_PROMPT = ("You are a helpful AI assistant that answers a question using only the provided document: "
              "\n{context}\n\nQuestion: {question}")
TEMPLATE_MODES = ("chat", "raw", "qa")  # the chat template around the prompt, or bare text (+ an Answer: cue)
TEMPLATES = TEMPLATE_MODES  # former name, kept
#: The ``qa`` template: the user turn, then a plain ``Answer:`` cue (how a model fine-tuned on plain
#: ``Question:``/``Answer:`` text, without a chat template, is prompted).
QA_CUE = "\nAnswer:"
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")


class NIHError(CtxrelyError):
    """A bad needle-in-a-haystack setting (grid, template, needle)."""


@dataclass(frozen=True)
class Cell:
    """One prompt of the grid.

    Attributes:
        needle_idx / length / depth: the grid coordinates (depth in percent).
        context: the haystack with the needle inside; ``needle_at`` its character offset.
        placed_depth: where the needle really went, in percent of the context's characters.
        prompt: the full rendered text; ``ids`` its token ids (one BOS at most).
    """

    needle_idx: int
    length: int
    depth: float
    context: str
    needle_at: int
    placed_depth: float
    prompt: str
    ids: list[int] = field(repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.needle_idx}:{self.length}:{self.depth:g}"


def parse_grid(spec: str | Sequence[float], what: str) -> list[Any]:
    """``"a,b,c"`` or ``"start:stop:n"`` (n evenly spaced values, both ends included) as a sorted list.

    Lengths are integers; depths are floats in 0..100.
    """
    if isinstance(spec, str):
        spec = spec.strip()
        try:
            if ":" in spec:
                parts = [float(x) for x in spec.split(":")]
                if len(parts) != 3 or parts[2] < 1 or parts[2] != int(parts[2]):
                    raise ValueError
                a, b, n = parts[0], parts[1], int(parts[2])
                vals = [a] if n == 1 else [a + (b - a) * i / (n - 1) for i in range(n)]
            else:
                vals = [float(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise NIHError(f"--{what} {spec!r}: expected numbers a,b,c or start:stop:count") from None
    else:
        vals = [float(x) for x in spec]
    if not vals:
        raise NIHError(f"--{what}: no values")
    if what == "depths":
        bad = [v for v in vals if not 0 <= v <= 100]
        if bad:
            raise NIHError(f"--depths: {bad[0]:g} is outside 0-100 (depths are percentages)")
        return sorted({round(v, 4) for v in vals})
    ints = sorted({int(round(v)) for v in vals})
    if ints[0] < 1:
        raise NIHError(f"--{what}: {ints[0]} is not a positive token count")
    return ints


def user_text(context: str, question: str, indicator: str | None = None) -> str:
    """The paper's user turn; ``indicator`` is appended to the question (as ``ctxrely eval`` does)."""
    q = f"{question} {indicator}" if indicator else question
    return NIH_PROMPT.format(context=context, question=q)


def render_prompt(tokenizer: Any, user: str, template: str, hint: str | None = None) -> str:
    """The model input text: the user turn bare (``raw``), followed by a plain ``Answer:`` cue
    (``qa``) or in the chat template (``chat``), plus an optional assistant prefix ``hint``."""
    if template not in TEMPLATE_MODES:
        raise NIHError(f"unknown template {template!r}; choose from {', '.join(TEMPLATE_MODES)}")
    if template == "raw":
        return f"{user}\n{hint}" if hint else user
    if template == "qa":
        return f"{user}{QA_CUE} {hint}" if hint else f"{user}{QA_CUE}"
    if not getattr(tokenizer, "chat_template", None):
        raise NIHError(f"{getattr(tokenizer, 'name_or_path', 'this model')!r} has no chat template; "
                       "use --template raw")
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)
    return f"{text}{hint}" if hint else text


def encode_prompt(tokenizer: Any, text: str, template: str) -> list[int]:
    """Token ids with one BOS at most: a chat rendering carries its own special tokens; raw text gets
    the tokenizer's (a doubled BOS is dropped either way)."""
    ids = list(tokenizer(text, add_special_tokens=template != "chat")["input_ids"])
    return ids[extra_bos(ids, tokenizer):]


def extra_bos(ids: Sequence[int], tokenizer: Any) -> int:
    """How many leading tokens to drop so that ``ids`` starts with one BOS at most."""
    bos = getattr(tokenizer, "bos_token_id", None)
    n = 0
    while bos is not None and len(ids) > n + 1 and ids[n] == bos and ids[n + 1] == bos:
        n += 1
    return n


def insert_needle(context: str, needle: str, depth: float, slack: float = 0.05) -> tuple[str, int]:
    """``context`` with ``needle`` at the sentence boundary at or before ``depth`` percent; and its offset.

    Where that boundary lies more than ``slack`` (a share of the context) before the target, as in a
    short context with long sentences, the needle goes at the word boundary at or before it instead,
    so that nearby depths still get distinct contexts.
    """
    target = round(len(context) * depth / 100)
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(context)] + [len(context)]
    at = max(b for b in bounds if b <= target) if depth < 100 else len(context)
    if target - at > slack * len(context):
        at = max([0] + [m.end() for m in re.finditer(r"\s+", context[:target])])
    before, after = context[:at], context[at:]
    sep_before = "" if not before or before[-1].isspace() else " "
    sep_after = "" if not after or after[0].isspace() else " "
    return f"{before}{sep_before}{needle}{sep_after}{after}", len(before) + len(sep_before)


def build_grid(tokenizer: Any, haystack: str, needles: Sequence[Needle], lengths: Sequence[int],
               depths: Sequence[float], *, template: str = "chat", indicator: str | None = None,
               hint: bool = False, max_new_tokens: int = 100, window: int | None = None
               ) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every cell of the grid, and the cells skipped because prompt + answer exceed ``window``.

    Raises:
        NIHError: a length below the prompt's own size (prompt + needle + answer without haystack).
    """
    if max_new_tokens < 1:
        raise NIHError("--max-new-tokens must be >= 1")
    longest = max(lengths)
    chars = max(4096, longest * 12)  # tokenise only what the longest cell can use
    hay_ids = tokenizer(haystack[:chars], add_special_tokens=False)["input_ids"]
    cells: list[Cell] = []
    skipped: list[dict[str, Any]] = []
    for ni, nd in enumerate(needles):
        prefix = nd.hint if hint else None
        bare = encode_prompt(tokenizer, render_prompt(tokenizer, user_text(nd.needle, nd.question, indicator),
                                                      template, prefix), template)
        own = len(bare) + max_new_tokens
        for length in lengths:
            budget = length - own
            if budget < 1:
                raise NIHError(f"length {length} is below the prompt's own size: {len(bare)} prompt and needle "
                               f"tokens + {max_new_tokens} answer tokens = {own}")
            if budget > len(hay_ids):
                raise NIHError(f"length {length} needs {budget} haystack tokens; the haystack has {len(hay_ids)}")
            hay = tokenizer.decode(hay_ids[:budget], skip_special_tokens=True)
            for depth in depths:
                ctx, at = insert_needle(hay, nd.needle, depth)
                text = render_prompt(tokenizer, user_text(ctx, nd.question, indicator), template, prefix)
                ids = encode_prompt(tokenizer, text, template)
                if window is not None and len(ids) + max_new_tokens > window:
                    skipped.append({"needle": ni, "length": length, "depth": depth, "n_tokens": len(ids),
                                    "window": window, "reason": "prompt + max_new_tokens exceed the model window"})
                    continue
                placed = 100.0 * at / max(1, len(ctx) - len(nd.needle))
                cells.append(Cell(ni, length, depth, ctx, at, round(placed, 2), text, ids))
    if len({(c.needle_idx, c.context) for c in cells}) < len(cells):
        log.warning("some depths put the needle at the same place (contexts too short for the depths asked)")
    if skipped:
        log.warning("skipped %d cells longer than the model window (%s tokens): lengths %s", len(skipped), window,
                    sorted({s["length"] for s in skipped}))
    return cells, skipped
