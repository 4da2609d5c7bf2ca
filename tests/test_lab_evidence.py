"""The measured tables the demo shows without rerunning them (``ctxrely/lab/measured/*.json``)."""

from __future__ import annotations

import json
from importlib import resources

from ctxrely.lab.evidence import FILES, evidence_sections, md_table_html, shipped, write_evidence


def test_shipped_tables_name_the_run_and_its_seeds_and_render():
    found = [name for name in FILES if resources.files("ctxrely.lab").joinpath(name).is_file()]
    assert len(shipped()) == len(found)
    for e in shipped():
        assert {"title", "note", "markdown"} <= set(e) and "Measured" in e["note"]
        head = [c.strip() for c in e["markdown"].splitlines()[0].strip("|").split("|")]
        assert head[0] in ("run", "strategy") and head[1] == "seeds"  # as the issue and the lab table ask
        assert md_table_html(e["markdown"]).count("<tr>") >= 3  # a header and at least two measured rows
    titles = [t for t, _ in evidence_sections()]
    assert titles == [e["title"] for e in shipped()]
    assert all("Not run by this demo." in h for _, h in evidence_sections())


def test_write_evidence_round_trips(tmp_path):
    p = write_evidence(tmp_path / "x" / "t.json", title="T", note="N", markdown="| run | seeds |\n|---|---|\n| a | 0 |\n")
    assert json.loads(p.read_text()) == {"title": "T", "note": "N", "markdown": "| run | seeds |\n|---|---|\n| a | 0 |\n"}
    assert md_table_html("no table") == ""
