"""Two CPU processes (torchrun, gloo): the probe set is split across ranks, gathered, and written once;
the metrics equal a single-process evaluation of the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

WORKER = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import torch.distributed as dist
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from ctxrely.data.schema import ConflictExample
    from ctxrely.models.load import load_model
    from ctxrely.track.callback import ContextRelianceCallback
    from ctxrely.track.distributed import shard, world_info

    model_dir, out, data = sys.argv[1], Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
    model, tok = load_model(model_dir)
    exs = [ConflictExample.from_dict(e) for e in data["examples"]]
    args = SFTConfig(output_dir=str(out), max_steps=6, per_device_train_batch_size=2, max_length=64,
                     learning_rate=1e-3, logging_steps=3, save_strategy="no", report_to="none", use_cpu=True,
                     bf16=False, seed=0, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(data["train"]),
                         processing_class=tok)
    cb = ContextRelianceCallback(examples={"toy": exs}, id_sets=data["id"], eval_every=3,
                                 attention_subset=5).attach(trainer)
    trainer.train()
    rank, world = world_info()
    (out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world": world, "backend": dist.get_backend(), "shard": [i for i, _ in shard(exs)],
        "logged_steps": [h["step"] for h in trainer.state.log_history if "ctxrely/toy/m_c" in h]}))
    trainer.save_model(str(out / "final"))
''')


def _toy_data():
    caps = [("France", "Paris", "Lyon"), ("Germany", "Berlin", "Munich"), ("Italy", "Rome", "Milan"),
            ("Spain", "Madrid", "Seville"), ("Japan", "Tokyo", "Osaka"), ("Egypt", "Cairo", "Giza"),
            ("Peru", "Lima", "Cusco")]  # 7: uneven shards (4 + 3)
    examples = [{"id": f"t{i}", "suite": "toy", "context": f"The capital of {c} is {cf}.",
                 "question": f"What is the capital of {c}?", "cf_answer": cf, "param_answer": p}
                for i, (c, p, cf) in enumerate(caps)]
    train = [{"prompt": f"Question: What is the capital of {c}?\nAnswer:", "completion": f" {p}"} for c, p, _ in caps]
    return {"examples": examples, "train": train * 2, "id": train[:5]}


@pytest.mark.slow
def test_two_process_split_gather_equals_single_process(tmp_path, tiny_model_dir):
    from ctxrely.data.schema import ConflictExample
    from ctxrely.models.load import load_model
    from ctxrely.track.probe import build_probe, run_probe

    data = _toy_data()
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "worker.py").write_text(WORKER)
    out = tmp_path / "run"
    model_dir = str(tiny_model_dir("llama"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(tmp_path / "worker.py"), model_dir, str(out), str(tmp_path / "data.json")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and ranks[0]["backend"] == "gloo"
    assert ranks[0]["shard"] == [0, 2, 4, 6] and ranks[1]["shard"] == [1, 3, 5]
    assert ranks[0]["logged_steps"] == [0, 3, 6] and ranks[1]["logged_steps"] == []  # main process logs only
    rows = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 3, 6]  # written once, by the main process

    torch.set_num_threads(1)
    probe = build_probe(examples={"toy": [ConflictExample.from_dict(e) for e in data["examples"]]},
                        id_sets=data["id"], attention_subset=5)
    for step, weights in ((0, model_dir), (6, str(out / "final"))):
        model, tok = load_model(weights)
        single = run_probe(model, tok, probe).metrics
        row = next(r for r in rows if r["step"] == step)
        for key, value in single.items():
            assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (step, key)
    assert rows[-1]["toy/logp_margin"] != pytest.approx(rows[0]["toy/logp_margin"])  # the weights did change
