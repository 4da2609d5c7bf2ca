"""Issue 19, root causes 1, 4, 5, 6 (and the input-overwrite refusals of cause 2): every bad input is one
line on stderr and a non-zero exit, with no traceback, checked before any model loads, and nothing is
written outside the output folder.

The table :data:`CASES` holds one CLI invocation per case; placeholders in braces are filled per test
(``{model}`` is a tiny model whose *weights are corrupt*, so a case that got as far as loading the
model would fail with a different message than the one asserted).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ctxrely.cli.main import main
from test_diagnose_rows import make_rows
from test_eval_cli import GOOD, write_cpi

UNDER = "{file}/sub"  # an output under a regular file
PROC = "/proc/ctxrely-issue19/x"  # a folder that cannot be created

# (id, argv, fragments the one line must hold)
CASES: list[tuple[str, list[str], list[str]]] = [
    # cause 1: outputs validated before any model loads, for every command that writes
    ("eval-out-under-file", ["eval", "--model", "{model}", "--data", "{data}", "--out", UNDER], ["--out", "under a file"]),
    ("eval-out-proc", ["eval", "--model", "{model}", "--data", "{data}", "--out", PROC], ["--out", "cannot write"]),
    ("eval-out-is-file", ["eval", "--model", "{model}", "--data", "{data}", "--out", "{file}"], ["existing file"]),
    ("nih-out-under-file", ["nih", "--model", "{model}", "--out", UNDER], ["--out", "under a file"]),
    ("attention-out-proc", ["attention", "--model", "{model}", "--nih", "--out", PROC], ["--out", "cannot write"]),
    ("score-data-out-under-file", ["score-data", "--model", "{model}", "--data", "{sft}", "--out", UNDER],
     ["--out", "under a file"]),
    ("steer-profile-out-is-dir", ["steer", "profile", "--model", "{model}", "--data", "{data}", "--out", "{dir}"],
     ["--out", "is a folder"]),
    ("steer-compare-out-under-file", ["steer", "compare", "--model", "{model}", "--data", "{data}", "--out", UNDER],
     ["--out", "under a file"]),
    ("theory-out-under-file", ["theory", "--out", UNDER, "--steps", "2"], ["--out", "under a file"]),
    ("export-out-under-file", ["export-lm-eval", UNDER, "--data", "{data}"], ["DIR", "under a file"]),
    ("lab-out-proc", ["lab", "--preset", "quick", "--out", PROC], ["--out", "cannot write"]),
    ("demo-out-under-file", ["demo", "--quick", "--out", UNDER], ["--out", "under a file"]),
    ("report-out-under-file", ["report", "{dir}", "--out", UNDER], ["--out", "under a file"]),
    ("icl-data-out-is-dir", ["icl-data", "--data", "{pairs}", "--out", "{dir}"], ["--out", "is a folder"]),
    ("icl-data-probes-under-file", ["icl-data", "--data", "{pairs}", "--out", "{tmp}/o.jsonl", "--probes", UNDER],
     ["--probes", "under a file"]),
    ("lab-table-md-is-dir", ["lab-table", "{dir}", "--md", "{dir}"], ["--md", "is a folder"]),
    ("lab-table-json-under-file", ["lab-table", "{dir}", "--json", UNDER + "/t.json"], ["--json", "under a file"]),
    ("train-output-dir-under-file", ["train", "model={model}", "dataset={sft}", "suites=", f"output_dir={UNDER}"],
     ["output_dir", "under a file"]),
    ("augment-out-is-dir", ["augment", "--data", "{sft}", "--out", "{dir}"], ["--out", "is a folder"]),
    ("filter-out-is-dir", ["filter", "--scores", "{dir}", "--out", "{dir}"], ["--out", "is a folder"]),
    # cause 1: values checked before loading
    ("score-data-layer-99", ["score-data", "--model", "{good}", "--data", "{sft}", "--out", "{tmp}/s", "--layer", "99"],
     ["--layer 99", "2 layers"]),
    ("train-lr-nan", ["train", "model={model}", "dataset={sft}", "suites=", "output_dir={tmp}/t", "lr=nan"],
     ["'lr'", "finite"]),
    ("lab-seeds-negative", ["lab", "--preset", "quick", "--seeds", "-1", "--out", "{tmp}/lab"], ["seeds", ">= 0"]),
    # cause 4: inputs accepted that should not be
    ("eval-n-boot-negative", ["eval", "--model", "{model}", "--data", "{data}", "--n-boot", "-1", "--out", "{tmp}/e"],
     ["--n-boot"]),
    ("eval-cad-alpha-without-decode", ["eval", "--model", "{model}", "--data", "{data}", "--cad-alpha", "2",
                                       "--out", "{tmp}/e"], ["--cad-alpha", "--decode"]),
    ("nih-cad-floor-without-adacad", ["nih", "--model", "{model}", "--decode", "cad", "--cad-floor", "0.1",
                                      "--out", "{tmp}/n"], ["--cad-floor", "adacad"]),
    ("filter-threshold-nan", ["filter", "--scores", "{dir}", "--indicator", "--threshold", "nan",
                              "--out", "{tmp}/f.jsonl"], ["--threshold", "finite"]),
    ("steer-profile-top-k-0", ["steer", "profile", "--model", "{model}", "--data", "{data}", "--top-k", "0",
                               "--out", "{tmp}/h.json"], ["--top-k"]),
    ("steer-compare-profiled-without-heads", ["steer", "compare", "--model", "{model}", "--data", "{data}",
                                              "--variants", "plain,pasta-profiled", "--out", "{tmp}/c"], ["--heads"]),
    ("csv-extra-field", ["eval", "--model", "{model}", "--data", "{csv_extra}", "--out", "{tmp}/e"],
     ["shifted.csv, line 3", "5 fields under a 4-field header"]),
    ("conflict-empty-context", ["eval", "--model", "{model}", "--data", "{empty_ctx}", "--out", "{tmp}/e"],
     ["empty_ctx.json, line 2", "field 'context'", "empty context"]),
    ("cad-pair-identical", ["eval", "--model", "{model}", "--data", "{pair_same}", "--out", "{tmp}/e"],
     ["pair_same.jsonl, line 1", "context_string", "the same"]),
    ("cad-pair-no-question", ["eval", "--model", "{model}", "--data", "{pair_noq}", "--out", "{tmp}/e"],
     ["pair_noq.jsonl, line 1", "context_string", "Question:"]),
    ("augment-empty-entities", ["augment", "--data", "{sft}", "--entities", "{empty_list}", "--out", "{tmp}/a.jsonl"],
     ["empty.json", "no substitute names"]),
    ("augment-out-unknown-type", ["augment", "--data", "{sft}", "--out", "{tmp}/a.txt"], ["unsupported file type .txt"]),
    ("eval-empty-stop", ["eval", "--model", "{model}", "--data", "{data}", "--stop", "", "--out", "{tmp}/e"],
     ["--stop ''"]),
    ("steer-compare-garbage-heads", ["steer", "compare", "--model", "{model}", "--data", "{data}", "--heads",
                                     "{file}", "--out", "{tmp}/c"], ["a_file.txt", "bad JSON"]),
    ("lab-table-recorded-without-runs", ["lab-table", "--recorded", "{empty_list}"], ["no recorded runs"]),
    ("filter-scores-row-not-object", ["filter", "--scores", "{bad_scores}", "--out", "{tmp}/f.jsonl"],
     ["scores.jsonl, line 1", "not a score row"]),
    # cause 2 (input overwrites): refused like augment
    ("steer-profile-out-is-data", ["steer", "profile", "--model", "{model}", "--data", "{data}", "--out", "{data}"],
     ["is the input file", "--data"]),
    ("icl-data-out-is-data", ["icl-data", "--data", "{pairs}", "--out", "{pairs}"], ["is the input file"]),
    ("augment-out-is-data", ["augment", "--data", "{sft}", "--out", "{sft}"], ["is the input file"]),
    # cause 5: nothing written outside the output folder
    ("export-prefix-escape", ["export-lm-eval", "{tmp}/x/y/out", "--data", "{data}", "--prefix", "../../escaped"],
     ["--prefix", "[a-z0-9_]+"]),
    ("export-dotdot-stem", ["export-lm-eval", "{tmp}/x/out", "--data", "{dotdot}"], ["'..'", "rename the file"]),
    # cause 6: messages that name the real cause
    ("eval-max-new-tokens-huge", ["eval", "--model", "{good}", "--data", "{data}", "--max-new-tokens", "100000",
                                  "--mode", "generate", "--no-progress", "--out", "{tmp}/e"], ["--max-new-tokens 100000"]),
    ("export-max-length-negative", ["export-lm-eval", "{tmp}/out", "--data", "{data}", "--tokenizer", "{good}",
                                    "--max-length", "-5"], ["--max-length must be >= 1"]),
    ("missing-local-folder", ["eval", "--model", "{tmp}/no/such/model", "--data", "{data}", "--out", "{tmp}/e"],
     ["model path not found", "no such folder"]),
    ("missing-folder-like-hub-id", ["eval", "--model", "not-here/no-such-model-xyz", "--data", "{data}",
                                    "--out", "{tmp}/e"], ["no local folder", "not-here/no-such-model-xyz"]),
    # cause 1: library errors mapped at the boundary
    ("corrupt-safetensors", ["eval", "--model", "{model}", "--data", "{data}", "--out", "{tmp}/e"],
     ["model.safetensors", "truncated or corrupt"]),
    ("broken-chat-template", ["eval", "--model", "{bad_template}", "--data", "{data}", "--format", "chat",
                              "--mode", "logits", "--no-progress", "--out", "{tmp}/e"], ["chat template"]),
]


@pytest.fixture(scope="module")
def corrupt_model(tiny_model_dir, tmp_path_factory) -> Path:
    """A copy of the tiny Llama whose model.safetensors is cut in half."""
    d = tmp_path_factory.mktemp("corrupt") / "model"
    shutil.copytree(tiny_model_dir("llama"), d)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return d


@pytest.fixture(scope="module")
def bad_template_model(tiny_model_dir, tmp_path_factory) -> Path:
    """A copy of the tiny Llama whose chat template does not parse."""
    d = tmp_path_factory.mktemp("badtpl") / "model"
    shutil.copytree(tiny_model_dir("llama"), d)
    for f in d.glob("chat_template.*"):
        f.unlink()
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }"  # unclosed
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def _inputs(tmp: Path) -> dict[str, str]:
    from ctxrely.data.records import write_rows

    (tmp / "a_file.txt").write_text("x")
    (tmp / "a_dir").mkdir()
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"input": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(8)))
    (tmp / "shifted.csv").write_text("context,question,answer,memory_answer\n"
                                     "Lyon is the capital.,Capital?,Lyon,Paris\n"
                                     "Lyon, the capital.,Capital?,Lyon,Paris\n")
    write_cpi(tmp / "empty_ctx.json", [GOOD, dict(GOOD, context="")], jsonl=True)
    instr = "Answer the question."
    same = [{"input_index": 0, "assigned_weight": w, "gold_answers": "Lyon",
             "context_string": f"{instr}\nQuestion: Capital?\nAnswer:"} for w in (1, 0)]
    (tmp / "pair_same.jsonl").write_text("".join(json.dumps(r) + "\n" for r in same))
    noq = [{"input_index": 0, "assigned_weight": 1, "gold_answers": "Lyon", "context_string": "Lyon is it. Capital?"},
           {"input_index": 0, "assigned_weight": 0, "gold_answers": "Lyon", "context_string": "Capital?"}]
    (tmp / "pair_noq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in noq))
    (tmp / "empty.json").write_text("[]")
    write_cpi(tmp / "...json", [GOOD])
    (tmp / "bad_scores").mkdir()
    (tmp / "bad_scores" / "scores.jsonl").write_text("[1, 2]\n")
    (tmp / "bad_scores" / "meta.json").write_text("{}")
    return {"file": str(tmp / "a_file.txt"), "dir": str(tmp / "a_dir"), "tmp": str(tmp), "pairs": str(pairs),
            "data": str(write_cpi(tmp / "d.json", [GOOD, dict(GOOD, question="Which city is France's capital?")])),
            "sft": str(write_rows(tmp / "train.jsonl", make_rows("alpaca"))), "csv_extra": str(tmp / "shifted.csv"),
            "empty_ctx": str(tmp / "empty_ctx.json"), "pair_same": str(tmp / "pair_same.jsonl"),
            "pair_noq": str(tmp / "pair_noq.jsonl"), "empty_list": str(tmp / "empty.json"),
            "dotdot": str(tmp / "...json"), "bad_scores": str(tmp / "bad_scores")}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_before_any_work(capsys, tmp_path, tiny_model_dir, corrupt_model, bad_template_model,
                                               argv, fragments):
    work = tmp_path / "work"
    work.mkdir()
    values = {**_inputs(work), "model": str(corrupt_model), "good": str(tiny_model_dir("llama")),
              "bad_template": str(bad_template_model)}
    before = _tree(tmp_path)
    argv = [a.format(**values) for a in argv]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    for frag in fragments:
        assert frag in err[0], (frag, err[0])
    after = _tree(tmp_path)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    allowed = ("work/e/", "work/x/out/", "work/x/y/out/")  # the output folders named in the table
    assert not [k for k in changed if not k.startswith(allowed)], changed


def test_unwritable_out_is_one_line(capsys, tmp_path, tiny_model_dir):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere: the /proc and under-a-file cases cover the check")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["theory", "--out", str(ro / "t"), "--steps", "2"]) == 2
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0]


def test_debug_keeps_the_traceback_of_a_mapped_error(tmp_path, corrupt_model):
    from ctxrely.errors import ModelLoadError

    data = write_cpi(tmp_path / "d.json", [GOOD])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        main(["--debug", "eval", "--model", str(corrupt_model), "--data", str(data), "--out", str(tmp_path / "e")])


def test_boundary_maps_library_errors_to_one_line():
    import csv

    from ctxrely.cli.main import boundary_message

    assert boundary_message(PermissionError(13, "Permission denied",
                                                                                             "/x/y")) == "cannot write or read /x/y: Permission denied"
    assert boundary_message(csv.Error("field larger than field limit")).startswith("bad CSV")
    import jinja2

    assert "chat template" in boundary_message(jinja2.TemplateSyntaxError("unexpected '}'", 1))
    from safetensors import SafetensorError

    assert "model.safetensors" in boundary_message(SafetensorError("header too large"))
    assert "--device cpu" in boundary_message(AssertionError("Torch not compiled with CUDA enabled"))
    assert boundary_message(ZeroDivisionError()) is None  # a bug keeps its traceback


def test_device_cuda_without_cuda_is_one_line(capsys, tmp_path, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = write_cpi(tmp_path / "d.json", [GOOD])
    assert main(["eval", "--model", str(tiny_model_dir("llama")), "--data", str(data), "--device", "cuda",
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda: CUDA is not available" in err[0]
    assert not (tmp_path / "e").exists()


def test_csv_field_over_the_default_limit_loads(tmp_path):
    from ctxrely.data.loaders import load_data

    long_ctx = "Lyon is the capital. " * 10_000  # 210,000 characters: over csv's default 131,072
    p = tmp_path / "long.csv"
    p.write_text(f"context,question,answer,memory_answer\n\"{long_ctx}\",Capital?,Lyon,Paris\n")
    assert load_data(str(p)).examples[0].context == long_ctx.strip()


def test_zoo_cache_with_corrupt_weights_is_not_ready(capsys, tmp_path, tiny_model_dir):
    from ctxrely.models import zoo

    name = "smollm2-135m-instruct"
    folder = zoo.model_dir(name, tmp_path)
    shutil.copytree(tiny_model_dir("llama"), folder)
    (folder / zoo.MARKER).write_text(json.dumps({"name": name}))
    assert zoo.status(name, tmp_path)["converted"]
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    st = zoo.status(name, tmp_path)
    assert not st["converted"] and "truncated or corrupt" in st["damaged"]
    assert main(["models", "--cache-dir", str(tmp_path), "path", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0]
    assert main(["models", "--cache-dir", str(tmp_path), "list", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed[name]["converted"] is False and listed[name]["damaged"]


def test_filter_refuses_to_overwrite_the_scored_source(capsys, tmp_path, tiny_model_dir):
    from ctxrely.data.records import write_rows

    sft = write_rows(tmp_path / "train.jsonl", make_rows("alpaca"))
    before = sft.read_bytes()
    assert main(["score-data", "--model", str(tiny_model_dir("llama")), "--data", str(sft), "--out",
                 str(tmp_path / "s"), "--no-progress", "--no-attention"]) == 0
    capsys.readouterr()
    assert main(["filter", "--scores", str(tmp_path / "s"), "--out", str(sft)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the input file" in err[0]
    assert sft.read_bytes() == before


def test_cad_alpha_with_decode_cad_is_accepted():
    """The refusal is only for flags that would be ignored."""
    import argparse

    from ctxrely.cli.preflight import check_values

    args = argparse.Namespace(command="eval", decode="cad", cad_alpha=2.0, cad_floor=None, n_boot=0)
    check_values(args, ["eval", "--decode", "cad", "--cad-alpha", "2"])


def test_no_progress_silences_the_trainer(capsys, tmp_path, tiny_model_dir):
    from ctxrely.models.load import load_model
    from ctxrely.train.sft import run_train
    from test_train_sft import alpaca_rows, cfg_for, toy_examples

    model, tok = load_model(str(tiny_model_dir("llama")))
    run_train(cfg_for(tmp_path / "run", "max_steps=2", "logging_steps=1", "save_final=false"), model=model,
              tokenizer=tok, train_rows=alpaca_rows(), eval_examples=toy_examples(), progress=False)
    out = capsys.readouterr()
    assert "it/s" not in out.err and "s/it" not in out.err and "%|" not in out.err, out.err[-500:]
    assert "{'loss'" not in out.out, out.out[-500:]


def test_no_progress_means_no_bars_at_all(capsys, tmp_path, tiny_model_dir):
    """Not even transformers' weight-loading bar."""
    data = write_cpi(tmp_path / "d.json", [GOOD])
    assert main(["eval", "--model", str(tiny_model_dir("llama")), "--data", str(data), "--mode", "logits",
                 "--no-progress", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "it/s" not in err, err[-500:]
