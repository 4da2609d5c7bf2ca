"""Counterfactual augmentation of QA-style training rows (NQ-Swap style; Goyal et al. 2024).

For a row whose answer appears in its context, the answer entity is replaced, consistently in the
context and the response, by another entity of the same type, so that only reading the context
gives the right answer. The answer is the longest capitalised phrase or number of the response that
appears in the context and not in the question, else the whole response if short (<= 6 words) and
found in the context.
Types: the shipped fact tables (country, city, person, year, ...) where they know the entity, else a
shape (year, number, date, proper name, other). Substitutes come from ``entity_pool`` or, by
default, from the answers of the other rows plus the fact tables.

Example:
    >>> res = augment(rows, ratio=0.3, seed=0)  # doctest: +SKIP
    >>> res.manifest[0]  # doctest: +SKIP
    {'index': 8, 'source_index': 2, 'answer': 'Paris', 'substitute': 'Lima', 'type': 'city', ...}
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ctxrely.data.mentions import STOP_WORDS, left_mentions, replace_mentions, word_pattern
from ctxrely.data.sft import SFTExample, detect_format, get_path, parse_row, set_path
from ctxrely.errors import ConfigError
from ctxrely.registry import MITIGATIONS

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"]
_PHRASE = re.compile(r"[A-Z][\w'’.\-]*(?:\s+(?:(?:of|the|de|da|la|von|van|and)\s+)?[A-Z][\w'’.\-]*)*|\d[\d,.]*\d|\d")
_STOP = STOP_WORDS


@dataclass
class AugmentResult:
    rows: list[dict[str, Any]]
    manifest: list[dict[str, Any]] = field(default_factory=list)
    n_eligible: int = 0
    n_requested: int = 0
    n_left_mentions: int = 0  # rows not augmented: a part of the old name would have stayed in the text


@lru_cache(maxsize=1)
def fact_lexicon() -> dict[str, str]:
    """lower-cased entity -> type, from the shipped fact tables (empty if they are unavailable)."""
    try:
        from ctxrely.data.facts import load_facts, relation_info, relations
    except ImportError:
        return {}
    lex: dict[str, str] = {}
    for rel in relations():
        info = relation_info(rel)
        for f in load_facts(rel):
            lex.setdefault(f.subject.lower(), info.subject_type)
            lex.setdefault(f.obj.lower(), info.obj_type)
    return lex


def entity_type(text: str) -> str:
    """A coarse type: a fact-table type, else year / number / date / proper / other.

    Example:
        >>> entity_type("1969"), entity_type("3.5"), entity_type("Ada Lovelace"), entity_type("blue")
        ('year', 'number', 'proper', 'other')
    """
    t = text.strip()
    known = fact_lexicon().get(t.lower())
    if known:
        return known
    if re.fullmatch(r"1\d{3}|20\d{2}", t):
        return "year"
    if re.fullmatch(r"\d[\d,.]*", t):
        return "number"
    if any(m in t.lower().split() for m in MONTHS) and re.search(r"\d", t):
        return "date"
    words = t.split()
    if words and all(w[0].isupper() or w.lower() in ("of", "the", "de", "la", "von", "van", "and") for w in words):
        return "proper"
    return "other"


def find_answer(ex: SFTExample) -> str | None:
    """The answer entity of a row if it appears in its context (see the module docstring).

    Candidates are the capitalised phrases and numbers of the response that appear in the context
    but not in the question (the longest wins); failing those, the whole response if it is short.
    """
    if not ex.has_context:
        return None
    found = [m.group(0).rstrip(".") for m in _PHRASE.finditer(ex.response)]
    found = [f for f in found if f.lower() not in _STOP and word_pattern(f).search(ex.context)
             and not word_pattern(f).search(ex.prompt_without_context)]
    if found:
        return max(found, key=len)
    resp = ex.response.strip().rstrip(".!?").strip()
    if resp and len(resp.split()) <= 6 and word_pattern(resp).search(ex.context):
        return resp
    return None


def rewrite(ex: SFTExample, *, context: Callable[[str], str] | None = None,
            response: Callable[[str], str] | None = None) -> dict[str, Any]:
    """A deep copy of ``ex.raw`` with the context and/or the response mapped through functions."""
    raw = copy.deepcopy(ex.raw)
    if context is not None and ex.has_context:
        if ex.context_path is not None:
            set_path(raw, ex.context_path, context(get_path(raw, ex.context_path)))
        if ex.context_span is not None:
            s, e = ex.context_span
            user = get_path(raw, ex.user_path)
            set_path(raw, ex.user_path, user[:s] + context(user[s:e]) + user[e:])
    if response is not None:
        set_path(raw, ex.response_path, response(get_path(raw, ex.response_path)))
    return raw


def name_substitution(answer: str, new: str) -> Callable[[str], str]:
    """A function replacing every mention of ``answer`` by ``new``.

    The whole phrase everywhere; for a multi-word proper name also its last word alone (the surname,
    possessives included), unless a capitalised word precedes it (another person of that name).
    The editing itself is :func:`ctxrely.data.mentions.replace_mentions`.

    Example:
        >>> sub = name_substitution("Niels Bohr", "Charles Darwin")
        >>> sub("Niels Bohr was Danish. Bohr's model, unlike Aage Bohr's, was The Bohr model.")
        "Charles Darwin was Danish. Darwin's model, unlike Aage Bohr's, was The Darwin model."
    """
    return replace_mentions(answer, new, surname=entity_type(answer) in ("person", "proper"))


def _pool(entity_pool: Mapping[str, Sequence[str]] | Sequence[str] | None, answers: Sequence[str]
          ) -> dict[str, list[str]]:
    pool: dict[str, list[str]] = {}
    if isinstance(entity_pool, Mapping):
        items = [(t, e) for t, es in entity_pool.items() for e in es]
    else:
        src = list(entity_pool) if entity_pool is not None else [*answers, *fact_lexicon_names()]
        items = [(entity_type(e), e) for e in src]
    for t, e in items:
        if e.strip() and e not in pool.setdefault(t, []):
            pool[t].append(e)
    return pool


def fact_lexicon_names() -> list[str]:
    """Entities of the fact tables in their stored spelling (for the default substitute pool)."""
    try:
        from ctxrely.data.facts import load_facts
    except ImportError:
        return []
    names: list[str] = []
    for f in load_facts():
        names += [f.subject, f.obj]
    return sorted(set(names))


@MITIGATIONS.register("augment", description="counterfactual augmentation: swap the answer entity in context and "
                      "response for another of the same type (NQ-Swap style)")
def augment(rows: Sequence[dict[str, Any]], *, ratio: float = 0.3, seed: int = 0,
            entity_pool: Mapping[str, Sequence[str]] | Sequence[str] | None = None, mode: str = "add",
            fmt: str | None = None, context_field: str | None = None, context_template: str | None = None
            ) -> AugmentResult:
    """Counterfactual copies of ``round(ratio * len(rows))`` eligible rows.

    Args:
        ratio: augmented rows as a share of the dataset (capped by the number of eligible rows).
        entity_pool: ``{type: [entities]}`` or a list (typed by :func:`entity_type`); default: the
            other rows' answers and the fact tables.
        mode: ``add`` appends the copies after the original rows; ``replace`` swaps rows in place.
        fmt / context_field / context_template: as for :func:`ctxrely.data.sft.load_sft`.
    """
    if not ratio >= 0:
        raise ConfigError(f"ratio must be >= 0, got {ratio}")
    if mode not in ("add", "replace"):
        raise ConfigError(f"mode must be 'add' or 'replace', got {mode!r}")
    exs = [parse_row(r, fmt=fmt or detect_format(r), index=i, line=i + 1, context_field=context_field,
                     context_template=context_template) for i, r in enumerate(rows)]
    answers = {i: a for i, ex in enumerate(exs) if (a := find_answer(ex))}
    pool = _pool(entity_pool, list(answers.values()))
    rng = random.Random(seed)
    order = sorted(answers)
    rng.shuffle(order)
    want = int(round(ratio * len(rows)))
    out = [dict(r) for r in rows]
    res = AugmentResult(out, n_eligible=len(answers), n_requested=want)
    for i in order:
        if len(res.manifest) >= want:
            break
        ans, ex = answers[i], exs[i]
        typ = entity_type(ans)
        taken = f"{ex.context}\n{ex.response}".lower()
        old_words = {w.lower() for w in ans.split()}
        cands = [e for e in pool.get(typ, []) if e.lower() != ans.lower() and e.lower() not in taken
                 and not old_words & {w.lower() for w in e.split()}]
        if not cands:
            continue
        new = rng.choice(cands)
        sub = name_substitution(ans, new)
        if left_mentions(ans, sub(ex.context)) or left_mentions(ans, sub(ex.response)):
            res.n_left_mentions += 1  # e.g. "Pierre Curie" beside "Marie Curie": no clean swap
            continue
        row = rewrite(ex, context=sub, response=sub)
        if mode == "add":
            if "id" in row:
                row["id"] = f"{row['id']}-cf"
            out.append(row)
            at = len(out) - 1
        else:
            out[i] = row
            at = i
        res.manifest.append({"index": at, "source_index": i, "source_id": ex.id, "answer": ans,
                             "substitute": new, "type": typ})
    return res


def augment_rows(rows: Sequence[dict[str, Any]], *, ratio: float = 0.3, seed: int = 0,
                 entity_pool: Mapping[str, Sequence[str]] | Sequence[str] | None = None, **kw: Any
                 ) -> list[dict[str, Any]]:
    """The rows of :func:`augment` (original rows plus counterfactual copies)."""
    return augment(rows, ratio=ratio, seed=seed, entity_pool=entity_pool, **kw).rows
