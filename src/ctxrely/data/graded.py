"""Graded knowledge conflicts: a passage's answer perturbed by a recorded ``degree`` (ClashEval, Wu et al. 2024).

From a question, a passage that states the answer, and the answer, :func:`grade_examples` makes one
control (the passage unchanged, ``degree`` 0) and one variant per step of a fixed ladder:

- ``year``: moved by 1, 5, 20 or 100 years (the direction drawn per item; never below year 1);
- ``number``: scaled by 1.1x, 1.5x, 2x, 5x or 10x, up or down (drawn per item; always up below 20;
  decimals kept; a step that rounds onto the previous one moves one unit further; ``meta["ratio"]`` records the factor achieved);
- ``name``: swapped for another name of the same type (``same_type``) or an implausible one
  (``implausible``, e.g. a city where a person is asked for).

Every mention of the answer in the passage is edited (whole words; a person's surname alone too,
as :mod:`ctxrely.mitigate.augment` does), so the passage stays consistent. The variant's
``cf_answer`` is the new value and ``param_answer`` the original one; ``meta`` holds ``perturb``
(the kind), ``degree`` (years moved, scale factor, or the name level), ``degree_rank`` (0 for the
control, then 1, 2, ... up the ladder), ``degree_label`` and ``source_id``.

An answer that cannot be perturbed (not a number, a year or, where names are graded, a name) or a
passage that does not contain its answer is counted in the :class:`GradeReport`, never raised.

Example:
    >>> ex = ConflictExample("q1", "toy", "The wall fell in 1989. By 1990 it was gone; 1989 is famous.",
    ...                      "When did the wall fall?", "1989")
    >>> graded, report = grade_examples([ex], suite="graded_toy")
    >>> [(g.meta["degree"], g.cf_answer) for g in graded][:3]
    [(0, '1989'), (1, '1988'), (5, '1984')]
    >>> graded[2].context
    'The wall fell in 1984. By 1990 it was gone; 1984 is famous.'
    >>> report.n_graded, report.skipped
    (1, {})
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ctxrely.data.mentions import number_pattern, replace_mentions, word_pattern
from ctxrely.data.schema import ConflictExample, Suite

YEAR_STEPS: tuple[int, ...] = (1, 5, 20, 100)
NUMBER_FACTORS: tuple[float, ...] = (1.1, 1.5, 2.0, 5.0, 10.0)
NAME_LEVELS: tuple[str, ...] = ("same_type", "implausible")
KINDS = ("year", "number", "name")
SKIP_REASONS = ("not_perturbable", "answer_not_in_passage")
_NUM = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w]|[.,]\d)|(?<![\w.,])\d+(?:\.\d+)?(?![\w]|[.,]\d)")
_NAME = re.compile(r"[A-Z][\w'’.\-]*(?:\s+(?:(?:of|de|da|la|von|van|der|del)\s+)?[A-Z][\w'’.\-]*)*")


@dataclass(frozen=True)
class Step:
    """One perturbation: the new answer and where it sits on the ladder."""

    value: str
    degree: float | int | str
    rank: int
    label: str
    ratio: float | None = None


@dataclass
class GradeReport:
    """What grading did: items graded, items skipped by reason (with up to 10 example ids each)."""

    n_source: int = 0
    n_graded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_ids: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, ex_id: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        ids = self.skipped_ids.setdefault(reason, [])
        if len(ids) < 10:
            ids.append(ex_id)

    def to_dict(self) -> dict[str, Any]:
        return {"n_source": self.n_source, "n_graded": self.n_graded, "skipped": dict(self.skipped),
                "skipped_ids": {k: list(v) for k, v in self.skipped_ids.items()}}


def numeric_part(answer: str) -> tuple[str, str] | None:
    """``(number, kind)`` of the one number (or the one year) in ``answer``; None if there is none or several.

    Example:
        >>> numeric_part("1,500 feet"), numeric_part("March 5, 1990"), numeric_part("Paris")
        (('1,500', 'number'), ('1990', 'year'), None)
    """
    nums = _NUM.findall(answer)
    years = [n for n in nums if _is_year(n)]
    if len(nums) == 1:
        return nums[0], "year" if years else "number"
    if len(years) == 1:
        return years[0], "year"
    return None


def _is_year(s: str) -> bool:
    return bool(re.fullmatch(r"\d{4}", s)) and 1000 <= int(s) <= 2100


def answer_kind(answer: str, kinds: Sequence[str] = KINDS) -> str | None:
    """``year``, ``number`` or ``name`` (the first of ``kinds`` that fits), or None."""
    part = numeric_part(answer)
    if part is not None:
        return part[1] if part[1] in kinds else ("number" if "number" in kinds else None)
    if "name" in kinds and _NAME.fullmatch(answer.strip()):
        return "name"
    return None


def year_steps(year: int, rng: random.Random) -> list[Step]:
    """The year ladder for ``year`` (one direction per item, drawn from ``rng``)."""
    sign = rng.choice((-1, 1))
    out = []
    for rank, d in enumerate(YEAR_STEPS, start=1):
        s = sign if year - d >= 1 else 1
        out.append(Step(str(year + s * d), d, rank, f"{d}y"))
    return out


def _format_number(x: float, like: str) -> str:
    decimals = len(like.split(".")[1]) if "." in like else 0
    text = f"{x:,.{decimals}f}" if "," in like else f"{x:.{decimals}f}"
    return text


def number_steps(text: str, rng: random.Random) -> list[Step]:
    """The scale ladder for a number written as ``text`` (commas and decimals kept)."""
    x = float(text.replace(",", ""))
    up = rng.choice((True, False)) or x < 20  # small counts scaled down collapse onto each other
    out = []
    decimals = len(text.split(".")[1]) if "." in text else 0
    unit = 10.0 ** -decimals
    up = up or x / NUMBER_FACTORS[-1] < unit
    prev = x
    for rank, f in enumerate(NUMBER_FACTORS, start=1):
        new = math.floor((x * f if up else x / f) / unit + 0.5) * unit
        if (up and new < prev + unit / 2) or (not up and new > prev - unit / 2):  # rounding collapsed a step
            new = prev + unit if up else prev - unit
        prev = new
        value = _format_number(new, text)
        ratio = new / x if x else None
        out.append(Step(value, f, rank, f"x{f:g}", None if ratio is None else round(ratio, 4)))
    return out


def name_steps(answer: str, rng: random.Random, same_type: Sequence[str], implausible: Sequence[str]) -> list[Step]:
    """A same-type and an implausible substitute for a name (none clashing with ``answer``)."""
    from ctxrely.data.facts.text import clashes

    out = []
    for rank, (label, pool) in enumerate(zip(NAME_LEVELS, (same_type, implausible), strict=True), start=1):
        ok = [p for p in pool if not clashes([p], [answer])]
        if not ok:
            return []
        out.append(Step(rng.choice(ok), label, rank, label))
    return out


def _steps(answer: str, kind: str, rng: random.Random, pools: dict[str, Sequence[str]] | None
           ) -> tuple[str, list[Step]]:
    """``(the text edited in the passage, ladder)``: the number inside ``answer`` for years and numbers."""
    if kind in ("year", "number"):
        part = numeric_part(answer)
        assert part is not None
        num = part[0]
        steps = year_steps(int(num), rng) if kind == "year" else number_steps(num, rng)
        return answer, [Step(answer.replace(num, s.value, 1), s.degree, s.rank, s.label, s.ratio) for s in steps]
    pools = pools or {}
    return answer, name_steps(answer, rng, pools.get("same_type", ()), pools.get("implausible", ()))


def grade_one(ex: ConflictExample, suite: str, *, kinds: Sequence[str] = KINDS, seed: int = 0,
              pools: dict[str, Sequence[str]] | None = None, control: bool = True) -> list[ConflictExample] | str:
    """The graded variants of one example (its ``cf_answer`` is the answer its passage states), or a skip reason.

    ``pools`` (names only): ``{"same_type": [...], "implausible": [...]}`` substitutes.
    """
    forms = [ex.cf_answer, *ex.cf_aliases]
    kind = answer_kind(ex.cf_answer, kinds)
    if kind is None:
        return "not_perturbable"
    pattern = word_pattern if kind == "name" else number_pattern
    stated = next((f for f in forms if pattern(f).search(ex.context)), None)
    if stated is None:
        return "answer_not_in_passage"
    rng = random.Random(f"{seed}:{ex.id}:{stated}")
    _, steps = _steps(stated, kind, rng, pools)
    steps = [s for s in steps if s.value != stated]
    if not steps:
        return "not_perturbable"
    base = {"perturb": kind, "source_id": ex.id, "source_suite": ex.suite, "question_key": ex.question}
    out = []
    if control:
        out.append(ConflictExample(id=f"{ex.id}-none", suite=suite, context=ex.context, question=ex.question,
                                   cf_answer=stated, param_answer=stated, cf_aliases=tuple(forms[1:]),
                                   param_aliases=tuple(forms[1:]),
                                   meta={**base, "degree": 0, "degree_rank": 0, "degree_label": "none"}))
    for s in steps:
        context = replace_mentions(stated, s.value, surname=kind == "name", numeric=kind != "name")(ex.context)
        meta = {**base, "degree": s.degree, "degree_rank": s.rank, "degree_label": s.label}
        if s.ratio is not None:
            meta["ratio"] = s.ratio
        out.append(ConflictExample(id=f"{ex.id}-{s.label}", suite=suite, context=context, question=ex.question,
                                   cf_answer=s.value, param_answer=stated, param_aliases=tuple(forms[1:]),
                                   meta=meta))
    return out


def grade_examples(examples: Sequence[ConflictExample], *, suite: str, kinds: Sequence[str] = KINDS, seed: int = 0,
                   pools: dict[str, Sequence[str]] | None = None, control: bool = True
                   ) -> tuple[list[ConflictExample], GradeReport]:
    """Every example graded (see the module docstring); skipped ones are counted in the report."""
    report = GradeReport(n_source=len(examples))
    out: list[ConflictExample] = []
    for ex in examples:
        got = grade_one(ex, suite, kinds=kinds, seed=seed, pools=pools, control=control)
        if isinstance(got, str):
            report.skip(got, ex.id)
        else:
            out += got
            report.n_graded += 1
    return out, report


def is_graded(suite: Suite) -> bool:
    """Whether a suite's examples carry a perturbation degree (built-in ``graded_*`` or :func:`grade_suite`)."""
    return bool(suite.examples) and all("degree_rank" in (ex.meta or {}) for ex in suite.examples)


def grade_suite(suite: Suite, *, kinds: Sequence[str] = ("year", "number"), seed: int = 0
                ) -> tuple[Suite, GradeReport]:
    """A user's suite (e.g. SQuAD passages whose answers are numbers or years) as ``graded_<name>``.

    Example:
        >>> from ctxrely.data.loaders import load_data  # doctest: +SKIP
        >>> graded, report = grade_suite(load_data("squad_dev.json"))  # doctest: +SKIP
        >>> report.skipped  # doctest: +SKIP
        {'not_perturbable': 812, 'answer_not_in_passage': 3}
    """
    if is_graded(suite):
        return suite, GradeReport(n_source=len(suite.examples), n_graded=len(suite.examples))
    name = suite.name if suite.name.startswith("graded_") else f"graded_{suite.name}"
    examples, report = grade_examples(suite.examples, suite=name, kinds=kinds, seed=seed)
    return Suite(name=name, version=f"{suite.version}+graded1", examples=examples,
                 source=f"{suite.source} (graded: {report.n_graded}/{report.n_source} items)"), report
