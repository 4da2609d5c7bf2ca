"""The backend seam: how the engine talks to a model.

A backend answers one kind of request, :class:`Request` (a tokenised prompt, the continuations whose
log-probabilities are wanted, and how many tokens to decode greedily), so one prefill serves both
the answer log-probs and the greedy answer. ``loglikelihood`` and ``generate`` are the two halves
alone. :class:`ctxrely.engine.hf.HFBackend` implements it over a transformers model; a vLLM
backend would implement the same three methods (none ships yet: it needs a GPU to be tested).

Decoding variants (context-aware decoding, attention steering) plug in below the backend, as a
:class:`DecodeStrategy`: the HF backend asks the strategy for a :class:`Stream` per batch (the
prefill) and then only feeds it tokens (answer tails, decode steps), so a strategy that runs two
streams (with and without the context) and mixes their logits changes scores and answers alike.

Example:
    >>> req = Request(prompt=[5, 6, 7], conts=[[8], [9, 10]], max_new_tokens=0)
    >>> req.wants_generation, len(req.conts)
    (False, 2)
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ctxrely.engine.logits import ContScore


@dataclass(frozen=True)
class Request:
    """One prompt's work.

    Attributes:
        prompt: token ids of the prompt that is prefilled (shared by every continuation).
        conts: continuations (token ids) to score after ``prompt``; empty for none.
        max_new_tokens: greedy tokens to decode after ``prompt + forced`` (0: no generation).
        forced: tokens fed before decoding starts and not returned (the generation prompt may extend
            the scoring prompt by the whitespace lm-eval moves onto continuations).
        example: what the request was built from (a ``ConflictExample`` in ``score_examples``), for
            strategies that need more than the tokens (e.g. the context-free prompt of CAD).
        text: the prompt's text where known (``prompt`` is its tokenisation), for strategies that
            find spans in it (attention steering finds the context's tokens).
        context_free: token ids of the prompt without its context, where the builder knows them
            (CAD's second stream; otherwise CAD renders ``example`` without its context).
        steer_spans: token spans ``[start, end)`` of ``prompt`` to steer toward, where the builder
            knows them (otherwise attention steering finds them from ``text`` and ``example``).
    """

    prompt: Sequence[int]
    conts: Sequence[Sequence[int]] = ()
    max_new_tokens: int = 0
    forced: Sequence[int] = ()
    example: Any = field(default=None, compare=False, repr=False)
    text: str | None = field(default=None, compare=False, repr=False)
    context_free: Sequence[int] | None = field(default=None, compare=False, repr=False)
    steer_spans: Sequence[tuple[int, int]] | None = field(default=None, compare=False, repr=False)

    @property
    def wants_generation(self) -> bool:
        return self.max_new_tokens > 0


@dataclass
class Outcome:
    """What a backend returns per request: scores per continuation, and the decoded answer."""

    scores: list[ContScore] = field(default_factory=list)
    text: str | None = None
    token_logps: list[float] = field(default_factory=list)  # log-prob of each decoded token (stop tokens included)


class Stream(Protocol):
    """A prefilled batch that grows on the right (a KV cache plus its attention mask)."""

    def extend(self, ids: Any, mask: Any) -> Any:
        """Feed ``ids`` ``[B, k]`` (``mask`` 0 marks right padding); return their logits ``[B, k, V]``."""

    def select(self, rows: Any) -> Stream:
        """A stream over batch rows ``rows`` alone; this stream stays valid."""


class DecodeStrategy(Protocol):
    """How a batch is prefilled: returns last-position logits ``[B, V]`` and the :class:`Stream`.

    ``ids``/``mask`` are the left-padded prompts of ``requests`` (a strategy with a second stream,
    such as CAD's context-free prompts, takes ``request.context_free`` or builds it from
    ``request.example``). Every later model call of
    the batch (answer tails, decode steps) goes through the returned stream.
    """

    def start(self, model: Any, ids: Any, mask: Any, requests: Sequence[Request]) -> tuple[Any, Stream]: ...

    # optional: ``rows_per_request`` (default 1), the model rows one request takes (CAD: 2); a token
    # budget (``batch_tokens``) is divided by it


class Backend(abc.ABC):
    """The interface every model backend implements (see the module docstring)."""

    supports_attention: bool = False

    @abc.abstractmethod
    def run(self, requests: Sequence[Request], *, stop: Sequence[str] = (),
            batch_size: int | None = None, batch_tokens: int | None = None,
            on_batch: Callable[[list[int], list[Outcome]], None] | None = None) -> list[Outcome]:
        """Outcomes in request order; ``on_batch(indices, outcomes)`` after every finished batch."""

    def loglikelihood(self, prompts: Sequence[Sequence[int]], conts: Sequence[Sequence[Sequence[int]]],
                      **kw: Any) -> list[list[ContScore]]:
        """Scores of ``conts[i][j]`` after ``prompts[i]``."""
        reqs = [Request(p, c) for p, c in zip(prompts, conts, strict=True)]
        return [o.scores for o in self.run(reqs, **kw)]

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, **kw: Any) -> list[str]:
        """Greedy answers after ``prompts``, cut at the first stop string."""
        return [o.text or "" for o in self.run([Request(p, (), max_new_tokens) for p in prompts], **kw)]

    def context_attention(self, examples: Sequence[Any], fmt: Any, indicator: str | None = None) -> list[Any]:
        """Optional: attention mass on the context per example (``supports_attention`` says if present)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose attention")


def make_backend(model: Any, tokenizer: Any, intervention: Any = None, *, fmt: Any = None,
                 indicator: str | None = None) -> Backend:
    """The one backend factory: the transformers backend over ``model`` with ``intervention``'s decode
    strategy (CAD / AdaCAD / PASTA; plain greedy for None). Every measurement builds its backend here.

    Args:
        intervention: a :class:`ctxrely.steer.plan.Intervention` (e.g. ``EvalSettings.intervention``).
        fmt / indicator: the prompt format and question suffix, for strategies that render a request's
            ``example`` (CAD's prompt without context, steering spans) when the request does not carry
            ``context_free`` / ``steer_spans`` itself.

    Example:
        >>> backend = make_backend(model, tok, EvalSettings(decode="cad").intervention)  # doctest: +SKIP
        >>> backend.generate([[5, 6, 7]], max_new_tokens=8)  # doctest: +SKIP
    """
    from ctxrely.engine.hf import HFBackend

    strategy = None
    if intervention is not None and intervention.active:
        strategy = intervention.strategy(tokenizer, fmt, indicator)
    return HFBackend(model, tokenizer, strategy=strategy)
