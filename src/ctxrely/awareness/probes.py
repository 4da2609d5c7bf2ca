"""Training-callback probes: NIH recall and attention to user tokens at every evaluation.

A probe is a callable ``probe(model, tokenizer) -> {metric: value}``; pass probes to
``ContextRelianceCallback(..., probes=[...])`` and their metrics join every trajectory row and
every ``trainer.log`` call. They run on each rank over the whole probe (not sharded).

Example:
    >>> cb = ContextRelianceCallback(["cf_capitals"], probes=[NIHProbe(lengths=[500, 1000]),
    ...                                                       AttentionRoleProbe()])  # doctest: +SKIP
    >>> # trajectory.jsonl: {"step": 50, "nih/recall": 0.71, "attn_roles/user": 0.18, ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ctxrely.awareness.haystack import DEFAULT_NEEDLE, Needle, read_haystack
from ctxrely.awareness.nih import build_grid, parse_grid, user_text


@dataclass
class NIHProbe:
    """Mean keyword recall and strict recall of a (small) NIH grid: ``<prefix>/recall``, ``<prefix>/strict``."""

    lengths: Sequence[int] | str = (500, 1000)
    depths: Sequence[float] | str = (0, 50, 100)
    template: str = "chat"
    indicator: str | None = None
    max_new_tokens: int = 32  # the default needle's answer is ~24 tokens; a shorter cap cuts keywords off
    haystack: str | None = None
    needles: Sequence[Needle] | None = None
    batch_size: int = 4
    prefix: str = "nih"
    settings: Any = None  # an EvalSettings (indicator, max_new_tokens, batch_size, stop, CAD/PASTA) replacing those fields

    def __post_init__(self) -> None:  # fail fast, before training starts
        self.lengths, self.depths = parse_grid(self.lengths, "lengths"), parse_grid(self.depths, "depths")
        read_haystack(self.haystack)

    def __call__(self, model: Any, tokenizer: Any) -> dict[str, float | None]:
        from ctxrely.awareness.nih_run import run_nih

        s = run_nih(model, tokenizer, lengths=self.lengths, depths=self.depths, needles=self.needles,
                    haystack=self.haystack, template=self.template, indicator=self.indicator,
                    max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, progress=False,
                    settings=self.settings)
        return {f"{self.prefix}/recall": s["mean_recall"], f"{self.prefix}/strict": s["mean_strict"]}


@dataclass
class AttentionRoleProbe:
    """Attention shares of the answer per role (``<prefix>/user``, ...) on NIH prompts (or given user turns)."""

    template: str = "chat"
    users: list[str] = field(default_factory=list)
    lengths: Sequence[int] | str = (500,)
    depths: Sequence[float] | str = (50,)
    haystack: str | None = None
    max_new_tokens: int = 8
    prefix: str = "attn_roles"

    def __call__(self, model: Any, tokenizer: Any) -> dict[str, float | None]:
        from ctxrely.awareness.allocation import attention_allocation

        if not self.users:
            cells, _ = build_grid(tokenizer, read_haystack(self.haystack), [DEFAULT_NEEDLE],
                                  parse_grid(self.lengths, "lengths"), parse_grid(self.depths, "depths"),
                                  template="raw", max_new_tokens=self.max_new_tokens)
            self.users = [user_text(c.context, DEFAULT_NEEDLE.question) for c in cells]
        s = attention_allocation(model, tokenizer, self.users, templates=(self.template,),
                                 max_new_tokens=self.max_new_tokens)
        return {f"{self.prefix}/{r}": v for r, v in s["templates"][self.template]["roles"].items()}
