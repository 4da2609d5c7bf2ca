"""Closed-book probe: which real facts does a model already know, before any fine-tuning?

The lab trains and evaluates only on facts the model answers correctly without a context, so a
counterfactual context really conflicts with what it memorised. The probe runs the question alone
through the one evaluation core (:func:`ctxrely.engine.api.score_examples`) with the prompt format
the lab trains with: the model's chat template when it has one (instruct models), plain
``Question: ...\\nAnswer:`` otherwise (base models).

Two definitions of "known", chosen with ``method``:

* ``generate`` (default): the greedy closed-book answer (up to ``max_new_tokens``) contains the
  object or one of its aliases after SQuAD normalisation, not counting an echo of the question's
  subject ("The capital city of Guinea-Bissau is Porto." does not know Bissau; "... of Djibouti is
  Djibouti." does). Robust for instruct models, which answer in a sentence.
* ``logits``: every token of the object is the greedy continuation right after the prompt (the
  object is what the model would say first). Cheaper, but too strict for chatty instruct models.

Example:
    >>> recs = probe_facts(model, tok, load_facts("capital")[:8])  # doctest: +SKIP
    >>> [r["subject"] for r in recs if r["known"]]  # doctest: +SKIP
    ['Afghanistan', 'Albania', ...]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from ctxrely.data.schema import ConflictExample
from ctxrely.metrics.matching import normalize_answer
from ctxrely.prompts import PromptFormat, get_format

ProbeMethod = Literal["generate", "logits"]
PROBE_VERSION = "2"  # bump when what counts as "known" changes (invalidates cached probes)
PROBE_METHODS = ("generate", "logits")


_CAPS = re.compile(r"[A-Z][\w'\u2019.\-]*(?:\s+(?:(?:of|the|de|da|du|la|von|van|and)\s+)?[A-Z][\w'\u2019.\-]*)*")


def _count(hay: str, needle: str) -> int:
    return len(re.findall(rf"(?<!\S){re.escape(needle)}(?!\S)", hay)) if needle else 0


def answers_with(output: str, targets: Sequence[str], echoes: Sequence[str] = ()) -> bool:
    """Whether ``output`` gives one of ``targets``, not counting echoes of the question's subject.

    An echo phrase that contains a target ("Guinea-Bissau" for "Bissau") is removed from the output
    first; one equal to the target ("Djibouti") is removed once (the answer must come again).

    Example:
        >>> answers_with("The capital of Guinea-Bissau is Porto.", ["Bissau"], ["Guinea-Bissau"])
        False
        >>> answers_with("The capital of Djibouti is Djibouti.", ["Djibouti"], ["Djibouti"])
        True
        >>> answers_with("The capital of Mexico is Mexico City.", ["Mexico City"], ["Mexico"])
        True
    """
    for t in targets:
        nt = normalize_answer(t)
        hay = f" {normalize_answer(output)} "
        for e in echoes:
            ne = normalize_answer(e)
            if ne == nt:
                hay = re.sub(rf"(?<!\S){re.escape(ne)}(?!\S)", " ", hay, count=1)
            elif _count(f" {ne} ", nt):
                hay = re.sub(rf"(?<!\S){re.escape(ne)}(?!\S)", " ", hay)
        if _count(hay, nt):
            return True
    return False


def subject_phrases(question: str) -> list[str]:
    """Capitalised phrases of a question (its likely subject), for :func:`answers_with`.

    Example:
        >>> subject_phrases("What is the capital city of Guinea-Bissau?")
        ['What', 'Guinea-Bissau']
    """
    return [m.group(0).rstrip(".") for m in _CAPS.finditer(question)]


def lab_format(tokenizer: Any) -> PromptFormat:
    """The prompt format the lab uses for a tokenizer: ``chat`` with a chat template, else ``raw``.

    Example:
        >>> from ctxrely.models.tiny import build_tokenizer
        >>> lab_format(build_tokenizer(["a b c"])).name
        'chat'
    """
    return get_format("chat" if getattr(tokenizer, "chat_template", None) else "raw")


def fact_key(fact: Any) -> str:
    """A stable id of a fact: ``relation:subject``.

    Example:
        >>> from types import SimpleNamespace
        >>> fact_key(SimpleNamespace(relation="capital", subject="France"))
        'capital:France'
    """
    return f"{fact.relation}:{fact.subject}"


def closed_book_example(fact: Any, suite: str = "probe") -> ConflictExample:
    """The question of ``fact`` with no context; the object is the answer looked for.

    Example:
        >>> from ctxrely.data.facts import Fact  # doctest: +SKIP
        >>> closed_book_example(Fact("France", "capital", "Paris")).question  # doctest: +SKIP
        'What is the capital city of France?'
    """
    from ctxrely.data.facts import question_for

    return ConflictExample(id=fact_key(fact), suite=suite, context="", question=question_for(fact),
                           cf_answer=fact.obj, cf_aliases=tuple(getattr(fact, "obj_aliases", ()) or ()))


def _probe(model: Any, tokenizer: Any, examples: list[ConflictExample], echoes: list[list[str]],
           fmt: PromptFormat | None, method: ProbeMethod, max_new_tokens: int, batch_size: int, progress: bool,
           desc: str) -> list[dict[str, Any]]:
    from ctxrely.engine.api import score_examples

    if method not in PROBE_METHODS:
        raise ValueError(f"unknown probe method {method!r}; choose from {', '.join(PROBE_METHODS)}")
    fmt = fmt or lab_format(tokenizer)
    rows = score_examples(model, tokenizer, examples, fmt=fmt, mode="generate" if method == "generate" else "logits",
                          max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, desc=desc)
    out = []
    for r, ex, echo in zip(rows, examples, echoes, strict=True):
        known = (answers_with(r.output or "", ex.cf_targets(), echo) if method == "generate"
                 else bool(r.cf_greedy))
        out.append({"known": known, "output": r.output, "logp": r.logp_cf})
    return out


def closed_book_facts(model: Any, tokenizer: Any, facts: Sequence[Any], *, fmt: PromptFormat | None = None,
                method: ProbeMethod = "generate", max_new_tokens: int = 16, batch_size: int = 32,
                progress: bool = True) -> list[dict[str, Any]]:
    """Ask every fact's question closed-book; one record per fact, in order.

    Args:
        facts: ``Fact`` objects (``subject``, ``relation``, ``obj``, ``obj_aliases``).
        fmt: prompt format; default :func:`lab_format` of the tokenizer.
        method: ``generate`` (answer contains the object) or ``logits`` (object is the greedy
            continuation); see the module docstring.

    Returns:
        ``{"key", "relation", "subject", "obj", "known", "output"}`` per fact.
    """
    examples = [closed_book_example(f) for f in facts]
    echoes = [[f.subject, *(getattr(f, "subject_aliases", ()) or ())] for f in facts]
    res = _probe(model, tokenizer, examples, echoes, fmt, method, max_new_tokens, batch_size, progress,
                 "probe facts")
    return [{"key": fact_key(f), "relation": f.relation, "subject": f.subject, "obj": f.obj,
             "known": r["known"], "output": r["output"]} for f, r in zip(facts, res, strict=True)]


def closed_book_known(model: Any, tokenizer: Any, examples: Sequence[ConflictExample], *,
                   fmt: PromptFormat | None = None, method: ProbeMethod = "generate", max_new_tokens: int = 16,
                   batch_size: int = 32, progress: bool = True) -> list[bool]:
    """For conflict items: does the model answer the question with ``param_answer`` closed-book?

    Items without a parametric answer count as not known.

    Example:
        >>> from ctxrely.data.suites import load_suite  # doctest: +SKIP
        >>> suite = load_suite("cf_capitals")  # doctest: +SKIP
        >>> known = closed_book_known(model, tok, suite.examples)  # doctest: +SKIP
    """
    idx = [i for i, ex in enumerate(examples) if ex.param_answer is not None]
    closed = [ConflictExample(id=examples[i].id, suite="probe", context="", question=examples[i].question,
                              cf_answer=examples[i].param_answer or "", cf_aliases=examples[i].param_aliases)
              for i in idx]
    known = [False] * len(examples)
    if closed:
        echoes = [subject_phrases(ex.question) for ex in closed]
        res = _probe(model, tokenizer, closed, echoes, fmt, method, max_new_tokens, batch_size, progress,
                     "probe items")
        for i, r in zip(idx, res, strict=True):
            known[i] = r["known"]
    return known


# Former names ("probe" now means only what the training callback measures): kept as aliases.
probe_facts = closed_book_facts
probe_examples = closed_book_known
