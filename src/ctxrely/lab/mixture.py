"""The lab's instruction mixture: context-critical (C), non-context-critical (C+S) and subject-only
(S) points, built from the shipped fact tables (Goyal et al. 2024, sec. 4).

* **C**: a fact about an invented entity, stated in the context ("The capital of Aldovia is
  Marvenne."): the answer can only come from the context.
* **C+S**: a real fact the model already answers closed-book, with a context that states it: the
  answer is in the context *and* in the model's memory of the subject.
* **S**: a real, known fact asked closed-book (no context).

Each context holds the fact's sentence and one distractor sentence about another entity, in random
order. Rows are ``prompt``/``completion`` pairs in the lab's prompt format: conversational
(``[{"role": "user", ...}]``, so the trainer applies the model's chat template exactly as the
evaluation does) for chat models, plain text (``...Answer:`` / `` Paris``) for base models; plus
``cls``, ``key``, ``context``, ``question`` and ``answer``, so scorers and mitigations can re-render
or re-score them (the context appears verbatim in the user text).

Example:
    >>> from ctxrely.data.facts import load_facts
    >>> from ctxrely.prompts import get_format
    >>> known = load_facts("capital")[:40]
    >>> rows = build_mixture(known, get_format("raw"), None, n_rows=10, seed=0)
    >>> sorted({r["cls"] for r in rows})
    ['C', 'C+S', 'S']
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ctxrely.engine.prompting import continuation
from ctxrely.lab.closed_book import fact_key
from ctxrely.prompts import PromptFormat

CLASSES = ("C", "C+S", "S")
MIXTURE_VERSION = "1"

# Invented subjects/objects per entity type; {country}/{city}/{person}/{surname} are fictional names.
_SUBJECTS: dict[str, tuple[str, ...]] = {
    "work": ("The Chronicles of {city}", "A Winter in {city}", "The House of {surname}", "The Road to {city}"),
    "painting": ("Portrait of {person}", "View of {city}", "The Harbour at {city}", "Evening in {country}"),
    "musical work": ("the {city} Suite", "the {country} Symphony", "the {surname} Variations"),
    "invention": ("the {surname} engine", "the {surname} valve", "the {surname} loom"),
    "landmark": ("the {city} Tower", "the Bridge of {city}", "the {surname} Palace"),
    "event": ("the Siege of {city}", "the Treaty of {city}", "the founding of {country}"),
    "country": ("{country}",),
    "city": ("{city}",),
    "person": ("{person}",),
}


def _fill(template: str, rng: random.Random, names: dict[str, list[str]]) -> str:
    return template.format(country=rng.choice(names["country"]), city=rng.choice(names["city"]),
                           person=rng.choice(names["person"]), surname=rng.choice(names["surname"]))


def _fictional_obj(obj_type: str, rng: random.Random, names: dict[str, list[str]]) -> str:
    if obj_type in ("country", "city", "person"):
        return rng.choice(names[obj_type])
    if obj_type == "year":
        return str(rng.randrange(1100, 1990))
    raise ValueError(f"no fictional objects of type {obj_type!r}")


def fictional_facts(relation_names: Sequence[str], n: int, *, seed: int = 0,
                    exclude_subjects: Sequence[str] = (), strict: bool = True) -> list[Any]:
    """``n`` facts about invented entities, spread over ``relation_names`` (distinct subjects).

    Relations whose subjects cannot be invented are skipped. With ``strict=False`` fewer than ``n``
    facts come back when the invented names run out (``build_mixture`` then reuses them).

    Example:
        >>> [f.relation for f in fictional_facts(["capital"], 2, seed=0)]
        ['capital', 'capital']
    """
    from ctxrely.data.facts import Fact, fictional_names, fictional_people, relation_info

    rng = random.Random(seed)
    names = {"country": fictional_names("country"), "city": fictional_names("city"),
             "surname": fictional_names("surname"), "person": fictional_people(400, seed=seed)}
    rels = [relation_info(r) for r in relation_names if relation_info(r).subject_type in _SUBJECTS]
    if not rels:
        raise ValueError(f"none of the relations {list(relation_names)} has a fictional subject type")
    seen = set(exclude_subjects)
    out: list[Any] = []
    for attempt in range(n * 50):
        if len(out) == n:
            break
        rel = rels[attempt % len(rels)]
        subject = _fill(rng.choice(_SUBJECTS[rel.subject_type]), rng, names)
        if subject in seen:
            continue
        obj = _fictional_obj(rel.obj_type, rng, names)
        if obj == subject:
            continue
        seen.add(subject)
        out.append(Fact(subject=subject, relation=rel.name, obj=obj, subject_type=rel.subject_type,
                        obj_type=rel.obj_type))
    if len(out) < n and strict:
        raise ValueError(f"could only invent {len(out)} distinct fictional subjects, asked for {n}")
    return out


def split_by_subject(facts: Sequence[Any], n_heldout: int, *, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """``(train, heldout)``: about ``n_heldout`` facts held out, never splitting one subject's facts.

    Example:
        >>> from ctxrely.data.facts import load_facts
        >>> train, held = split_by_subject(load_facts("capital")[:20], 5)
        >>> len(held), len(train)
        (5, 15)
    """
    groups: dict[str, list[Any]] = defaultdict(list)
    for f in facts:
        groups[f.subject].append(f)
    subjects = sorted(groups)
    random.Random(seed).shuffle(subjects)
    train: list[Any] = []
    held: list[Any] = []
    for s in subjects:
        (held if len(held) < n_heldout else train).extend(groups[s])
    return train, held


def training_row(fact: Any, cls: str, fmt: PromptFormat, tokenizer: Any, distractor: Any | None,
                 rng: random.Random) -> dict[str, Any]:
    """One prompt/completion row of class ``cls`` for ``fact``; C and C+S carry a context."""
    from ctxrely.data.facts import closed_book_statement, question_for

    if cls not in CLASSES:
        raise ValueError(f"unknown point class {cls!r}; choose from {', '.join(CLASSES)}")
    context = ""
    if cls != "S":
        sents = [closed_book_statement(fact)] + ([closed_book_statement(distractor)] if distractor else [])
        rng.shuffle(sents)
        context = " ".join(sents)
    question = question_for(fact)
    if fmt.chat:  # conversational: the trainer applies the chat template, as the eval's renderer does
        prompt: Any = [{"role": "user", "content": fmt.user_text(context, question)}]
        completion: Any = [{"role": "assistant", "content": fact.obj}]
    else:
        prompt = fmt.render(context, question, tokenizer)
        completion = continuation(prompt, fact.obj)
    return {"prompt": prompt, "completion": completion, "cls": cls, "key": fact_key(fact), "context": context,
            "question": question, "answer": fact.obj, "aliases": list(fact.obj_aliases)}


def _cycle(items: Sequence[Any], n: int, rng: random.Random) -> list[Any]:
    """``n`` items drawn by cycling through reshuffled copies of ``items`` (each used evenly)."""
    out: list[Any] = []
    while len(out) < n and items:
        batch = list(items)
        rng.shuffle(batch)
        out.extend(batch[: n - len(out)])
    return out


def build_mixture(known: Sequence[Any], fmt: PromptFormat, tokenizer: Any, *, n_rows: int,
                  fractions: tuple[float, float, float] = (0.4, 0.4, 0.2), seed: int = 0,
                  fictional: Sequence[Any] | None = None, distractors: Sequence[Any] | None = None
                  ) -> list[dict[str, Any]]:
    """A shuffled mixture of ``n_rows`` C / C+S / S rows in the proportions ``fractions``.

    Args:
        known: real facts the model answers closed-book (C+S and S points; reused evenly when
            there are fewer than points).
        fmt: prompt format (see :func:`ctxrely.lab.closed_book.lab_format`); ``tokenizer`` renders chat formats.
        fractions: shares of C, C+S and S points; they must sum to 1.
        fictional: facts for C points; default ``fictional_facts`` over the relations of ``known``.
        distractors: facts whose sentences pad contexts; default ``known``.
    """
    if abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions {fractions} must be >= 0 and sum to 1")
    rng = random.Random(seed)
    counts = [round(n_rows * f) for f in fractions]
    counts[0] = n_rows - counts[1] - counts[2]
    if (counts[1] or counts[2]) and not known:
        raise ValueError("no known facts: the model answered none closed-book, so no C+S/S points")
    if fictional is None:
        rels = sorted({f.relation for f in known}) or ["capital"]
        fictional = fictional_facts(rels, counts[0], seed=seed)
    pool = list(distractors if distractors is not None else known) or list(fictional)
    rows: list[dict[str, Any]] = []
    for cls, facts in zip(CLASSES, (_cycle(fictional, counts[0], rng), _cycle(known, counts[1], rng),
                                    _cycle(known, counts[2], rng)), strict=True):
        for f in facts:
            others = [d for d in (rng.choice(pool) for _ in range(4)) if d.subject != f.subject]
            rows.append(training_row(f, cls, fmt, tokenizer, others[0] if others else None, rng))
    rng.shuffle(rows)
    return rows


def class_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many rows of each class.

    Example:
        >>> class_counts([{"cls": "C"}, {"cls": "S"}, {"cls": "C"}])
        {'C': 2, 'C+S': 0, 'S': 1}
    """
    return {c: sum(1 for r in rows if r.get("cls") == c) for c in CLASSES}


def in_distribution_rows(fictional: Sequence[Any], heldout: Sequence[Any], fmt: PromptFormat, tokenizer: Any,
                         *, n: int, seed: int = 0, distractors: Sequence[Any] | None = None
                         ) -> list[dict[str, Any]]:
    """Held-out rows of the training distribution, for ID accuracy: half C, half C+S.

    ``fictional`` must hold entities never trained on; ``heldout`` are the held-out known facts,
    here with a context that states them truthfully.
    """
    rng = random.Random(seed + 7919)
    n_c = min(len(fictional), n - n // 2)
    n_cs = min(len(heldout), n - n_c)
    pool = list(distractors if distractors is not None else heldout) or list(fictional)
    rows = []
    for cls, facts in (("C", list(fictional)[:n_c]), ("C+S", rng.sample(list(heldout), n_cs))):
        for f in facts:
            d = rng.choice(pool)
            rows.append(training_row(f, cls, fmt, tokenizer, d if d.subject != f.subject else None, rng))
    return rows
