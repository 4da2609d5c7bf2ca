"""Sharded parameters on 2 CPU processes (gloo): FSDP2 ``fully_shard`` and FSDP1 evaluation in lock-step
equals one unsharded process (generate, logits, CAD, uneven 7-example split with batch 3, generation
that stops early on one rank only, the attention probe, score-data, the NIH grid, attention allocation); a failing rank makes every rank
raise the same line; two "nodes" on localhost; a tracked FSDP2 training run equals a replicated one.
The scenarios live in ``tests/sharded_worker.py``; the reference runs them here, in one process."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

WORKER = Path(__file__).with_name("sharded_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CTXRELY_DIST_TIMEOUT": "120"}
RUN = [sys.executable, "-m", "torch.distributed.run"]


def _worker():
    spec = importlib.util.spec_from_file_location("sharded_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(procs):
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out[-2000:] + err[-4000:]


def launch(model, out, kind, scenarios, nodes=1):
    """torchrun on 2 processes: one node with 2, or ``nodes=2`` with 1 each (rendezvous on 127.0.0.1)."""
    args = [str(WORKER), str(model), str(out), kind, scenarios]
    if nodes == 1:
        cmds = [[*RUN, "--standalone", "--nproc-per-node", "2", *args]]
    else:
        rdzv = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "ctxrely-test",
                "--rdzv-endpoint", f"127.0.0.1:{_port()}"]
        cmds = [[*RUN, *rdzv, "--node-rank", str(n), *args] for n in range(2)]
    _check([subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for c in cmds])
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def same(a, b, path="result"):
    """Equal structures; floats to 1e-4 (padding differs between a rank's batches and one process's)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-4), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def reference(model_dir, names, tmp_path):
    """The scenarios in this process, unsharded, without a process group."""
    from ctxrely.models.load import load_model

    mod = _worker()
    model, tok = load_model(str(model_dir))
    return {n: mod.run(n, model, tok, tmp_path / "ref") for n in names}


def _cpu_only():
    if torch.cuda.is_available():
        pytest.skip("a CPU (gloo) test")


@pytest.mark.slow
def test_fsdp2_lockstep_equals_one_process(tmp_path, tiny_model_dir):
    _cpu_only()
    model = tiny_model_dir("llama")
    names = ["generate", "logits", "cad", "graded", "early", "attention", "score", "nih", "allocation"]
    ranks = launch(model, tmp_path / "fsdp2", "fsdp2", ",".join([*names, "fail"]))
    assert [r["sharding"] for r in ranks] == ["fsdp2", "fsdp2"]
    ref = reference(model, [n for n in names if n != "early"], tmp_path)
    for name in ref:
        for r in ranks:  # every rank holds the gathered result, equal to one process's
            same(r[name], ref[name], name)
    assert len(ref["generate"]) == 7 and all(row["output"] is not None for row in ranks[0]["generate"])
    assert ranks[0]["cad"] != ranks[0]["logits"]  # CAD changed the scores
    graded = ranks[0]["graded"]  # several questions, each with its prior, split over the two ranks
    assert graded["n_questions"] >= 2 and all(r["prior_logp"] is not None for r in graded["rows"])
    nih = tmp_path / "fsdp2" / "nih"  # rank 0 wrote the grid's files; no resume file is left
    assert (nih / "summary.json").is_file() and (nih / "cells.jsonl").is_file() and not list(nih.glob("*partial*"))

    # rank 0 decodes 1 token per prompt, rank 1 eight: rank 0 fills in with dummy forwards
    mod = _worker()
    from ctxrely.engine.backend import Request
    from ctxrely.engine.hf import HFBackend
    from ctxrely.models.load import load_model

    m, tok = load_model(str(model))
    prompts = tok([f"{e.context} {e.question}" for e in mod._examples()])["input_ids"]
    want = [o.text for o in HFBackend(m, tok).run([Request(p, (), 1 if i % 2 == 0 else 8)
                                                   for i, p in enumerate(prompts)], batch_size=3)]
    early = [r["early"] for r in ranks]
    assert early[0]["texts"] == early[1]["texts"] == want
    assert early[0]["dummies"] > 0 and early[1]["dummies"] == 0
    assert early[0]["forwards"] + early[0]["dummies"] == early[1]["forwards"]

    # rank 1 fails while rank 0 is in its forwards: both raise the same one line, nothing hangs
    fails = [r["fail"] for r in ranks]
    assert fails[0] == fails[1] == "attention probe failed on rank 1 of 2: ValueError: boom on purpose"


