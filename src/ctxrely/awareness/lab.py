"""The awareness lab: template SFT vs plain SFT from one base model, and the indicator fix (Wang et al. 2024).

From the *base* model (default: Gemma 3 270M, given a ChatML-style chat template), each run
fine-tunes a fresh copy on the same instruction mixture (:mod:`ctxrely.awareness.lab_data`) and
measures, before and after, in the format it was trained in (and the template model also without
its template): needle-in-a-haystack recall (two needles, several lengths and depths), SQuAD
(`contains` / F1 on the published sample, when found) and the attention allocation of the answer
over bos / user / template / assistant tokens (with the per-layer view).

Runs:

* ``template``: the mixture in the chat template (loss on the assistant turn);
* ``plain``: the same turns as plain text, ``...Question: q`` / ``Answer: a``;
* ``template_indicator``: every row scored by the attention context-dependency metric on the base
  model; rows above the threshold get `` [IND]`` after the question; evaluated with and without it;
* ``template_dep_only``: the mixture ablation, context-independent rows removed.

Resumable: every evaluation is cached in its run folder, a trained run keeps its adapter in
``final/``, a finished run holds ``lab_done.json``.

Example:
    $ nice -n 19 python -m ctxrely.awareness.lab --out runs/awareness-lab --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctxrely.awareness.nih import QA_CUE
from ctxrely.engine.resume import DONE

log = logging.getLogger(__name__)
RUNS = ("template", "plain", "template_indicator", "template_dep_only")
INDICATOR = "[IND]"
#: What each run is measured in: (tag, NIH/attention template, SQuAD format, indicator at inference).
MEASURES: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "base": (("chat", "chat", "rc-chat", False), ("qa", "qa", "rc-qa", False)),
    "template": (("chat", "chat", "rc-chat", False), ("qa", "qa", "rc-qa", False)),
    "plain": (("qa", "qa", "rc-qa", False),),
    "template_indicator": (("chat+ind", "chat", "rc-chat", True), ("chat", "chat", "rc-chat", False)),
    "template_dep_only": (("chat", "chat", "rc-chat", False),),
}


@dataclass
class AwarenessLabSettings:
    """What one experiment runs (every field is a ``--flag`` of ``python -m ctxrely.awareness.lab``)."""

    model: str = "gemma3-270m"
    runs: tuple[str, ...] = RUNS
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 400
    dependent_share: float = 0.5
    n_sentences: int = 5
    data_seed: int = 0
    max_steps: int = 100
    batch_size: int = 8
    lr: float = 2e-4
    lora_rank: int = 16
    max_length: int = 384
    indicator_threshold: float = -1.0  # < 0: the median score of all rows
    nih_lengths: tuple[int, ...] = (500, 1000, 2000)
    nih_depths: tuple[float, ...] = (0, 50, 100)
    nih_new_tokens: int = 24
    squad_limit: int = 40
    squad_new_tokens: int = 24
    attention_length: int = 500
    attention_prompts: int = 6
    attention_new_tokens: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


def needles() -> list[Any]:
    """The paper's needle plus a second one (so recall is not one sentence's luck)."""
    from ctxrely.awareness.haystack import DEFAULT_NEEDLE, Needle

    return [DEFAULT_NEEDLE, Needle("The secret ingredient in Grandma Rosa's soup is smoked paprika from Valencia.",
                                   "What is the secret ingredient in Grandma Rosa's soup?",
                                   ("smoked", "paprika", "valencia"))]


def _cached_json(path: Path, compute: Any) -> Any:
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    value = compute()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return value


def measure(model: Any, tok: Any, out: Path, s: AwarenessLabSettings, what: str, *, squad: Path | None,
            model_name: str, say: Any) -> dict[str, Any]:
    """NIH, SQuAD and attention allocation in every format ``MEASURES[what]`` names; cached in ``out``."""
    from ctxrely.awareness.allocation import attention_allocation
    from ctxrely.awareness.haystack import DEFAULT_NEEDLE, read_haystack
    from ctxrely.awareness.nih import build_grid, user_text
    from ctxrely.awareness.nih_run import run_nih
    from ctxrely.engine.api import evaluate

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    res: dict[str, Any] = {}
    hay = read_haystack(None)
    for tag, template, rc_fmt, ind in MEASURES[what]:
        indicator = INDICATOR if ind else None
        t0 = time.perf_counter()
        nih = _cached_json(out / f"nih-{tag}.json", lambda t=template, i=indicator, g=tag: _nih_brief(run_nih(
            model, tok, lengths=list(s.nih_lengths), depths=list(s.nih_depths), needles=needles(), template=t,
            indicator=i, max_new_tokens=s.nih_new_tokens, batch_size=3, out_dir=out / f"nih-{g}", progress=False,
            model_name=model_name)))
        sq = None
        if squad is not None:
            sq = _cached_json(out / f"squad-{tag}.json", lambda f=rc_fmt, i=indicator: _squad_brief(evaluate(
                model, tok, data=str(squad), fmt=f, mode="generate", limit=s.squad_limit, indicator=i,
                max_new_tokens=s.squad_new_tokens, progress=False, model_name=model_name, n_boot=500)))

        def attention(t: str = template, i: str | None = indicator) -> dict[str, Any]:
            cells, _ = build_grid(tok, hay, [DEFAULT_NEEDLE], [s.attention_length],
                                  [100 * k / max(1, s.attention_prompts - 1) for k in range(s.attention_prompts)],
                                  template="raw", max_new_tokens=s.attention_new_tokens)
            users = [user_text(c.context, DEFAULT_NEEDLE.question, i) for c in cells]
            a = attention_allocation(model, tok, users, templates=[t], max_new_tokens=s.attention_new_tokens)
            v = a["templates"][t]
            return {"roles": v["roles"], "roles_no_template": v.get("roles_no_template"),
                    "per_layer": v.get("per_layer"), "answers": v.get("answers"), "n": a["n_examples"]}

        att = _cached_json(out / f"attention-{tag}.json", attention)
        res[tag] = {"nih": nih, "squad": sq, "attention": att}
        say(f"    {what} [{tag}]: NIH recall {nih['mean_recall']:.2f} (strict {nih['mean_strict']:.2f}); "
            + (f"SQuAD contains {sq['contains']:.2f} F1 {sq['f1']:.2f}; " if sq else "SQuAD skipped; ")
            + "attention " + ", ".join(f"{k} {v:.2f}" for k, v in att["roles"].items())
            + f" ({time.perf_counter() - t0:.0f} s)")
    return res


def _nih_brief(summary: dict[str, Any]) -> dict[str, Any]:
    keep = ("length", "depth", "placed_depth", "needle", "recall", "strict", "output")
    return {"mean_recall": summary["mean_recall"], "mean_strict": summary["mean_strict"],
            "n_cells": summary.get("n_cells", len(summary["cells"])), "skipped": len(summary.get("skipped", [])),
            "cells": [{k: c.get(k) for k in keep} for c in summary["cells"]]}


def _squad_brief(res: Any) -> dict[str, Any]:
    m = next(iter(res.summary["metrics"].values()))
    return {"n": m["n"], **{k: m[k]["mean"] for k in ("contains", "exact_match", "f1")},
            "ci": {k: m[k].get("ci") for k in ("contains", "f1")},
            "per_item": [{"contains": r.get("contains"), "f1": r.get("f1"), "output": r.get("output")}
                         for r in res.rows]}


def _train_rows(run: str, rows: list[dict[str, Any]], data_dir: Path, s: AwarenessLabSettings, base: Any, tok: Any,
                say: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from ctxrely.awareness.lab_data import render_rows

    if run == "plain":
        return render_rows(rows, "qa"), {}
    if run == "template":
        return render_rows(rows, "template"), {}
    if run == "template_dep_only":
        return render_rows([r for r in rows if r["kind"] == "dep"], "template"), {}
    scores = _cached_json(data_dir / "dependency_scores.json", lambda: _dependency_scores(rows, base, tok, say))
    thr = s.indicator_threshold if s.indicator_threshold >= 0 else statistics.median(scores)
    marked = [v > thr for v in scores]
    by_kind = {k: sum(1 for m, r in zip(marked, rows, strict=True) if m and r["kind"] == k) for k in ("dep", "indep")}
    n_dep = sum(1 for r in rows if r["kind"] == "dep")
    info = {"threshold": thr, "threshold_rule": "median of all rows" if s.indicator_threshold < 0 else "fixed",
            "marked": sum(marked), "marked_by_kind": by_kind, "n_dep": n_dep,
            "precision_dep": by_kind["dep"] / max(1, sum(marked)), "recall_dep": by_kind["dep"] / max(1, n_dep),
            "mean_score_by_kind": {k: statistics.fmean(v for v, r in zip(scores, rows, strict=True) if r["kind"] == k)
                                   for k in ("dep", "indep")}}
    say(f"    indicator: threshold {thr:.3f} ({info['threshold_rule']}), {info['marked']} rows marked "
        f"(dep {by_kind['dep']}, indep {by_kind['indep']})")
    return render_rows(rows, "template", indicator=INDICATOR, marked=marked), info


def _dependency_scores(rows: list[dict[str, Any]], base: Any, tok: Any, say: Any) -> list[float]:
    from ctxrely.awareness.lab_data import render_rows
    from ctxrely.diagnose.attention_score import context_dependency

    say("    scoring every training row's attention context-dependency on the base model (chat template)")
    from ctxrely.data.sft import parse_row

    rendered = render_rows(rows, "template")
    examples = [parse_row(r, fmt="prompt_completion", index=i, line=i + 1, context_field="context")
                for i, r in enumerate(rendered)]
    vals = context_dependency(base, tok, examples, batch_size=4, template="chat")
    return [float(v) if v == v else 0.0 for v in vals]


def _train(run: str, seed: int, rows: list[dict[str, Any]], run_dir: Path, s: AwarenessLabSettings, base: Any,
           tok: Any, indicator: bool, id_rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    """A fresh LoRA copy of ``base`` trained on ``rows`` (ID accuracy on ``id_rows`` at the start and end)."""
    from ctxrely.train.config import LoraSection, TrainConfig
    from ctxrely.train.sft import run_train

    model, tk = copy.deepcopy(base), copy.deepcopy(tok)
    final = run_dir / "final"
    if (final / "adapter_config.json").exists():  # trained before an interruption: reload the adapter
        from peft import PeftModel

        if indicator:
            from ctxrely.mitigate.indicator import add_indicator_token

            add_indicator_token(model, tk, INDICATOR)
        return PeftModel.from_pretrained(model, str(final)).eval(), tk
    shutil.rmtree(run_dir, ignore_errors=True)
    model.train()
    cfg = TrainConfig(model=s.model, output_dir=str(run_dir), run_name=f"{run}-s{seed}",
                      dataset_format="prompt_completion", max_steps=s.max_steps, lr=s.lr, warmup_steps=5,
                      lr_scheduler="cosine", batch_size=s.batch_size, max_length=s.max_length, seed=seed,
                      finetune="lora", lora=LoraSection(rank=s.lora_rank, alpha=2 * s.lora_rank),
                      eval_every=s.max_steps, suites=[], eval_limit=None, attention_subset=0, logging_steps=10,
                      indicator=INDICATOR if indicator else None, save_final=True, device="cpu", dtype="float32")
    from ctxrely.data.schema import ConflictExample
    from ctxrely.prompts import FORMATS, register_format

    fmt = "awareness-chat" if isinstance(rows[0]["prompt"], list) else "awareness-qa"
    if fmt not in FORMATS.names():
        register_format("awareness-chat", "{context}\n\nQuestion: {question}", chat=True)
        register_format("awareness-qa", "{context}\n\nQuestion: {question}" + QA_CUE)
    cfg.eval_format, cfg.eval_mode, cfg.eval_max_new_tokens = fmt, "generate", 12
    held = [ConflictExample(id=f"id{i}", suite="heldout_dep", context=r["context"], question=r["question"],
                            cf_answer=r["answer"]) for i, r in enumerate(id_rows) if r["kind"] == "dep"]
    run_train(cfg, model=model, tokenizer=tk, train_rows=rows, id_rows=id_rows, eval_examples={"heldout_dep": held})
    return model.eval(), tk


def run_awareness_lab(s: AwarenessLabSettings, out_dir: str | Path, say: Any = None) -> dict[str, Any]:
    """Measure the base model, then train and measure every (run, seed) not yet done; returns the summary."""
    from ctxrely.awareness.demo import find_squad_sample
    from ctxrely.awareness.lab_data import CHATML_TEMPLATE, awareness_mixture, render_rows
    from ctxrely.engine.resume import claim_settings
    from ctxrely.models.load import load_model

    say = say or log.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    claim_settings(out / "settings.json", asdict(s), grow=("runs", "seeds"))
    data_dir = out / "data"
    data_dir.mkdir(exist_ok=True)
    rows = _cached_json(data_dir / "mixture.json", lambda: awareness_mixture(
        s.n_train, dependent_share=s.dependent_share, n_sentences=s.n_sentences, seed=s.data_seed))
    id_rows = _cached_json(data_dir / "id_rows.json", lambda: awareness_mixture(
        16, dependent_share=s.dependent_share, n_sentences=s.n_sentences, seed=s.data_seed + 7919))
    squad = find_squad_sample()
    if squad is None:
        say("SQuAD sample not found (../shared/data beside the checkout or $CTXRELY_SHARED_DATA): SQuAD skipped")
    base, tok = load_model(s.model, dtype="float32", device="cpu")
    if not getattr(tok, "chat_template", None) or s.extra.get("force_chatml", True):
        tok.chat_template = CHATML_TEMPLATE
    say(f"base model {s.model}: measuring before fine-tuning")
    measure(base, tok, out / "base", s, "base", squad=squad, model_name=s.model, say=say)
    todo = [(r, seed) for seed in s.seeds for r in s.runs]
    for i, (run, seed) in enumerate(todo):
        run_dir = out / "runs" / f"{run}-s{seed}"
        if (run_dir / DONE).exists():
            say(f"[{i + 1}/{len(todo)}] {run} seed {seed}: done earlier")
            continue
        t0 = time.perf_counter()
        train_rows, info = _train_rows(run, rows, data_dir, s, base, tok, say)
        say(f"[{i + 1}/{len(todo)}] {run} seed {seed}: {len(train_rows)} rows, {s.max_steps} steps")
        fmt = "qa" if run == "plain" else "template"
        model, tk = _train(run, seed, train_rows, run_dir, s, base, tok, indicator=run == "template_indicator",
                           id_rows=render_rows(id_rows, fmt))
        (run_dir / "run_info.json").write_text(json.dumps({"run": run, "seed": seed, "n_rows": len(train_rows),
                                                           "indicator": info}, indent=1) + "\n", encoding="utf-8")
        measure(model, tk, run_dir / "eval", s, run, squad=squad, model_name=f"{s.model}+{run}-s{seed}", say=say)
        del model
        gc.collect()
        wall = time.perf_counter() - t0
        (run_dir / DONE).write_text(json.dumps({"run": run, "seed": seed, "wall_seconds": round(wall, 1)}) + "\n",
                                    encoding="utf-8")
        say(f"[{i + 1}/{len(todo)}] {run} seed {seed} finished in {wall:.0f} s")
    from ctxrely.awareness.lab_table import write_awareness_table

    return write_awareness_table(out)


def main(argv: list[str] | None = None) -> int:
    d = AwarenessLabSettings()
    ap = argparse.ArgumentParser(prog="python -m ctxrely.awareness.lab", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default=",".join(d.runs))
    ap.add_argument("--seeds", default=",".join(map(str, d.seeds)))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared CPU)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    ap.add_argument("--nih-lengths", default=",".join(map(str, d.nih_lengths)))
    ap.add_argument("--nih-depths", default=",".join(f"{x:g}" for x in d.nih_depths))
    for name in ("model", "n_train", "dependent_share", "n_sentences", "data_seed", "max_steps", "batch_size", "lr",
                 "lora_rank", "max_length", "indicator_threshold", "nih_new_tokens", "squad_limit",
                 "squad_new_tokens", "attention_length", "attention_prompts", "attention_new_tokens"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(d, name)), default=getattr(d, name))
    a = ap.parse_args(argv)
    bad = [r for r in a.runs.split(",") if r not in RUNS]
    if bad:
        ap.error(f"unknown run(s) {bad}; choose from {', '.join(RUNS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    skip = ("runs", "seeds", "nih_lengths", "nih_depths", "extra")
    s = AwarenessLabSettings(runs=tuple(a.runs.split(",")), seeds=tuple(int(x) for x in a.seeds.split(",")),
                             nih_lengths=tuple(int(x) for x in a.nih_lengths.split(",")),
                             nih_depths=tuple(float(x) for x in a.nih_depths.split(",")),
                             **{k: getattr(a, k) for k in asdict(d) if k not in skip})
    from ctxrely.cli.main import guarded

    def run() -> int:
        run_awareness_lab(s, a.out, say=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
        return 0

    return guarded(run, debug=a.debug)


if __name__ == "__main__":
    raise SystemExit(main())
