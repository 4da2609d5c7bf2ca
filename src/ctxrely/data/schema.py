"""The one schema of a knowledge-conflict example.

Example:
    >>> ex = ConflictExample(id="cap-0", suite="cf_capitals", context="The capital moved to Herat.",
    ...                      question="What is the capital of Afghanistan?", cf_answer="Herat",
    ...                      param_answer="Kabul")
    >>> ex.cf_targets()
    ['Herat']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ctxrely.errors import DataError

__all__ = ["ConflictExample", "DataError", "Suite", "content_hash"]


@dataclass(frozen=True)
class ConflictExample:
    """A context that contradicts (or, for controls, agrees with) what the model memorised.

    Attributes:
        id: unique within its suite.
        suite: suite or dataset name.
        context: the passage (may be empty for closed-book items).
        question: what is asked; never shortened.
        cf_answer: the answer the context supports (counterfactual answer).
        param_answer: the real-world (parametric) answer, or None where the data has none.
        cf_aliases / param_aliases: further accepted surface forms.
        meta: free-form provenance (template id, source line, ...).
    """

    id: str
    suite: str
    context: str
    question: str
    cf_answer: str
    param_answer: str | None = None
    cf_aliases: tuple[str, ...] = ()
    param_aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not str(self.cf_answer).strip():
            raise DataError("empty counterfactual answer", field="cf_answer", path=f"{self.suite}:{self.id}")
        if self.param_answer is not None and not str(self.param_answer).strip():
            raise DataError("empty parametric answer", field="param_answer", path=f"{self.suite}:{self.id}")
        if not str(self.question).strip() and not str(self.context).strip():
            raise DataError("empty question and context", field="question", path=f"{self.suite}:{self.id}")

    def cf_targets(self) -> list[str]:
        return [self.cf_answer, *self.cf_aliases]

    def param_targets(self) -> list[str]:
        return [] if self.param_answer is None else [self.param_answer, *self.param_aliases]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cf_aliases"], d["param_aliases"] = list(self.cf_aliases), list(self.param_aliases)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConflictExample:
        d = dict(d)
        d["cf_aliases"] = tuple(d.get("cf_aliases") or ())
        d["param_aliases"] = tuple(d.get("param_aliases") or ())
        d.setdefault("meta", {})
        return cls(**d)


def content_hash(examples: list[ConflictExample]) -> str:
    """A stable hash of the examples' content (order-sensitive), written into every result."""
    h = hashlib.sha256()
    for ex in examples:
        d = ex.to_dict()
        d.pop("meta", None)
        h.update(json.dumps(d, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    """A named, versioned list of examples (built-in or loaded from a file)."""

    name: str
    version: str
    examples: list[ConflictExample]
    source: str = "builtin"

    @property
    def hash(self) -> str:
        return content_hash(self.examples)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "hash": self.hash,
                "n": len(self.examples), "source": self.source}
