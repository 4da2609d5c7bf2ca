"""Compare inference-time fixes on the same suites, with a no-conflict control.

Variants (``VARIANTS``): plain greedy, CAD, AdaCAD, PASTA on all heads, PASTA on profiled heads.
The control holds the same items with a context that states the TRUE answer (the counterfactual
answer replaced by the memorised one wherever the context names it): a fix that makes the model
follow its context must not hurt there. Each variant is one :func:`ctxrely.evaluate` run (resumable,
under ``out/<variant>``); the table has one row per (suite, variant).

Example:
    >>> table = compare(model, tok, ["cf_capitals"], limit=20, out="runs/cmp")  # doctest: +SKIP
    >>> print(markdown(table))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ctxrely.data.schema import Suite

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "cad": {"decode": "cad", "cad_alpha": 1.0},
    "adacad": {"decode": "adacad"},
    "pasta-all": {"steer": "pasta:alpha=0.01"},
    "pasta-profiled": {"steer": "pasta:alpha=0.01,heads={heads}"},
}
CONTROL = "+control"


def no_conflict(suite: Suite) -> Suite:
    """The suite's items with the context's answer replaced by the true one (items whose context does
    not name its answer are left out): the control's context answer IS the memorised answer, and its
    "other" answer is the old counterfactual one, which nothing in the prompt supports any more."""
    out = []
    for ex in suite.examples:
        if ex.param_answer is None or ex.cf_answer not in ex.context:
            continue
        ctx = ex.context.replace(ex.cf_answer, ex.param_answer)
        out.append(replace(ex, suite=suite.name + CONTROL, context=ctx, cf_answer=ex.param_answer,
                           cf_aliases=ex.param_aliases, param_answer=ex.cf_answer, param_aliases=ex.cf_aliases,
                           meta={**ex.meta, "control_of": ex.id}))
    return Suite(suite.name + CONTROL, suite.version, out, suite.source)


def compare(model: Any, tok: Any, suites: Sequence[str | Suite], *, data: Sequence[str] = (), limit: int = 40,
            fmt: str = "raw", mode: str = "both", heads: str | None = None, out: str | Path = "runs/steer-compare",
            variants: Sequence[str] = tuple(VARIANTS), max_new_tokens: int = 16, batch_size: int = 16,
            progress: bool = True, settings: Any = None) -> list[dict[str, Any]]:
    """One row per (suite, variant): conflict metrics and the control's accuracy.

    ``settings`` (an :class:`~ctxrely.engine.settings.EvalSettings`) replaces ``limit``/``fmt``/``mode``/
    ``max_new_tokens``/``batch_size``; each variant is it with that variant's decode strategy, run by
    :func:`ctxrely.evaluate` (so every variant decodes exactly as ``ctxrely eval --decode/--steer``).
    """
    from ctxrely.engine.api import evaluate, resolve_suites
    from ctxrely.engine.settings import EvalSettings

    if settings is None:
        settings = EvalSettings(fmt=fmt, mode=mode, limit=limit, max_new_tokens=max_new_tokens,  # type: ignore[arg-type]
                                batch_size=batch_size, n_boot=200)
    base = resolve_suites(list(suites), list(data) or None, None, settings.limit)
    all_suites = base + [c for c in (no_conflict(s) for s in base) if c.examples]
    rows: list[dict[str, Any]] = []
    for name in variants:
        kw = {k: (v.format(heads=heads) if isinstance(v, str) else v) for k, v in VARIANTS[name].items()}
        if "{heads}" in str(VARIANTS[name]) and not heads:
            continue  # profiled heads need a head file
        variant = settings.replace(**{"decode": "plain", "cad_alpha": 1.0, "cad_floor": None, "steer": None, **kw})
        flat = _finished(Path(out) / name, all_suites, variant)
        if flat is None:
            res = evaluate(model, tok, all_suites, settings=variant, progress=progress, out_dir=Path(out) / name)
            flat = res.summary["flat"]
        for s in base:
            rows.append({"suite": s.name, "variant": name, "n": len(s.examples),
                         **{m: flat.get(f"{s.name}/{m}") for m in ("cf_acc", "param_acc", "logit_cf_rate", "m_c")},
                         "control_acc": flat.get(f"{s.name}{CONTROL}/cf_acc"),
                         "control_logit_rate": flat.get(f"{s.name}{CONTROL}/logit_cf_rate"),
                         "n_control": sum(len(c.examples) for c in all_suites if c.name == s.name + CONTROL)})
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "table.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (Path(out) / "table.md").write_text(markdown(rows), encoding="utf-8")
    return rows


def _finished(folder: Path, suites: Sequence[Suite], settings: Any) -> dict[str, Any] | None:
    """The flat metrics of a finished run of this variant on these suites, or None (run it)."""
    path = folder / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    cfg = summary.get("config", {})
    iv = settings.intervention
    same = (cfg.get("suites") == {s.name: {"version": s.version, "hash": s.hash} for s in suites}
            and cfg.get("mode") == settings.mode and cfg.get("intervention") == (None if iv is None else iv.config()))
    return summary["flat"] if same else None


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a Markdown table (rates in %)."""
    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    lines = ["| suite | variant | n | cf_acc | param_acc | logit cf rate | M_C | control: acc | control: logit rate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['suite']} | {r['variant']} | {r['n']} | {pct(r['cf_acc'])} | {pct(r['param_acc'])} | "
                     f"{pct(r['logit_cf_rate'])} | {pct(r['m_c'])} | {pct(r['control_acc'])} | "
                     f"{pct(r.get('control_logit_rate'))} |")
    return "\n".join(lines) + "\n"
