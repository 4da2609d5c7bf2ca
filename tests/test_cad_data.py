"""AdaCAD paired-row files and BIG-bench JSON tasks: pairing, verbatim prompts, skipped examples."""

from __future__ import annotations

import json
import logging

import pytest

from ctxrely.data.loaders import load_data
from ctxrely.data.schema import DataError

PASSAGES = [
    ("The capital of France moved to Lyon in 2020.", "What is the capital of France?", "Lyon"),
    ("Mount Everest is in Peru.", "In which country is Mount Everest?", "Peru"),
    ("The Mona Lisa was painted by Claude Monet.", "Who painted the Mona Lisa?", "Claude Monet"),
]
INSTR = "Answer the question based on the passage."


def _adacad_rows(drop: int | None = None) -> list[dict]:
    """Rows in AdaCAD's published shape: weight-0 rows first (order must not matter)."""
    rows = []
    for i, (p, q, a) in enumerate(PASSAGES):
        base = {"input_index": i, "assigned_model": "llama", "assigned_process": 0, "filter_p": 1.0, "gold_answers": a}
        rows.append({**base, "assigned_weight": 0, "context_string": f"{INSTR}\nQuestion: {q}\nAnswer:"})
        rows.append({**base, "assigned_weight": 1, "context_string": f"{p}\n{INSTR}\nQuestion: {q}\nAnswer:"})
    if drop is not None:
        rows.pop(drop)
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_adacad_pairs_load_verbatim(tmp_path, tiny_tokenizer):
    from ctxrely.engine.prompting import render
    from ctxrely.prompts import get_format

    suite = load_data(_write_jsonl(tmp_path / "nq_swap.jsonl", _adacad_rows()))
    assert [e.cf_answer for e in suite.examples] == ["Lyon", "Peru", "Claude Monet"]
    ex = suite.examples[1]
    assert ex.context == PASSAGES[1][0] and ex.question == PASSAGES[1][1] and ex.param_answer is None
    raw = get_format("raw")
    assert render(ex, raw, tiny_tokenizer) == f"{PASSAGES[1][0]}\n{INSTR}\nQuestion: {PASSAGES[1][1]}\nAnswer:"
    assert render(ex, raw, tiny_tokenizer, context="") == f"{INSTR}\nQuestion: {PASSAGES[1][1]}\nAnswer:"


def test_adacad_pairs_cf_metrics_only_and_cad(tmp_path, tiny_llama):
    from ctxrely.engine.api import evaluate

    model, tok = tiny_llama
    path = _write_jsonl(tmp_path / "nq_swap.jsonl", _adacad_rows())
    res = evaluate(model, tok, data=path, mode="both", max_new_tokens=4, progress=False, n_boot=10,
                   decode="cad", steer="pasta")
    m = res.summary["metrics"]["nq_swap"]
    assert m["cf_acc"] is not None and m["param_acc"] is None and m["m_c"] is None
    prompts = [r["prompt"] for r in res.rows]
    assert prompts[0] == f"{PASSAGES[0][0]}\n{INSTR}\nQuestion: {PASSAGES[0][1]}\nAnswer:"
    assert all(r["steer_span_tokens"] > 0 for r in res.rows)  # the passage was found to steer toward


@pytest.mark.parametrize("drop", [0, 3])
def test_unpaired_rows_are_named(tmp_path, drop):
    with pytest.raises(DataError, match=r"input_index \d: 1 row"):
        load_data(_write_jsonl(tmp_path / "x.jsonl", _adacad_rows(drop)))


def test_same_weight_twice_is_an_error(tmp_path):
    rows = _adacad_rows()
    rows[0]["assigned_weight"] = 1  # both rows of input 0 claim the context
    with pytest.raises(DataError, match=r"input_index 0: 2 row\(s\).*\[1, 1\]"):
        load_data(_write_jsonl(tmp_path / "x.jsonl", rows))


def _bigbench(examples):
    return {"name": "contextual_parametric_knowledge_conflicts", "task_prefix": "Assume the context is true.\n",
            "example_input_prefix": "\n", "example_output_prefix": "\nAnswer: ", "examples": examples}


def test_bigbench_task_skips_and_names_the_single_answer_example(tmp_path, caplog):
    exs = [{"input": "\nQuestion: who wrote hamlet?\nContext: Hamlet was written by Jane Austen .",
            "target": "Jane Austen", "target_scores": {"Jane Austen": 1, "William Shakespeare": 0}},
           {"input": "\nQuestion: capital of peru?\nContext: Lima is the capital .", "target": "Lima",
            "target_scores": {"Lima": 1}},
           {"input": "\nQuestion: who painted the mona lisa?\nContext: Monet painted it .",
            "target": "Monet", "target_scores": {"Monet": 1, "Leonardo da Vinci": 0}}]
    path = tmp_path / "task.json"
    path.write_text(json.dumps(_bigbench(exs), indent=2), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ctxrely.data.bigbench"):
        suite = load_data(str(path))
    assert [(e.cf_answer, e.param_answer) for e in suite.examples] == [
        ("Jane Austen", "William Shakespeare"), ("Monet", "Leonardo da Vinci")]
    assert "example 1 ('capital of peru?')" in caplog.text and "skipped" in caplog.text
    ex = suite.examples[1]
    assert ex.context == "Monet painted it ." and ex.question == "who painted the mona lisa?"
    assert json.loads(path.read_text())["examples"][2]["input"] in ex.meta["bigbench_prompt"]
    assert path.read_text().splitlines()[ex.meta["line"] - 1].strip() == "{"


def test_bigbench_bad_input_is_named(tmp_path):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(_bigbench([{"input": "no question here", "target_scores": {"a": 1, "b": 0}}])))
    with pytest.raises(DataError, match="field 'input'"):
        load_data(str(path))


def test_bigbench_published_sample(shared_data):
    suite = load_data(str(shared_data / "bigbench_cpkc" / "task_sample.json"))
    assert len(suite.examples) == 600
    ex = suite.examples[0]
    assert (ex.cf_answer, ex.param_answer) == ("Griselda Blanco", "Jeremy Johnson")
    assert ex.question == "who does candace like in phineas and ferb?" and ex.context.startswith("Candace Flynn")
