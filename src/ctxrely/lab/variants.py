"""The runs a lab experiment compares: the baseline and each mitigation, as (rows, config changes).

Each variant takes the baseline mixture and returns what that run trains on, the ``TrainConfig``
fields it changes and a manifest saying what was done. Scores from the *base* model (context
criticality for ``filter``, attention context-dependency for ``indicator``) are computed once per
experiment and cached in ``<out>/data/``, since every seed uses the same base model. Mitigations are
called directly from :mod:`ctxrely.mitigate` (their signatures differ, so the registry only lists them).

Example:
    >>> v = make_variant("no_ccs", rows, preset, model, tok, data_dir)  # doctest: +SKIP
    >>> v.manifest["n_rows"], v.overrides  # doctest: +SKIP
    (144, {})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxrely.lab.presets import RUNS, LabPreset


@dataclass
class Variant:
    """What one run trains on.

    Attributes:
        rows: training rows (mixture format).
        overrides: ``TrainConfig`` fields to change (``train_modules``, ``indicator``).
        manifest: what the mitigation did (counts, dropped rows, marked rows).
    """

    rows: list[dict[str, Any]]
    overrides: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def _sft_examples(rows: list[dict[str, Any]]) -> list[Any]:
    from ctxrely.data.sft import parse_row

    return [parse_row(r, fmt="prompt_completion", index=i, line=i + 1, context_field="context")
            for i, r in enumerate(rows)]


def _cached(path: Path, compute: Any, n: int | None = None) -> Any:
    """A list of ``n`` per-row scores cached in ``path`` (:func:`ctxrely.engine.resume.cached_json`)."""
    from ctxrely.engine.resume import cached_json

    return cached_json(path, compute, lambda v: isinstance(v, list) and (n is None or len(v) == n))


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    from ctxrely.lab.mixture import class_counts

    return {"n_rows": len(rows), **class_counts(rows)}


def make_variant(run: str, rows: list[dict[str, Any]], preset: LabPreset, model: Any, tokenizer: Any,
                 data_dir: str | Path, *, fmt: str = "chat", seed: int = 0, progress: bool = True) -> Variant:
    """Rows and config changes of run ``run`` (one of :data:`ctxrely.lab.presets.RUNS`).

    ``filter_class``, ``filter_augment``, ``filter_qk`` and ``augment_qk`` are what a user without labels
    would try: the ``score-data`` class filter, the quantile filter combined with augmentation or
    QK-only, and augmentation with QK-only.

    ``fmt`` is the prompt format the rows were built with (``LabData.fmt``): the indicator token goes
    after the question, found through that format's template.
    """
    data_dir = Path(data_dir)
    if run not in RUNS:
        raise ValueError(f"unknown run {run!r}; choose from {', '.join(RUNS)}")
    if run == "baseline":
        return Variant(list(rows), manifest=_counts(rows))
    if run == "no_ccs":
        kept = [r for r in rows if r.get("cls") != "C+S"]
        return Variant(kept, manifest={**_counts(kept), "removed": len(rows) - len(kept)})
    if run == "qk_only":
        return _qk_only(Variant(list(rows), manifest=_counts(rows)))
    if run in ("augment", "augment_qk"):
        v = _augment(list(rows), preset)
        return _qk_only(v) if run == "augment_qk" else v
    if run.startswith("filter"):
        v = _filter(rows, preset, model, tokenizer, data_dir, progress, by_class=run == "filter_class")
        if run == "filter_augment":  # augment the rows the filter kept
            aug = _augment(v.rows, preset)
            return Variant(aug.rows, manifest={**v.manifest, **aug.manifest})
        return _qk_only(v) if run == "filter_qk" else v
    return _indicator(rows, preset, model, tokenizer, data_dir, progress, fmt)


def _qk_only(v: Variant) -> Variant:
    # applied by run_train (train_modules=qk) (ctxrely.mitigate.qk_only)
    return Variant(v.rows, overrides={**v.overrides, "train_modules": "qk"}, manifest=v.manifest)


def _augment(rows: list[dict[str, Any]], preset: LabPreset) -> Variant:
    from ctxrely.mitigate.augment import augment

    res = augment(rows, ratio=preset.augment_ratio, seed=preset.data_seed, fmt="prompt_completion",
                  context_field="context")
    new = [dict(r, cls=f"{r.get('cls', '?')}-aug") for r in res.rows[len(rows):]]
    out = list(rows) + new
    return Variant(out, manifest={**_counts(out), "added": len(new), "eligible": res.n_eligible})


def _filter(rows: list[dict[str, Any]], preset: LabPreset, model: Any, tokenizer: Any, data_dir: Path,
            progress: bool, by_class: bool = False) -> Variant:
    """Drop the ``filter_drop`` share of context rows with the lowest NLL without context, or (``by_class``)
    every row ``score-data`` classes C+S; the base model's scores are cached in ``criticality.json``."""
    from ctxrely.diagnose.criticality import score_criticality
    from ctxrely.mitigate.filter import filter_rows

    template = "chat" if isinstance(rows[0]["prompt"], list) else "plain"
    scores = _cached(data_dir / "criticality.json", lambda: score_criticality(
        model, tokenizer, _sft_examples(rows), batch_size=preset.eval_batch_size, progress=progress,
        template=template), n=len(rows))
    if by_class:  # score-data's classes at its default threshold (what `ctxrely filter --by class` uses)
        kept, manifest = filter_rows(rows, scores, by="class", classes=("C+S",))
    else:
        kept, manifest = filter_rows(rows, scores, drop=preset.filter_drop)
    dropped = [rows[d["index"]].get("cls") for d in manifest["dropped"]]
    summary = {c: dropped.count(c) for c in ("C", "C+S", "S")}
    return Variant(kept, manifest={**_counts(kept), "dropped_by_class": summary, "cutoff": manifest["cutoff"],
                                   "n_dropped": manifest["n_dropped"], "filter_by": manifest["by"]})


def _indicator(rows: list[dict[str, Any]], preset: LabPreset, model: Any, tokenizer: Any, data_dir: Path,
               progress: bool, fmt: str) -> Variant:
    from ctxrely.diagnose.attention_score import context_dependency
    from ctxrely.mitigate.indicator import DEFAULT_TOKEN, apply_indicator

    template = "chat" if isinstance(rows[0]["prompt"], list) else "plain"
    scores = _cached(data_dir / "attention_scores.json", lambda: context_dependency(
        model, tokenizer, _sft_examples(rows), batch_size=max(1, preset.eval_batch_size // 4), template=template,
        progress=progress), n=len(rows))
    from ctxrely.prompts import get_format

    # Only rows with a context can be marked (S rows have nothing to read). The token goes right after
    # the question, where the evaluation's ``indicator`` puts it, for plain-text rows too.
    scores = [s if r.get("context") else None for r, s in zip(rows, scores, strict=True)]
    marked = apply_indicator(rows, scores, threshold=preset.indicator_threshold, token=DEFAULT_TOKEN,
                             fmt="prompt_completion", context_template=get_format(fmt).user_text("{context}", "{question}"))
    n_marked = sum(1 for a, b in zip(rows, marked, strict=True) if a is not b)
    by_cls = {c: sum(1 for a, b in zip(rows, marked, strict=True) if a is not b and a.get("cls") == c)
              for c in ("C", "C+S", "S")}
    # run_train gives the token a (mean-initialised, trainable) embedding when ``indicator`` is set
    return Variant(marked, overrides={"indicator": DEFAULT_TOKEN},
                   manifest={**_counts(marked), "marked": n_marked, "marked_by_class": by_cls,
                             "threshold": preset.indicator_threshold})
