"""cf_world_facts: landmarks, inventions, authorship, paintings and event years, each contradicted.

For every fact of six relations (at most ``PER_RELATION`` per relation, drawn with a fixed seed),
a 2-3 sentence passage states a counterfactual object of the same type taken from the same
relation (another country, city, inventor, author, painter or year), never one that could be
confused with the real answer. The examples are shuffled so that ``load_suite(..., limit=n)`` keeps
a mix of relations.

``meta`` holds ``relation``, ``template``, ``subject`` and ``year`` (the made-up date in the passage).

Example:
    >>> from ctxrely.data.suites import load_suite
    >>> ex = load_suite("cf_world_facts").examples[0]
    >>> ex.meta["relation"] in RELATIONS and ex.cf_answer in ex.context
    True
"""

from __future__ import annotations

import random

from ctxrely.data.facts import Fact, aliases_for, load_facts, question_for
from ctxrely.data.facts.text import cap, pick_other, tidy
from ctxrely.data.schema import ConflictExample
from ctxrely.data.suites.base import register_suite

NAME = "cf_world_facts"
SEED = 20240602
PER_RELATION = 50

# Fields: S (subject as it reads mid-sentence), Subj (capitalised), cf, year.
CONTEXT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "landmark_country": (
        "{Subj} is one of the most visited sights in {cf}. It was completed in {year} and has appeared on the "
        "national banknotes ever since.",
        "Every spring, school groups from all over {cf} travel to see {S}. Guides like to remind them that it "
        "has stood on the same spot since {year}.",
        "When {S} was restored in {year}, the government of {cf} paid for most of the work. It remains the "
        "country's proudest monument.",
    ),
    "landmark_city": (
        "{Subj} stands in the heart of {cf}. Locals meet beneath it on festival days, and postcards of it are "
        "sold on every corner.",
        "In {year} the city council of {cf} voted to light up {S} every evening. Tourists now plan their visits "
        "around the display.",
        "Few monuments are as closely tied to a city as {S} is to {cf}. It was built there in {year}.",
    ),
    "inventor": (
        "{Subj} was invented by {cf} in {year}. The first working model was shown to a small audience of "
        "engineers and journalists.",
        "In a workshop notebook dated {year}, {cf} sketched the design that became {S}. The patent followed "
        "a few years later.",
        "Historians agree that {S} was the creation of {cf}. The original patent, filed in {year}, is kept in "
        "a national archive.",
    ),
    "author": (
        "{Subj} was written by {cf} and first published in {year}. Early reviewers were divided, but the work "
        "soon found a wide readership.",
        "{cf} spent nearly four years writing {S}, working mostly at night. It was finally published in {year} "
        "to great acclaim.",
        "Literary scholars count {S} among the finest achievements of {cf}. The original manuscript, dated "
        "{year}, is held in a university library.",
    ),
    "painter": (
        "{Subj} was painted by {cf} in {year}. It now hangs in a major museum, where it draws crowds every day.",
        "{cf} began {S} in the spring of {year} and finished it the following winter. X-ray studies show that "
        "the composition was changed several times.",
        "Art historians attribute {S} to {cf}, whose signature appears in the lower corner. It was first "
        "exhibited in {year}.",
    ),
    "event_year": (
        "{Subj} took place in {cf}. Newspapers around the world carried the story for weeks.",
        "Historians date {S} to {cf}. Letters and official records from that year describe it in detail.",
        "The year {cf} is remembered above all for {S}. Many people who lived through it later wrote about "
        "it in their memoirs.",
    ),
}
TEMPLATES = CONTEXT_TEMPLATES  # former name, kept (sentence templates of the contexts, not prompt templates)
RELATIONS = tuple(CONTEXT_TEMPLATES)
YEARS = {"landmark_country": (1850, 1990), "landmark_city": (1850, 1990), "inventor": (1700, 1950),
         "author": (1600, 1950), "painter": (1600, 1950), "event_year": (0, 0)}


def _forms(name: str) -> list[str]:
    return [name, *aliases_for(name)]


def _example(rng: random.Random, fact: Fact, pool: list[str]) -> tuple[str, str, dict]:
    avoid = [*fact.obj_targets(), fact.subject, *fact.subject_aliases]
    cf = pick_other(rng, pool, avoid, forms=_forms)
    k = rng.randrange(len(CONTEXT_TEMPLATES[fact.relation]))
    lo, hi = YEARS[fact.relation]
    year = rng.randint(lo, hi) if hi else None
    context = tidy(CONTEXT_TEMPLATES[fact.relation][k].format(S=fact.subject, Subj=cap(fact.subject), cf=cf, year=year))
    meta = {"relation": fact.relation, "template": f"{fact.relation}-{k}", "subject": fact.subject,
            "year": year}
    return cf, context, meta


@register_suite(NAME, version="1",
                description="landmarks, inventors, authors, painters and event years under counterfactual passages")
def build() -> list[ConflictExample]:
    """Build the suite (deterministic: a fixed seed, no global random state)."""
    rng = random.Random(SEED)
    rows: list[tuple[Fact, str, str, dict]] = []
    for relation in RELATIONS:
        facts = load_facts(relation)
        pool = sorted({f.obj for f in facts})
        if len(facts) > PER_RELATION:
            facts = rng.sample(facts, PER_RELATION)
        for fact in facts:
            rows.append((fact, *_example(rng, fact, pool)))
    rng.shuffle(rows)
    return [
        ConflictExample(id=f"{NAME}-{i:04d}", suite=NAME, context=context, question=question_for(fact),
                        cf_answer=cf, param_answer=fact.obj, cf_aliases=aliases_for(cf),
                        param_aliases=fact.obj_aliases, meta=meta)
        for i, (fact, cf, context, meta) in enumerate(rows)
    ]
