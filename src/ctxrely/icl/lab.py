"""The IC-Train lab: fine-tune one model with each context strategy on the invented lexicon, track
ICL / IWL / Copy scores and bucketed accuracy, and report (Malu et al. 2026, Figs. 3 and 4).

Resumable: a finished run holds ``lab_done.json`` and is skipped on restart.

Output folder::

    <out>/settings.json                 the experiment's settings (a restart must match)
    <out>/runs/<strategy>-s<seed>/       one ``run_train`` folder each (trajectory.jsonl, ...)
    <out>/icl_summary.{json,md}          final scores per run and per strategy
    <out>/report/report.html            tracking report + Fig. 3 (buckets) + Fig. 4 (probe curves)

Example:
    $ nice -n 19 python -m ctxrely.icl.lab --out runs/icl-lab            # the documented run (~40 min, 2-core CPU)
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ctxrely.engine.resume import DONE
from ctxrely.icl.sampling import STRATEGIES

log = logging.getLogger(__name__)


@dataclass
class IclLabSettings:
    """What one lab experiment runs (every field is a ``--flag`` of ``python -m ctxrely.icl.lab``).

    The defaults are the run documented in ``docs/findings.md``, sized for a shared 2-core CPU
    (k = 2 keeps prompts short; 40 LoRA steps; 8 items per probe suite).
    """

    model: str = "smollm2-135m-instruct"
    strategies: tuple[str, ...] = STRATEGIES
    seeds: tuple[int, ...] = (0,)
    k: int = 2
    p: float = 0.5
    eps: float = 0.1
    similarity: str = "bm25"
    passes: int = 1  # context draws per training row (fresh demonstrations per pass)
    n_train: int = 400
    n_probe: int = 8
    max_steps: int = 40
    eval_every: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    lora_rank: int = 16
    max_length: int = 256
    max_new_tokens: int = 8


def experiment_data(s: IclLabSettings) -> tuple[list[dict[str, str]], dict[str, list[Any]]]:
    """The training pool and every probe suite (ICL / IWL-copy probes and the bucketed suites)."""
    from ctxrely.icl.lexicon import lexicon_task
    from ctxrely.icl.probes import bucket_examples, probe_examples

    task = lexicon_task(n_train=s.n_train, n_test=s.n_probe, n_novel=s.n_probe)
    probes = probe_examples(task.train, task.novel, task.train[:s.n_probe], k=s.k, similarity=s.similarity)
    probes.update(bucket_examples(task.train, task.test, k=s.k, similarity=s.similarity))
    return task.train, probes


def strategy_rows(pool: list[dict[str, str]], s: IclLabSettings, strategy: str, seed: int) -> list[dict[str, Any]]:
    """``passes`` independent context draws over the pool, as prompt-completion rows (raw format)."""
    from ctxrely.icl.rows import build_rows

    rows: list[dict[str, Any]] = []
    for i in range(s.passes):
        rows += build_rows(pool, k=s.k, strategy=strategy, p=s.p, eps=s.eps, similarity=s.similarity,
                           seed=1000 * seed + i, fmt="prompt-completion", prompt_format="raw")
    return rows


def train_config(s: IclLabSettings, strategy: str, seed: int, run_dir: Path) -> Any:
    from ctxrely.train.config import LoraSection, TrainConfig

    return TrainConfig(model=s.model, output_dir=str(run_dir), run_name=f"{strategy}-s{seed}",
                       dataset_format="prompt_completion", max_steps=s.max_steps, lr=s.lr, warmup_steps=5,
                       batch_size=s.batch_size, max_length=s.max_length, seed=seed, finetune="lora",
                       lora=LoraSection(rank=s.lora_rank, alpha=2 * s.lora_rank), eval_every=s.eval_every,
                       suites=[], eval_limit=None, eval_mode="generate", eval_format="raw",
                       metric="icl_probe/cf_acc", attention_subset=0, eval_max_new_tokens=s.max_new_tokens,
                       logging_steps=10, save_final=False,
                       device="cpu", dtype="float32")


def run_icl_lab(s: IclLabSettings, out_dir: str | Path, say: Any = None) -> dict[str, Any]:
    """Run every (strategy, seed) not yet done, then summarise and report; returns the summary."""
    from ctxrely.engine.resume import claim_settings
    from ctxrely.models.load import load_model
    from ctxrely.train.sft import run_train

    say = say or log.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    claim_settings(out / "settings.json", asdict(s), grow=("strategies", "seeds"))
    pool, probes = experiment_data(s)
    say(f"pool {len(pool)} rows; probes " + ", ".join(f"{k} {len(v)}" for k, v in probes.items()))
    model, tok = load_model(s.model, dtype="float32", device="cpu")
    todo = [(st, seed) for seed in s.seeds for st in s.strategies]
    for i, (strategy, seed) in enumerate(todo):
        run_dir = out / "runs" / f"{strategy}-s{seed}"
        if (run_dir / DONE).exists():
            say(f"[{i + 1}/{len(todo)}] {strategy} seed {seed}: done earlier")
            continue
        rows = strategy_rows(pool, s, strategy, seed)
        say(f"[{i + 1}/{len(todo)}] training {strategy} seed {seed} on {len(rows)} rows")
        t0 = time.perf_counter()
        run_model = copy.deepcopy(model)
        run_model.train()
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)  # no checkpoints: an interrupted run starts over
        run_train(train_config(s, strategy, seed, run_dir), model=run_model, tokenizer=copy.deepcopy(tok),
                  train_rows=rows, eval_examples=probes)
        del run_model
        gc.collect()
        wall = time.perf_counter() - t0
        (run_dir / DONE).write_text(json.dumps({"strategy": strategy, "seed": seed, "wall_seconds": round(wall, 1)})
                                    + "\n", encoding="utf-8")
        say(f"[{i + 1}/{len(todo)}] {strategy} seed {seed} finished in {wall:.0f} s")
    from ctxrely.icl.report import write_icl_report

    return write_icl_report(out, s.strategies)


def main(argv: list[str] | None = None) -> int:
    d = IclLabSettings()
    ap = argparse.ArgumentParser(prog="python -m ctxrely.icl.lab", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--strategies", default=",".join(d.strategies))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared CPU more threads contend and run slower)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    for name in ("model", "k", "p", "eps", "similarity", "passes", "n_train", "n_probe", "max_steps", "eval_every",
                 "batch_size", "lr", "lora_rank", "max_length", "max_new_tokens"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(d, name)), default=getattr(d, name))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    fields = {k: getattr(a, k) for k in asdict(d) if k not in ("strategies", "seeds")}
    s = IclLabSettings(strategies=tuple(a.strategies.split(",")), seeds=tuple(int(x) for x in a.seeds.split(",")),
                       **fields)
    from ctxrely.cli.main import guarded

    def run() -> int:
        summary = run_icl_lab(s, a.out, say=print)
        print(json.dumps(summary.get("per_strategy", {}), indent=1))
        return 0

    return guarded(run, debug=a.debug)


if __name__ == "__main__":
    raise SystemExit(main())
