"""Training-row parsing: every supported format and file type, bad rows, templates, writing back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ctxrely.data.records import write_rows
from ctxrely.data.schema import DataError
from ctxrely.data.sft import load_sft, match_template
from ctxrely.data.sft import read_sft_records as read_records

QA = [
    ("The capital of France is Lyon.", "What is the capital of France?", "Lyon"),
    ("Berlin is the capital of Germany.", "What is the capital of Germany?", "Berlin"),
    ("", "Say hello.", "Hello!"),
    ("The Mona Lisa was painted by Picasso.", "Who painted the Mona Lisa?", "Picasso"),
    ("Kabul is in Afghanistan.", "Where is Kabul?", "Afghanistan"),
    ("", "Name a color.", "Blue"),
    ("Paris moved to Herat.", "Where is Paris?", "Herat"),
    ("The answer is 42.", "What is the answer?", "42"),
]
TEMPLATE = "Context: {context}\n\nQuestion: {question}"


def _user(c: str, q: str) -> str:
    return TEMPLATE.format(context=c, question=q) if c else f"Question: {q}"


def make_rows(kind: str) -> list[dict]:
    """8 rows of one kind: alpaca, messages (context field), messages_tmpl, pc (context field), pc_tmpl, pc_conv."""
    out = []
    for i, (c, q, a) in enumerate(QA):
        if kind == "alpaca":
            out.append({"instruction": q, "input": c, "output": a})
        elif kind == "messages":
            msgs = [{"role": "user", "content": f"{c}\n\n{q}" if c else q}, {"role": "assistant", "content": a}]
            out.append({"id": f"m{i}", "messages": msgs, "context": c})
        elif kind == "messages_tmpl":
            out.append({"messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": _user(c, q)}, {"role": "assistant", "content": a}]})
        elif kind == "pc":
            out.append({"prompt": f"Q: {q}\nA:", "completion": f" {a}", "passage": c})
        elif kind == "pc_tmpl":
            out.append({"prompt": _user(c, q) + "\nAnswer:", "completion": f" {a}"})
        elif kind == "pc_conv":
            out.append({"prompt": [{"role": "user", "content": _user(c, q)}],
                        "completion": [{"role": "assistant", "content": a}]})
    return out


# (file name, rows kind, load_sft options)
CASES = [
    ("alpaca.jsonl", "alpaca", {}),
    ("alpaca.json", "alpaca", {}),
    ("alpaca.csv", "alpaca", {}),
    ("messages.jsonl", "messages", {}),
    ("messages_tmpl.jsonl", "messages_tmpl", {"context_template": TEMPLATE}),
    ("pc.jsonl", "pc", {"context_field": "passage"}),
    ("pc_tmpl.csv", "pc_tmpl", {"context_template": TEMPLATE + "\nAnswer:"}),
    ("pc_conv.jsonl", "pc_conv", {"context_template": TEMPLATE}),
]


def write_case(tmp_path: Path, name: str, kind: str) -> Path:
    return write_rows(tmp_path / name, make_rows(kind))


@pytest.mark.parametrize("name,kind,opts", CASES, ids=[c[0] for c in CASES])
def test_every_format_normalizes(tmp_path, name, kind, opts):
    path = write_case(tmp_path, name, kind)
    data = load_sft(path, **opts)
    assert len(data.examples) == 8
    for ex, (c, q, a) in zip(data.examples, QA, strict=True):
        assert ex.context == c and ex.has_context == bool(c)
        assert ex.response.strip() == a
        assert q in ex.prompt_with_context and q in ex.prompt_without_context
        if c:
            assert c in ex.prompt_with_context and c not in ex.prompt_without_context
            assert "Context:" not in ex.prompt_without_context
        else:
            assert ex.prompt_with_context == ex.prompt_without_context
    lines = [ex.line for ex in data.examples]
    assert lines == sorted(set(lines))  # physical lines (data.loaders): a multi-line CSV record ends on its line
    if name.endswith(".jsonl"):
        assert lines == list(range(1, 9))
    if name == "alpaca.csv":
        assert lines == list(range(2, 10))
    if name == "pc_tmpl.csv":  # a record with context spans 4 physical lines
        assert lines[:3] == [5, 9, 11]


def test_json_array_lines_are_real_lines(tmp_path):
    path = write_case(tmp_path, "a.json", "alpaca")
    lines = path.read_text().splitlines()
    for ex in load_sft(path).examples:
        assert '"instruction"' in lines[ex.line - 1] or lines[ex.line - 1].strip() == "{"


def test_autodetect_and_prompt_prepends_unembedded_context(tmp_path):
    data = load_sft(write_case(tmp_path, "pc.jsonl", "pc"), context_field="passage")
    assert data.fmt == "prompt_completion"
    ex = data.examples[0]
    assert ex.prompt_with_context == "The capital of France is Lyon.\n\nQ: What is the capital of France?\nA:"
    assert ex.prompt_without_context == "Q: What is the capital of France?\nA:"


@pytest.mark.parametrize("row,field,msg", [
    ({"instruction": "q", "output": ""}, "output", "empty"),
    ({"instruction": 3, "output": "a"}, "instruction", "expected text"),
    ({"output": "a", "input": "c"}, "instruction", "missing"),
])
def test_bad_alpaca_row_names_line_and_field(tmp_path, row, field, msg):
    rows = make_rows("alpaca")
    rows[5] = row
    path = write_rows(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=msg) as e:
        load_sft(path, fmt="alpaca")
    assert e.value.line == 6 and e.value.field == field and e.value.path == str(path)
    assert "line 6" in str(e.value) and field in str(e.value)


def test_bad_messages_and_json(tmp_path):
    rows = make_rows("messages")
    rows[2]["messages"] = [{"role": "user", "content": "hi"}]
    path = write_rows(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError, match=r"line 3, field 'messages\[0\]'.*assistant"):
        load_sft(path)
    path.write_text(path.read_text().replace('{"id": "m4"', '{"id": "m4",,', 1))
    with pytest.raises(DataError, match="line 5: bad JSON"):
        load_sft(path)


def test_template_mismatch_and_duplicate_ids(tmp_path):
    path = write_rows(tmp_path / "t.jsonl", make_rows("messages_tmpl"))
    with pytest.raises(DataError, match="no row matches --context-template"):
        load_sft(path, context_template="Passage: {context}\nQ: {question}")
    rows = make_rows("messages")
    rows[7]["id"] = "m1"
    with pytest.raises(DataError, match="line 8, field 'id': duplicate id 'm1'"):
        load_sft(write_rows(tmp_path / "d.jsonl", rows))


def test_skip_bad_keeps_the_good_rows(tmp_path):
    rows = make_rows("alpaca")
    rows[1]["output"] = "   "
    data = load_sft(write_rows(tmp_path / "s.jsonl", rows), skip_bad=True)
    assert len(data.examples) == 7 and len(data.errors) == 1 and data.errors[0].line == 2


def test_match_template_cut():
    m = match_template("Q: {question} C: {context}", "Q: Where? C: Paris.")
    assert m.without_context("Q: Where? C: Paris.") == "Q: Where?"
    assert m.question == (3, 9)
    with pytest.raises(ValueError, match="no {context}"):
        match_template("Q: {question}", "Q: x")


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv"])
def test_write_rows_round_trip(tmp_path, ext):
    rows = make_rows("alpaca")
    p = write_rows(tmp_path / f"r.{ext}", rows)
    back = [r for _, r in read_records(p)[0]]
    assert back == rows
    if ext == "csv":
        assert next(csv.reader(p.open()))[:3] == ["instruction", "input", "output"]
    conv = make_rows("pc_conv")
    p = write_rows(tmp_path / f"c.{ext}", conv)
    back = [r for _, r in read_records(p)[0]]
    if ext == "csv":  # lists are stored as JSON text and parsed back on load
        back = [{k: json.loads(v) for k, v in r.items()} for r in back]
    assert back == conv
