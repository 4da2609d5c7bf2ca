"""The tiny timing model of ``eval_vs_lmeval.py --model tiny``: a 4-layer Llama trained briefly on the
CF_Capitals prompts so that greedy argmaxes are decisive. Its accuracy means nothing; with it, whole-
process timings are dominated by start-up (imports, model load), not by compute.

Example:
    >>> model_dir = build_model(Path("runs/bench"), suite, steps=300, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

ARCH = dict(num_hidden_layers=4, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=256, max_position_embeddings=1024)
TARGET = " {cf}. According to the context, the answer is {cf}.\n\n"
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