@pytest.mark.slow
def test_fsdp1_lockstep_equals_one_process(tmp_path, tiny_model_dir):
    _cpu_only()
    model = tiny_model_dir("llama")
    ranks = launch(model, tmp_path / "fsdp1", "fsdp1", "logits,generate")
    assert [r["sharding"] for r in ranks] == ["fsdp1", "fsdp1"]
    ref = reference(model, ["logits", "generate"], tmp_path)
    for r in ranks:
        same({k: r[k] for k in ref}, ref)


@pytest.mark.slow
def test_zero3_lockstep_and_gathered_equal_one_process(tmp_path, tiny_model_dir):
    """DeepSpeed ZeRO-3 on CPU (DS_ACCELERATOR=cpu): lock-step on the partitioned module, and TRL's gather
    through accelerate (forwards local, no dummy forwards). Skipped where deepspeed is not installed."""
    _cpu_only()
    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (pip install deepspeed; it runs on CPU with DS_ACCELERATOR=cpu)")
    model = tiny_model_dir("llama")
    ranks = launch(model, tmp_path / "z3", "zero3", "logits,early")
    ref = reference(model, ["logits"], tmp_path)
    for r in ranks:
        assert r["sharding"] == "zero3"
        same(r["logits"], ref["logits"])
    assert ranks[0]["early"]["texts"] == ranks[1]["early"]["texts"] and ranks[0]["early"]["dummies"] > 0
    got = launch(model, tmp_path / "z3g", "zero3-gathered", "gathered")
    for g in got:
        assert (g["sharding"], g["inside"]) == ("zero3", "replicated")
        assert g["texts"] == ranks[0]["early"]["texts"]


@pytest.mark.slow
def test_two_nodes_on_localhost(tmp_path, tiny_model_dir):
    """``--nnodes 2`` with a c10d rendezvous on 127.0.0.1: one process per "node", FSDP2 across them."""
    _cpu_only()
    model = tiny_model_dir("llama")
    ranks = launch(model, tmp_path / "nodes", "fsdp2", "cad", nodes=2)
    ref = reference(model, ["cad"], tmp_path)
    for r in ranks:
        assert r["sharding"] == "fsdp2"
        same(r["cad"], ref["cad"])


@pytest.mark.slow
def test_tracked_fsdp2_training_equals_replicated(tmp_path, tiny_model_dir):
    """SFTTrainer + ContextRelianceCallback (conflicts in both modes, ID rows, attention) under FSDP2:
    the trajectory equals the same run with replicated (DDP) weights."""
    _cpu_only()
    pytest.importorskip("trl")
    model = tiny_model_dir("llama")
    traj = {}
    for kind in ("fsdp2", "ddp"):
        ranks = launch(model, tmp_path / kind, kind, "train")
        assert [r["sharding"] for r in ranks] == ([kind] * 2 if kind == "fsdp2" else ["replicated"] * 2)
        traj[kind] = [json.loads(x) for x in (tmp_path / kind / "trajectory.jsonl").read_text().splitlines()]
    assert [r["step"] for r in traj["fsdp2"]] == [0, 2, 4]
    skip = {"eval_seconds", "time"}
    for a, b in zip(traj["fsdp2"], traj["ddp"], strict=True):
        same({k: v for k, v in a.items() if k not in skip}, {k: v for k, v in b.items() if k not in skip})
    assert traj["fsdp2"][-1]["toy/logp_margin"] != pytest.approx(traj["fsdp2"][0]["toy/logp_margin"])
