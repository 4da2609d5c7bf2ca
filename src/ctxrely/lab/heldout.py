"""Held-out knowledge conflicts for the lab: facts the model knows, contexts that say otherwise.

Each item takes a real fact the closed-book probe found the model knows and writes a passage that
asserts another real object of the same relation (``Paris`` -> ``Canberra`` for a capital). As in
the published conflict sets, the passage also mentions the memorised answer, so the model sees both
and must side with the context. ``style="sentence"`` gives the bare one-sentence context instead.
:func:`known_suite_items` adds the built-in suites, kept to the items whose parametric answer the
model gives closed-book.

Example:
    >>> from ctxrely.data.facts import load_facts  # doctest: +SKIP
    >>> items = conflict_items(load_facts("capital")[:4], load_facts("capital"), seed=0)  # doctest: +SKIP
    >>> items[0].cf_answer != items[0].param_answer  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any, Literal

from ctxrely.data.schema import ConflictExample
from ctxrely.lab.closed_book import fact_key
from ctxrely.metrics.matching import normalize_answer

Style = Literal["passage", "sentence"]
SUITE = "lab_conflicts"
HELDOUT_VERSION = "1"

# Two or three sentences; {cf_stmt}/{param_stmt} are whole sentences from the fact tables.
PASSAGES: tuple[str, ...] = (
    "Older reference works state: {param_stmt} Those works are out of date. {cf_stmt}",
    "{cf_stmt} This corrects an earlier entry, which gave {param}. The correction has been confirmed.",
    "Many people believe the following: {param_stmt} That belief is mistaken. {cf_stmt}",
    "{cf_stmt} Some sources still repeat the old answer, {param}, but current records all give {cf}.",
)


def _names(fact: Any) -> set[str]:
    return {normalize_answer(fact.obj), *(normalize_answer(a) for a in getattr(fact, "obj_aliases", ()) or ())}


def counterfactual(fact: Any, pool: Sequence[Any], rng: random.Random) -> Any:
    """A copy of ``fact`` whose object is another object of the same relation from ``pool``.

    Raises:
        ValueError: ``pool`` holds no other object for this relation.
    """
    own = _names(fact)
    objects = sorted({(f.obj, tuple(getattr(f, "obj_aliases", ()) or ())) for f in pool
                      if f.relation == fact.relation and not (_names(f) & own)})
    if not objects:
        raise ValueError(f"{fact_key(fact)}: no other object of relation {fact.relation!r} to swap in")
    obj, aliases = rng.choice(objects)
    return dataclasses.replace(fact, obj=obj, obj_aliases=aliases)


def conflict_passage(fact: Any, cf_fact: Any, template: str) -> str:
    """Render one passage template for a fact and its counterfactual twin."""
    from ctxrely.data.facts import closed_book_statement

    return template.format(cf_stmt=closed_book_statement(cf_fact), param_stmt=closed_book_statement(fact),
                           cf=cf_fact.obj, param=fact.obj)


def conflict_items(facts: Sequence[Any], pool: Sequence[Any] | None = None, *, seed: int = 0,
                   style: Style = "passage", suite: str = SUITE) -> list[ConflictExample]:
    """One knowledge-conflict item per fact.

    Args:
        facts: known, held-out facts (never trained on).
        pool: facts to draw counterfactual objects from (default: ``facts``); same relation only.
        seed: seeds the object swap and the passage templates.
        style: ``passage`` (2-3 sentences, mentions the memorised answer) or ``sentence``.

    Returns:
        ``ConflictExample`` items with ``meta`` holding the fact key and the template index.
    """
    from ctxrely.data.facts import closed_book_statement, question_for

    rng = random.Random(seed)
    pool = list(pool if pool is not None else facts)
    items = []
    for i, fact in enumerate(facts):
        cf_fact = counterfactual(fact, pool, rng)
        t = rng.randrange(len(PASSAGES))
        context = (conflict_passage(fact, cf_fact, PASSAGES[t]) if style == "passage"
                   else closed_book_statement(cf_fact))
        items.append(ConflictExample(
            id=f"{suite}-{i}", suite=suite, context=context, question=question_for(fact),
            cf_answer=cf_fact.obj, param_answer=fact.obj, cf_aliases=tuple(cf_fact.obj_aliases or ()),
            param_aliases=tuple(fact.obj_aliases or ()),
            meta={"fact": fact_key(fact), "template": t if style == "passage" else None,
                  "version": HELDOUT_VERSION}))
    return items


def known_suite_items(model: Any, tokenizer: Any, names: Sequence[str], *, limit: int | None = None,
                      exclude_answers: Sequence[str] = (), method: str = "generate", batch_size: int = 32,
                      progress: bool = True) -> dict[str, list[ConflictExample]]:
    """The built-in suites, kept to items whose parametric answer the model gives closed-book.

    Args:
        names: built-in suite names (``ctxrely ls``).
        limit: probe only the first ``limit`` items of each suite.
        exclude_answers: parametric answers to drop (objects the lab trains on), compared normalised.

    Returns:
        ``{suite name: items}``; a suite with no known item is left out.
    """
    from ctxrely.data.suites import load_suite
    from ctxrely.lab.closed_book import closed_book_known

    drop = {normalize_answer(a) for a in exclude_answers}
    out: dict[str, list[ConflictExample]] = {}
    for name in names:
        exs = [ex for ex in load_suite(name).examples[:limit]
               if ex.param_answer is not None and normalize_answer(ex.param_answer) not in drop]
        known = closed_book_known(model, tokenizer, exs, method=method, batch_size=batch_size,  # type: ignore[arg-type]
                               progress=progress)
        kept = [ex for ex, k in zip(exs, known, strict=True) if k]
        if kept:
            out[name] = kept
    return out
