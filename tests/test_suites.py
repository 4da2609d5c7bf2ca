"""Built-in suites and the shipped fact tables: size, determinism, answer hygiene, template variety.

Run: .venv/bin/pytest -q tests/test_suites.py
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from collections import Counter

import pytest

from ctxrely.data.facts import (
    Fact,
    cities_of,
    closed_book_statement,
    fictional_names,
    fictional_people,
    load_facts,
    load_proverbs,
    question_for,
    relation_info,
    relations,
)
from ctxrely.data.facts.text import clashes
from ctxrely.data.schema import content_hash
from ctxrely.data.suites import load_suite
from ctxrely.metrics.matching import contains, normalize_answer
from ctxrely.registry import SUITES

SUITE_NAMES = ["cf_capitals", "cf_world_facts", "cf_bio", "cf_quotes"]
IN_CONTEXT = ["cf_capitals", "cf_world_facts", "cf_bio"]


# ----------------------------------------------------------------------------- every suite


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_suite_size_ids_version(name: str) -> None:
    suite = load_suite(name)
    assert suite.version == "1" and suite.name == name
    assert len(suite.examples) >= 150
    ids = [ex.id for ex in suite.examples]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"{name}-\d{{4}}", i) for i in ids)
    assert all(ex.suite == name for ex in suite.examples)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_suite_is_deterministic(name: str) -> None:
    build = SUITES.get(name)
    a, b = build(), build()
    assert content_hash(a) == content_hash(b)
    assert [ex.meta for ex in a] == [ex.meta for ex in b]
    assert load_suite(name).hash == content_hash(a)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_cf_and_param_never_confusable(name: str) -> None:
    for ex in load_suite(name).examples:
        assert ex.param_answer is not None
        assert normalize_answer(ex.cf_answer) != normalize_answer(ex.param_answer), ex.id
        assert not clashes(ex.cf_targets(), ex.param_targets()), ex.id
        assert ex.question.strip() and ex.context.strip()


@pytest.mark.parametrize("name", IN_CONTEXT)
def test_cf_answer_in_context_and_question_clean(name: str) -> None:
    for ex in load_suite(name).examples:
        assert ex.cf_answer in ex.context, ex.id
        assert not contains(ex.question, ex.cf_targets()), ex.id
        assert not contains(ex.question, ex.param_targets()), ex.id


@pytest.mark.parametrize("name", ["cf_world_facts", "cf_bio"])
def test_param_answer_absent_from_context(name: str) -> None:
    for ex in load_suite(name).examples:
        assert not contains(ex.context, ex.param_targets()), ex.id


def test_limit_keeps_first_examples() -> None:
    full, cut = load_suite("cf_bio"), load_suite("cf_bio", limit=7)
    assert cut.examples == full.examples[:7] and cut.version == full.version


# ----------------------------------------------------------------------------- suite specifics


def test_capitals_templates_and_positions() -> None:
    exs = load_suite("cf_capitals").examples
    assert len({ex.meta["template"] for ex in exs}) >= 6
    by_pos: dict[str, list[float]] = {}
    for ex in exs:
        by_pos.setdefault(ex.meta["position"], []).append(ex.meta["cf_offset"])
        assert ex.context[int(ex.meta["cf_offset"] * len(ex.context)):].lstrip().startswith(ex.cf_answer[:1])
    assert set(by_pos) == {"early", "middle", "late"}
    early, middle, late = (statistics.mean(by_pos[p]) for p in ("early", "middle", "late"))
    assert early < middle < late
    mentions = Counter(ex.meta["mentions_param"] for ex in exs)
    assert mentions[True] > len(exs) / 2 and mentions[False] > 0
    for ex in exs:
        assert (ex.param_answer in ex.context) == ex.meta["mentions_param"], ex.id


def test_capitals_cf_is_a_real_other_city() -> None:
    capitals = {f.obj for f in load_facts("capital")}
    cities = {f.subject for f in load_facts("city_country")}
    for ex in load_suite("cf_capitals").examples:
        assert ex.cf_answer in capitals | cities and ex.cf_answer != ex.param_answer
        if ex.meta["cf_source"] == "same_country":
            assert ex.cf_answer in cities_of(ex.meta["country"])


def test_world_facts_cf_drawn_from_same_relation() -> None:
    exs = load_suite("cf_world_facts").examples
    rels = Counter(ex.meta["relation"] for ex in exs)
    assert {"landmark_country", "inventor", "author", "event_year"} <= set(rels)
    for ex in exs:
        assert ex.cf_answer in {f.obj for f in load_facts(ex.meta["relation"])}, ex.id
    from ctxrely.data.suites.world_facts import TEMPLATES

    for templates in TEMPLATES.values():
        assert all(2 <= t.count(". ") + 1 <= 3 for t in templates)  # 2-3 sentences


def test_bio_credits_another_person_of_the_same_field() -> None:
    exs = load_suite("cf_bio").examples
    assert {ex.meta["position"] for ex in exs} == {"early", "middle", "late"}
    verbs = {"author": "Who wrote ", "painter": "Who painted ", "composer": "Who composed "}
    for ex in exs:
        rel = ex.meta["relation"]
        assert ex.question.startswith(verbs[rel])
        people = {f.obj for f in load_facts(rel)}
        assert ex.cf_answer in people and ex.param_answer in people
        assert ex.meta["birth_place"] in fictional_names("city")


def test_quotes_demand_a_different_word() -> None:
    exs = load_suite("cf_quotes").examples
    assert len({ex.question for ex in exs}) >= 150
    assert len({ex.cf_answer for ex in exs}) >= 20  # drawn from a pool, not one word
    for ex in exs:
        assert f'"{ex.cf_answer}"' in ex.context
        assert not contains(ex.question, [ex.cf_answer]), ex.id
        assert ex.meta["saying"] == f"{ex.question} {ex.param_answer}"


# ----------------------------------------------------------------------------- fact tables


def test_relations_and_sizes() -> None:
    rels = relations()
    for r in ("capital", "landmark_country", "landmark_city", "inventor", "author", "painter", "event_year"):
        assert r in rels
    assert len(load_facts("capital")) >= 150
    assert len(load_facts()) == sum(len(load_facts(r)) for r in rels)


@pytest.mark.parametrize("relation", relations())
def test_relation_rows_are_clean(relation: str) -> None:
    facts = load_facts(relation)
    subjects = [f.subject for f in facts]
    assert len(set(subjects)) == len(subjects), Counter(subjects).most_common(3)
    info = relation_info(relation)
    for f in facts:
        assert f.subject == f.subject.strip() and f.obj == f.obj.strip() and f.obj
        assert (f.subject_type, f.obj_type) == (info.subject_type, info.obj_type)
        assert f.obj not in f.obj_aliases
        assert question_for(f)[:1].isupper() and closed_book_statement(f).endswith(".")
        assert f.obj in closed_book_statement(f)


def test_question_and_statement_examples() -> None:
    france = next(f for f in load_facts("capital") if f.subject == "France")
    assert france == Fact("France", "capital", "Paris", (), "country", "city")
    assert question_for(france) == "What is the capital city of France?"
    assert closed_book_statement(france) == "The capital of France is Paris."
    mona = next(f for f in load_facts("painter") if f.subject == "the Mona Lisa")
    assert closed_book_statement(mona) == "The Mona Lisa was painted by Leonardo da Vinci."
    assert "da Vinci" in mona.obj_aliases
    usa = next(f for f in load_facts("capital") if f.subject == "the United States")
    assert "USA" in usa.subject_aliases and "Washington" in usa.obj_aliases


def test_unknown_relation_suggests() -> None:
    with pytest.raises(KeyError, match="capital"):
        load_facts("capitol")


def test_city_country_never_lists_the_capital() -> None:
    capital_of = {f.subject: f.obj for f in load_facts("capital")}
    for f in load_facts("city_country"):
        assert f.obj in capital_of, f
        assert capital_of[f.obj] != f.subject, f


def test_fictional_names_are_invented() -> None:
    real = {x for f in load_facts() for x in (f.subject, f.obj, *f.obj_aliases, *f.subject_aliases)}
    for kind in ("country", "city", "first_name", "surname"):
        names = fictional_names(kind)
        assert len(names) >= 30 and len(set(names)) == len(names)
        assert not set(names) & real, set(names) & real
    people = fictional_people(50, seed=3)
    assert people == fictional_people(50, seed=3) and len(set(people)) == 50
    assert people != fictional_people(50, seed=4)
    assert not set(people) & real


def test_proverbs_table() -> None:
    proverbs = load_proverbs()
    assert len(proverbs) >= 150
    assert len({p.stem for p in proverbs}) == len(proverbs)
    for p in proverbs:
        assert p.ending and " " not in p.ending and not p.stem.endswith((" ", "."))


def test_import_stays_light() -> None:
    code = ("import sys, ctxrely.data.suites, ctxrely.data.loaders, ctxrely.data.facts; "
            "sys.exit(int(any(m in sys.modules for m in ('torch', 'transformers', 'datasets'))))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
