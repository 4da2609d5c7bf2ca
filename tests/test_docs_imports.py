"""Every ``import`` line shown in README.md and docs/*.md runs, and CONTRIBUTING.md's layout names
real paths.

The import lines of all fenced ``python`` blocks are run in one subprocess (one interpreter start for
all of them), each guarded, so the failure message lists every doc line that does not import.

Example:
    $ .venv/bin/python -m pytest -q tests/test_docs_imports.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
IMPORT = re.compile(r"^\s*(import\s+[\w.]+|from\s+[\w.]+\s+import\s+)")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_imports(path: Path) -> list[tuple[int, str]]:
    """``(line number, statement)`` for each import line in the file's fenced python blocks.

    Example:
        >>> python_imports(ROOT / "README.md")[0]  # doctest: +SKIP
        (70, 'import ctxrely')
    """
    out: list[tuple[int, str]] = []
    fence: str | None = None
    lang = ""
    pending: tuple[int, list[str]] | None = None
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if m and fence is None:
            fence, lang = m.group(1), m.group(2).lower()
            continue
        if m and fence is not None and line.strip().startswith(fence[0] * len(fence)) and not m.group(2):
            fence = None
            continue
        if fence is None or lang not in ("python", "py", "python3", "pycon"):
            continue
        text = line.split(">>> ", 1)[1] if lang == "pycon" and ">>> " in line else line
        if pending is not None:
            pending[1].append(text.split("#", 1)[0].strip())
            if ")" in text:
                out.append((pending[0], " ".join(pending[1])))
                pending = None
            continue
        if IMPORT.match(text):
            stmt = text.split("#", 1)[0].strip()
            if stmt.endswith("(") or ("(" in stmt and ")" not in stmt):
                pending = (no, [stmt])
            else:
                out.append((no, stmt))
    return out


def test_every_doc_import_runs():
    found = [(f"{p.relative_to(ROOT)}:{no}", stmt) for p in doc_files() for no, stmt in python_imports(p)]
    assert found, "no import lines found in the docs: the extractor is broken"
    script = (
        "import json, sys, traceback\n"
        "bad = []\n"
        "for where, stmt in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        exec(stmt, {})\n"
        "    except Exception as e:\n"
        "        bad.append(f'{where}: {stmt!r}: {type(e).__name__}: {e}')\n"
        "print(json.dumps(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(found)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not bad, "doc import lines that fail:\n" + "\n".join(bad)


def test_extractor_finds_single_and_multiline_imports(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("```python\nimport os\nfrom json import (\n    dumps,\n    loads,\n)\nx = 1\n```\n"
                  "```bash\nimport nothing\n```\n", encoding="utf-8")
    assert python_imports(md) == [(2, "import os"), (3, "from json import ( dumps, loads, )")]


def test_contributing_layout_names_real_paths():
    """Each row of CONTRIBUTING.md's layout table: the folder exists, and every ``name.py`` or
    ``name/`` it mentions exists in it."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    src = ROOT / "src" / "ctxrely"
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| path (under `src/ctxrely/`)"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("| `"):
            break
        rows.append(line)
    assert len(rows) > 10
    missing = []
    for row in rows:
        cells = row.split("|")
        base_names = re.findall(r"`([^`]+)`", cells[1])
        for base in base_names:
            base_dir = src / base if base.endswith("/") else src
            if not (src / base).exists():
                missing.append(base)
                continue
            for name in re.findall(r"`([\w/]+(?:\.py)?/?)`", cells[2]):
                if name.endswith(".py") or name.endswith("/"):
                    name = name.split(":")[0]
                    if not ((base_dir / name).exists() or (src / name).exists() or (ROOT / name).exists()):
                        missing.append(f"{base}{name}")
    assert not missing, f"CONTRIBUTING.md names paths that do not exist: {missing}"


def test_readme_lists_every_command_with_a_page():
    """The README's command table: one line per ``ctxrely`` command, each linking a page that exists."""
    import importlib

    from ctxrely.cli.main import COMMANDS

    names = [importlib.import_module(f"ctxrely.cli.{m}").NAME for m in COMMANDS]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `ctxrely ([\w-]+)` \|.*\]\(([^)#]+)[^)]*\) \|$",
                                                         (ROOT / "README.md").read_text(encoding="utf-8"), re.M)}
    assert sorted(rows) == sorted(names), f"README command table {sorted(rows)} vs commands {sorted(names)}"
    assert all((ROOT / page).is_file() for page in rows.values()), rows
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 200


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]+)(?:#[^)]*)?\)")


def test_relative_links_and_figures_in_the_docs_exist():
    """A figure or page a doc links to by a relative path is in the repository (a moved or
    forgotten ``docs/img/*.svg`` shows as a broken image on GitHub)."""
    broken = []
    for path in doc_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target in LINK.findall(line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                if not (path.parent / target).exists():
                    broken.append(f"{path.relative_to(ROOT)}:{n}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)
