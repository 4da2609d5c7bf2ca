"""``ctxrely export-lm-eval``: the exported tasks load in lm-eval and reproduce ctxrely's numbers."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from ctxrely.data.schema import ConflictExample
from ctxrely.integrations.lmeval import helper as lmeval_helper
from ctxrely.integrations.lmeval.export import (
    GEN_METRICS,
    MC_METRICS,
    export_lm_eval,
    export_rows,
    helper_source,
    task_name,
)
from ctxrely.metrics import matching
from ctxrely.metrics.conflict import gen_flags, logit_flags
from ctxrely.prompts import get_format

CAPS = [("France", "Paris", "Lyon"), ("Germany", "Berlin", "Munich"), ("Italy", "Rome", "Milan"),
        ("Spain", "Madrid", "Seville"), ("Japan", "Tokyo", "Osaka"), ("Egypt", "Cairo", "Luxor"),
        ("Peru", "Lima", "Cusco"), ("Chile", "Santiago", "Valparaiso")]


def make_examples(n: int = 24, suite: str = "demo", no_param_every: int = 0) -> list[ConflictExample]:
    out = []
    for i in range(n):
        country, real, fake = CAPS[i % len(CAPS)]
        param = None if no_param_every and i % no_param_every == 0 else real
        out.append(ConflictExample(
            id=f"e{i}", suite=suite, context=f"In 20{i:02d} the capital of {country} moved from {real} to {fake}.",
            question=f"What is the capital of {country}?", cf_answer=fake, param_answer=param,
            cf_aliases=(f"{fake} City",) if i % 5 == 0 else (),
        ))
    return out


class _YamlLoader(yaml.SafeLoader):
    pass


_YamlLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def read_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)  # noqa: S506 (SafeLoader subclass)


# --- the exported helper carries ctxrely's own matching code ---------------------------------

TEXTS = ["The  Eiffel Tower!", "It is in Herat, the new capital.", "Ｈｅｒａｔ", "an apple a day", "São Paulo",
         "“Kabul” — no", "Herat.", "herat-kabul", "", "   ", "the", "Rock'n'roll", "x\ny\tz", "New York City",
         "Kabul City", "L'Aquila", "A", "Ålesund", "Köln/Cologne", "1.5 km", "Mc-Donald's"]


@pytest.mark.parametrize("text", TEXTS)
def test_helper_normalisation_equals_ctxrely(text):
    assert lmeval_helper.normalize_answer(text) == matching.normalize_answer(text)
    for targets in (["Herat"], ["herat", "Kabul"], ["the"], ["City"], [text], [""], ["São"]):
        for mode in ("squad", "raw"):
            assert lmeval_helper.contains(text, targets, mode) == matching.contains(text, targets, mode)


def test_exported_helper_is_standalone_and_generated_from_matching():
    src = helper_source()
    ns: dict = {"__name__": "utils"}
    exec(compile(src, "utils.py", "exec"), ns)  # runs without ctxrely's matching module
    assert ns["_PUNCT"] == matching._PUNCT and ns["_ARTICLES"].pattern == matching._ARTICLES.pattern
    for text in TEXTS:
        assert ns["normalize_answer"](text) == matching.normalize_answer(text)
    assert ns["contains"]("Herat.", ["herat"]) and not ns["contains"]("Herat.", ["herat"], "raw")
    assert set(ns["process_generation"]({"cf_targets": ["a"], "param_targets": ["b"]}, ["a"])) == set(GEN_METRICS)
    assert set(ns["process_choice"]({}, [(-1.0, False), (-2.0, False)])) == set(MC_METRICS)
    tree = ast.parse(src)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "ctxrely" not in imported and "torch" not in imported


@pytest.mark.parametrize("output", ["Lyon", "Paris", "Lyon, not Paris", "nothing", "Lyon City", ""])
def test_process_generation_equals_gen_flags(output):
    ex = make_examples(1)[0]
    row = export_rows([ex], get_format("raw"))[0]
    ours = gen_flags(output, ex.cf_targets(), ex.param_targets())
    got = lmeval_helper.process_generation(row, [output])
    assert got["cf_acc"] == float(ours["cf_hit"]) and got["param_acc"] == float(ours["param_hit"])
    assert [b for b in ("cf_only", "param_only", "both", "neither") if got[b] == 1.0] == [ours["bucket"]]


def test_process_choice_equals_logit_flags():
    flags = logit_flags(-1.25, -3.5)
    got = lmeval_helper.process_choice({}, [(-1.25, False), (-3.5, False)])
    assert got["acc"] == float(flags["cf_wins"]) and got["m_c"] == pytest.approx(flags["m_c"], abs=1e-15)
    assert lmeval_helper.process_choice({}, [(-2.0, False), (-2.0, False)])["acc"] == 0.0  # a tie is not a win


# --- what the exporter writes ----------------------------------------------------------------------

def test_export_writes_tasks_groups_and_metadata(tmp_path):
    exs = make_examples(6) + make_examples(4, suite="other-suite!", no_param_every=2)
    tasks = export_lm_eval(tmp_path, examples=exs, max_new_tokens=7, stop=["\n", "END"])
    names = {t.name: t for t in tasks}
    assert set(names) == {"ctxrely_demo_gen", "ctxrely_demo_mc", "ctxrely_other_suite_gen", "ctxrely_other_suite_mc",
                          "ctxrely_gen", "ctxrely_mc", "ctxrely"}
    assert names["ctxrely_other_suite_mc"].n_docs == 2  # only docs with a parametric answer have two choices
    gen = read_yaml(tmp_path / "demo" / "gen.yaml")
    assert gen["generation_kwargs"] == {"until": ["\n", "END"], "do_sample": False, "temperature": 0.0,
                                        "max_gen_toks": 7}
    assert gen["process_results"] == "!function utils.process_generation"
    fmt = get_format("raw")
    assert gen["metadata"]["format_hash"] == fmt.hash and gen["metadata"]["format"] == "raw"
    from ctxrely.data.schema import content_hash

    assert gen["metadata"]["suite_hash"] == content_hash(exs[:6])
    mc = read_yaml(tmp_path / "demo" / "mc.yaml")
    assert mc["target_delimiter"] == "" and mc["doc_to_choice"] == "choices" and mc["doc_to_target"] == 0
    group = read_yaml(tmp_path / "ctxrely_gen.yaml")
    assert group["task"] == ["ctxrely_demo_gen", "ctxrely_other_suite_gen"]
    rows = [json.loads(line) for line in (tmp_path / "demo" / "data.jsonl").read_text().splitlines()]
    assert rows[0]["prompt"].endswith("Answer:") and rows[0]["choices"] == [" Lyon", " Paris"]
    assert rows[0]["cf_targets"] == ["Lyon", "Lyon City"]
    assert (tmp_path / "demo" / "utils.py").read_text() == helper_source()


def test_default_stop_strings_are_ctxrelys(tmp_path):
    from ctxrely.engine.generate import DEFAULT_STOP

    export_lm_eval(tmp_path, examples=make_examples(2))
    assert read_yaml(tmp_path / "demo" / "gen.yaml")["generation_kwargs"]["until"] == list(DEFAULT_STOP)


def test_chat_format_needs_a_tokenizer_and_uses_its_template(tmp_path, tiny_tokenizer):
    from ctxrely.errors import ConfigError

    with pytest.raises(ConfigError, match="tokenizer"):
        export_lm_eval(tmp_path, examples=make_examples(2), fmt="chat")
    tasks = export_lm_eval(tmp_path, examples=make_examples(2), fmt="chat", tokenizer=tiny_tokenizer)
    assert tasks[0].name == task_name("ctxrely", "demo", get_format("chat"), "gen") == "ctxrely_demo_chat_gen"
    row = json.loads((tmp_path / "demo" / "data.jsonl").read_text().splitlines()[0])
    assert row["prompt"].startswith("<|im_start|>user\n") and row["prompt"].endswith("<|im_start|>assistant\n")
    assert row["choices"][0] == "Lyon"  # the prompt ends in a newline: no leading space, as ctxrely scores it
    meta = read_yaml(tmp_path / "demo" / "gen.yaml")["metadata"]
    assert meta["format_hash"] == get_format("chat").chat_hash(tiny_tokenizer) != get_format("chat").hash


def test_long_context_is_shortened_but_never_the_question(tiny_tokenizer):
    ex = ConflictExample("long", "demo", "The capital moved to Herat. " * 200, "What is the capital of Afghanistan?",
                         "Herat", "Kabul")
    row = export_rows([ex], get_format("raw"), tiny_tokenizer, max_length=128, reserve=16)[0]
    assert row["context_truncated"] is True
    assert row["prompt"].endswith("\nQuestion: What is the capital of Afghanistan?\nAnswer:")
    assert len(tiny_tokenizer(row["prompt"])["input_ids"]) + 16 <= 128


def test_two_suites_with_one_task_name_are_refused(tmp_path):
    with pytest.raises(ValueError, match="one task name"):
        export_lm_eval(tmp_path, examples=make_examples(2, suite="a-b") + make_examples(2, suite="a_b"))


# --- lm-eval itself, on a tiny model, reproduces ctxrely's numbers ---------------------------------

@pytest.fixture(scope="module")
def quiet_llama(tiny_model_dir):
    """A tiny Llama whose non-EOS special tokens can never win the argmax (their lm_head rows are 0).

    lm-eval decodes with ``skip_special_tokens=True`` and so keeps text a model writes after
    ``<|im_end|>``, where ctxrely stops at that stop string; a random model emits such tokens often.
    """
    import torch

    from ctxrely.models.load import load_model

    model, tok = load_model(str(tiny_model_dir("llama")))
    quiet = [tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens if t != tok.eos_token]
    with torch.no_grad():
        model.lm_head.weight[quiet] = 0.0
    return model, tok


def test_lm_eval_reproduces_ctxrely_numbers(tmp_path, quiet_llama):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from ctxrely.engine.api import evaluate

    model, tok = quiet_llama
    exs = make_examples(24, no_param_every=6)
    export_lm_eval(tmp_path, examples=exs, max_new_tokens=12)
    ours = evaluate(model, tok, examples=exs, mode="both", max_new_tokens=12, batch_size=8, n_boot=0,
                    progress=False)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8)
    out = lm_eval.simple_evaluate(model=lm, tasks=["ctxrely"], task_manager=TaskManager(
        include_path=str(tmp_path), include_defaults=False), log_samples=True, bootstrap_iters=0)
    gen, mc = out["results"]["ctxrely_demo_gen"], out["results"]["ctxrely_demo_mc"]
    m = ours.metrics
    for key in ("cf_acc", "param_acc", "cf_only", "param_only", "both", "neither"):
        assert gen[f"{key},none"] == pytest.approx(m[f"demo/{key}"], abs=1e-9), key
    assert mc["acc,none"] == pytest.approx(m["demo/logit_cf_rate"], abs=1e-9)
    assert mc["m_c,none"] == pytest.approx(m["demo/m_c"], abs=1e-4)  # float32 log-probs, other batching
    # per example: same answer text, same win/loss, same counts
    rows = {r["id"]: r for r in ours.rows}
    samples = out["samples"]
    assert len(samples["ctxrely_demo_gen"]) == 24 and len(samples["ctxrely_demo_mc"]) == 20
    for s in samples["ctxrely_demo_gen"]:
        assert s["filtered_resps"][0].strip() == rows[s["doc"]["id"]]["output"]
    for s in samples["ctxrely_demo_mc"]:
        (ll_cf, _), (ll_pa, _) = s["filtered_resps"]
        r = rows[s["doc"]["id"]]
        assert (ll_cf > ll_pa) == r["cf_wins"]
        assert ll_cf == pytest.approx(r["logp_cf"], abs=1e-4) and ll_pa == pytest.approx(r["logp_param"], abs=1e-4)
    n_cf = sum(r["cf_hit"] for r in ours.rows)
    assert sum(s["cf_acc"] for s in samples["ctxrely_demo_gen"]) == n_cf


# --- the command line --------------------------------------------------------------------------------

def test_cli_exports_builtin_suites_by_default(tmp_path, capsys):
    from ctxrely.cli.main import main
    from ctxrely.registry import SUITES, load_builtins

    load_builtins()
    assert main(["export-lm-eval", str(tmp_path), "--limit", "3", "--max-new-tokens", "9"]) == 0
    assert "lm_eval --model hf" in capsys.readouterr().out
    for suite in SUITES.names():
        rows = (tmp_path / suite / "data.jsonl").read_text().splitlines()
        assert len(rows) == 3
        gen = read_yaml(tmp_path / suite / "gen.yaml")
        assert gen["task"] == f"ctxrely_{suite}_gen" and gen["generation_kwargs"]["max_gen_toks"] == 9
        assert gen["metadata"]["suite_version"] == str(SUITES.entry(suite).meta["version"])
    assert set(read_yaml(tmp_path / "ctxrely.yaml")["task"]) == {"ctxrely_gen", "ctxrely_mc"}


def test_cli_chat_format_with_a_tokenizer_and_published_data(tmp_path, tiny_model_dir, shared_data):
    from ctxrely.cli.main import main

    data = shared_data / "cf_capitals" / "country_capitals_only.json"
    argv = ["export-lm-eval", str(tmp_path), "--data", str(data), "--format", "chat-ctx", "--limit", "5",
            "--tokenizer", str(tiny_model_dir("llama")), "--prefix", "cr"]
    assert main(argv) == 0
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    gen = read_yaml(folder / "gen.yaml")
    assert gen["task"].startswith("cr_") and gen["task"].endswith("_chat_ctx_gen")
    row = json.loads((folder / "data.jsonl").read_text().splitlines()[0])
    assert row["prompt"].startswith("<|im_start|>user\n") and "based on the context" in row["prompt"]


@pytest.mark.parametrize("argv, fragments", [
    (["--suites", "cf_capitls"], ["did you mean 'cf_capitals'"]),
    (["--suites", "cf_capitals", "--format", "alpacca"], ["unknown format", "'alpaca'"]),
    (["--suites", "cf_capitals", "--format", "chat"], ["--tokenizer"]),
    (["--suites", "cf_capitals", "--max-length", "64"], ["--max-length needs --tokenizer"]),
    (["--suites", "cf_capitals", "--tokenizer", "/no/such/model"], ["model path not found"]),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, fragments):
    from ctxrely.cli.main import main

    assert main(["export-lm-eval", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and all(f in err for f in fragments), err
    assert not (tmp_path / "out" / "cf_capitals").exists()
