"""Layers only look down: the engine imports no higher package (``steer`` included: its decode
strategies reach the engine through ``ctxrely.registry.DECODE_STRATEGIES``), the registry is a leaf, and the lab's
renderers depend on what they render, never back.

Imports are read with ``ast`` (every ``import`` and ``from ... import``, also inside functions and
``TYPE_CHECKING`` blocks), so a lazy import counts as much as a module-level one.

Example:
    $ .venv/bin/python -m pytest -q tests/test_layering.py
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ctxrely"
ABOVE_ENGINE = ("track", "awareness", "lab", "cli", "icl", "diagnose", "mitigate", "train", "report", "steer")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in a source file.

    Example:
        >>> ("ctxrely.errors" in {m for _, m in imported_modules(SRC / "registry.py")})
        True
    """
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def _bad(paths: list[Path], allowed) -> list[str]:
    return [f"{p.relative_to(SRC.parent)}:{line}: imports {mod}" for p in paths
            for line, mod in imported_modules(p) if mod.startswith("ctxrely") and not allowed(mod)]


def test_engine_imports_no_higher_layer():
    files = sorted((SRC / "engine").glob("*.py"))
    assert len(files) > 5
    above = tuple(f"ctxrely.{p}" for p in ABOVE_ENGINE)

    def allowed(mod: str) -> bool:
        return not any(mod == a or mod.startswith(a + ".") for a in above)

    assert not _bad(files, allowed), "engine/ imports a higher layer:\n" + "\n".join(_bad(files, allowed))


def test_registry_is_a_leaf():
    bad = _bad([SRC / "registry.py"], lambda m: m in ("ctxrely.errors", "ctxrely.errors.CtxrelyError"))
    assert not bad, "registry.py imports more of ctxrely than its errors:\n" + "\n".join(bad)


def test_lab_renderers_do_not_import_back():
    bad = _bad([SRC / "lab" / "table.py"], lambda m: not m.startswith("ctxrely.lab.table_md"))
    bad += _bad([SRC / "lab" / "theory_plots.py"], lambda m: not m.startswith("ctxrely.lab.theory")
                or m.startswith("ctxrely.lab.theory_config"))
    assert not bad, "\n".join(bad)


def test_registry_resolves_lazily_and_loads_its_sources_on_first_use(tmp_path, monkeypatch):
    import sys

    from ctxrely.registry import Registry, UnknownNameError

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "ctxrely_fake_target.py").write_text("VALUE = 41\n", encoding="utf-8")
    (tmp_path / "ctxrely_fake_source.py").write_text(
        "import ctxrely_fake_registry_holder as h\nh.REG.add('b', 2, description='from a source')\n",
        encoding="utf-8")
    reg: Registry = Registry("thing", sources=["ctxrely_fake_source"])
    holder = type(sys)("ctxrely_fake_registry_holder")
    holder.REG = reg
    monkeypatch.setitem(sys.modules, "ctxrely_fake_registry_holder", holder)
    reg.add_lazy("a", "ctxrely_fake_target:VALUE")
    assert "ctxrely_fake_target" not in sys.modules and "ctxrely_fake_source" not in sys.modules
    assert reg.get("a") == 41 and "ctxrely_fake_target" in sys.modules  # resolved on first use
    assert reg.names() == ["a", "b"] and reg.entry("b").description == "from a source"
    try:
        reg.get("c")
    except UnknownNameError as e:
        assert "unknown thing 'c'" in str(e) and "known: a, b" in str(e)
    else:
        raise AssertionError("an unknown name did not raise")


def _import_graph() -> dict[str, set[str]]:
    mods = {}
    for p in SRC.rglob("*.py"):
        name = ".".join(p.relative_to(SRC.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for _, name in imported_modules(p):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != m:
                graph[m].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_circle_spans_two_packages():
    """A circle inside one subpackage is its own business; one through two packages (or through the
    facade) is a layering bug: the registry's old ``load_builtins`` made a 16-module one."""

    def package(mod: str) -> str:
        parts = mod.split(".")  # ctxrely.engine.hf -> ctxrely.engine; ctxrely.registry stays itself
        return ".".join(parts[:2]) if len(parts) > 1 and (SRC / parts[1]).is_dir() else mod

    graph = _import_graph()
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    wide = [c for c in _cycles(graph) if len({package(m) for m in c}) > 1]
    assert not wide, f"import circles across packages: {wide}"
