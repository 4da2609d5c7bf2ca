"""Scenarios for the sharded-parameter tests (``tests/test_scale_sharded.py``): run under ``torchrun``
with FSDP2 ``fully_shard`` / FSDP1 / replicated weights on gloo, or in one process for the reference.

Run: ``torchrun --nproc-per-node 2 tests/sharded_worker.py MODEL_DIR OUT_DIR fsdp2 generate,logits``
(writes ``OUT_DIR/rank<r>.json``: every scenario's results as every rank sees them); scenario
``train`` runs an SFTTrainer with the callback instead (``OUT_DIR/trajectory.jsonl``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCENARIOS = ("generate", "logits", "cad", "graded", "early", "attention", "score", "nih", "allocation", "fail")


def _examples(n: int = 7) -> list[Any]:
    from ctxrely.data.suites import load_suite

    return list(load_suite("cf_capitals").examples[:n])


def _eval(model: Any, tok: Any, **kw: Any) -> list[dict[str, Any]]:
    import ctxrely

    res = ctxrely.evaluate(model, tok, ["cf_capitals"], limit=7, batch_size=3, max_new_tokens=6, n_boot=0,
                           progress=False, **kw)
    keep = ("id", "output", "cf_hit", "param_hit", "logp_cf", "logp_param", "m_c")
    return [{k: r.get(k) for k in keep} for r in res.rows]


def run(name: str, model: Any, tok: Any, out: Path) -> Any:
    """One scenario's result (equal on every rank, and equal to one unsharded process)."""
    from ctxrely.engine.distributed import RankError, lockstep, run_sharded, world_info

    rank = world_info()[0]
    if name == "generate":
        return _eval(model, tok, mode="generate")
    if name == "logits":
        return _eval(model, tok, mode="logits")
    if name == "cad":
        return _eval(model, tok, mode="both", decode="cad", cad_alpha=0.5)
    if name == "graded":  # graded conflicts: the closed-book prior pass split over the ranks, in lock-step
        import ctxrely

        res = ctxrely.evaluate(model, tok, ["graded_years"], limit=9, batch_size=2, max_new_tokens=5, n_boot=0,
                               progress=False)
        keep = ("id", "output", "prior_output", "prior_logp", "prior_correct", "degree")
        return {"rows": [{k: r.get(k) for k in keep} for r in res.rows],
                "n_questions": res.summary["prior_pass"]["n_questions"]}
    if name == "early":  # rank 0 (even items) decodes 1 token, rank 1 (odd items) 8: unequal decode steps
        from ctxrely.engine.backend import Request
        from ctxrely.engine.hf import HFBackend

        prompts = tok([f"{e.context} {e.question}" for e in _examples()])["input_ids"]
        reqs = [Request(p, (), 1 if i % 2 == 0 else 8) for i, p in enumerate(prompts)]
        with lockstep(model, "early") as ls:
            texts = run_sharded(lambda rs: [o.text for o in HFBackend(model, tok).run(rs, batch_size=3)], reqs,
                                model, "early")
        return {"texts": texts, "forwards": ls.forwards if ls else None, "dummies": ls.dummies if ls else None}
    if name == "attention":
        from ctxrely.engine.attention import context_attention

        return run_sharded(lambda exs: context_attention(model, tok, exs, batch_size=3), _examples(), model,
                           "attention probe")
    if name == "score":
        from ctxrely.data.sft import as_examples
        from ctxrely.diagnose.shards import ScoreConfig, join_shards, run_shards

        rows = as_examples([{"instruction": e.question, "input": e.context, "output": e.cf_answer}
                            for e in _examples()])
        cfg = ScoreConfig(model="tiny", data="inline", shard_size=3, batch_size=2, attn_batch_size=2)
        rank, world = world_info()
        run_shards(model, tok, rows, out / "score", cfg, rank=rank, world_size=world, progress=False)
        from ctxrely.engine.distributed import all_gather

        all_gather(None)  # every shard written
        got = join_shards(out / "score", rows, cfg) if rank == 0 else None
        got = all_gather(got)[0]
        return [{k: r.get(k) for k in ("nll_with", "nll_without", "attn_score")} for r in got]
    if name == "nih":  # the NIH grid: 6 cells, 3 per rank, rank 0 writes the files
        from ctxrely.awareness.nih_run import run_nih

        summary = run_nih(model, tok, lengths=[200, 260], depths=[0, 50, 100], max_new_tokens=6, batch_size=2,
                          out_dir=out / "nih", progress=False)
        return [{k: c.get(k) for k in ("key", "output", "found")} for c in summary["cells"]]
    if name == "allocation":  # attention allocation: every rank measures the whole set; rank 0 keeps the file
        from ctxrely.awareness.allocation import attention_allocation

        users = [f"{e.context}\n{e.question}" for e in _examples(4)]
        s = attention_allocation(model, tok, users, templates=("raw",), max_new_tokens=4, out_dir=out / "alloc")
        return {k: s["templates"]["raw"][k] for k in ("roles", "answers")}
    if name == "fail":  # rank 1 fails before its first forward while rank 0 is mid-way through its share
        def fn(exs: list[Any]) -> list[Any]:
            from ctxrely.engine.attention import context_attention

            if rank == 1:
                raise ValueError("boom\non purpose")
            return context_attention(model, tok, exs, batch_size=1)

        try:
            run_sharded(fn, _examples(), model, "attention probe")
        except RankError as e:
            return str(e)
        return None
    raise ValueError(f"unknown scenario {name!r}")


