"""One small generic registry per extension point (suites, formats, metrics, scorers, mitigations).

A leaf module: it imports nothing of ctxrely but :mod:`ctxrely.errors`. An entry is either an
object or a lazy ``"module:attr"`` reference resolved on first use (as lm-eval's registry does), and
a registry may name the modules whose import registers its entries (``sources``): they are imported
on the first lookup, so no code has to "load the built-ins" first and nothing here imports a
registering module. Name collisions raise; unknown names raise with the nearest registered names
suggested.

Example:
    >>> reg = Registry("suite")
    >>> @reg.register("cf_demo", description="a demo suite")
    ... def build(): return []
    >>> reg.get("cf_demo") is build
    True
    >>> _ = reg.add_lazy("dumps", "json:dumps", description="resolved on first use")
    >>> reg.get("dumps")([1])
    '[1]'
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from ctxrely.errors import CtxrelyError

T = TypeVar("T")


class UnknownNameError(CtxrelyError, KeyError):
    """Raised when a name is not registered; the message suggests near names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


def resolve(target: str) -> Any:
    """The object a ``"package.module:attr"`` reference names (``attr`` may be dotted).

    Example:
        >>> resolve("json:dumps").__name__
        'dumps'
    """
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"lazy registry target {target!r} is not 'module:attr'")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Entry(Generic[T]):
    """One registered name: its object (or a lazy ``target`` resolved on first access), a
    description and free-form facts (``meta``)."""

    __slots__ = ("name", "_obj", "target", "description", "meta")

    def __init__(self, name: str, obj: T | None = None, description: str = "",
                 meta: dict[str, Any] | None = None, target: str | None = None) -> None:
        self.name, self._obj, self.target = name, obj, target
        self.description, self.meta = description, dict(meta or {})

    @property
    def obj(self) -> T:
        if self._obj is None and self.target is not None:
            self._obj = resolve(self.target)
        return self._obj  # type: ignore[return-value]

    def __repr__(self) -> str:
        what = self.target if self._obj is None and self.target else type(self._obj).__name__
        return f"Entry({self.name!r}, {what})"


class Registry(Generic[T]):
    """A name -> object map with collision checks, lazy entries and near-name suggestions.

    Args:
        kind: what an entry is, for messages ("suite", "format", ...).
        sources: modules whose import registers entries; imported once, on the first lookup.
    """

    def __init__(self, kind: str, sources: Sequence[str] = ()) -> None:
        self.kind = kind
        self.sources = tuple(sources)
        self._loaded = not self.sources
        self._entries: dict[str, Entry[T]] = {}

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first, so that a source's own lookups do not re-enter
            for module in self.sources:
                importlib.import_module(module)

    def _put(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def add(self, name: str, obj: T, description: str = "", **meta: Any) -> T:
        self._put(Entry(name, obj, description, meta))
        return obj

    def add_lazy(self, name: str, target: str, description: str = "", **meta: Any) -> Entry[T]:
        """Register ``"module:attr"`` under ``name``; it is imported when first looked up."""
        resolve_check = target.partition(":")
        if not resolve_check[1]:
            raise ValueError(f"lazy registry target {target!r} is not 'module:attr'")
        entry: Entry[T] = Entry(name, None, description, meta, target=target)
        self._put(entry)
        return entry

    def register(self, name: str, description: str = "", **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            return self.add(name, obj, description, **meta)

        return deco

    def entry(self, name: str) -> Entry[T]:
        self._load()
        if name not in self._entries:
            near = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


# The project's registries. The modules named in ``sources`` register into them when first used;
# `ctxrely ls` lists them.
SUITES: Registry[Any] = Registry("suite", sources=["ctxrely.data.suites"])
PROMPT_FORMATS: Registry[Any] = Registry("format", sources=["ctxrely.prompts"])
FORMATS = PROMPT_FORMATS  # former name, kept (prompt formats; data formats are DATA_FORMATS)
METRICS: Registry[Any] = Registry("metric", sources=["ctxrely.metrics.table"])
SCORERS: Registry[Any] = Registry("scorer", sources=["ctxrely.diagnose"])
MITIGATIONS: Registry[Any] = Registry("mitigation", sources=["ctxrely.mitigate"])
DATA_FORMATS: Registry[Any] = Registry("data format", sources=["ctxrely.data.loaders"])

# The engine's decode strategies beyond plain greedy: classes taking (tokenizer, format, settings, ...).
DECODE_STRATEGIES: Registry[Any] = Registry("decode strategy")
DECODE_STRATEGIES.add_lazy("cad", "ctxrely.steer.cad:CADDecode",
                           description="context-aware decoding (CAD / AdaCAD): two streams, contrasted log-probs")
DECODE_STRATEGIES.add_lazy("pasta", "ctxrely.steer.stream:SteerDecode",
                           description="PASTA attention steering on every model call of a batch")

ALL = (SUITES, PROMPT_FORMATS, METRICS, SCORERS, MITIGATIONS, DATA_FORMATS, DECODE_STRATEGIES)


def load_builtins() -> None:
    """Deprecated (registries load their sources on first use): fill every registry now."""
    for reg in ALL:
        reg._load()
