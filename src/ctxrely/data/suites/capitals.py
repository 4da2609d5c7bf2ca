"""cf_capitals: "What is the capital city of X?" under a passage that moves the capital elsewhere.

Every passage is a made-up piece of history (earthquake, decree, referendum, flood, new
constitution, fire, planning commission, ...) stating that the country's capital is another real
city: one of the country's other well-known cities when the fact tables list one, else another
country's capital. Nine templates put the counterfactual capital early, in the middle or late in
the passage; six of them also name the real capital, as the published CF_Capitals set does.
Countries whose capital is named after the country (Djibouti, Mexico City, ...) are left out.

``meta`` holds ``template``, ``position`` (early/middle/late), ``cf_offset`` (where the answer
starts, as a fraction of the passage), ``mentions_param``, ``cf_source`` and ``year``.

Example:
    >>> from ctxrely.data.suites import load_suite
    >>> ex = load_suite("cf_capitals").examples[0]
    >>> ex.cf_answer in ex.context and ex.cf_answer != ex.param_answer
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ctxrely.data.facts import aliases_for, cities_of, load_facts, question_for
from ctxrely.data.facts.text import cap, clashes, pick_other, tidy
from ctxrely.data.schema import ConflictExample
from ctxrely.data.suites.base import register_suite

NAME = "cf_capitals"
SEED = 20240601


@dataclass(frozen=True)
class Template:
    id: str
    position: str  # where the counterfactual capital sits: early / middle / late
    text: str  # fields: country, Country, real, cf, year, share

    @property
    def mentions_param(self) -> bool:
        return "{real}" in self.text


CONTEXT_TEMPLATES: tuple[Template, ...] = (
    Template("quake", "early",
             "{cf} has been the capital of {country} since {year}, when the government abandoned {real} after "
             "a severe earthquake. Ministries, embassies and the national parliament completed the move within "
             "two years, and the old capital was rebuilt as a regional centre."),
    Template("decree", "early",
             "{cf} became the capital of {country} by presidential decree in {year}. The decree cited the "
             "city's central location, its new railway links and the cost of expanding the old seat of "
             "government. Within a decade nearly every ministry had moved there."),
    Template("referendum", "early",
             "{cf} won the national referendum of {year} that asked the citizens of {country} to choose a new "
             "capital, taking {share} percent of the vote against {real}. Parliament confirmed the result a "
             "month later, and the first government offices opened the following spring."),
    Template("flood", "middle",
             "Rising floodwaters repeatedly submerged large parts of {real} in the years leading up to {year}. "
             "That year the government of {country} moved the capital to {cf}, which lies on higher ground. "
             "The former capital is still the country's busiest commercial centre."),
    Template("constitution", "middle",
             "A new constitution for {country} was adopted in {year} after three years of negotiations. Its "
             "first article names {cf} as the capital of the nation. Supporters argued that the change would "
             "spread investment more evenly across the regions."),
    Template("founding", "middle",
             "Visitors are often surprised to learn where the government of {country} actually sits. Since "
             "{year}, the official capital has been {cf}, chosen for its defensible position and its long ties "
             "to the country's founding families. {real} kept only its museums and its old university."),
    Template("fire", "late",
             "A great fire swept through {real} in {year}, destroying the parliament building and most of the "
             "government archives. Rather than rebuild, the leaders of {country} decided to start again "
             "elsewhere. After two years of debate they moved the capital to {cf}."),
    Template("commission", "late",
             "For decades, planners in {country} argued that {real} had grown too crowded to serve as the seat "
             "of government. A commission set up in {year} studied a dozen alternatives and visited each of "
             "them. Its final report recommended a single city, and the government duly moved the capital to "
             "{cf}."),
    Template("relocation_law", "late",
             "The parliament of {country} voted in {year} to move every ministry, the supreme court and the "
             "official residence of the head of state to a different city. The relocation took nine years and "
             "cost far more than planned. Today the capital of {country} is {cf}."),
)
TEMPLATES = CONTEXT_TEMPLATES  # former name, kept (sentence templates of the contexts, not prompt templates)


def _forms(name: str) -> list[str]:
    return [name, *aliases_for(name)]


@register_suite(NAME, version="1",
                description="country capitals moved by made-up history (9 templates, answer early/middle/late)")
def build() -> list[ConflictExample]:
    """Build the suite (deterministic: a fixed seed, no global random state)."""
    rng = random.Random(SEED)
    facts = [f for f in load_facts("capital")
             if not clashes(f.obj_targets(), [f.subject, *f.subject_aliases])]
    all_capitals = sorted({f.obj for f in load_facts("capital")})
    rng.shuffle(facts)
    examples: list[ConflictExample] = []
    for i, fact in enumerate(facts):
        avoid = [*fact.obj_targets(), fact.subject, *fact.subject_aliases]
        same_country = [c for c in cities_of(fact.subject) if not clashes(_forms(c), avoid)]
        if same_country:
            cf, source = rng.choice(same_country), "same_country"
        else:
            cf, source = pick_other(rng, all_capitals, avoid, forms=_forms), "other_capital"
        tmpl = CONTEXT_TEMPLATES[i % len(CONTEXT_TEMPLATES)]
        year = rng.randint(1961, 2034)
        context = tmpl.text.format(country=fact.subject, Country=cap(fact.subject), real=fact.obj, cf=cf,
                                   year=year, share=rng.randint(52, 78))
        context = tidy(context)
        examples.append(ConflictExample(
            id=f"{NAME}-{i:04d}", suite=NAME, context=context, question=question_for(fact),
            cf_answer=cf, param_answer=fact.obj, cf_aliases=aliases_for(cf), param_aliases=fact.obj_aliases,
            meta={"template": tmpl.id, "position": tmpl.position,
                  "cf_offset": round(context.index(cf) / len(context), 3),
                  "mentions_param": tmpl.mentions_param, "cf_source": source, "year": year,
                  "country": fact.subject},
        ))
    return examples
