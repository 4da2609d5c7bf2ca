"""One small generic registry per extension point (suites, formats, metrics, scorers, mitigations).

Name collisions raise; unknown names raise with the nearest registered names suggested.

Example:
    >>> reg = Registry("suite")
    >>> @reg.register("cf_demo", description="a demo suite")
    ... def build(): return []
    >>> reg.get("cf_demo") is build
    True
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ctxrely.errors import CtxrelyError

T = TypeVar("T")


class UnknownNameError(CtxrelyError, KeyError):
    """Raised when a name is not registered; the message suggests near names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name -> object map with collision checks and near-name suggestions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, description: str = "", **meta: Any) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, description, dict(meta))
        return obj

    def register(self, name: str, description: str = "", **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            return self.add(name, obj, description, **meta)

        return deco

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            near = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)


# The project's registries. Modules register into them; `ctxrely ls` lists them.
SUITES: Registry[Any] = Registry("suite")
FORMATS: Registry[Any] = Registry("format")
METRICS: Registry[Any] = Registry("metric")
SCORERS: Registry[Any] = Registry("scorer")
MITIGATIONS: Registry[Any] = Registry("mitigation")


def load_builtins() -> None:
    """Import the modules that register suites, formats, metrics, scorers and mitigations (no torch)."""
    from ctxrely import diagnose, mitigate, prompts  # noqa: F401
    from ctxrely.data import suites  # noqa: F401
    from ctxrely.metrics import catalog  # noqa: F401
