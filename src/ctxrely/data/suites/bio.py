"""cf_bio: made-up biographies that credit a famous work to another famous person of the same field.

Each biography is assembled from sentence pools: an invented birth (fictional town and country,
a made-up year), a career sentence for the field, a late-life sentence, and the sentence that
credits the work, placed first, in the middle or last. The credited person is a real writer,
painter or composer other than the true one; the question asks who wrote/painted/composed the work.
Sentences never use pronouns, so no gender has to be guessed.

``meta`` holds ``relation``, ``work``, ``position`` (of the crediting sentence), ``birth_place``,
``birth_year`` and the ids of the sentence variants used.

Example:
    >>> from ctxrely.data.suites import load_suite
    >>> ex = load_suite("cf_bio").examples[0]
    >>> ex.question.startswith("Who ") and ex.cf_answer in ex.context
    True
"""

from __future__ import annotations

import random

from ctxrely.data.facts import Fact, aliases_for, fictional_names, load_facts, question_for
from ctxrely.data.facts.text import cap, pick_other, tidy
from ctxrely.data.schema import ConflictExample
from ctxrely.data.suites.base import register_suite

NAME = "cf_bio"
SEED = 20240603

# relation -> (noun, past-tense verb)
FIELDS = {"author": ("writer", "wrote"), "painter": ("painter", "painted"), "composer": ("composer", "composed")}

BIRTH = (
    "{P} was born in {birth_year} in {city}, a {town} in {country}.",
    "Born in {city}, {country}, in {birth_year}, {P} was the {ordinal} of {siblings} children of a {parent}.",
    "{P} was born in {birth_year} and grew up in {city}, a {town} in the {compass} of {country}.",
)
CAREER = {
    "author": (
        "After a few unhappy years as a {job}, {P} began writing full time.",
        "As a student in {city2}, {P} published poems and short stories in the local newspaper.",
        "{P} worked as a {job} for a decade, writing late at night in a rented room.",
    ),
    "painter": (
        "After an apprenticeship with a sign painter in {city2}, {P} studied at the academy of fine arts there.",
        "{P} earned a living painting portraits of wealthy merchants in {city2} while experimenting with colour.",
        "As a student in {city2}, {P} spent long days copying the old masters in the city museum.",
    ),
    "composer": (
        "{P} played the organ in a parish church in {city2} before turning to composition.",
        "After studying the violin at the conservatory of {city2}, {P} began writing music for the local orchestra.",
        "{P} led a small theatre orchestra in {city2} for several years, composing in the early mornings.",
    ),
}
WORK = (
    "{P} {verb} {W} in {work_year}, and it remains the work for which the {noun} is best remembered.",
    "In {work_year}, {P} completed {W}, which critics soon hailed as a masterpiece.",
    "The work that made {P} famous was {W}, finished in {work_year} after {effort} years of effort.",
    "{Wcap} is the best-known work of {P}, who {verb} it at the age of {age}.",
)
LATER = (
    "{P} died in {death_year} in {city3} and was buried in the town cemetery.",
    "In later life the {noun} taught at the academy of {city3} and rarely travelled.",
    "The {noun} spent the last years of a long life in {city3}, where a small museum now keeps the family letters.",
)
JOBS = ("customs clerk", "schoolteacher", "newspaper reporter", "bank cashier", "ship's purser", "librarian")
TOWNS = ("river town", "mining town", "fishing village", "market town", "university town", "port city",
         "mountain village")
PARENTS = ("schoolteacher", "baker", "ship's carpenter", "watchmaker", "country doctor", "railway clerk", "tailor")
POSITIONS = ("early", "middle", "middle", "late")


def _forms(name: str) -> list[str]:
    return [name, *aliases_for(name)]


def _bio(rng: random.Random, fact: Fact, person: str) -> tuple[str, dict]:
    noun, verb = FIELDS[fact.relation]
    city, city2, city3 = rng.sample(fictional_names("city"), 3)
    birth_year = rng.randint(1560, 1930)
    work_year = birth_year + rng.randint(24, 50)
    fields = {
        "P": person, "W": fact.subject, "Wcap": cap(fact.subject), "noun": noun, "verb": verb,
        "city": city, "city2": city2, "city3": city3, "country": rng.choice(fictional_names("country")),
        "birth_year": birth_year, "work_year": work_year, "age": work_year - birth_year,
        "death_year": work_year + rng.randint(5, 40), "effort": rng.randint(2, 9),
        "town": rng.choice(TOWNS), "parent": rng.choice(PARENTS), "job": rng.choice(JOBS),
        "ordinal": rng.choice(("eldest", "second", "youngest")), "siblings": rng.choice(("three", "four", "six")),
        "compass": rng.choice(("north", "south", "east", "west")),
    }
    b, c, w, la = (rng.randrange(len(BIRTH)), rng.randrange(len(CAREER[fact.relation])),
                   rng.randrange(len(WORK)), rng.randrange(len(LATER)))
    sentences = [BIRTH[b], CAREER[fact.relation][c], LATER[la]]
    at = rng.randrange(4)
    sentences.insert(at, WORK[w])
    context = tidy(" ".join(cap(s.format(**fields)) for s in sentences))
    meta = {"relation": fact.relation, "work": fact.subject, "position": POSITIONS[at], "birth_place": city,
            "birth_year": birth_year, "sentences": f"b{b}-c{c}-w{w}-l{la}"}
    return context, meta


@register_suite(NAME, version="1",
                description="invented biographies crediting a famous work to another writer/painter/composer")
def build() -> list[ConflictExample]:
    """Build the suite (deterministic: a fixed seed, no global random state)."""
    rng = random.Random(SEED)
    rows: list[tuple[Fact, str, str, dict]] = []
    for relation in FIELDS:
        facts = load_facts(relation)
        people = sorted({f.obj for f in facts})
        for fact in facts:
            person = pick_other(rng, people, [*fact.obj_targets(), fact.subject], forms=_forms)
            rows.append((fact, person, *_bio(rng, fact, person)))
    rng.shuffle(rows)
    return [
        ConflictExample(id=f"{NAME}-{i:04d}", suite=NAME, context=context, question=question_for(fact),
                        cf_answer=person, param_answer=fact.obj, cf_aliases=aliases_for(person),
                        param_aliases=fact.obj_aliases, meta=meta)
        for i, (fact, person, context, meta) in enumerate(rows)
    ]
