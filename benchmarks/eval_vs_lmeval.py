"""Benchmark: ``ctxrely eval`` against lm-evaluation-harness on one tiny model and the 196 CF_Capitals prompts.

Run from the repository root (needs ``../shared/data``; builds and caches its model under --workdir):

    .venv/bin/python benchmarks/eval_vs_lmeval.py --reps 3

1. Model: a Llama with 4 layers, hidden 128, 4 heads (2 KV heads), MLP 256, window 1024, over the
   1024-token test tokenizer, trained for --steps steps on the 196 prompts (target: the context's
   answer in a ~20-token sentence ending in a blank line) so that greedy argmaxes are decisive and
   generation runs ~20 tokens before the "\n\n" stop. Its accuracy means nothing; it is a timing rig.
2. Generate mode, whole processes (import, model load, data, decoding, writing results), best of
   --reps, interleaved: ``python -m lm_eval --model hf --model_args pretrained=DIR,dtype=float32 --tasks
   <exported generate_until task> --include_path TASKS --batch_size 16 --device cpu --log_samples``
   vs ``python -m ctxrely.cli.main eval --model DIR --data FILE --mode generate --batch-size 16``.
   Both get OMP_NUM_THREADS=1; wall time (the target) and the children's CPU time are recorded.
   Answers are compared per example (normalised strings).
3. Logit mode, in this process (torch 1 thread; CPU time, best of --reps; wall time also printed):
   ctxrely's ``score_examples(mode="logits")`` (render, tokenise, shared prefill, both continuations)
   vs a bare prefill-only forward over the same prompt tokens: the same length-sorted batches of
   16, left padded, one plain ``model(input_ids, attention_mask)`` call per batch, tokenisation done
   before the clock starts. The same ratio on a real packaged LM (``--real-model``, first
   ``--real-n`` prompts) when ``ctxrely models`` shows it converted.
4. For context, in this process: lm-eval's ``HFLM.generate_until`` vs ctxrely's ``greedy_generate``
   on the same loaded model and pre-rendered prompts (model-side decoding only).

The last line is machine-readable:
``eval_vs_lmeval generate_speedup=<x> logits_over_prefill=<y> same_answers=<true|false>``
(generate_speedup: whole-process wall time; logits_over_prefill: CPU time of the tiny model).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cf_capitals" / "country_capitals_only.json"
ARCH = dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=256, max_position_embeddings=1024)  # --hidden changes hidden/intermediate
TARGET = " {cf}. According to the context, the answer is {cf}.\n\n"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def load_suite(path: Path) -> Any:
    from ctxrely.data.loaders import load_data

    return load_data(str(path))


def build_model(workdir: Path, suite: Any, steps: int, seed: int) -> Path:
    """Train (once; cached by a fingerprint of everything that shapes it) and save the timing model."""
    import torch

    from ctxrely.models.tiny import build_tokenizer, default_corpus, tiny_model
    from ctxrely.prompts import get_format

    key = json.dumps({"arch": ARCH, "steps": steps, "seed": seed, "target": TARGET, "suite": suite.hash})
    out = workdir / f"model-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if (out / "model.safetensors").exists():
        return out
    corpus = default_corpus() + [f"{e.context}\n{e.question}\n{TARGET.format(cf=e.cf_answer)}" for e in suite.examples]
    tok = build_tokenizer(corpus)
    model, tok = tiny_model("llama", tokenizer=tok, seed=seed, **ARCH)
    fmt = get_format("raw")
    seqs = []
    for ex in suite.examples:
        prompt = fmt.render(ex.context, ex.question)
        p = tok(prompt)["input_ids"]
        full = tok(prompt + TARGET.format(cf=ex.cf_answer))["input_ids"]
        seqs.append((full, len(p)))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(seqs), (16,), generator=gen).tolist()
        width = max(len(seqs[i][0]) for i in idx)
        ids = torch.full((16, width), tok.pad_token_id)
        labels = torch.full((16, width), -100)
        mask = torch.zeros((16, width), dtype=torch.long)
        for r, i in enumerate(idx):
            full, n_prompt = seqs[i]
            ids[r, :len(full)] = torch.tensor(full)
            labels[r, n_prompt:len(full)] = torch.tensor(full[n_prompt:])
            mask[r, :len(full)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            print(f"  train step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


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


def clock(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time is this process's (torch runs 1 thread here)."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def best(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, tuple[float, float]]:
    """Best-of-``reps`` (wall, CPU) per function, calls interleaved, after one warm-up call each."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            runs[k].append(clock(fn))
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}


