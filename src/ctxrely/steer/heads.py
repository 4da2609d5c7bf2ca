"""Which attention heads to steer: ``"all"``, a list of ``(layer, head)`` pairs, or a head file.

Head files are JSON, in PASTA's shape (``{"layer": [head, ...], ...}``, layer keys as strings) or as
a list of ``[layer, head]`` pairs. Every pair is checked against the model's layer and head counts.

Example:
    >>> resolve_heads("all", n_layers=2, n_heads=2)
    {0: (0, 1), 1: (0, 1)}
    >>> resolve_heads([(1, 0)], n_layers=2, n_heads=2)
    {1: (0,)}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.engine.intervention import SteerError as SteerError  # moved there

HeadSpec = str | Path | Sequence[tuple[int, int]] | dict


def resolve_heads(heads: HeadSpec, n_layers: int, n_heads: int) -> dict[int, tuple[int, ...]]:
    """``{layer: (head, ...)}`` for a head spec, validated against the model's shape."""
    if isinstance(heads, str) and heads == "all":
        return {layer: tuple(range(n_heads)) for layer in range(n_layers)}
    source = "heads"
    if isinstance(heads, (str, Path)):
        source = str(heads)
        heads = read_head_file(heads)
    pairs = _pairs(heads, source)
    out: dict[int, set[int]] = {}
    for layer, head in pairs:
        if not 0 <= layer < n_layers:
            raise SteerError(f"{source}: layer {layer} does not exist (the model has layers 0..{n_layers - 1})")
        if not 0 <= head < n_heads:
            raise SteerError(f"{source}: head {head} of layer {layer} does not exist "
                             f"(the model has heads 0..{n_heads - 1})")
        out.setdefault(layer, set()).add(head)
    if not out:
        raise SteerError(f"{source}: no heads selected")
    return {layer: tuple(sorted(hs)) for layer, hs in sorted(out.items())}


def read_head_file(path: str | Path) -> Any:
    """The parsed JSON of a head file (shape checked by :func:`resolve_heads`)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SteerError(f"{path}: no such head file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SteerError(f"{path}: line {e.lineno}: bad JSON: {e.msg}") from e


def _int(x: Any, what: str, source: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, str)):
        raise SteerError(f"{source}: {what} must be an integer, got {x!r}")
    try:
        return int(x)
    except ValueError:
        raise SteerError(f"{source}: {what} must be an integer, got {x!r}") from None


def _pairs(heads: Any, source: str) -> list[tuple[int, int]]:
    shape = 'expected {"layer": [head, ...]} (PASTA) or [[layer, head], ...]'
    if isinstance(heads, dict):
        pairs = []
        for k, v in heads.items():
            if not isinstance(v, list):
                raise SteerError(f"{source}: layer {k!r}: {shape}")
            pairs.extend((_int(k, "layer", source), _int(h, f"a head of layer {k}", source)) for h in v)
        return pairs
    if isinstance(heads, (list, tuple)):
        pairs = []
        for item in heads:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise SteerError(f"{source}: item {item!r}: {shape}")
            pairs.append((_int(item[0], "layer", source), _int(item[1], "head", source)))
        return pairs
    raise SteerError(f"{source}: {shape}, got {type(heads).__name__}")


def write_head_file(path: str | Path, heads: Sequence[tuple[int, int]]) -> Path:
    """Write heads in PASTA's JSON shape (``{"layer": [head, ...]}``)."""
    out: dict[str, list[int]] = {}
    for layer, head in heads:
        out.setdefault(str(layer), []).append(int(head))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return p
