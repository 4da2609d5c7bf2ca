"""Benchmark: the cost of CAD decoding and of PASTA steering on SmolLM2-135M-Instruct (CPU).

Run from the repository root:

    .venv/bin/python benchmarks/steer_cad.py                  # ~3 min on 2 shared cores
    .venv/bin/python benchmarks/steer_cad.py --model /path/to/model --n 8 --no-write

1. Prompts: the first ``--n`` cf_capitals items in the ``chat`` format; the no-context prompts are
   the same format without the context (what ``--decode cad`` uses).
2. CAD vs plain greedy: ``cad_generate`` (both streams in one batched forward, one KV cache) vs
   ``greedy_generate`` on the same prompts, ``--new`` tokens with no stop strings and EOS ignored
   (every row runs every step, so both loops do the same number of steps). Target <= 2.1x: two
   streams are the floor.
3. Steering vs unsteered: one prefill forward (``logits_to_keep=1``) of the same batch with
   ``steer_attention`` on all heads vs without it, in the model's own attention (sdpa). Target <= 1.15x.
Best of ``--reps`` runs, interleaved, torch on one thread, in the same process. The last line is
machine-readable: ``steer_cad cad_ratio=<x> steer_ratio=<y>``. Figures go to ``docs/benchmarks.md``
under ``## Steering and CAD overhead`` (``--no-write`` skips).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

from docsection import publish  # benchmarks/docsection.py (scripts run from benchmarks/)

SECTION = "## Steering and CAD overhead"


def _timed(fn: Any, timings: list[float]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    timings.append(time.perf_counter() - t0)
    return out


def _fmt(ts: list[float], digits: int = 2) -> str:
    return " ".join(f"{t:.{digits}f}" for t in ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=16, help="prompts (one batch)")
    ap.add_argument("--new", type=int, default=16, help="new tokens per prompt")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from ctxrely.data.suites import load_suite
    from ctxrely.engine.batching import left_pad, pad_id_of
    from ctxrely.engine.generate import greedy_generate
    from ctxrely.engine.prompting import build_prompts, encode, render
    from ctxrely.models.load import load_model
    from ctxrely.prompts import get_format
    from ctxrely.steer.attention import steer_attention
    from ctxrely.steer.cad import cad_generate
    from ctxrely.steer.spans import prompt_spans

    model, tok = load_model(args.model)
    impl = model.config._attn_implementation
    fmt = get_format("chat")
    exs = load_suite("cf_capitals").examples[:args.n]
    prompts = build_prompts(exs, fmt, tok, 2048)
    ids = [p.ids for p in prompts]
    bare = [encode(tok, render(ex, fmt, tok, context=""), fmt) for ex in exs]
    spans = prompt_spans(exs, [p.text for p in prompts], ids, fmt, tok)
    x, m, pos = left_pad(ids, pad_id_of(tok))
    for src in (model.generation_config, model.config, tok):  # EOS ignored: every row runs every step
        src.eos_token_id = None
    n_tok = sum(map(len, ids))

    t_plain: list[float] = []
    t_cad: list[float] = []
    t_fwd: list[float] = []
    t_steer: list[float] = []

    def forward() -> Any:
        with torch.inference_mode():
            return model(input_ids=x, attention_mask=m, position_ids=pos, logits_to_keep=1).logits

    def steered() -> Any:
        with steer_attention(model, alpha=0.01) as st:
            for i, s in zip(ids, spans, strict=True):
                st.add(i, s)
            return forward()

    forward()  # warm-up
    for _ in range(args.reps):
        plain = _timed(lambda: greedy_generate(model, tok, ids, max_new_tokens=args.new, stop=[], batch_size=args.n), t_plain)
        cad = _timed(lambda: cad_generate(model, tok, ids, bare, alpha=1.0, max_new_tokens=args.new, stop=[],
                                         batch_size=args.n), t_cad)
        _timed(forward, t_fwd)
        _timed(steered, t_steer)
    cad_ratio = min(t_cad) / min(t_plain)
    steer_ratio = min(t_steer) / min(t_fwd)
    differ = sum(a != b for a, b in zip(plain, cad, strict=True))
    load = os.getloadavg()[0]
    lines = [
        f"model: {args.model} ({impl} attention), {args.n} cf_capitals prompts in the chat format "
        f"({n_tok} tokens, mean {n_tok / args.n:.0f}), one batch; torch {torch.__version__}, 1 thread, "
        f"{platform.machine()}, 1-min load average {load:.1f} (shared machine: absolute times are depressed)",
        f"CAD vs plain greedy ({args.new} new tokens, EOS and stop strings off): {min(t_cad):.2f} s vs "
        f"{min(t_plain):.2f} s, **ratio {cad_ratio:.2f}** (target <= 2.1); CAD changed {differ}/{args.n} outputs",
        f"PASTA steering (all heads, alpha 0.01) vs unsteered, one prefill forward: {min(t_steer):.3f} s vs "
        f"{min(t_fwd):.3f} s, **ratio {steer_ratio:.2f}** (target <= 1.15)",
        f"best of {args.reps}, interleaved; all times (s): plain {_fmt(t_plain)}, cad {_fmt(t_cad)}, "
        f"forward {_fmt(t_fwd, 3)}, steered {_fmt(t_steer, 3)}",
    ]
    publish(SECTION, "benchmarks/steer_cad.py", lines, f"steer_cad cad_ratio={cad_ratio:.3f} steer_ratio={steer_ratio:.3f}", write=not args.no_write)


if __name__ == "__main__":
    main()
