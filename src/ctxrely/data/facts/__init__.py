"""Shipped fact tables: real-world relations, entity aliases, fictional names and sayings.

The tables are JSON files next to this module (``geography.json``, ``culture.json``,
``science.json``, ``history.json``, ``aliases.json``, ``fictional.json``, ``proverbs.json``).
Each relation file declares relations with their subject/object types and a question and a
statement template; rows are ``[subject, object]`` (``facts``) or ``{object: [subjects]}``
(``facts_by_obj``). Names are stored as they read mid-sentence, with a leading "the" where
English needs one ("the Eiffel Tower", "the United States"); sentence builders capitalise.

Example:
    >>> from ctxrely.data.facts import closed_book_statement, load_facts, question_for
    >>> fact = next(f for f in load_facts("capital") if f.subject == "France")
    >>> question_for(fact)
    'What is the capital city of France?'
    >>> closed_book_statement(fact)
    'The capital of France is Paris.'
    >>> from ctxrely.data.facts import relations
    >>> "capital" in relations()
    True
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ctxrely.data.facts.fictional import fictional_names, fictional_people
from ctxrely.data.facts.sayings import Proverb, load_proverbs
from ctxrely.data.facts.text import cap
from ctxrely.data.schema import DataError

__all__ = [
    "Fact", "Relation", "Proverb", "load_facts", "relations", "relation_info", "question_for",
    "closed_book_statement", "aliases_for", "cities_of", "fictional_names", "fictional_people",
    "load_proverbs", "read_table",
]

RELATION_FILES = ("geography.json", "culture.json", "science.json", "history.json")


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple.

    Attributes:
        subject: e.g. "France", "the Eiffel Tower", "Hamlet".
        relation: e.g. "capital", "landmark_country", "author".
        obj: the object, e.g. "Paris".
        obj_aliases: further accepted surface forms of ``obj``.
        subject_type / obj_type: coarse entity types ("country", "city", "person", "work", ...).
        subject_aliases: further surface forms of ``subject``.
    """

    subject: str
    relation: str
    obj: str
    obj_aliases: tuple[str, ...] = ()
    subject_type: str = ""
    obj_type: str = ""
    subject_aliases: tuple[str, ...] = ()

    def obj_targets(self) -> list[str]:
        """``[obj, *obj_aliases]``: every accepted form of the answer."""
        return [self.obj, *self.obj_aliases]


@dataclass(frozen=True)
class Relation:
    """A relation's types, templates and description, as declared in its table."""

    name: str
    subject_type: str
    obj_type: str
    question: str
    statement: str
    description: str = ""
    source: str = ""


def read_table(filename: str) -> Any:
    """Parse one shipped JSON table (``filename`` relative to this package)."""
    text = resources.files("ctxrely.data.facts").joinpath(filename).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:  # a broken shipped table is a bug; say where
        raise DataError(f"bad JSON: {e.msg}", path=filename, line=e.lineno) from e


@cache
def _aliases() -> dict[str, tuple[str, ...]]:
    table = read_table("aliases.json")
    return {k: tuple(v) for k, v in table.items() if not k.startswith("_")}


def aliases_for(name: str) -> tuple[str, ...]:
    """Further accepted surface forms of an entity name (empty when none are known)."""
    return _aliases().get(name, ())


def _rows(spec: dict[str, Any], filename: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for row in spec.get("facts", []):
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(x, str) and x for x in row)):
            raise DataError(f"fact row must be [subject, object], got {row!r}", path=filename,
                            field=spec["relation"])
        rows.append((row[0], row[1]))
    for obj, subjects in spec.get("facts_by_obj", {}).items():
        rows.extend((s, obj) for s in subjects)
    return rows


@cache
def _load() -> tuple[dict[str, Relation], dict[str, tuple[Fact, ...]]]:
    rels: dict[str, Relation] = {}
    facts: dict[str, tuple[Fact, ...]] = {}
    for filename in RELATION_FILES:
        for spec in read_table(filename)["relations"]:
            name = spec["relation"]
            if name in rels:
                raise DataError(f"relation {name!r} declared twice", path=filename, field="relation")
            rel = Relation(name, spec["subject_type"], spec["obj_type"], spec["question"], spec["statement"],
                           spec.get("description", ""), filename)
            rels[name] = rel
            facts[name] = tuple(
                Fact(subject=s, relation=name, obj=o, obj_aliases=aliases_for(o), subject_type=rel.subject_type,
                     obj_type=rel.obj_type, subject_aliases=aliases_for(s))
                for s, o in _rows(spec, filename)
            )
    return rels, facts


def relations() -> list[str]:
    """Names of all shipped relations, sorted."""
    return sorted(_load()[0])


def relation_info(relation: str) -> Relation:
    """The declaration of ``relation``; unknown names raise ``KeyError`` with near names."""
    rels = _load()[0]
    if relation not in rels:
        near = difflib.get_close_matches(relation, list(rels), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        raise KeyError(f"unknown relation {relation!r}{hint} (known: {', '.join(sorted(rels))})")
    return rels[relation]


def load_facts(relation: str | None = None) -> list[Fact]:
    """All facts of ``relation`` (or of every relation, in a stable order), as a fresh list."""
    facts = _load()[1]
    if relation is None:
        return [f for name in sorted(facts) for f in facts[name]]
    relation_info(relation)
    return list(facts[relation])


def question_for(fact: Fact) -> str:
    """The question that asks for ``fact.obj``, e.g. "What is the capital city of France?"."""
    return cap(relation_info(fact.relation).question.format(subject=fact.subject))


def closed_book_statement(fact: Fact) -> str:
    """A sentence stating the fact, e.g. "The capital of France is Paris."."""
    return cap(relation_info(fact.relation).statement.format(subject=fact.subject, obj=fact.obj))


def cities_of(country: str) -> list[str]:
    """Well-known cities of ``country`` other than its capital (from ``city_country``)."""
    return [f.subject for f in load_facts("city_country") if f.obj == country]
