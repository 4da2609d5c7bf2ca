"""Write one benchmark's section of ``docs/benchmarks.md`` (replacing its previous figures).

Example:
    >>> write_section("## My benchmark", "benchmarks/my.py", ["ratio 1.5"])  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(section: str, script: str, lines: list[str], doc: Path = DOC) -> None:
    """Replace (or append) the ``section`` heading's block with a dated list of ``lines``."""
    body = f"{section}\n\n`{script}` ({time.strftime('%Y-%m-%d')}):\n\n" + "".join(f"- {x}\n" for x in lines) + "\n"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    pat = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pat.sub(lambda _m: body, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + body
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def publish(section: str, script: str, lines: list[str], summary: str, write: bool = True, doc: Path = DOC) -> None:
    """Print ``lines``, write them as ``section`` of the doc (unless ``write`` is false), then print the
    one-line ``summary`` the benchmark ends with (what `make bench` logs)."""
    for line in lines:
        print(line)
    if write:
        write_section(section, script, lines, doc)
    print(summary)
