"""Benchmark: ``score_criticality`` throughput against a bare forward pass over the same batches.

Run from the repository root:

    .venv/bin/python benchmarks/scoring_throughput.py            # SmolLM2-135M-Instruct if ready, else a random Llama
    .venv/bin/python benchmarks/scoring_throughput.py --model tiny-random --n 96

1. Data: ``--n`` Alpaca rows built from the shipped fact tables (a context of 3-8 fact sentences, a
   question, a one-sentence answer; every 4th row without context), so rows have 40-200 tokens.
2. Scoring: ``score_criticality(model, tok, examples, batch_size=B)`` end to end (rendering,
   tokenising with offsets, two sequences per row with context, length-sorted batches, logits at
   response positions only, NLL).
3. Baseline: the same token sequences (tokenised before the clock starts), in the same length-sorted
   batches of B, left padded, one plain ``model(input_ids, attention_mask, position_ids)`` per batch
   (full logits, as a user's forward pass would compute them).
4. Throughput = real (non-pad) input tokens / second, best of ``--reps`` (interleaved), 1 thread.
   For context, also a trunk-only pass (``logits_to_keep=1``): the floor of any forward pass.

The last line is machine-readable: ``scoring_throughput ratio=<scoring tok/s / bare forward tok/s>``.
Figures are appended to ``docs/benchmarks.md`` under ``## Scoring throughput`` (``--no-write`` skips).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

from docsection import publish  # benchmarks/docsection.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Scoring throughput"


def make_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    from ctxrely.data.facts import closed_book_statement, load_facts, question_for

    facts = load_facts()
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        f = rng.choice(facts)
        others = [closed_book_statement(rng.choice(facts)) for _ in range(rng.randint(2, 7))]
        ctx = " ".join([*others, closed_book_statement(f)]) if i % 4 else ""
        rows.append({"instruction": question_for(f), "input": ctx,
                     "output": f"{closed_book_statement(f)} This follows from what is stated."})
    return rows


def load(model_name: str) -> tuple[Any, Any, str]:
    from ctxrely.models.tiny import build_tokenizer, tiny_model

    if model_name == "auto":
        from ctxrely.models import zoo

        try:
            path = zoo.ensure_local("smollm2-135m-instruct")
            from ctxrely.models.load import load_model

            m, t = load_model(str(path))
            return m, t, "smollm2-135m-instruct (134M, vocab 49152)"
        except Exception as e:  # not installed / not convertible: fall back to a random model
            print(f"smollm2-135m-instruct unavailable ({e}); using a random Llama")
    tok = build_tokenizer(vocab_size=4096)
    m, t = tiny_model("llama", tok, hidden_size=256, num_hidden_layers=4, intermediate_size=688,
                      num_attention_heads=8, num_key_value_heads=4)
    return m, t, "random Llama (4 layers, hidden 256, vocab 4096)"


def bare_forward(model: Any, seqs: list[list[int]], batch_size: int, pad: int, keep: int = 0) -> None:
    import torch

    from ctxrely.engine.batching import left_pad, length_sorted_batches

    with torch.inference_mode():
        for idx in length_sorted_batches(seqs, batch_size):
            ids, mask, pos = left_pad([seqs[i] for i in idx], pad)
            kw = {"logits_to_keep": keep} if keep else {}
            model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **kw)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="auto", choices=["auto", "tiny-random"])
    p.add_argument("--n", type=int, default=48, help="rows")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from ctxrely.data.sft import parse_row
    from ctxrely.diagnose.attention_score import encode_example
    from ctxrely.diagnose.criticality import score_criticality
    from ctxrely.engine.batching import pad_id_of

    model, tok, desc = load(args.model)
    exs = [parse_row(r, fmt="alpaca", index=i) for i, r in enumerate(make_rows(args.n))]
    seqs = []
    for ex in exs:
        seqs.append(encode_example(ex, tok).ids[:-1])
        if ex.has_context:
            seqs.append(encode_example(ex, tok, with_context=False).ids[:-1])
    n_tok = sum(map(len, seqs))
    pad = pad_id_of(tok)
    score_criticality(model, tok, exs[:8], batch_size=args.batch_size, progress=False)  # warm-up
    times: dict[str, list[float]] = {"scoring": [], "bare": [], "trunk": []}
    for _ in range(args.reps):
        for name, fn in (("bare", lambda: bare_forward(model, seqs, args.batch_size, pad)),
                         ("scoring", lambda: score_criticality(model, tok, exs, batch_size=args.batch_size,
                                                               progress=False)),
                         ("trunk", lambda: bare_forward(model, seqs, args.batch_size, pad, keep=1))):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    tps = {k: n_tok / v for k, v in best.items()}
    ratio = tps["scoring"] / tps["bare"]
    lines = [
        f"model: {desc}; {len(exs)} Alpaca rows -> {len(seqs)} sequences, {n_tok} tokens "
        f"(mean {n_tok / len(seqs):.0f}); batch size {args.batch_size}; best of {args.reps}; 1 CPU thread "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__})",
        f"bare forward (full logits): {tps['bare']:.0f} tok/s ({best['bare']:.2f} s)",
        f"score_criticality: {tps['scoring']:.0f} tok/s ({best['scoring']:.2f} s)",
        f"trunk only (logits_to_keep=1, a floor): {tps['trunk']:.0f} tok/s ({best['trunk']:.2f} s)",
        f"ratio scoring / bare forward: {ratio:.2f} (target >= 0.80); scoring / trunk: "
        f"{tps['scoring'] / tps['trunk']:.2f}",
        f"machine: {os.cpu_count()} cores, 1-min load average {os.getloadavg()[0]:.1f} at the end (a shared "
        "machine depresses absolute tok/s; the ratio compares interleaved runs)",
    ]
    publish(SECTION, "benchmarks/scoring_throughput.py", lines, f"scoring_throughput ratio={ratio:.3f}", write=not args.no_write)


if __name__ == "__main__":
    main()
