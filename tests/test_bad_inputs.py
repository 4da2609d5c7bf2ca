"""Issue 8: every listed bad input gives one line on stderr and a non-zero exit (a traceback only
with ``--debug``), and custom templates / augmentation do what they say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ctxrely.cli.main import main
from ctxrely.errors import ConfigError, CtxrelyError
from test_diagnose_rows import make_rows
from test_eval_cli import ARGS, GOOD, run_eval, write_cpi


def one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for frag in fragments:
        assert frag in err[0], (frag, err[0])
    return err[0]


@pytest.fixture
def data(tmp_path) -> Path:
    return write_cpi(tmp_path / "d.json", [GOOD, dict(GOOD, question="Which city is the capital of France?")])


@pytest.fixture
def sft(tmp_path) -> Path:
    from ctxrely.data.records import write_rows

    return write_rows(tmp_path / "train.jsonl", make_rows("alpaca"))


def latin1(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


# ----------------------------------------------------------------------------- the --debug switch


def test_debug_shows_the_traceback(capsys, tiny_model_dir, data):
    argv = ["eval", "--model", str(tiny_model_dir("llama")), "--data", str(data), "--batch-size", "0"]
    one_line_error(capsys, argv, "--batch-size must be >= 1")
    with pytest.raises(ConfigError, match="--batch-size"):
        main(["--debug", *argv])


# ----------------------------------------------------------------------------- eval (defects 3, 4, 5)


def test_custom_template_escapes_are_decoded(tiny_model_dir, data, tmp_path):
    out = tmp_path / "run"
    assert run_eval(tiny_model_dir("llama"), out, "--data", str(data), "--mode", "logits",
                    "--format", "Passage: {context}\\nQ: {question}\\nA:") == 0
    prompt = json.loads((out / "examples.jsonl").read_text().splitlines()[0])["prompt"]
    assert prompt == f"Passage: {GOOD['context']}\nQ: {GOOD['question']}\nA:" and "\\n" not in prompt


@pytest.mark.parametrize("template, says", [
    ("Passage: {context}\nA:", "has no {question} placeholder"),
    ("Q: {question}\nA:", "has no {context} placeholder"),
    ("{context} {foo} {question}", "unknown placeholder(s) {foo}"),
    ("{context} {question} a { b", "literal brace"),
])
def test_bad_custom_templates(capsys, tiny_model_dir, data, template, says):
    one_line_error(capsys, ["eval", "--model", str(tiny_model_dir("llama")), "--data", str(data),
                            "--format", template], says)


def test_eval_refusals(capsys, tiny_model_dir, data, tmp_path):
    from ctxrely.models.tiny import save_tiny

    model = str(tiny_model_dir("llama"))
    one_line_error(capsys, ["eval", "--model", model, "--data", str(data), "--batch-size", "0"], "--batch-size")
    (tmp_path / "file.txt").write_text("x")
    one_line_error(capsys, ["eval", "--model", model, "--data", str(data), "--out", str(tmp_path / "file.txt")],
                   "is an existing file")
    bad = latin1(tmp_path / "latin1.jsonl", json.dumps(GOOD) + "\n" + json.dumps(dict(GOOD, question="Où?"),
                                                                               ensure_ascii=False) + "\n")
    one_line_error(capsys, ["eval", "--model", model, "--data", str(bad)], "latin1.jsonl, line 2", "not UTF-8")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [GOOD]}))
    one_line_error(capsys, ["eval", "--model", model, "--data", str(wrapped)], "expected a JSON list")
    no_chat = tmp_path / "no-chat"
    shutil.copytree(model, no_chat)
    cfg = json.loads((no_chat / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (no_chat / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in no_chat.glob("chat_template.*"):
        f.unlink()
    one_line_error(capsys, ["eval", "--model", str(no_chat), "--data", str(data), "--format", "chat",
                            "--out", str(tmp_path / "o")], "needs a tokenizer with a chat template")
    short = save_tiny(tmp_path / "short", "llama", max_position_embeddings=32)
    long_q = write_cpi(tmp_path / "long.json", [dict(GOOD, question="Why " * 40 + "?")])
    one_line_error(capsys, ["eval", "--model", str(short), "--data", str(long_q), "--out", str(tmp_path / "o2"),
                            *ARGS], "the question cannot be shortened")


def test_model_folder_with_only_a_config(capsys, tiny_model_dir, data, tmp_path):
    only = tmp_path / "only-config"
    only.mkdir()
    shutil.copy(tiny_model_dir("llama") / "config.json", only)
    err = one_line_error(capsys, ["eval", "--model", str(only), "--data", str(data)], "no tokenizer files")
    assert "sentencepiece" not in err


# ----------------------------------------------------------------------------- score-data / filter / augment


def test_score_data_and_augment_non_utf8(capsys, tiny_model_dir, tmp_path):
    bad = latin1(tmp_path / "t.csv", "instruction,input,output\nQ?,C.,A\nCafé?,C.,A\n")
    one_line_error(capsys, ["score-data", "--model", str(tiny_model_dir("llama")), "--data", str(bad), "--out",
                            str(tmp_path / "s"), "--no-progress"], "t.csv, line 3", "not UTF-8")
    one_line_error(capsys, ["augment", "--data", str(bad), "--out", str(tmp_path / "a.csv")], "t.csv, line 3")


def test_augment_refusals(capsys, sft, tmp_path):
    one_line_error(capsys, ["augment", "--data", str(sft), "--out", str(tmp_path / "x.jsonl"), "--ratio", "-0.5"],
                   "--ratio must be >= 0")
    before = sft.read_bytes()
    one_line_error(capsys, ["augment", "--data", str(sft), "--out", str(sft)], "is the input file")
    assert sft.read_bytes() == before


def test_filter_refusals(capsys, tiny_model_dir, sft, tmp_path):
    out = tmp_path / "scores"
    assert main(["score-data", "--model", str(tiny_model_dir("llama")), "--data", str(sft), "--out", str(out),
                 "--no-progress", "--no-attention"]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["filter", "--scores", str(out), "--drop", "1.5", "--out", str(tmp_path / "f.jsonl")],
                   "drop must be a share in [0, 1)")
    one_line_error(capsys, ["filter", "--scores", str(out), "--by", "class", "--classes", "X,Y",
                            "--out", str(tmp_path / "f.jsonl")], "unknown class(es) ['X', 'Y']")
    assert not (tmp_path / "f.jsonl").exists()


# ----------------------------------------------------------------------------- train (defect 7)


def test_train_with_a_missing_dataset_leaves_nothing_behind(capsys, tmp_path):
    run = tmp_path / "run"
    one_line_error(capsys, ["train", "model=tiny", f"output_dir={run}", f"dataset={tmp_path / 'nope.jsonl'}",
                            "suites="], "nope.jsonl", "no such file")
    assert not run.exists()


# ----------------------------------------------------------------------------- augment (defect 6)


def test_augment_swaps_every_mention_of_a_name():
    from ctxrely.mitigate.augment import augment

    rows = [{"instruction": "Who proposed quantised electron orbits?", "output": "Niels Bohr.",
             "input": "Niels Bohr was a Danish physicist. Bohr was educated in Copenhagen, and Bohr's model "
                      "of the atom made him famous."},
            {"instruction": "Who wrote about evolution?", "output": "Marie Curie",
             "input": "Marie Curie and Pierre Curie shared a prize."}]
    res = augment(rows, ratio=1.0, entity_pool=["Charles Darwin", "Ada Lovelace"], seed=0)
    (m,) = res.manifest
    new = res.rows[m["index"]]
    assert "Bohr" not in new["input"] and "Bohr" not in new["output"] and "Niels" not in new["input"]
    last = m["substitute"].split()[-1]
    assert new["input"].count(last) == 3 and f"{last}'s model" in new["input"]
    assert res.n_left_mentions == 1  # "Pierre Curie" would keep the surname: the row is skipped and counted


def test_errors_are_ctxrely_errors_and_value_errors():
    from ctxrely.data.schema import DataError as OldPath
    from ctxrely.errors import DataError
    from ctxrely.registry import UnknownNameError

    assert OldPath is DataError and issubclass(DataError, CtxrelyError) and issubclass(DataError, ValueError)
    assert issubclass(UnknownNameError, CtxrelyError) and issubclass(UnknownNameError, KeyError)


@pytest.mark.parametrize("lab, argv", [
    ("ctxrely.icl.lab", ["--k", "3"]),
    ("ctxrely.awareness.lab", ["--max-steps", "7"]),
])
def test_lab_entry_points_end_in_one_line(capsys, tmp_path, lab, argv):
    """``python -m ctxrely.<lab>`` refuses other settings in a used --out with one line and status 2
    (before any model is loaded), and the traceback only with --debug."""
    import importlib

    main_of = importlib.import_module(lab).main
    (tmp_path / "settings.json").write_text(json.dumps({"model": "another-model"}))
    assert main_of(["--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "other settings (model" in err[0], err
    with pytest.raises(ConfigError):
        main_of(["--out", str(tmp_path), *argv, "--debug"])


def test_icl_report_names_the_damaged_log_line(tmp_path):
    """A hand-damaged ``trajectory_examples.jsonl`` stops the IC-Train report with a DataError naming
    file and line (a KeyError traceback before), so the lab's command line ends in one line."""
    from ctxrely.errors import DataError
    from ctxrely.icl.report import write_icl_report

    run = tmp_path / "runs" / "random-s0"
    run.mkdir(parents=True)
    (run / "lab_done.json").write_text("{}")
    (run / "trajectory.jsonl").write_text(json.dumps({"step": 0, "icl_probe/cf_acc": 0.5}) + "\n")
    (run / "probe_set.jsonl").write_text("")
    (run / "trajectory_examples.jsonl").write_text('{"step": 0, "rows": []}\n{"step": 30}\n')
    with pytest.raises(DataError, match=r"trajectory_examples.jsonl:2: not a logged evaluation"):
        write_icl_report(tmp_path, ["random"])