def compare_answers(lm_out: Path, task: str, ctx_out: Path) -> tuple[int, int, int, list[str]]:
    """(n, exact matches after strip, normalised matches, examples of differences)."""
    from ctxrely.metrics.matching import normalize_answer

    files = sorted(glob.glob(str(lm_out / "**" / f"samples_{task}_*.jsonl"), recursive=True), key=os.path.getmtime)
    if not files:
        sys.exit(f"no lm-eval samples file for {task} under {lm_out}")
    theirs = {}
    for line in Path(files[-1]).read_text(encoding="utf-8").splitlines():
        s = json.loads(line)
        theirs[s["doc"]["id"]] = s["filtered_resps"][0]
    ours = {r["id"]: r["output"] for r in map(json.loads, (ctx_out / "examples.jsonl").read_text().splitlines())}
    if set(theirs) != set(ours):
        sys.exit(f"lm-eval scored {len(theirs)} docs, ctxrely {len(ours)}: not the same examples")
    exact = sum(theirs[k].strip() == ours[k] for k in ours)
    norm = sum(normalize_answer(theirs[k]) == normalize_answer(ours[k]) for k in ours)
    diffs = [f"{k}: lm-eval {theirs[k].strip()!r} vs ctxrely {ours[k]!r}" for k in ours
             if normalize_answer(theirs[k]) != normalize_answer(ours[k])]
    return len(ours), exact, norm, diffs


def logits_vs_prefill(model: Any, tok: Any, exs: list[Any], reps: int) -> dict[str, tuple[float, float]]:
    """ctxrely logit mode, its model side alone, and a bare prefill over the same prompts and batches."""
    import torch

    from ctxrely.engine.api import score_examples
    from ctxrely.engine.batching import left_pad, length_sorted_batches, pad_id_of
    from ctxrely.engine.logits import encode_pairs, score_continuations
    from ctxrely.engine.prompting import continuation
    from ctxrely.prompts import get_format

    fmt = get_format("raw")
    texts = [fmt.render(ex.context, ex.question) for ex in exs]
    ids = [tok(t)["input_ids"] for t in texts]
    pairs = encode_pairs(tok, texts, [[continuation(t, ex.cf_answer), continuation(t, ex.param_answer)]
                                      for t, ex in zip(texts, exs, strict=True)], True)
    assert [p for p, _ in pairs] == ids
    pad = pad_id_of(tok)

    def prefill() -> None:  # the baseline: plain forward per left-padded batch, tokens ready
        with torch.inference_mode():
            for idx in length_sorted_batches(ids, 16):
                x, m, _ = left_pad([ids[i] for i in idx], pad)
                model(input_ids=x, attention_mask=m)

    def logits() -> None:  # all of logit mode: render, tokenise, score both answers, flags
        score_examples(model, tok, exs, fmt=fmt, mode="logits", batch_size=16, progress=False)

    def scoring() -> None:  # its model side alone, on the pre-tokenised pairs
        score_continuations(model, tok, [p for p, _ in pairs], [c for _, c in pairs], batch_size=16)

    return best({"prefill": prefill, "logits": logits, "scoring": scoring}, reps)


