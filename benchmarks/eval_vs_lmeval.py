"""Benchmark: ``ctxrely eval`` against lm-evaluation-harness, and against the bare-model floor.

Run from the repository root (needs ``../shared/data``), niced on a shared machine:

    .venv/bin/python benchmarks/eval_vs_lmeval.py --model smollm2-135m-instruct --reps 2
    .venv/bin/python benchmarks/eval_vs_lmeval.py --model tiny --reps 3   # start-up dominated timing rig

Same prompts for both tools: one template string (``--template``) is passed to ``ctxrely eval
--format`` and to ``ctxrely export-lm-eval``, which writes the lm-eval tasks; the same single stop
string (``--stop``), the same new-token limit, the same batch size (16), float32 on CPU, 1 thread each.

1. Whole processes (import, model load, data, scoring, writing results), interleaved, best of --reps:
   ``--mode generate`` vs ``lm_eval --tasks <gen task>`` (``generate_until``), and ``--mode both`` vs
   ``lm_eval --tasks <gen task>,<mc task>`` (``generate_until`` + ``multiple_choice`` in one process).
2. Answers compared per example: generated strings (lm-eval vs ctxrely generate vs ctxrely both, after
   strip), and the multiple-choice winner (lm-eval's two log-likelihoods vs ctxrely's ``cf_wins``).
3. The floor, in this process on the loaded model (CPU time, best of --reps): bare model calls over
   ctxrely's own batches: prefill with last-position logits, then cached single-token steps, as many
   as ctxrely's decoding took in that batch (recorded once through the engine's decode-strategy
   seam). ``floor_ratio`` = ctxrely ``score_examples(mode="generate")`` (render, tokenise, decode,
   stop strings, flags) over that floor. Likewise logit mode over a bare prefill (last-position logits)
   of the same prompts and batches.

The last line is machine-readable:
``eval_vs_lmeval generate_speedup=<x> both_speedup=<y> floor_ratio=<z> same_answers=<true|false>``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_timing_model import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cf_capitals" / "country_capitals_only.json"
TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a whole child process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **ENV}, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}), see {log}: {' '.join(cmd)}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, tuple[float, float]]:
    """Best-of-``reps`` (wall, CPU) per function, calls interleaved, after one warm-up call each."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            runs[k].append((time.perf_counter() - w, time.process_time() - c))
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}


def lm_samples(out: Path, task: str) -> dict[str, Any]:
    files = sorted(glob.glob(str(out / "**" / f"samples_{task}_*.jsonl"), recursive=True), key=os.path.getmtime)
    if not files:
        sys.exit(f"no lm-eval samples file for {task} under {out}")
    return {s["doc"]["id"]: s["filtered_resps"] for s in map(json.loads, Path(files[-1]).read_text().splitlines())}


def ctx_rows(out: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, (out / "examples.jsonl").read_text().splitlines())}


def compare(work: Path, gen_task: str, mc_task: str) -> dict[str, Any]:
    """Per-example agreement of the generated answers and of the multiple-choice winners."""
    lm_gen = {k: v[0].strip() for k, v in lm_samples(work / "lm_gen", gen_task).items()}
    lm_both_gen = {k: v[0].strip() for k, v in lm_samples(work / "lm_both", gen_task).items()}
    lm_mc = lm_samples(work / "lm_both", mc_task)
    gen, both = ctx_rows(work / "ctx_gen"), ctx_rows(work / "ctx_both")
    if not set(lm_gen) == set(gen) == set(both) == set(lm_mc):
        sys.exit("the tools scored different examples")
    diffs = [f"{k}: lm-eval {lm_gen[k]!r} vs ctxrely {gen[k]['output']!r}" for k in gen if lm_gen[k] != gen[k]["output"]]
    mc_same = sum((float(lm_mc[k][0][0]) > float(lm_mc[k][1][0])) == both[k]["cf_wins"]
                  for k in both if len(lm_mc[k]) > 1)
    n_mc = sum(len(lm_mc[k]) > 1 for k in both)
    max_dlogp = max(abs(float(lm_mc[k][0][0]) - both[k]["logp_cf"]) for k in both)
    res = {"n": len(gen), "gen_identical": len(gen) - len(diffs),
           "both_gen_identical": sum(both[k]["output"] == gen[k]["output"] for k in gen),
           "lm_both_gen_identical": sum(lm_both_gen[k] == both[k]["output"] for k in gen),
           "mc_winner_identical": mc_same, "n_mc": n_mc, "max_abs_logp_cf_diff": max_dlogp, "diffs": diffs[:5],
           "mean_answer_chars": sum(len(r["output"]) for r in gen.values()) / len(gen)}
    res["same"] = (res["gen_identical"] == res["both_gen_identical"] == res["lm_both_gen_identical"] == len(gen)
                   and mc_same == n_mc)
    return res