def shard_model(model: Any, kind: str) -> Any:
    """``fsdp2``: ``fully_shard`` each decoder layer and the root; ``fsdp1``: one FSDP wrapper."""
    import torch

    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        return fully_shard(model)
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(model, device_id=torch.device("cpu"))
    if kind == "zero3":  # DeepSpeed ZeRO-3 (lock-step path): the engine's module holds partitioned params
        import deepspeed

        return deepspeed.initialize(model=model, config=ZERO3)[0].module
    return model


ZERO3 = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
         "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}


def gathered(model_dir: str) -> dict[str, Any]:
    """ZeRO-3 through accelerate, evaluated with the parameters gathered (TRL's path): rank 0 decodes 1
    token per prompt, rank 1 eight, without lock-step (forwards are local)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin

    from ctxrely.engine.backend import Request
    from ctxrely.engine.distributed import gathered_params, run_sharded, sharding
    from ctxrely.engine.hf import HFBackend
    from ctxrely.models.load import load_model

    model, tok = load_model(model_dir)
    acc = Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=ZERO3))
    engine, _ = acc.prepare(model, torch.optim.SGD(model.parameters(), lr=0.0))
    prompts = tok([f"{e.context} {e.question}" for e in _examples()])["input_ids"]
    reqs = [Request(p, (), 1 if i % 2 == 0 else 8) for i, p in enumerate(prompts)]
    with gathered_params(engine, acc) as full:
        kind = sharding(full)
        texts = run_sharded(lambda rs: [o.text for o in HFBackend(full, tok).run(rs, batch_size=3)], reqs, full,
                            "gathered")
    return {"sharding": sharding(engine), "inside": kind, "texts": texts}


def train(model_dir: str, out: Path, kind: str) -> None:
    """An SFTTrainer run with the callback: ``fsdp2`` through accelerate's own FSDP2 path, ``ddp`` replicated.

    Accelerate turns FSDP on only on accelerators (its state stays MULTI_CPU on a CPU machine), so on
    CPU the worker switches the state to FSDP before training; on GPUs ``accelerate launch
    --config_file examples/accelerate/fsdp2.yaml`` does the same.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ctxrely.engine.distributed import sharding, world_info
    from ctxrely.models.load import load_model
    from ctxrely.track.callback import ContextRelianceCallback

    model, tok = load_model(model_dir)
    exs = _examples()
    rows = [{"prompt": f"Question: {e.question}\nAnswer:", "completion": f" {e.param_answer}"} for e in exs]
    extra: dict[str, Any] = {}
    if kind == "fsdp2":
        extra = dict(fsdp="full_shard", fsdp_config={"version": 2, "reshard_after_forward": True,
                                                     "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]})
    args = SFTConfig(output_dir=str(out), max_steps=4, per_device_train_batch_size=2, max_length=64,
                     learning_rate=1e-3, logging_steps=2, save_strategy="no", report_to="none", use_cpu=True,
                     bf16=False, seed=0, disable_tqdm=True, **extra)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows * 2), processing_class=tok)
    if kind == "fsdp2":
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        state = trainer.accelerator.state
        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
        trainer.is_fsdp_enabled = True
    ContextRelianceCallback(examples={"toy": exs}, id_sets=rows[:5], eval_every=2, attention_subset=5, mode="both",
                            max_new_tokens=4, strict=True).attach(trainer)
    trainer.train()
    (out / f"rank{world_info()[0]}.json").write_text(json.dumps({"sharding": sharding(trainer.model)}))


def main(argv: list[str]) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    model_dir, out, kind, names = argv[0], Path(argv[1]), argv[2], argv[3].split(",")
    from ctxrely.engine.distributed import sharding
    from ctxrely.models.load import load_model

    if names == ["train"]:
        return train(model_dir, out, kind)
    if kind.startswith("zero3"):
        import os

        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        if kind == "zero3-gathered":
            out.mkdir(parents=True, exist_ok=True)
            (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(gathered(model_dir)))
            return None
    else:
        dist.init_process_group("gloo")
    model, tok = load_model(model_dir)
    model = shard_model(model, kind)
    result: dict[str, Any] = {"sharding": sharding(model)}
    for name in names:
        result[name] = run(name, model, tok, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
