"""Data-parallel eval on 2 CPU processes (gloo): ``accelerate launch -m ctxrely eval`` and the Python API
under an accelerate state split the examples, gather rows in order, write once from the main process,
and equal a one-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

EVAL = ["--suites", "cf_capitals,cf_quotes", "--limit", "5", "--mode", "both", "--max-new-tokens", "5",
        "--n-boot", "0", "--no-progress", "--batch-size", "2"]
# --multi_gpu starts one process per rank through torchrun (accelerate's --cpu would need mpirun); on a
# machine without GPUs each process runs on the CPU and the group uses gloo
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

API_WORKER = textwrap.dedent('''
    import json, sys
    import torch
    torch.set_num_threads(1)
    from accelerate import PartialState
    import ctxrely
    from ctxrely.models.load import load_model

    state = PartialState(cpu=True)
    model, tok = load_model(sys.argv[1])
    res = ctxrely.evaluate(model, tok, ["cf_capitals", "cf_quotes"], limit=5, mode="both", max_new_tokens=5,
                           n_boot=0, batch_size=2, progress=False, out_dir=sys.argv[2])
    with open(f"{sys.argv[2]}/rank{state.process_index}.json", "w") as f:
        json.dump({"n_rows": len(res.rows), "processes": res.summary["processes"]}, f)
''')


def rows_of(out):
    return [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]


def assert_same(a, b):
    assert [(r["suite"], r["id"]) for r in a] == [(r["suite"], r["id"]) for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float):
                assert x[k] == pytest.approx(y[k], abs=1e-4), (x["id"], k)
            else:
                assert x[k] == y[k], (x["id"], k)


def launch(args, tmp_path):
    proc = subprocess.run([*LAUNCH, *args], capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_process_eval_equals_one_process(tmp_path, tiny_model_dir):
    from ctxrely.cli.main import main

    if torch.cuda.is_available():
        pytest.skip("a CPU (gloo) test: with GPUs, --multi_gpu would place the processes on them")
    model = str(tiny_model_dir("llama"))
    one, two, api = tmp_path / "one", tmp_path / "two", tmp_path / "api"
    assert main(["eval", "--model", model, "--out", str(one), *EVAL]) == 0
    proc = launch(["-m", "ctxrely", "eval", "--model", model, "--out", str(two), *EVAL], tmp_path)
    assert proc.stdout.count("ctxrely eval") == 1  # one table, from the main process
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s1["processes"] == 1 and s2["processes"] == 2
    assert s1["config_hash"] == s2["config_hash"]
    assert s1["flat"].keys() == s2["flat"].keys()
    for k, v in s1["flat"].items():
        assert s2["flat"][k] == pytest.approx(v, abs=1e-6), k
    assert_same(rows_of(two), rows_of(one))
    assert not list(two.glob("examples.partial*"))

    (tmp_path / "worker.py").write_text(API_WORKER)
    launch([str(tmp_path / "worker.py"), model, str(api)], tmp_path)
    ranks = [json.loads((api / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"n_rows": 10, "processes": 2}] * 2  # every process gets the gathered result
    assert_same(rows_of(api), rows_of(one))


@pytest.mark.slow
def test_eval_shards_the_model_under_an_fsdp_accelerate_config(tmp_path, tiny_model_dir):
    """`accelerate launch --config_file examples/accelerate/fsdp2.yaml -m ctxrely eval`: --shard auto
    shards the model with FSDP2 (each process holds half of the parameters) and equals one process."""
    from pathlib import Path

    from ctxrely.cli.main import main

    if torch.cuda.is_available():
        pytest.skip("a CPU (gloo) test")
    config = Path(__file__).resolve().parents[1] / "examples" / "accelerate" / "fsdp2.yaml"
    model = str(tiny_model_dir("llama"))
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["eval", "--model", model, "--out", str(one), *EVAL]) == 0
    launch_fsdp = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                   "--num_processes", "2", "--mixed_precision", "no"]
    proc = subprocess.run([*launch_fsdp, "-m", "ctxrely", "eval", "--model", model, "--out", str(two), *EVAL],
                          capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "parameters sharded by FSDP2" in proc.stderr
    assert json.loads((two / "summary.json").read_text())["processes"] == 2
    assert_same(rows_of(two), rows_of(one))


def test_shard_fsdp2_on_one_process_is_refused(tmp_path, capsys, tiny_model_dir):
    from ctxrely.cli.main import main

    code = main(["eval", "--model", str(tiny_model_dir("llama")), "--shard", "fsdp2", "--out", str(tmp_path / "x"),
                 *EVAL])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.endswith("--shard fsdp2 needs several processes: launch with accelerate launch or "
                                      "torchrun") and "\n" not in err
    assert not (tmp_path / "x").exists()