def floors(model: Any, tok: Any, exs: list[Any], fmt: Any, stop: list[str], max_new: int, batch: int,
           reps: int) -> dict[str, tuple[float, float]]:
    """ctxrely generate / logit mode in process, and the bare-model floors over the same batches."""
    import torch

    from ctxrely.engine.api import score_examples
    from ctxrely.engine.batching import left_pad, pad_id_of, plan_batches
    from ctxrely.engine.hf import HFBackend, PlainDecode
    from ctxrely.engine.prompting import build_prompts
    from ctxrely.models.load import model_max_length

    steps: list[tuple[list[int], int]] = []  # (rows, decode steps) per batch, as ctxrely ran them

    index = {ex.id: i for i, ex in enumerate(exs)}

    def counted(stream: Any) -> Any:
        """Count every decode step of the batch, also on the compacted streams ``select`` returns."""
        real_extend, real_select = stream.extend, stream.select

        def extend(i: Any, m: Any) -> Any:
            steps[-1] = (steps[-1][0], steps[-1][1] + 1)
            return real_extend(i, m)

        stream.extend = extend
        stream.select = lambda rows: counted(real_select(rows))
        return stream

    class CountSteps(PlainDecode):
        def start(self, model: Any, ids: Any, mask: Any, requests: Any) -> Any:
            last, stream = super().start(model, ids, mask, requests)
            steps.append(([index[r.example.id] for r in requests], 0))
            return last, counted(stream)

    kw = dict(fmt=fmt, max_new_tokens=max_new, batch_size=batch, stop=stop, progress=False)
    score_examples(model, tok, exs, mode="generate", backend=HFBackend(model, tok, CountSteps()), **kw)
    ids = [p.ids for p in build_prompts(exs, fmt, tok, model_max_length(model, tok), max_new)]
    pad = pad_id_of(tok)

    def decode_floor() -> None:
        with torch.inference_mode():
            for rows, n in steps:
                x, m, pos = left_pad([ids[i] for i in rows], pad)
                out = model(input_ids=x, attention_mask=m, position_ids=pos, use_cache=True, logits_to_keep=1)
                cache, last = out.cache, pos[:, -1:]
                for _ in range(n):
                    m = torch.cat([m, torch.ones_like(last)], dim=1)
                    last = last + 1
                    out = model(input_ids=out.logits[:, -1].argmax(-1)[:, None], attention_mask=m, position_ids=last,
                                cache=cache, use_cache=True, logits_to_keep=1)
                    cache = out.cache

    def prefill_floor() -> None:
        with torch.inference_mode():
            for rows in plan_batches([len(x) for x in ids], batch):
                x, m, pos = left_pad([ids[i] for i in rows], pad)
                model(input_ids=x, attention_mask=m, position_ids=pos, logits_to_keep=1)

    return best({"decode_floor": decode_floor,
                 "generate": lambda: score_examples(model, tok, exs, mode="generate", **kw),
                 "prefill_floor": prefill_floor,
                 "logits": lambda: score_examples(model, tok, exs, mode="logits", **kw)}, reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct",
                    help="zoo name or model folder; 'tiny' builds the 4-layer timing model (start-up dominated)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=None, help="first n examples")
    ap.add_argument("--template", default=TEMPLATE)
    ap.add_argument("--stop", default="\n")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--floor-limit", type=int, default=None,
                    help="measure the in-process floors on the first n prompts only (they cost reps x 4 passes)")
    ap.add_argument("--reuse-times", action="store_true",
                    help="skip the whole-process runs: reuse WORKDIR/times.json and the outputs of a previous run")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-eval-vs-lmeval")
    args = ap.parse_args()
    os.environ.update(ENV)
    import torch

    torch.set_num_threads(1)
    if not args.data.exists():
        sys.exit(f"{args.data} not found: this benchmark needs the published CF_Capitals file (../shared/data)")
    from ctxrely.data.loaders import load_data
    from ctxrely.integrations.lmeval.export import export_lm_eval
    from ctxrely.models.load import load_model
    from ctxrely.prompts import get_format

    work = args.workdir / args.model.replace("/", "_")
    work.mkdir(parents=True, exist_ok=True)
    suite = load_data(str(args.data))
    exs = suite.examples[:args.limit] if args.limit else suite.examples
    if args.model == "tiny":
        model_dir = str(build_model(args.workdir, suite, steps=300, seed=0))
    else:
        from ctxrely.models import zoo

        model_dir = str(zoo.ensure_local(args.model)) if zoo.is_zoo_name(args.model) else args.model
    fmt = get_format(args.template)
    tasks = export_lm_eval(work / "tasks", data=[str(args.data)], limit=args.limit, fmt=fmt,
                           max_new_tokens=args.max_new_tokens, stop=[args.stop], prefix="bench")
    gen_task = next(t.name for t in tasks if t.kind == "generate_until")
    mc_task = next(t.name for t in tasks if t.kind == "multiple_choice")
    py, bs = sys.executable, str(args.batch_size)

    def lm(tasks_: str, out: str) -> list[str]:
        return [py, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32",
                "--tasks", tasks_, "--include_path", str(work / "tasks"), "--batch_size", bs, "--device", "cpu",
                "--output_path", str(work / out), "--log_samples"]

    def cx(mode: str, out: str) -> list[str]:
        lim = ["--limit", str(args.limit)] if args.limit else []
        return [py, "-m", "ctxrely", "eval", "--model", model_dir, "--data", str(args.data), *lim, "--format",
                args.template, "--mode", mode, "--stop", args.stop, "--max-new-tokens", str(args.max_new_tokens),
                "--batch-size", bs, "--device", "cpu", "--dtype", "float32", "--no-progress", "--out", str(work / out)]

    cmds = {"lm_gen": lm(gen_task, "lm_gen"), "ctx_gen": cx("generate", "ctx_gen"),
            "lm_both": lm(f"{gen_task},{mc_task}", "lm_both"), "ctx_both": cx("both", "ctx_both")}
    for k, c in cmds.items():
        print(f"{k:8s}:", " ".join(c), flush=True)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    if args.reuse_times:
        times = json.loads((work / "times.json").read_text())
    for rep in range(0 if args.reuse_times else args.reps):
        for k, c in cmds.items():
            times[k].append(timed(c, work / f"{k}.log"))
        print(f"  rep {rep + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f}s" for k, v in times.items()), flush=True)
        (work / "times.json").write_text(json.dumps(times))
    wall = {k: min(w for w, _ in v) for k, v in times.items()}
    cpu = {k: min(c for _, c in v) for k, v in times.items()}
    same = compare(work, gen_task, mc_task)
    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    fl_exs = exs[:args.floor_limit] if args.floor_limit else exs
    fl = floors(model, tok, fl_exs, fmt, [args.stop], args.max_new_tokens, args.batch_size, args.reps)
    n_tok = [len(tok(fmt.render(e.context, e.question))["input_ids"]) for e in exs]
    res = {
        "generate_speedup": wall["lm_gen"] / wall["ctx_gen"], "both_speedup": wall["lm_both"] / wall["ctx_both"],
        "generate_speedup_cpu": cpu["lm_gen"] / cpu["ctx_gen"], "both_speedup_cpu": cpu["lm_both"] / cpu["ctx_both"],
        "floor_ratio": fl["generate"][1] / fl["decode_floor"][1],
        "logits_over_prefill": fl["logits"][1] / fl["prefill_floor"][1],
        "same_answers": same["same"], "answers": same, "whole_process_s": {"wall": wall, "cpu": cpu},
        "in_process_s": fl, "in_process_n": len(fl_exs), "model": args.model, "n": len(exs), "prompt_tokens_mean": sum(n_tok) / len(n_tok),
        "prompt_tokens_max": max(n_tok), "template": args.template, "stop": args.stop,
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "reps": args.reps, "threads": 1,
        "cores": os.cpu_count(), "load_avg_end": os.getloadavg()[0],
    }
    (work / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"data: {len(exs)} prompts, {res['prompt_tokens_mean']:.0f} tokens on average (max {max(n_tok)}); "
          f"model {args.model}; template {args.template!r}; stop {args.stop!r}; {args.max_new_tokens} new tokens; "
          f"batch {args.batch_size}")
    print(f"generate, whole process (best of {len(times['lm_gen'])}, wall): lm-eval {wall['lm_gen']:.2f}s vs ctxrely "
          f"{wall['ctx_gen']:.2f}s -> {res['generate_speedup']:.2f}x (CPU {res['generate_speedup_cpu']:.2f}x)")
    print(f"both, whole process (wall): lm-eval gen+mc {wall['lm_both']:.2f}s vs ctxrely --mode both "
          f"{wall['ctx_both']:.2f}s -> {res['both_speedup']:.2f}x (CPU {res['both_speedup_cpu']:.2f}x)")
    print(f"floor (CPU, in process, {len(fl_exs)} prompts): ctxrely generate {fl['generate'][1]:.2f}s vs bare prefill+cached steps "
          f"{fl['decode_floor'][1]:.2f}s -> {res['floor_ratio']:.3f}x; logit mode {fl['logits'][1]:.2f}s vs bare "
          f"prefill {fl['prefill_floor'][1]:.2f}s -> {res['logits_over_prefill']:.3f}x")
    print(f"answers: generate {same['gen_identical']}/{same['n']} identical to lm-eval, both-mode "
          f"{same['both_gen_identical']}/{same['n']} identical to generate mode, mc winner "
          f"{same['mc_winner_identical']}/{same['n_mc']} identical, max |logp_cf diff| {same['max_abs_logp_cf_diff']:.2e}")
    for d in same["diffs"]:
        print("  differs:", d)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (shared)")
    print(f"eval_vs_lmeval generate_speedup={res['generate_speedup']:.2f} both_speedup={res['both_speedup']:.2f} "
          f"floor_ratio={res['floor_ratio']:.2f} same_answers={str(res['same_answers']).lower()}")


if __name__ == "__main__":
    main()
