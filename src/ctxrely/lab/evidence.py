"""Measured tables shipped with the package, shown by ``make demo`` without rerunning them.

Each is a JSON file in ``ctxrely/lab/measured/`` with ``title``, ``note`` (where, when, by which
commit and command it was measured, what is missing) and ``markdown`` (the table as
``docs/findings.md`` prints it). ``python -m ctxrely.lab.evidence`` writes one from a run folder.

Example:
    >>> [e["title"] for e in shipped()]  # doctest: +SKIP
    ['Template SFT vs plain SFT (Wang et al. 2024), base Gemma 3 270M', ...]
    >>> md_table_html("| a | b |\\n|---|---|\\n| 1 | 2 |\\n")
    '<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>'
"""

from __future__ import annotations

import argparse
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

#: Shown in this order; the inversion table (``measured/long_reduced.json``) has its own renderer.
FILES = ("measured/awareness_lab.json", "measured/icl_lab.json")


def md_table_html(md: str) -> str:
    """The first pipe table of ``md`` as an HTML table (cells escaped); text around it is dropped."""
    lines = [ln.strip() for ln in md.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return ""

    def cells(line: str) -> list[str]:
        return [html.escape(c.strip()) for c in line.strip("|").split("|")]

    head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(ln)) + "</tr>" for ln in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def shipped() -> list[dict[str, Any]]:
    """The measured tables this install holds (missing files are skipped)."""
    out = []
    for name in FILES:
        path = resources.files("ctxrely.lab").joinpath(name)
        if path.is_file():
            out.append(json.loads(path.read_text(encoding="utf-8")))
    return out


def evidence_sections() -> list[tuple[str, str]]:
    """``(title, html)`` per shipped table, each saying it was not rerun by the demo."""
    return [(e["title"], "<p><strong>Not run by this demo.</strong> " + html.escape(e.get("note", "")) + "</p>"
             + md_table_html(e["markdown"])) for e in shipped()]


def write_evidence(path: str | Path, *, title: str, note: str, markdown: str) -> Path:
    """Write one measured table (``title``, ``note``, ``markdown``) as JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"title": title, "note": note, "markdown": markdown}, indent=1, ensure_ascii=False)
                 + "\n", encoding="utf-8")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctxrely.lab.evidence", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write (e.g. src/ctxrely/lab/measured/icl_lab.json)")
    ap.add_argument("--title", required=True)
    ap.add_argument("--note", required=True)
    ap.add_argument("--markdown", required=True, help="a .md file holding the table")
    a = ap.parse_args(argv)
    write_evidence(a.out, title=a.title, note=a.note, markdown=Path(a.markdown).read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
