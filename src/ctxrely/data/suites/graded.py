"""graded_years, graded_numbers, graded_names: built-in graded conflict suites (ClashEval-style ladders).

Each item is a question with a passage that states its true answer, graded by
:mod:`ctxrely.data.graded`: the unchanged passage (``degree`` 0, the control) and one passage per
step of the ladder (years moved by 1, 5, 20, 100; numbers scaled 1.1x..10x; names swapped for a
same-type or an implausible one), every mention edited. The variants of one question are adjacent,
questions are shuffled with a fixed seed, so ``--limit`` keeps whole ladders where it can.

- ``graded_years``: the event years of the shipped history table (48 events, 5 passages each).
- ``graded_numbers``: 40 well-known quantities (``facts/quantities.json``, 6 passages each).
- ``graded_names``: authors, painters, composers and inventors (25 per relation, 3 passages each);
  ``same_type`` is another person of the same relation, ``implausible`` a capital city.

Example:
    >>> from ctxrely.data.suites import load_suite
    >>> ex = load_suite("graded_years").examples[1]
    >>> ex.meta["degree"], ex.param_answer in load_suite("graded_years").examples[0].context
    (1, True)
"""

from __future__ import annotations

import random

from ctxrely.data.facts import Fact, load_facts, question_for, read_table
from ctxrely.data.facts.text import cap, tidy
from ctxrely.data.graded import grade_examples
from ctxrely.data.schema import ConflictExample
from ctxrely.data.suites.base import register_suite

SEED = 20241021
VERSION = "1"
YEAR_TEMPLATES = (
    "{Subj} took place in {v}. Newspapers around the world carried the story for weeks, and by the end of {v} "
    "it was known in every country.",
    "Historians date {S} to {v}. Letters and official records from {v} describe it in detail.",
    "The year {v} is remembered above all for {S}. Many people who lived through {v} later wrote about it.",
)
NAME_VERBS = {"author": "written", "painter": "painted", "composer": "composed", "inventor": "invented"}
NAME_TEMPLATES = (
    "{Subj} was {verb} by {v}. Critics still praise {last} for it, and {last}'s notes mention it often.",
    "Scholars agree that {S} was {verb} by {v}. Letters written by {last} at the time describe the work.",
    "{v} is best remembered for {S}. Few works did more to make {last} famous.",
)
NAMES_PER_RELATION = 25


def _source(name: str, rows: list[tuple[str, str, str]]) -> list[ConflictExample]:
    """(question, answer, passage) rows as ungraded examples, shuffled with the suite's seed."""
    rng = random.Random(f"{SEED}:{name}")
    rng.shuffle(rows)
    return [ConflictExample(id=f"{name}-{i:03d}", suite=name, context=tidy(p), question=q, cf_answer=a)
            for i, (q, a, p) in enumerate(rows)]


def _fill(template: str, fact: Fact, value: str, **kw: str) -> str:
    return template.format(S=fact.subject, Subj=cap(fact.subject), v=value, **kw)


@register_suite("graded_years", version=VERSION,
                description="event years; passages with the year moved by 0, 1, 5, 20, 100 (graded conflict)")
def build_years() -> list[ConflictExample]:
    """Build graded_years (deterministic)."""
    facts = load_facts("event_year")
    rows = [(question_for(f), f.obj, _fill(YEAR_TEMPLATES[i % len(YEAR_TEMPLATES)], f, f.obj))
            for i, f in enumerate(facts)]
    return grade_examples(_source("graded_years", rows), suite="graded_years", kinds=("year",), seed=SEED)[0]


@register_suite("graded_numbers", version=VERSION,
                description="well-known quantities; passages with the number scaled by 1, 1.1, 1.5, 2, 5, 10x")
def build_numbers() -> list[ConflictExample]:
    """Build graded_numbers (deterministic)."""
    rows = [(q, a, p.format(n=a)) for q, a, p in read_table("quantities.json")["quantities"]]
    return grade_examples(_source("graded_numbers", rows), suite="graded_numbers", kinds=("number",),
                          seed=SEED)[0]


@register_suite("graded_names", version=VERSION,
                description="authors, painters, composers, inventors; passages naming the true, a same-type "
                            "or an implausible person")
def build_names() -> list[ConflictExample]:
    """Build graded_names (deterministic; the substitutes come from the same relation and the capitals)."""
    rng = random.Random(SEED)
    capitals = sorted({f.obj for f in load_facts("capital")})
    out: list[ConflictExample] = []
    rows: list[tuple[str, str, str, str]] = []
    for rel, verb in NAME_VERBS.items():
        facts = load_facts(rel)
        facts = rng.sample(facts, min(NAMES_PER_RELATION, len(facts)))
        for i, f in enumerate(facts):
            t = NAME_TEMPLATES[i % len(NAME_TEMPLATES)]
            rows.append((question_for(f), f.obj, cap(_fill(t, f, f.obj, verb=verb, last=f.obj.split()[-1])), rel))
    sources = _source("graded_names", [(q, a, p) for q, a, p, _ in rows])
    rel_of = {(q, a): rel for q, a, _, rel in rows}
    for ex in sources:
        rel = rel_of[(ex.question, ex.cf_answer)]
        people = sorted({f.obj for f in load_facts(rel)} - {ex.cf_answer})
        got, _ = grade_examples([ex], suite="graded_names", kinds=("name",), seed=SEED,
                                pools={"same_type": people, "implausible": capitals})
        out += got
    return out
