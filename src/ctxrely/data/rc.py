"""Reading-comprehension data in its official JSON shapes, as gold-answer-only suites.

Every question becomes a :class:`~ctxrely.data.schema.ConflictExample` whose ``cf_answer`` is the
first gold answer and ``cf_aliases`` the others (deduplicated, order kept); ``param_answer`` is None,
so the parametric metrics are absent, never 0. Formats (``RC_FORMATS``), detected from the shape:

- ``squad``: SQuAD v1.1 / v2.0 ``{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}``; every
  gold answer kept; v2 unanswerable questions are skipped (counted in the suite's ``source`` note).
- ``quac``: QuAC (SQuAD-like, with ``orig_answer``/``followup``); only the first question of each
  dialogue (as Wang et al. 2024); ``CANNOTANSWER`` is dropped from context and answers.
- ``coqa``: CoQA ``{"data": [{"story", "questions", "answers", "additional_answers"}]}``; the first
  question of each story (later ones depend on the conversation).
- ``drop``: DROP ``{passage_id: {"passage", "qa_pairs": [...]}}``: a number, a date (month day year)
  or spans (several spans joined with ", ") per answer, ``validated_answers`` as aliases.
- ``squad_rows``: one record per question in the Hugging Face SQuAD shape (JSONL or a hub id),
  through :func:`squad_row`.

Example:
    >>> suite = load_rc("../shared/data/squad/squad_dev_v1.1_part1.json")  # doctest: +SKIP
    >>> suite.examples[0].cf_targets()  # doctest: +SKIP
    ['Denver Broncos']
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ctxrely.data.schema import ConflictExample, DataError, Suite

log = logging.getLogger(__name__)
RC_FORMATS = ("squad", "quac", "coqa", "drop")
CANNOT = "CANNOTANSWER"


def detect_rc(obj: Any) -> str | None:
    """The RC format of a parsed JSON document, or None."""
    if isinstance(obj, dict) and isinstance(obj.get("data"), list) and obj["data"]:
        first = obj["data"][0]
        if isinstance(first, dict) and "story" in first and "questions" in first:
            return "coqa"
        if isinstance(first, dict) and isinstance(first.get("paragraphs"), list) and first["paragraphs"]:
            qas = (first["paragraphs"][0] or {}).get("qas") or [{}]
            return "quac" if isinstance(qas[0], dict) and ("orig_answer" in qas[0] or "followup" in qas[0]) else "squad"
        return None
    if isinstance(obj, dict) and obj:
        v = next(iter(obj.values()))
        if isinstance(v, dict) and "passage" in v and "qa_pairs" in v:
            return "drop"
    return None


def _golds(items: Any, where: str, path: str) -> list[str]:
    if not isinstance(items, list):
        raise DataError("expected a list of answers", path=path, field=where)
    out: list[str] = []
    for a in items:
        text = a.get("text") if isinstance(a, dict) else a
        if not isinstance(text, str):
            raise DataError("an answer has no text", path=path, field=where)
        text = text.strip()
        if text and text != CANNOT and text not in out:
            out.append(text)
    return out


def _ex(suite: str, ex_id: str, context: str, question: Any, golds: list[str], path: str, where: str,
        meta: dict[str, Any]) -> ConflictExample:
    if not isinstance(question, str) or not question.strip():
        raise DataError("missing or empty question", path=path, field=where)
    return ConflictExample(id=ex_id, suite=suite, context=context, question=question.strip(), cf_answer=golds[0],
                           cf_aliases=tuple(golds[1:]), param_answer=None, meta=meta)


def _squad(obj: dict[str, Any], name: str, path: str, first_only: bool) -> tuple[list[ConflictExample], int]:
    out, skipped = [], 0
    for a, art in enumerate(obj["data"]):
        for p, para in enumerate(art.get("paragraphs") or []):
            where = f"data[{a}].paragraphs[{p}]"
            ctx = para.get("context")
            if not isinstance(ctx, str):
                raise DataError("missing context", path=path, field=f"{where}.context")
            ctx = ctx.replace(CANNOT, "").rstrip() if first_only else ctx
            for q, qa in enumerate((para.get("qas") or [])[:1] if first_only else para.get("qas") or []):
                w = f"{where}.qas[{q}]"
                golds = _golds(qa.get("answers", []), f"{w}.answers", path)
                if first_only and isinstance(qa.get("orig_answer"), dict):
                    golds = _golds([qa["orig_answer"]], f"{w}.orig_answer", path) + golds
                    golds = list(dict.fromkeys(golds))
                if not golds:  # SQuAD v2 unanswerable, QuAC CANNOTANSWER
                    skipped += 1
                    continue
                out.append(_ex(name, str(qa.get("id", f"{a}-{p}-{q}")), ctx, qa.get("question"), golds, path,
                               f"{w}.question", {"title": art.get("title"), "field": w}))
    return out, skipped


def _coqa(obj: dict[str, Any], name: str, path: str) -> tuple[list[ConflictExample], int]:
    out, skipped = [], 0
    for s, story in enumerate(obj["data"]):
        w = f"data[{s}]"
        qs, ans = story.get("questions") or [], story.get("answers") or []
        if not isinstance(story.get("story"), str) or not qs or not ans:
            raise DataError("needs story, questions and answers", path=path, field=w)
        extra = [alt[0] for alt in (story.get("additional_answers") or {}).values() if alt]
        golds = _golds([a.get("input_text") for a in [ans[0], *extra] if isinstance(a, dict)], f"{w}.answers", path)
        golds = [g for g in golds if g.lower() != "unknown"]
        if not golds:
            skipped += 1
            continue
        out.append(_ex(name, str(story.get("id", s)), story["story"], qs[0].get("input_text"), golds, path,
                       f"{w}.questions[0].input_text", {"source": story.get("source"), "field": w}))
    return out, skipped


def _drop_answer(ans: Any) -> str:
    if not isinstance(ans, dict):
        return ""
    if str(ans.get("number", "")).strip():
        return str(ans["number"]).strip()
    date = ans.get("date") or {}
    parts = [str(date.get(k, "")).strip() for k in ("month", "day", "year")]
    if any(parts):
        return " ".join(p for p in parts if p)
    return ", ".join(s.strip() for s in ans.get("spans") or [] if isinstance(s, str) and s.strip())


def _drop(obj: dict[str, Any], name: str, path: str) -> tuple[list[ConflictExample], int]:
    out, skipped = [], 0
    for pid, item in obj.items():
        if not isinstance(item, dict) or not isinstance(item.get("passage"), str):
            raise DataError("needs passage and qa_pairs", path=path, field=str(pid))
        for q, qa in enumerate(item.get("qa_pairs") or []):
            w = f"{pid}.qa_pairs[{q}]"
            golds = list(dict.fromkeys(a for a in [_drop_answer(qa.get("answer"))]
                                       + [_drop_answer(v) for v in qa.get("validated_answers") or []] if a))
            if not golds:
                skipped += 1
                continue
            out.append(_ex(name, str(qa.get("query_id", f"{pid}-{q}")), item["passage"], qa.get("question"), golds,
                           path, f"{w}.question", {"passage_id": pid, "field": w}))
    return out, skipped


def squad_row(rec: dict[str, Any], w: Any, mapping: dict[str, str]) -> dict[str, Any]:
    """One row in the Hugging Face SQuAD shape (``context``, ``question``, ``answers: {"text": [...]}``),
    as the record loaders read it from JSONL or ``datasets`` (``squad``, ``squad_v2`` ids); ``w`` names
    the file and line in errors."""
    ans = rec.get("answers")
    texts = ans.get("text") if isinstance(ans, dict) else ans
    golds = _golds(texts if isinstance(texts, list) else None, "answers", w.path) if texts is not None else []
    for key in ("context", "question"):
        if not isinstance(rec.get(key), str) or not rec[key].strip():
            raise w.error("missing or empty", key)
    if not golds:
        raise w.error("no gold answer (unanswerable SQuAD v2 rows: filter them out first)", "answers")
    row = {"context": rec["context"], "question": rec["question"].strip(), "cf_answer": golds[0],
           "cf_aliases": tuple(golds[1:]), "param_answer": None}
    if isinstance(rec.get("id"), (str, int)) and not isinstance(rec.get("id"), bool):
        row["id"] = str(rec["id"])
    return row


def rc_suite(obj: Any, fmt: str, name: str, path: str) -> Suite:
    """A parsed official JSON document of format ``fmt`` as a gold-answer-only suite."""
    if fmt == "squad":
        exs, skipped = _squad(obj, name, path, first_only=False)
    elif fmt == "quac":
        exs, skipped = _squad(obj, name, path, first_only=True)
    elif fmt == "coqa":
        exs, skipped = _coqa(obj, name, path)
    elif fmt == "drop":
        exs, skipped = _drop(obj, name, path)
    else:
        raise DataError(f"unknown reading-comprehension format {fmt!r} (known: {', '.join(RC_FORMATS)})", path=path)
    if skipped:
        log.info("%s: skipped %d questions without a gold answer (unanswerable)", path, skipped)
    if not exs:
        raise DataError(f"no answerable questions in this {fmt} file", path=path)
    seen: set[str] = set()
    for e in exs:
        if e.id in seen:
            raise DataError(f"duplicate question id {e.id!r}", path=path, field=str(e.meta.get("field")))
        seen.add(e.id)
        e.meta["format"] = fmt
    return Suite(name=name, version="file", examples=exs, source=path)


def load_rc(path: str | Path, fmt: str | None = None, name: str | None = None) -> Suite | None:
    """Load an official RC JSON file; None when the file is not one (e.g. JSON Lines, a list)."""
    p = Path(path).expanduser()
    from ctxrely.data.records import read_text

    text = read_text(p)  # one-line error naming the file and line for non-UTF-8 bytes
    if not text.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None  # JSON Lines or broken JSON: the generic reader reports it with a line number
    kind = fmt or detect_rc(obj)
    return None if kind is None else rc_suite(obj, kind, name or p.stem, str(p))
