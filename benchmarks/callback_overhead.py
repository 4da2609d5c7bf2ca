"""Benchmark: wall time of a short TRL ``SFTTrainer`` run with and without ``ContextRelianceCallback``.

Run from the repository root:

    .venv/bin/python benchmarks/callback_overhead.py                 # defaults below
    .venv/bin/python benchmarks/callback_overhead.py --steps 100 --reps 1 --no-write

1. Model: a tiny random Llama (``ctxrely.models.tiny``; 2 layers, width 64, vocab 1024), float32, 1 thread.
2. Data: context-QA rows from the built-in ``cf_world_facts`` suite as prompt/completion (the
   context and question as prompt, the answer as completion), batch ``--batch``, ``--steps`` steps.
3. With: the callback at its defaults (``eval_every=50``, ``limit=64`` examples of ``cf_capitals``,
   logits mode, attention on 16 examples), i.e. evaluations at step 0, 50, 100, ..., and the end.
   Without: the same run, no callback. Best of ``--reps`` (interleaved), same process.
4. Also: the step time of ``ctxrely train``'s compact LM head against TRL's default on CPU (every
   position projected through the vocabulary), on the same batches.

The last line is machine-readable: ``callback_overhead ratio=<with / without>``, in CPU time of the
training process (torch on one thread), which on a shared machine tracks quiet-machine wall time
better than wall time does; the wall-time ratio and the time spent in the probes themselves (a
direct measure, independent of run-to-run noise) are printed and recorded too.
Figures go to ``docs/benchmarks.md`` under ``## Callback overhead`` (``--no-write`` skips).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from docsection import publish  # benchmarks/docsection.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Callback overhead"


def rows_from_suite(n: int) -> list[dict[str, str]]:
    from ctxrely.data.suites import load_suite

    exs = load_suite("cf_world_facts").examples
    return [{"prompt": f"{e.context}\nQuestion: {e.question}\nAnswer:", "completion": f" {e.cf_answer}"}
            for e in (exs * (n // len(exs) + 1))[:n]]


def train_once(tok: Any, rows: list[dict[str, str]], steps: int, batch: int, with_callback: bool,
               out: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds of ``trainer.train()``, and the wall seconds inside the callback's evaluations."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ctxrely.models.tiny import tiny_model
    from ctxrely.track.callback import ContextRelianceCallback

    model, tok = tiny_model("llama", tokenizer=tok, seed=0)
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, max_length=256,
                     learning_rate=1e-4, logging_steps=10, save_strategy="no", report_to="none", use_cpu=True,
                     bf16=False, seed=0, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    cb = ContextRelianceCallback(suites=["cf_capitals"]).attach(trainer) if with_callback else None
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    probe = 0.0
    if cb is not None:
        from ctxrely.track.trajectory import TrajectoryStore

        probe = sum(r["eval_seconds"] for r in TrajectoryStore(out).rows())
    return wall, cpu, probe


def compact_head_ratio(tok: Any, rows: list[dict[str, str]], batch: int, n: int = 20) -> tuple[float, float]:
    """Seconds per forward+backward with TRL's default LM head and with the compact one."""
    from datasets import Dataset
    from trl import SFTConfig

    from ctxrely.models.tiny import tiny_model
    from ctxrely.train.sft import _trainer_class

    model, tok = tiny_model("llama", tokenizer=tok, seed=0)
    args = SFTConfig(output_dir="/tmp/ctxrely-bench-head", max_steps=1, per_device_train_batch_size=batch,
                     max_length=256, report_to="none", use_cpu=True, bf16=False, disable_tqdm=True,
                     save_strategy="no")
    trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batches = [b for _, b in zip(range(4), trainer.get_train_dataloader(), strict=False)]
    best = {}
    for compact in (False, True, False, True):
        trainer.compact = compact
        t0 = time.perf_counter()
        for i in range(n):
            trainer.model.zero_grad()
            trainer.compute_loss(trainer.model, dict(batches[i % len(batches)])).backward()
        best[compact] = min(best.get(compact, 1e9), (time.perf_counter() - t0) / n)
    return best[False], best[True]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import tempfile

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    logging.getLogger("ctxrely").setLevel(logging.WARNING)
    from ctxrely.models.tiny import build_tokenizer

    tok = build_tokenizer()
    rows = rows_from_suite(args.steps * args.batch)
    walls: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    probe_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for with_cb in (False, True):
                wall, cpu, probe = train_once(tok, rows, args.steps, args.batch, with_cb, Path(tmp) / f"r{rep}{with_cb}")
                walls[with_cb].append(wall)
                cpus[with_cb].append(cpu)
                if with_cb:
                    probe_s.append(probe)
                print(f"rep {rep} callback={with_cb}: wall {wall:.2f} s, cpu {cpu:.2f} s"
                      + (f" (probes {probe:.2f} s wall)" if with_cb else ""))
    wall_ratio = min(walls[True]) / min(walls[False])
    ratio = min(cpus[True]) / min(cpus[False])
    full, compact = compact_head_ratio(tok, rows, args.batch)
    n_evals = args.steps // 50 + 1 + (args.steps % 50 != 0)
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores (shared), torch threads 1",
        f"run: tiny Llama (2 layers, width 64), SFTTrainer, {args.steps} steps, batch {args.batch}, "
        f"cf_world_facts context-QA rows (max_length 256)",
        f"callback at defaults (eval_every=50 -> {n_evals} evaluations; 64 cf_capitals examples, logits mode, "
        f"attention on 16); best of {args.reps}, interleaved",
        f"CPU time (1 thread): {min(cpus[True]):.2f} s with vs {min(cpus[False]):.2f} s without: "
        f"**overhead ratio {ratio:.3f}** ({100 * (ratio - 1):.1f}%); spread over reps: with "
        f"{min(cpus[True]):.2f}-{max(cpus[True]):.2f} s, without {min(cpus[False]):.2f}-{max(cpus[False]):.2f} s",
        f"wall time: {min(walls[True]):.2f} s vs {min(walls[False]):.2f} s (ratio {wall_ratio:.3f}; "
        f"the probes themselves took {min(probe_s):.2f} s = {100 * min(probe_s) / min(walls[False]):.1f}% "
        f"of the run without them)",
        f"compact LM head (`ctxrely train`, CPU): {1000 * full:.1f} ms -> {1000 * compact:.1f} ms per "
        f"forward+backward, {full / compact:.2f}x faster, same loss and gradients",
    ]
    publish(SECTION, "benchmarks/callback_overhead.py", lines, f"callback_overhead ratio={ratio:.3f}", write=not args.no_write)


if __name__ == "__main__":
    main()