def generation_in_process(model: Any, tok: Any, exs: list[Any], reps: int) -> dict[str, tuple[float, float]]:
    """Model-side decoding only: lm-eval ``HFLM.generate_until`` vs ctxrely ``greedy_generate``."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from ctxrely.engine.generate import DEFAULT_STOP, greedy_generate
    from ctxrely.prompts import get_format

    fmt = get_format("raw")
    texts = [fmt.render(ex.context, ex.question) for ex in exs]
    ids = [tok(t)["input_ids"] for t in texts]
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=16)
    kw = {"until": list(DEFAULT_STOP), "do_sample": False, "temperature": 0.0, "max_gen_toks": 32}
    reqs = [Instance("generate_until", {}, (t, dict(kw)), 0) for t in texts]
    return best({"lmeval": lambda: lm.generate_until(reqs, disable_tqdm=True),
                 "ctxrely": lambda: greedy_generate(model, tok, ids, max_new_tokens=32, batch_size=16)}, reps)


def real_model_check(name: str, exs: list[Any], reps: int) -> dict[str, tuple[float, float]] | None:
    """The logit-mode ratio on a packaged real LM (zoo), when it is already converted locally."""
    from ctxrely.models import zoo
    from ctxrely.models.load import load_model

    if not zoo.is_zoo_name(name) or not zoo.is_converted(zoo.model_dir(name), name):
        print(f"real-model check skipped: {name} is not a converted zoo model (see `ctxrely models`)")
        return None
    model, tok = load_model(name)
    return logits_vs_prefill(model, tok, exs, reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-eval-vs-lmeval")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="training steps of the timing model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=128, help="hidden size of the timing model (MLP: 2x)")
    ap.add_argument("--real-model", default="smollm2-135m-instruct",
                    help="zoo model for an extra logit-mode check on a real LM ('none' to skip)")
    ap.add_argument("--real-n", type=int, default=48, help="prompts for the real-model check")
    args = ap.parse_args()
    ARCH.update(hidden_size=args.hidden, intermediate_size=2 * args.hidden)
    os.environ.update(ENV)
    import torch

    torch.set_num_threads(1)
    if not args.data.exists():
        sys.exit(f"{args.data} not found: this benchmark needs the published CF_Capitals file (../shared/data)")
    from ctxrely.integrations.lmeval.export import export_lm_eval

    args.workdir.mkdir(parents=True, exist_ok=True)
    suite = load_suite(args.data)
    print(f"data: {args.data} ({len(suite.examples)} examples)")
    model_dir = build_model(args.workdir, suite, args.steps, args.seed)
    print(f"model: {model_dir} (llama {ARCH})")
    tasks = export_lm_eval(args.workdir / "tasks", data=[str(args.data)], max_new_tokens=32)
    gen_task = next(t.name for t in tasks if t.kind == "generate_until")
    py = sys.executable
    lm_cmd = [py, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32",
              "--tasks", gen_task, "--include_path", str(args.workdir / "tasks"), "--batch_size", "16",
              "--device", "cpu", "--output_path", str(args.workdir / "lmeval_out"), "--log_samples"]
    ctx_cmd = [py, "-m", "ctxrely.cli.main", "eval", "--model", str(model_dir), "--data", str(args.data),
               "--mode", "generate", "--batch-size", "16", "--out", str(args.workdir / "ctxrely_out")]
    print("lm-eval :", " ".join(lm_cmd))
    print("ctxrely :", " ".join(ctx_cmd))
    t_lm, t_ctx = [], []
    for rep in range(args.reps):
        t_lm.append(timed(lm_cmd, args.workdir / "lmeval.log"))
        t_ctx.append(timed(ctx_cmd, args.workdir / "ctxrely.log"))
        print(f"  rep {rep + 1}: lm-eval {t_lm[-1][0]:.2f}s wall / {t_lm[-1][1]:.2f}s CPU, "
              f"ctxrely {t_ctx[-1][0]:.2f}s wall / {t_ctx[-1][1]:.2f}s CPU", flush=True)
    n, exact, norm, diffs = compare_answers(args.workdir / "lmeval_out", gen_task, args.workdir / "ctxrely_out")
    rows = [json.loads(x) for x in (args.workdir / "ctxrely_out" / "examples.jsonl").read_text().splitlines()]
    mean_chars = sum(len(r["output"]) for r in rows) / len(rows)
    print(f"answers: {exact}/{n} identical after strip, {norm}/{n} identical normalised "
          f"(mean answer {mean_chars:.0f} chars)")
    for d in diffs[:5]:
        print("  differs:", d)

    from ctxrely.models.load import load_model

    model, tok = load_model(str(model_dir))
    lp = logits_vs_prefill(model, tok, suite.examples, args.reps)
    gen = generation_in_process(model, tok, suite.examples, args.reps)
    real = None if args.real_model == "none" else real_model_check(args.real_model, suite.examples[:args.real_n], 2)
    lm_wall, lm_cpu = min(w for w, _ in t_lm), min(c for _, c in t_lm)
    cx_wall, cx_cpu = min(w for w, _ in t_ctx), min(c for _, c in t_ctx)
    res: dict[str, Any] = {
        "generate_speedup": lm_wall / cx_wall, "generate_speedup_cpu": lm_cpu / cx_cpu,
        "logits_over_prefill": lp["logits"][1] / lp["prefill"][1],
        "logits_over_prefill_wall": lp["logits"][0] / lp["prefill"][0],
        "scoring_over_prefill": lp["scoring"][1] / lp["prefill"][1],
        "same_answers": norm == n, "n": n, "identical_exact": exact, "identical_normalised": norm,
        "whole_process_s": {"lmeval": [lm_wall, lm_cpu], "ctxrely": [cx_wall, cx_cpu]},
        "in_process_s": {**{f"logits/{k}": v for k, v in lp.items()}, **{f"generate/{k}": v for k, v in gen.items()}},
        "reps": args.reps, "threads": 1, "model": str(model_dir), "arch": ARCH, "train_steps": args.steps,
        "cores": os.cpu_count(), "load_avg": os.getloadavg()[0],
    }
    if real is not None:
        res["real_model"] = {"name": args.real_model, "n": min(args.real_n, n),
                             "logits_over_prefill": real["logits"][1] / real["prefill"][1],
                             "logits_over_prefill_wall": real["logits"][0] / real["prefill"][0],
                             "s": real}
    (args.workdir / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"generate, whole process (best of {args.reps}): lm-eval {lm_wall:.2f}s, ctxrely {cx_wall:.2f}s wall "
          f"-> {res['generate_speedup']:.2f}x (CPU {lm_cpu:.2f}s vs {cx_cpu:.2f}s -> {res['generate_speedup_cpu']:.2f}x)")
    print(f"generate, in process, decoding only (CPU): lm-eval generate_until {gen['lmeval'][1]:.2f}s, "
          f"ctxrely greedy_generate {gen['ctxrely'][1]:.2f}s -> {gen['lmeval'][1] / gen['ctxrely'][1]:.2f}x")
    print(f"logits (CPU, best of {args.reps}): ctxrely logit mode {lp['logits'][1]:.3f}s vs bare prefill "
          f"{lp['prefill'][1]:.3f}s -> {res['logits_over_prefill']:.2f}x (wall {res['logits_over_prefill_wall']:.2f}x); "
          f"model side alone {lp['scoring'][1]:.3f}s -> {res['scoring_over_prefill']:.2f}x")
    if real is not None:
        r = res["real_model"]
        print(f"logits on {r['name']} ({r['n']} prompts, CPU): {real['logits'][1]:.2f}s vs bare prefill "
              f"{real['prefill'][1]:.2f}s -> {r['logits_over_prefill']:.2f}x (wall {r['logits_over_prefill_wall']:.2f}x)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (shared)")
    print(f"eval_vs_lmeval generate_speedup={res['generate_speedup']:.2f} "
          f"logits_over_prefill={res['logits_over_prefill']:.2f} same_answers={str(res['same_answers']).lower()}")


if __name__ == "__main__":
    main()
