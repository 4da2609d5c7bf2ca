"""One meaning per name: renamed flags and constants keep their old names working.

Example:
    $ .venv/bin/python -m pytest -q tests/test_names.py
"""

from __future__ import annotations

import json

import pytest

from ctxrely.cli.main import build_parser


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def test_row_format_has_its_own_flag_and_format_still_works(parser, capsys):
    base = ["score-data", "--model", "m", "--data", "d.jsonl", "--out", "o"]
    assert parser.parse_args(base + ["--row-format", "prompt-completion"]).fmt == "prompt_completion"
    assert parser.parse_args(base).fmt == "auto"
    assert capsys.readouterr().err == ""
    assert parser.parse_args(base + ["--format", "alpaca"]).fmt == "alpaca"  # the former name
    assert "--format is deprecated in `ctxrely score-data`; use --row-format" in capsys.readouterr().err
    assert parser.parse_args(["augment", "--data", "d", "--out", "o", "--row-format", "chat"]).fmt == "messages"
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--row-format", "csv"])


def test_icl_data_row_layout_flag(parser, capsys):
    base = ["icl-data", "--data", "d", "--out", "o"]
    assert parser.parse_args(base + ["--row-format", "prompt-completion"]).format == "prompt-completion"
    assert parser.parse_args(base + ["--format", "chat"]).format == "chat"
    assert "use --row-format" in capsys.readouterr().err


def test_prompt_format_spelling_and_template_spellings(parser):
    assert parser.parse_args(["eval", "--model", "m", "--prompt-format", "chat"]).format == "chat"
    assert parser.parse_args(["eval", "--model", "m", "--format", "alpaca"]).format == "alpaca"
    assert parser.parse_args(["nih", "--model", "m", "--template", "plain"]).template == "raw"
    assert parser.parse_args(["attention", "--model", "m", "--nih", "--template", "plain"]).template == "raw"
    sd = ["score-data", "--model", "m", "--data", "d", "--out", "o", "--template"]
    assert parser.parse_args(sd + ["raw"]).template == "plain"
    assert parser.parse_args(sd + ["chat"]).template == "chat"


def test_both_spellings_of_prompt_completion_read_and_write(tmp_path):
    from ctxrely.data.sft import FORMATS, ROW_FORMATS, load_sft
    from ctxrely.icl.rows import build_rows

    assert FORMATS is ROW_FORMATS
    path = tmp_path / "pc.jsonl"
    path.write_text(json.dumps({"prompt": "Q: capital of France?\nA:", "completion": " Paris"}) + "\n",
                    encoding="utf-8")
    for spelling in ("prompt_completion", "prompt-completion"):
        data = load_sft(str(path), fmt=spelling)
        assert data.fmt == "prompt_completion" and data.examples[0].response.strip() == "Paris"
    pool = [{"id": str(i), "input": f"word{i}", "output": f"out{i}"} for i in range(6)]
    a = build_rows(pool, k=2, strategy="random", similarity="chrf", fmt="prompt-completion")
    b = build_rows(pool, k=2, strategy="random", similarity="chrf", fmt="prompt_completion")
    assert a == b and set(a[0]) >= {"prompt", "completion"}


def test_config_literals_accept_both_spellings():
    from ctxrely.config import from_dict
    from ctxrely.errors import ConfigError
    from ctxrely.train.config import TrainConfig

    assert from_dict(TrainConfig, {"dataset_format": "prompt-completion"}).dataset_format == "prompt_completion"
    with pytest.raises(ConfigError, match="is not one of"):
        from_dict(TrainConfig, {"dataset_format": "prompt-x"})
