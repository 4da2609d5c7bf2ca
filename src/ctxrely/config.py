"""The one config loader: dataclasses whose fields carry their help text, filled from YAML files,
dicts and ``key=value`` overrides. Used by ``TrainConfig`` (``ctxrely train``), the lab presets
and ``--set``, the theory sandbox and ``score-data``'s settings.

Every value is checked against the field's annotation (``int``, ``float``, ``bool``, ``str``,
``list[...]``, ``Literal[...]``, ``X | None``, nested dataclasses); unknown keys suggest the nearest
field; errors are :class:`~ctxrely.errors.ConfigError` naming the file, the YAML line and the field.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Demo:
    ...     steps: int = field(default=10, metadata={"help": "optimizer steps"})
    ...     tags: list[str] = field(default_factory=list, metadata={"help": "labels"})
    >>> from_dict(Demo, parse_overrides(["steps=20", "tags=a,b"]))
    Demo(steps=20, tags=['a', 'b'])
    >>> from_dict(Demo, {"step": 3}, source="demo.yaml")
    Traceback (most recent call last):
    ...
    ctxrely.errors.ConfigError: demo.yaml, field 'step': unknown key (did you mean 'steps'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from ctxrely.errors import ConfigError

T = TypeVar("T")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotation ``tp`` (str numbers like ``1e-4`` are accepted)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value not in args and isinstance(value, str):  # prompt-completion == prompt_completion
            value = next((a for a in args if isinstance(a, str) and a.replace("_", "-") == value.replace("_", "-")),
                         value)
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if value is None:  # `suites=` on the command line: an empty list
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):  # `seeds=3`: one item
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, where) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def typed_fields(cls: type, data: dict[str, Any], source: str = "config", *, prefix: str = "",
                 lines: dict[str, int] | None = None) -> dict[str, Any]:
    """``data`` checked against ``cls``'s fields: unknown keys refused, values converted to the
    annotations (nested dataclasses built); the keyword arguments of ``cls``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        line = (lines or {}).get(full)
        where = f"{source}{f', line {line}' if line else ''}, field {full!r}"
        if key not in names:
            near = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f" (did you mean {prefix + near[0]!r}?)" if near else ""
            raise ConfigError(f"{where}: unknown key{hint}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping")
            out[key] = from_dict(hints[key], value, source, prefix=f"{full}.", lines=lines)
        else:
            out[key] = _coerce(value, hints[key], where)
    return out


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config", *, prefix: str = "",
              lines: dict[str, int] | None = None) -> T:
    """An instance of the dataclass ``cls`` from a plain dict (see :func:`typed_fields`)."""
    kwargs = typed_fields(cls, data, source, prefix=prefix, lines=lines)
    missing = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.init]
    if missing:
        raise ConfigError(f"{source}: required field(s) {', '.join(repr(prefix + m) for m in missing)} missing")
    return cls(**kwargs)


def parse_overrides(items: list[str], flag: str = "override") -> dict[str, Any]:
    """``["lr=1e-4", "lora.rank=8"]`` -> ``{"lr": 1e-4, "lora": {"rank": 8}}`` (values parsed as YAML;
    a dataclass's field types then convert them)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected key=value (e.g. lr=1e-4 or lora.rank=8)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{flag} {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, nested mappings merged key by key."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _line_map(text: str) -> dict[str, int]:
    """``{"key": line, "lora.rank": line}`` of a YAML mapping (1-based lines)."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, f"{key}.")

    walk(yaml.compose(text), "")
    return lines


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """``(mapping, {dotted key: line})`` of a YAML config file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        loaded = yaml.safe_load(text)
        lines = _line_map(text) if loaded else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{p}{f', line {mark.line + 1}' if mark else ''}: bad YAML: {e}") from e
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: expected a mapping of config fields at the top level")
    return loaded or {}, lines


def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """A YAML file (or none), then ``key=value`` overrides, as an instance of ``cls``."""
    data, lines = read_yaml(path) if path else ({}, {})
    cfg = from_dict(cls, data, str(path) if path else "config", lines=lines)
    if overrides:
        cfg = from_dict(cls, merge(dataclasses.asdict(cfg), parse_overrides(overrides)), "override")  # type: ignore[call-overload]
    return cfg


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def field_help(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(name, default, help)`` of every field, nested dataclasses as ``section.field``."""
    hints = typing.get_type_hints(cls)
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_help(hints[f.name], f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", repr(default_of(f)), f.metadata.get("help", "")))
    return rows
