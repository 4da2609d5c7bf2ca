"""The public facade (issue 8, defect 1): ``ctxrely.evaluate`` stays the function whatever was
imported before, and the TYPE_CHECKING block mirrors the lazy table."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import ctxrely


def test_evaluate_stays_callable_after_touching_other_names():
    code = ("import ctxrely, ctxrely.engine.api, ctxrely.engine.result; ctxrely.EvalResult; "
            "import ctxrely.engine; f = ctxrely.evaluate; g = ctxrely.evaluate; "
            "print(callable(f), f is g, f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "ctxrely.engine.api"]


def test_evaluate_twice_on_a_tiny_model(tiny_llama):
    model, tok = tiny_llama
    first = ctxrely.evaluate(model, tok, suites=["cf_capitals"], mode="logits", limit=2, progress=False, n_boot=10)
    assert isinstance(first, ctxrely.EvalResult)
    second = ctxrely.evaluate(model, tok, suites=["cf_capitals"], mode="logits", limit=2, progress=False, n_boot=10)
    assert second.metrics == first.metrics


def test_type_checking_block_mirrors_the_lazy_table():
    tree = ast.parse(Path(inspect.getfile(ctxrely)).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    typed = {a.name: imp.module for imp in block.body for a in imp.names}
    assert typed == ctxrely._LAZY
    assert set(ctxrely.__all__) == {"__version__", *ctxrely._LAZY}
    for name in ctxrely._LAZY:
        assert getattr(ctxrely, name).__name__ == name
