"""``ctxrely demo --quick``: the whole pipeline on a tiny random model, one report with three parts."""

from __future__ import annotations

import json
import re


def test_demo_quick_builds_one_report_with_three_parts(tmp_path, capsys):
    from ctxrely.cli.main import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert f"report: {report}" in printed and report.exists()
    page = report.read_text(encoding="utf-8")
    # part 1: theory sandbox, with its plot and the no-C+S setting that does not fall
    assert "Theory sandbox" in page and "no_ccs" in page
    theory = json.loads((out / "theory" / "theory.json").read_text())
    assert set(theory["traces"]) >= {"baseline", "no_ccs"}
    # part 2: the step-0 eval table over the four built-in suites, with real numbers
    assert "Before fine-tuning: step-0 knowledge-conflict eval" in page
    for suite in ("cf_capitals", "cf_world_facts", "cf_bio", "cf_quotes"):
        assert f"<td>{suite}</td>" in page
    step0 = json.loads((out / "eval-step0" / "summary.json").read_text())
    assert step0["metrics"]["cf_capitals"]["n"] == 8
    # part 3: the tracked lab runs (baseline and a mitigation) and their comparison
    assert "Lab comparison" in page and "Context reliance during fine-tuning" in page
    table = json.loads((out / "lab" / "comparison.json").read_text())
    assert {r["variant"] for r in table["runs"]} == {"baseline", "no_ccs"}
    assert all(r["step0"] is not None and r["final"] is not None for r in table["runs"])
    # the awareness part: NIH and attention allocation with and without the chat template
    assert "Context awareness under the chat template" in page and "Needle in a haystack" in page
    attention = json.loads((out / "awareness" / "attention.json").read_text())
    assert set(attention["templates"]) == {"raw", "chat"}
    assert json.loads((out / "awareness" / "nih-chat" / "summary.json").read_text())["n_cells"] == 2
    # every plot is embedded (theory + tracking), nothing fetched
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 3
    assert "http://" not in page and "https://" not in page
    # quick mode says its numbers mean nothing
    assert "tiny <em>random</em> model" in page
    # beside the live run: the table measured on the long preset, labelled as not run by the demo
    assert "Measured on the long preset" in page and "Not run by this demo" in page
    # a second run reuses every stage
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
