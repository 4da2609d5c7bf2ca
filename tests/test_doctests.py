"""Issue 8, defect 11: the docstring examples of every torch-free module run as tests.

A module is torch-free when neither it nor any ctxrely module it imports at module level imports a
heavy package (torch, transformers, trl, peft, datasets, accelerate) at module level; found by reading
the source, so the list grows by itself as modules are added.
"""

from __future__ import annotations

import ast
import doctest
import importlib
from functools import cache
from pathlib import Path

import pytest

import ctxrely

ROOT = Path(ctxrely.__file__).parent
HEAVY = {"torch", "transformers", "trl", "peft", "datasets", "accelerate"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _top_level_imports(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.Import):
                out |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                out |= {sub.module} | {f"{sub.module}.{a.name}" for a in sub.names}
    return out


@cache
def _edges(name: str) -> tuple[set[str], set[str]]:
    """(heavy packages, ctxrely modules) imported at module level, counting the parent packages."""
    imports = _top_level_imports(ast.parse(MODULES[name].read_text()))
    parents = {".".join(name.split(".")[:i]) for i in range(2, name.count(".") + 1)}  # packages run first
    return {i.split(".")[0] for i in imports} & HEAVY, {m for m in imports | parents if m in MODULES and m != name}


def is_heavy(name: str) -> bool:
    seen, todo = {name}, [name]
    while todo:
        heavy, deps = _edges(todo.pop())
        if heavy:
            return True
        todo += [d for d in deps if d not in seen]
        seen |= deps
    return False


LIGHT = [m for m in MODULES if not is_heavy(m)]


def test_the_light_list_is_most_of_the_package():
    assert "ctxrely.prompts" in LIGHT and "ctxrely.data.sft" in LIGHT and "ctxrely.track.callback" not in LIGHT
    assert len(LIGHT) > len(MODULES) / 2


@pytest.mark.parametrize("name", LIGHT)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"
