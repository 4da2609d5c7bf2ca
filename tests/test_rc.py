"""Reading comprehension: official-JSON loaders, SQuAD metrics, and ``ctxrely eval`` on gold-answer-only data."""

from __future__ import annotations

import json

import pytest

from ctxrely.cli.main import main
from ctxrely.data.loaders import load_data
from ctxrely.data.schema import DataError
from ctxrely.metrics.rc import f1_score, rc_flags, squad_normalize
from ctxrely.prompts import get_format

SQUAD = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": "Lyon is big. Its mayor is Ann.",
          "qas": [{"id": "q1", "question": "Who is the mayor?", "answers": [{"text": "Ann", "answer_start": 26},
                                                                            {"text": "Ann", "answer_start": 26},
                                                                            {"text": "mayor Ann", "answer_start": 20}]},
                  {"id": "q2", "question": "Who is the king?", "answers": [], "is_impossible": True,
                   "plausible_answers": [{"text": "Ann", "answer_start": 26}]}]}]}]}
QUAC = {"data": [{"title": "B", "background": "x", "paragraphs": [{"id": "p1",
         "context": "She was born in Oslo in 1950. She sang. CANNOTANSWER",
         "qas": [{"id": "p1_q#0", "question": "Where was she born?", "followup": "y", "yesno": "x",
                  "answers": [{"text": "in Oslo", "answer_start": 13}], "orig_answer": {"text": "born in Oslo",
                                                                                       "answer_start": 8}},
                 {"id": "p1_q#1", "question": "What else?", "answers": [{"text": "She sang.", "answer_start": 30}],
                  "orig_answer": {"text": "She sang.", "answer_start": 30}}]}]}]}
COQA = {"version": "1.0", "data": [{"id": "s1", "source": "wiki", "story": "Tom has a red car. It is fast.",
         "questions": [{"input_text": "What colour is the car?", "turn_id": 1},
                       {"input_text": "Is it fast?", "turn_id": 2}],
         "answers": [{"input_text": "red", "span_text": "a red car", "turn_id": 1},
                     {"input_text": "yes", "span_text": "It is fast", "turn_id": 2}],
         "additional_answers": {"0": [{"input_text": "Red.", "turn_id": 1}]}}]}
DROP = {"nfl_1": {"passage": "The Bears scored 7 points, then 3 more on 5 May 2001.", "qa_pairs": [
    {"question": "How many points in all?", "query_id": "d1",
     "answer": {"number": "10", "date": {"day": "", "month": "", "year": ""}, "spans": []},
     "validated_answers": [{"number": "10", "date": {}, "spans": []}]},
    {"question": "When?", "query_id": "d2", "answer": {"number": "", "date": {"day": "5", "month": "May",
                                                                               "year": "2001"}, "spans": []}},
    {"question": "Who scored?", "query_id": "d3", "answer": {"number": "", "date": {}, "spans": ["Bears"]}}]}}


def _write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(json.dumps(obj), encoding="utf-8")
    return str(p)


def test_squad_official_metrics():
    assert squad_normalize("The  Eiffel-Tower!") == "eiffeltower"  # official: punctuation removed, not spaced
    assert f1_score("the Denver Broncos", "Denver Broncos") == 1.0
    assert f1_score("Broncos won", "Denver Broncos") == pytest.approx(0.5)
    f = rc_flags("I think it is Denver Broncos.", ["Broncos", "Denver Broncos"])
    assert f["contains"] and not f["exact_match"] and f["f1"] == pytest.approx(2 * (2 / 6) * 1 / (2 / 6 + 1))
    assert rc_flags("broncos", ["Denver Broncos", "The Broncos"])["exact_match"]  # max over golds
    assert not rc_flags("Brisbane", ["Denver Broncos"])["contains"]


def test_squad_loader_keeps_all_golds_and_skips_unanswerable(tmp_path):
    s = load_data(_write(tmp_path, "sq.json", SQUAD))
    assert [e.id for e in s.examples] == ["q1"]
    ex = s.examples[0]
    assert ex.cf_targets() == ["Ann", "mayor Ann"] and ex.param_answer is None and ex.param_targets() == []
    assert ex.meta["format"] == "squad"


