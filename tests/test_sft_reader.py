"""The one SFT-row reader: every format x every file type through load -> convert -> write -> reload,
CSV chat rows (issue 8, defect 8), one rule for a reply without a user turn, encoding errors."""

from __future__ import annotations

import itertools

import pytest

from ctxrely.data.records import read_records, write_rows
from ctxrely.data.sft import load_sft
from ctxrely.errors import DataError
from ctxrely.train.data import to_sft_rows
from test_diagnose_rows import QA, TEMPLATE, make_rows

KINDS = {  # rows kind -> load_sft options
    "alpaca": {}, "messages": {}, "messages_tmpl": {"context_template": TEMPLATE},
    "pc": {"context_field": "passage"}, "pc_tmpl": {"context_template": TEMPLATE + "\nAnswer:"},
    "pc_conv": {"context_template": TEMPLATE},
}
TYPES = ("jsonl", "json", "csv", "tsv")


def _view(ex):
    return (ex.fmt, ex.context, ex.prompt_with_context, ex.prompt_without_context, ex.response, ex.history)


@pytest.mark.parametrize("kind,ftype", list(itertools.product(KINDS, TYPES)))
def test_load_convert_write_reload(tmp_path, kind, ftype):
    src = write_rows(tmp_path / f"in.{ftype}", make_rows(kind))
    data = load_sft(src, **KINDS[kind])
    assert [ex.context for ex in data.examples] == [c for c, _, _ in QA]
    assert [ex.response.strip() for ex in data.examples] == [a for _, _, a in QA]
    trl = to_sft_rows(read_records(str(src)), prompt_format="raw", path=str(src))  # what `train` feeds TRL
    assert len(trl) == 8 and all(r["prompt"] and r["completion"] for r in trl)
    for other in TYPES:  # write the parsed rows in every file type and read them back
        back = load_sft(write_rows(tmp_path / f"out.{other}", [ex.raw for ex in data.examples],
                                   columns=data.columns), **KINDS[kind])
        assert [_view(ex) for ex in back.examples] == [_view(ex) for ex in data.examples], other


def test_csv_chat_rows_parse_and_train(tmp_path):
    path = write_rows(tmp_path / "chat.csv", make_rows("messages"))
    ex = load_sft(path).examples[0]
    assert ex.fmt == "messages" and ex.response == "Lyon" and ex.context == QA[0][0]
    trl = to_sft_rows(read_records(str(path)), path=str(path))
    assert trl[0]["completion"] == [{"role": "assistant", "content": "Lyon"}]


def test_reply_without_user_turn_is_refused_by_every_reader(tmp_path):
    row = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hi"}]}
    path = write_rows(tmp_path / "sys.jsonl", [row])
    with pytest.raises(DataError, match="line 1.*must follow a user message"):
        load_sft(path)
    with pytest.raises(DataError, match="line 1.*must follow a user message"):
        to_sft_rows(read_records(str(path)), path=str(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_non_utf8_file_names_the_line(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    good = '{"instruction": "Q?", "input": "", "output": "A"}\n'
    text = (good + good + '{"instruction": "Café?", "input": "", "output": "A"}\n') if suffix != ".csv" else \
        "instruction,input,output\nQ?,,A\nCafé?,,A\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError, match=r"line 3: not UTF-8 text \(byte 0xe9"):
        load_sft(path)


def test_one_object_wrapping_records_says_expected_a_list(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text('{"data": [{"context": "c", "question": "q", "answer": "a"}]}')
    with pytest.raises(DataError, match="line 1: one JSON object; expected a JSON list"):
        read_records(str(path))
