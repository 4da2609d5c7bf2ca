"""Benchmark: what the prior pass of graded conflicts costs (at most one extra prefill per item).

Run from the repository root:

    .venv/bin/python benchmarks/prior_pass.py                          # tiny Llama, ~1 min
    .venv/bin/python benchmarks/prior_pass.py --model smollm2-135m-instruct --limit 30 --no-write

1. Counts prefills: a forward pre-hook on the model adds up the rows of every forward call that
   starts without a KV cache (a prefill; answer tails and decode steps run on a cache). For
   ``evaluate(..., mode="both")`` on ``graded_years`` + ``graded_numbers`` (``--limit`` items each)
   the with-context pass prefills each item once; the prior pass adds one closed-book prefill per
   distinct question (a question's 5-6 graded passages share it). The same on ``cf_capitals`` with
   ``prior=True``, where every item has its own question: the worst case, exactly one extra.
2. Times ``evaluate`` with and without the prior pass (best of ``--reps``, interleaved, one thread).
The last line is machine-readable: ``prior_pass extra_per_item_graded=<x> extra_per_item_worst=<y>
time_ratio=<z>``. Figures go to ``docs/benchmarks.md`` under ``## Prior pass cost`` (``--no-write`` skips).
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

from docsection import publish  # benchmarks/docsection.py (scripts run from benchmarks/)

SECTION = "## Prior pass cost"


class PrefillCounter:
    """Rows of forward calls that start without a KV cache, while installed (a context manager)."""

    def __init__(self, model: Any) -> None:
        self.model, self.rows, self.handle = model, 0, None

    def _hook(self, _mod: Any, args: Any, kwargs: Any) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if cache is None or (hasattr(cache, "get_seq_length") and cache.get_seq_length() == 0):
            self.rows += int(ids.shape[0])

    def __enter__(self) -> PrefillCounter:
        self.handle = self.model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="tiny (a random 2-layer Llama) or a zoo name / folder")
    ap.add_argument("--limit", type=int, default=60, help="items per graded suite")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from ctxrely.engine.api import evaluate

    if args.model == "tiny":
        from ctxrely.models.tiny import tiny_model

        model, tok = tiny_model("llama")
        fmt = "raw"
    else:
        from ctxrely.models.load import load_model

        model, tok = load_model(args.model, device="cpu")
        fmt = "chat"
    kw = dict(mode="both", max_new_tokens=8, n_boot=0, progress=False, fmt=fmt)
    graded = ["graded_years", "graded_numbers"]

    def run(suites: list[str], prior: bool, limit: int) -> tuple[int, int, int, float]:
        with PrefillCounter(model) as c:
            t0 = time.perf_counter()
            res = evaluate(model, tok, suites, limit=limit, prior=prior, **kw)
            dt = time.perf_counter() - t0
        n_q = res.summary.get("prior_pass", {}).get("n_questions", 0)
        return len(res.rows), n_q, c.rows, dt

    n_items, n_q, rows_with, _ = run(graded, True, args.limit)
    _, _, rows_without, _ = run(graded, False, args.limit)
    w_items, w_q, w_with, _ = run(["cf_capitals"], True, args.limit)
    _, _, w_without, _ = run(["cf_capitals"], False, args.limit)
    t_with, t_without = [], []
    for _ in range(args.reps):
        t_without.append(run(graded, False, args.limit)[3])
        t_with.append(run(graded, True, args.limit)[3])
    extra = (rows_with - rows_without) / n_items
    worst = (w_with - w_without) / w_items
    ratio = min(t_with) / min(t_without)
    lines = [
        f"model: {args.model} ({fmt} prompts); machine: {platform.machine()}, torch {torch.__version__}, 1 thread; "
        f"evaluate(mode='both', max_new_tokens=8), best of {args.reps}, interleaved",
        f"graded_years + graded_numbers, {n_items} items over {n_q} distinct questions: prefilled rows "
        f"{rows_without} without the prior pass, {rows_with} with it -> **{extra:.3f} extra prefills per item** "
        f"(= questions / items; at most 1)",
        f"worst case, cf_capitals with prior=True ({w_items} items, {w_q} questions, one passage each): "
        f"{w_without} -> {w_with} prefilled rows -> **{worst:.3f} extra per item**",
        f"time, graded suites: {min(t_without):.2f} s without vs {min(t_with):.2f} s with the prior pass "
        f"-> ratio {ratio:.2f}",
    ]
    publish(SECTION, "benchmarks/prior_pass.py", lines,
            f"prior_pass extra_per_item_graded={extra:.3f} extra_per_item_worst={worst:.3f} time_ratio={ratio:.2f}",
            write=not args.no_write)


if __name__ == "__main__":
    main()