def test_quac_coqa_drop_loaders(tmp_path):
    q = load_data(_write(tmp_path, "quac.json", QUAC)).examples
    assert [e.id for e in q] == ["p1_q#0"] and "CANNOTANSWER" not in q[0].context
    assert q[0].cf_targets() == ["born in Oslo", "in Oslo"]
    c = load_data(_write(tmp_path, "coqa.json", COQA)).examples
    assert len(c) == 1 and c[0].question == "What colour is the car?" and c[0].cf_targets() == ["red", "Red."]
    d = load_data(_write(tmp_path, "drop.json", DROP)).examples
    assert [(e.id, e.cf_answer) for e in d] == [("d1", "10"), ("d2", "May 5 2001"), ("d3", "Bears")]
    assert load_data(_write(tmp_path, "x.json", DROP), fmt="drop").examples[0].cf_answer == "10"


def test_rc_bad_input_names_file_and_field(tmp_path):
    bad = json.loads(json.dumps(SQUAD))
    del bad["data"][0]["paragraphs"][0]["qas"][0]["question"]
    with pytest.raises(DataError, match=r"sq\.json.*data\[0\]\.paragraphs\[0\]\.qas\[0\]\.question"):
        load_data(_write(tmp_path, "sq.json", bad))
    with pytest.raises(DataError, match="not an official squad JSON"):
        load_data(_write(tmp_path, "list.json", [{"a": 1}]), fmt="squad")


def test_generic_jsonl_with_a_list_of_answers(tmp_path):
    p = tmp_path / "rc.jsonl"
    p.write_text(json.dumps({"passage": "Ann rules Lyon.", "q": "Who rules?", "golds": ["Ann", "Queen Ann"]}) + "\n")
    ex = load_data(str(p), mapping="context=passage,question=q,cf_answer=golds").examples[0]
    assert ex.cf_targets() == ["Ann", "Queen Ann"] and ex.param_answer is None


def test_hub_shaped_squad_rows(tmp_path):
    p = tmp_path / "squad.jsonl"
    rows = [{"id": "a1", "title": "T", "context": "Ann rules Lyon.", "question": "Who rules?",
             "answers": {"text": ["Ann", "Ann", "Queen Ann"], "answer_start": [0, 0, 0]}},
            {"id": "a2", "title": "T", "context": "Ann rules Lyon.", "question": "Which city?",
             "answers": {"text": [], "answer_start": []}}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"squad\.jsonl, line 2, field 'answers': no gold answer"):
        load_data(str(p))
    p.write_text(json.dumps(rows[0]) + "\n")
    ex = load_data(str(p)).examples[0]
    assert ex.id == "a1" and ex.cf_targets() == ["Ann", "Queen Ann"] and ex.param_answer is None


def test_rc_prompt_is_the_papers():
    assert get_format("rc").render("Ctx.", "Who?") == "Ctx.\nAnswer the question according to the above passage: Who?"
    assert get_format("rc-chat").chat


@pytest.mark.parametrize("fmt", ["rc", "rc-chat"])
def test_eval_on_squad_sample(tiny_model_dir, shared_data, tmp_path, fmt):
    out = tmp_path / fmt
    rc = main(["eval", "--model", str(tiny_model_dir("gpt2")), "--data",
               str(shared_data / "squad" / "squad_dev_v1.1_part1.json"), "--format", fmt, "--limit", "3",
               "--mode", "both", "--max-new-tokens", "4", "--n-boot", "0", "--indicator", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    m = s["metrics"]["squad_dev_v1.1_part1"]
    for key in ("contains", "exact_match", "f1"):
        assert 0.0 <= m[key]["mean"] <= 1.0
    assert m["param_acc"] is None and m["m_c"] is None and m["buckets"] is None  # absent, not 0
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert all({"contains", "exact_match", "f1"} <= set(r) for r in rows)
    assert all(r["prompt"].rstrip().endswith("[IND]") or "[IND]" in r["prompt"] for r in rows)


def test_conflict_rows_get_no_rc_metrics(tiny_llama):
    from ctxrely.engine.api import evaluate

    model, tok = tiny_llama
    res = evaluate(model, tok, ["cf_capitals"], mode="generate", limit=2, max_new_tokens=3, progress=False, n_boot=0)
    assert "f1" not in res.rows[0] and "f1" not in res.summary["metrics"]["cf_capitals"]
