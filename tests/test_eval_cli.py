"""``ctxrely eval`` end to end through ``ctxrely.cli.main.main`` on saved tiny models, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxrely.cli.main import main

ARGS = ["--limit", "4", "--max-new-tokens", "6", "--n-boot", "0", "--no-progress"]


def run_eval(model_dir: Path | str, out: Path, *extra: str) -> int:
    return main(["eval", "--model", str(model_dir), "--out", str(out), *ARGS, *extra])


def write_cpi(path: Path, records: list[dict], jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n", encoding="utf-8")
    return path


GOOD = {"context": "In 2001 the capital of France moved from Paris to Lyon.",
        "question": "What is the capital of France?", "answer": "Lyon", "memory_answer": "Paris"}


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2", "qwen2"])
def test_eval_writes_summary_and_rows(tiny_model_dir, tmp_path, arch):
    out = tmp_path / "run"
    assert run_eval(tiny_model_dir(arch), out, "--suites", "cf_capitals,cf_quotes", "--mode", "both") == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["suite"] for r in rows} == {"cf_capitals", "cf_quotes"}
    for key in ("cf_acc", "param_acc", "logit_cf_rate", "m_c", "both", "neither"):
        for suite in ("cf_capitals", "cf_quotes", "all"):
            assert 0.0 <= summary["flat"][f"{suite}/{key}"] <= 1.0, (suite, key)
    assert summary["config"]["format"]["name"] == "raw" and summary["config"]["suites"]["cf_capitals"]["hash"]
    assert summary["provenance"]["versions"]["torch"]
    assert all(isinstance(r["output"], str) and r["logp_cf"] < 0 for r in rows)
    assert not (out / "examples.partial.jsonl").exists()


def test_cli_numbers_equal_the_python_api(tiny_model_dir, tiny_llama, tmp_path):
    from ctxrely.engine.api import evaluate

    out = tmp_path / "run"
    assert run_eval(tiny_model_dir("llama"), out, "--suites", "cf_world_facts", "--mode", "both",
                    "--format", "alpaca-ctx") == 0
    cli = json.loads((out / "summary.json").read_text())["flat"]
    model, tok = tiny_llama
    api = evaluate(model, tok, ["cf_world_facts"], fmt="alpaca-ctx", mode="both", limit=4, max_new_tokens=6,
                   n_boot=0, progress=False).metrics
    assert cli.keys() == api.keys()
    for k in api:
        assert cli[k] == pytest.approx(api[k], abs=1e-6), k


def test_eval_on_published_data_and_chat_format(tiny_model_dir, tmp_path, shared_data):
    out = tmp_path / "run"
    data = shared_data / "cf_capitals" / "country_capitals_only.json"
    assert run_eval(tiny_model_dir("qwen2"), out, "--data", str(data), "--format", "chat", "--mode", "logits") == 0
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["prompt"].startswith("<|im_start|>user\n")
    assert "output" not in rows[0] and rows[0]["cf_wins"] in (True, False)


def test_long_prompts_are_shortened_with_a_warning(tiny_tokenizer, tmp_path, caplog):
    from ctxrely.models.tiny import save_tiny

    model_dir = save_tiny(tmp_path / "short-window", "llama", tokenizer=tiny_tokenizer, max_position_embeddings=96)
    long = dict(GOOD, context="Paris was the capital for a very long time. " * 60)
    data = write_cpi(tmp_path / "long.json", [long, GOOD])
    out = tmp_path / "run"
    assert run_eval(model_dir, out, "--data", str(data), "--mode", "both") == 0
    assert "shortened the context of 1/2 prompts" in caplog.text
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert rows[0]["context_truncated"] is True and rows[1]["context_truncated"] is False
    assert rows[0]["prompt"].endswith("\nQuestion: What is the capital of France?\nAnswer:")
    assert len(tiny_tokenizer(rows[0]["prompt"])["input_ids"]) + 6 <= 96


def test_tokenizer_without_pad_token(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    src = tiny_model_dir("gpt2")
    padless = tmp_path / "padless"
    padless.mkdir()
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        (padless / f).write_bytes((src / f).read_bytes())
    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token = None
    tok.save_pretrained(padless)
    out = tmp_path / "run"
    assert run_eval(padless, out, "--suites", "cf_bio", "--mode", "both") == 0
    ref = tmp_path / "ref"
    assert run_eval(src, ref, "--suites", "cf_bio", "--mode", "both") == 0
    a = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (ref / "examples.jsonl").read_text().splitlines()]
    assert [r["output"] for r in a] == [r["output"] for r in b]


# --- bad input: one clear line, exit code 2 ----------------------------------------------------------

def expect_error(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ")
    for frag in fragments:
        assert frag in err, (frag, err)
    return err


def test_missing_model_path(capsys, tmp_path):
    expect_error(capsys, ["eval", "--model", str(tmp_path / "nope" / "model"), "--suites", "cf_capitals"],
                 "model path not found")
    (tmp_path / "empty").mkdir()
    expect_error(capsys, ["eval", "--model", str(tmp_path / "empty"), "--suites", "cf_capitals"], "no config.json")


def test_unknown_suite_and_format_suggest_near_names(capsys, tiny_model_dir):
    model = str(tiny_model_dir("llama"))
    expect_error(capsys, ["eval", "--model", model, "--suites", "cf_capitls"], "did you mean 'cf_capitals'")
    expect_error(capsys, ["eval", "--model", model, "--suites", "cf_capitals", "--format", "alpacca"],
                 "unknown format 'alpacca'", "did you mean 'alpaca'")


def test_nothing_to_evaluate(tiny_model_dir):
    with pytest.raises(SystemExit, match="--suites"):
        main(["eval", "--model", str(tiny_model_dir("llama"))])


def test_malformed_rows_name_file_line_and_field(capsys, tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("llama"))
    bad_type = write_cpi(tmp_path / "bad.jsonl", [GOOD, GOOD, dict(GOOD, question=5)], jsonl=True)
    expect_error(capsys, ["eval", "--model", model, "--data", str(bad_type)], "bad.jsonl", "line 3", "'question'")
    missing = write_cpi(tmp_path / "missing.json", [GOOD, {k: v for k, v in GOOD.items() if k != "answer"}])
    expect_error(capsys, ["eval", "--model", model, "--data", str(missing)], "missing.json", "line 3")
    torn = tmp_path / "torn.jsonl"
    torn.write_text(json.dumps(GOOD) + '\n{"context": "c", "question"\n')
    expect_error(capsys, ["eval", "--model", model, "--data", str(torn)], "torn.jsonl", "line 2", "bad JSON")


def test_empty_answers_are_refused(capsys, tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("llama"))
    empty_cf = write_cpi(tmp_path / "empty.json", [GOOD, dict(GOOD, answer="  ")])
    expect_error(capsys, ["eval", "--model", model, "--data", str(empty_cf)], "empty.json", "line 3", "'answer'")
    empty_alias = write_cpi(tmp_path / "alias.jsonl", [dict(GOOD, answer=["Lyon", ""])], jsonl=True)
    expect_error(capsys, ["eval", "--model", model, "--data", str(empty_alias)], "alias.jsonl", "line 1",
                 "empty answer")
    # a blank parametric answer means "none" (the loader's rule): param metrics are absent, not 0
    blank = write_cpi(tmp_path / "blank_param.jsonl", [dict(GOOD, memory_answer="")], jsonl=True)
    out = tmp_path / "run"
    assert run_eval(model, out, "--data", str(blank), "--mode", "both") == 0
    row = json.loads((out / "examples.jsonl").read_text().splitlines()[0])
    assert row["param_answer"] is None and row["param_hit"] is None and row["m_c"] is None


def test_custom_code_is_refused_without_trust_remote_code(capsys, tiny_model_dir, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    src = tiny_model_dir("llama")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (evil / f).write_bytes((src / f).read_bytes())
    (evil / "config.json").write_text(json.dumps({
        "model_type": "ctxrely_evil", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}))
    (evil / "evil.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('ran')\n"
        "from transformers import LlamaConfig\nclass EvilConfig(LlamaConfig):\n    model_type = 'ctxrely_evil'\n")
    expect_error(capsys, ["eval", "--model", str(evil), "--suites", "cf_capitals"], "--trust-remote-code")
    assert not (evil / "RAN").exists()
