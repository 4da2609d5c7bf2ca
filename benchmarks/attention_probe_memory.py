"""Benchmark: peak process memory of the training callback's attention probe on long contexts.

Run from the repository root:

    nice -n 10 .venv/bin/python benchmarks/attention_probe_memory.py              # ~2 min on 2 shared cores
    .venv/bin/python benchmarks/attention_probe_memory.py --model /path/to/model --n 8 --tokens 900 --no-write

1. Model: SmolLM2-135M-Instruct (zoo name ``smollm2-135m-instruct``, float32, CPU, torch on 1 thread).
2. Items: ``--n`` conflict items of the built-in ``cf_world_facts`` suite, each context padded with the
   other items' contexts (distractor facts) to about ``--tokens`` tokens; ``raw`` format, one batch
   of ``--n`` (the probe's default batch of 8).
3. Variants, each in a fresh subprocess whose peak RSS (``resource.getrusage(...).ru_maxrss``, the
   whole process: Python, torch, model and the probe) is read at its end:
   ``load`` (the model loaded and the items tokenized, no probe: the floor);
   ``output_attentions`` (the baseline: the probe as it was, one forward with
   ``output_attentions=True`` that keeps every layer's ``batch x heads x n x n`` map at once);
   ``hooks`` (``ctxrely.engine.attention.context_attention``, what the callback runs now: a hook per
   layer keeps only the last query row). The two probes' values are compared per item.

The last line is machine-readable: ``attention_probe_memory before_gb=<x> after_gb=<y> load_gb=<z>
max_abs_diff=<d>``. Figures go to ``docs/benchmarks.md`` under ``## Attention probe memory``
(``--no-write`` skips).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from typing import Any

from docsection import publish  # benchmarks/docsection.py (scripts run from benchmarks/)

SECTION = "## Attention probe memory"
VARIANTS = ("load", "output_attentions", "hooks")


def long_items(tok: Any, n: int, tokens: int) -> list[Any]:
    """``n`` conflict items whose contexts are padded with distractor facts to about ``tokens`` tokens."""
    import dataclasses

    from ctxrely.data.suites import load_suite

    exs = list(load_suite("cf_world_facts").examples)
    out = []
    for i, ex in enumerate(exs[:n]):
        parts, k = [ex.context], i + 1
        while len(tok(" ".join(parts))["input_ids"]) < tokens:
            parts.insert(len(parts) // 2, exs[k % len(exs)].context)  # the fact stays first, distractors after
            k += 1
        out.append(dataclasses.replace(ex, context=" ".join(parts)))
    return out


def output_attentions_probe(model: Any, tok: Any, examples: list[Any], fmt: str = "raw") -> list[float | None]:
    """The baseline: the probe before the attention module (``output_attentions=True`` over the whole model)."""
    import torch

    from ctxrely.engine.attention import context_char_span
    from ctxrely.engine.batching import left_pad, pad_id_of
    from ctxrely.engine.prompting import render
    from ctxrely.models.attention import eager_attention, token_mask
    from ctxrely.prompts import get_format

    pf = get_format(fmt)
    ids, masks = [], []
    for ex in examples:
        text = render(ex, pf, tok)
        enc = tok(text, add_special_tokens=not pf.chat, return_offsets_mapping=True)
        ids.append(list(enc["input_ids"]))
        masks.append(token_mask(enc["offset_mapping"], [context_char_span(ex, pf, tok, text)]))
    batch_ids, attn_mask, pos = left_pad(ids, pad_id_of(tok), "cpu")
    with eager_attention(model), torch.inference_mode():
        res = model(input_ids=batch_ids, attention_mask=attn_mask, position_ids=pos, output_attentions=True,
                    use_cache=False, logits_to_keep=1)
        last = torch.stack([a[:, :, -1, :].float() for a in res.attentions])  # layers x batch x heads x keys
        width = batch_ids.shape[1]
        ctx = torch.zeros((len(ids), width))
        for r, m in enumerate(masks):
            ctx[r, width - len(m):] = torch.tensor(m, dtype=torch.float32)
        mass = (last * ctx[None, :, None, :]).sum(-1).mean(dim=(0, 2))
    return [float(x) for x in mass]


def child(variant: str, model_name: str, n: int, tokens: int) -> None:
    """One variant in this (fresh) process; prints a JSON line with the peak RSS and the values."""
    import torch

    from ctxrely.engine.attention import context_attention
    from ctxrely.models.load import load_model

    torch.set_num_threads(1)
    model, tok = load_model(model_name, device="cpu")
    items = long_items(tok, n, tokens)
    n_tok = [len(tok(f"{e.context}")["input_ids"]) for e in items]
    values: list[float | None] = []
    if variant == "output_attentions":
        values = output_attentions_probe(model, tok, items)
    elif variant == "hooks":
        values = context_attention(model, tok, items, fmt="raw", batch_size=n)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"variant": variant, "peak_gb": peak_kb / 2**20, "values": values, "context_tokens": n_tok,
                      "layers": model.config.num_hidden_layers, "heads": model.config.num_attention_heads}))


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", variant, "--model", args.model, "--n", str(args.n),
           "--tokens", str(args.tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=8, help="conflict items (one batch)")
    ap.add_argument("--tokens", type=int, default=900, help="context length to pad to, in tokens")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.model, args.n, args.tokens)
        return
    res = {v: run_variant(v, args) for v in VARIANTS}
    before, after = res["output_attentions"], res["hooks"]
    diff = max(abs(a - b) for a, b in zip(before["values"], after["values"], strict=True))
    toks = res["load"]["context_tokens"]
    shape = f"{res['load']['layers']} layers x {res['load']['heads']} heads"
    lines = [
        f"model `{args.model}` (float32, CPU, {shape}), {args.n} `cf_world_facts` items with contexts of "
        f"{min(toks)}-{max(toks)} tokens, one batch, torch on 1 thread; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        f"peak process RSS, model loaded and items tokenized (no probe): {res['load']['peak_gb']:.2f} GB",
        f"before (`output_attentions=True`, every layer's n x n map kept): {before['peak_gb']:.2f} GB",
        f"after (`context_attention`, a hook per layer keeps the last query row): {after['peak_gb']:.2f} GB "
        f"(target < 3 GB)",
        f"same values: max |before - after| over the items = {diff:.2e}",
        f"command: `nice -n 10 .venv/bin/python benchmarks/attention_probe_memory.py --n {args.n} "
        f"--tokens {args.tokens}`",
    ]
    summary = (f"attention_probe_memory before_gb={before['peak_gb']:.2f} after_gb={after['peak_gb']:.2f} "
               f"load_gb={res['load']['peak_gb']:.2f} max_abs_diff={diff:.2e}")
    publish(SECTION, "benchmarks/attention_probe_memory.py", lines, summary, write=not args.no_write)


if __name__ == "__main__":
    main()
