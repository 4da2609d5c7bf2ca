"""The one evaluation engine: examples -> prompts -> model -> per-example rows -> metrics.

The CLI (``ctxrely eval``), the training callback, the lab and the lm-eval export all call this.
Under a process group (``accelerate launch -m ctxrely eval ...``, or the Python API inside an
``accelerate`` state) every process scores every ``world``-th example, rows are gathered in order
and the main process writes the files; the result equals a one-process run.

Example:
    >>> from ctxrely.models.tiny import tiny_model
    >>> model, tok = tiny_model("llama")  # doctest: +SKIP
    >>> res = evaluate(model, tok, suites=["cf_capitals"], mode="both", limit=16)  # doctest: +SKIP
    >>> sorted(res.metrics)[:2]  # doctest: +SKIP
    ['all/both', 'all/cf_acc']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctxrely.data.schema import ConflictExample, Suite
from ctxrely.engine.backend import Backend
from ctxrely.engine.fingerprint import weights_fingerprint
from ctxrely.engine.result import EvalResult
from ctxrely.engine.resume import ResumeLog
from ctxrely.engine.scoring import score_examples
from ctxrely.engine.settings import MODES, EvalSettings, Mode, check_options
from ctxrely.errors import ConfigError
from ctxrely.metrics.conflict import aggregate, flat_metrics
from ctxrely.provenance import config_hash, provenance

__all__ = ["MODES", "EvalSettings", "Mode", "aggregate_suites", "evaluate", "resolve_suites", "score_examples",
           "summarize", "check_options"]


def resolve_suites(suites: Sequence[str | Suite] | None = None, data: Sequence[str] | str | None = None,
                   examples: Sequence[ConflictExample] | None = None, limit: int | None = None,
                   mapping: dict[str, str] | None = None) -> list[Suite]:
    """Built-in suite names, ``Suite`` objects, data files and raw examples, as one list of suites."""
    from ctxrely.data.suites import load_suite

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of examples per suite, got {limit}")
    out: list[Suite] = []
    for s in suites or ():
        out.append(limited(s if isinstance(s, Suite) else load_suite(s), limit))
    for path in [data] if isinstance(data, str) else (data or ()):
        from ctxrely.data.loaders import load_data

        out.append(limited(load_data(path, mapping=mapping), limit))
    if examples:
        ex = list(examples)[:limit] if limit is not None else list(examples)
        out.append(Suite(name=ex[0].suite if ex else "examples", version="inline", examples=ex, source="inline"))
    if not out:
        raise ValueError("nothing to evaluate: pass suites, data or examples")
    check_unique_suites(out)
    return out


def limited(suite: Suite, limit: int | None) -> Suite:
    """``suite`` cut to its first ``limit`` examples (itself when it has no more)."""
    if limit is None or len(suite.examples) <= limit:
        return suite
    return Suite(suite.name, suite.version, suite.examples[:limit], suite.source)


def check_unique_suites(suites: Sequence[Suite]) -> None:
    """Refuse two suites of one name (double-counted rows, one resume key): one line naming both."""
    seen: dict[str, Suite] = {}
    for s in suites:
        first = seen.setdefault(s.name, s)
        if first is not s:
            where = "given twice" if first.source == s.source else f"from both {first.source} and {s.source}"
            raise ConfigError(f"suite {s.name!r} is {where}; every suite of a run needs its own name "
                              "(rename one data file or drop the repeat)")


def aggregate_suites(rows: list[dict[str, Any]], names: Sequence[str], n_boot: int = 1000
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-suite metrics and, for several suites, the pooled ``all``: ``(metrics, flat)``.

    ``flat`` holds ``{"<suite>/<metric>": mean}`` scalars (what ``EvalResult.metrics`` and the
    training callback report).
    """
    metrics: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    for name in names:
        agg = aggregate([r for r in rows if r["suite"] == name], n_boot=n_boot)
        metrics[name] = agg
        flat.update(flat_metrics(agg, name))
    if len(names) > 1:
        metrics["all"] = aggregate(rows, n_boot=n_boot)
        flat.update(flat_metrics(metrics["all"], "all"))
    return metrics, flat


def summarize(rows: list[dict[str, Any]], suites: Sequence[Suite], config: dict[str, Any],
              n_boot: int = 1000) -> EvalResult:
    """Aggregate rows per suite and pooled (``all``), with provenance, into an :class:`EvalResult`."""
    metrics, flat = aggregate_suites(rows, [s.name for s in suites], n_boot)
    summary = {
        "metrics": metrics,
        "flat": flat,
        "config": config,
        "config_hash": config_hash(config),
        "suites": [s.info() for s in suites],
        "provenance": provenance(),
    }
    return EvalResult(summary=summary, rows=rows)


def evaluate(
    model: Any,
    tokenizer: Any,
    suites: Sequence[str | Suite] | None = None,
    *,
    settings: EvalSettings | None = None,
    data: Sequence[str] | str | None = None,
    examples: Sequence[ConflictExample] | None = None,
    mapping: dict[str, str] | None = None,
    progress: bool = True,
    out_dir: str | Path | None = None,
    model_name: str | None = None,
    backend: Backend | None = None,
    prior: bool | None = None,
    grade: bool = False,
    **overrides: Any,
) -> EvalResult:
    """Evaluate context reliance of an in-memory model on suites, data files or examples.

    How to evaluate is one :class:`~ctxrely.engine.settings.EvalSettings` (``settings``); its
    fields also work as keyword arguments (``evaluate(model, tok, ["cf_capitals"], mode="both",
    limit=16)``), which override ``settings``. Unknown keywords raise ``TypeError``.

    Args:
        suites: built-in suite names (see ``ctxrely ls``) or ``Suite`` objects.
        settings: format, mode, limit, batching, stop strings, matching, indicator, bootstrap and
            the inference-time fix (``decode`` plain/cad/adacad, ``cad_alpha``, ``cad_floor``,
            ``steer="pasta[:...]"``); see :class:`EvalSettings` for each field.
        data: paths of published-format files (auto-detected) or hub dataset ids.
        examples: in-memory ``ConflictExample`` objects.
        out_dir: if given, write ``summary.json`` and ``examples.jsonl`` there (main process only); a
            rerun with the same config resumes from the ``examples.partial*.jsonl`` files, which are
            flushed after every batch.
        backend: the model backend (default: the transformers one over ``model``, with the
            settings' decode strategy).
        prior: run the closed-book prior pass and write adoption curves (``summary["adoption"]``, by
            ``degree`` and by ``prior`` probability; :mod:`ctxrely.engine.prior`); None: only for graded suites.
        grade: grade the suites that are not graded yet (user files: numbers and years perturbed by
            degree, :func:`ctxrely.data.graded.grade_suite`); skipped items are counted in ``summary["grading"]``.
        **overrides: :class:`EvalSettings` fields (``fmt``, ``mode``, ``limit``, ``max_new_tokens``,
            ``batch_size``, ``batch_tokens``, ``stop``, ``match``, ``indicator``, ``n_boot``,
            ``decode``, ``cad_alpha``, ``cad_floor``, ``steer``).
    """
    from ctxrely.engine.distributed import all_gather, gather_in_order, lockstep, world_info

    st = EvalSettings.build(settings, overrides)  # validated once (nothing to redo when given whole)
    if data is None and not examples and suites and all(isinstance(s, Suite) for s in suites):
        suite_list = [limited(s, st.limit) for s in suites]  # resolved already (the CLI reads them before the model)
        check_unique_suites(suite_list)
    else:
        suite_list = resolve_suites(suites, data, examples, st.limit, mapping)
    from ctxrely.engine.prior import graded_suites

    suite_list, reports, prior = graded_suites(suite_list, grade, prior)
    config = {"model": model_name or getattr(getattr(model, "config", None), "_name_or_path", None),
              **st.config(tokenizer),
              "suites": {s.name: {"version": s.version, "hash": s.hash} for s in suite_list}}
    if st.intervention is not None:
        config["intervention"] = st.intervention.config()
    all_examples = [ex for s in suite_list for ex in s.examples]
    rank, world = world_info()
    if out_dir is not None:  # the weights themselves, not just their name, key resumption
        config["weights"] = weights_fingerprint(model)
        if world > 1:  # sharded parameters differ per process: the main process's fingerprint
            config["weights"] = all_gather(config["weights"])[0]
    resume = None if out_dir is None else ResumeLog(Path(out_dir), config_hash(config), rank, world)
    done = resume.load() if resume is not None and rank == 0 else {}
    if world > 1:  # every process takes the main process's view, read before anyone writes
        done = all_gather(done)[0]
    todo = [i for i, ex in enumerate(all_examples) if (ex.suite, ex.id) not in done]
    mine = todo[rank::world]
    desc = "eval" if world == 1 else f"eval (process {rank} of {world})"
    if done:
        desc += f", {len(done)} resumed"
    kwargs = dict(settings=st, progress=progress and rank == 0, desc=desc, backend=backend)
    exs = [all_examples[i] for i in mine]
    with lockstep(model, "eval"):  # sharded parameters: every rank runs the same number of forwards
        if resume is None:
            scored = score_examples(model, tokenizer, exs, **kwargs)
        else:
            with resume:
                scored = score_examples(model, tokenizer, exs,
                                        on_rows=lambda rs: resume.append([r.to_dict() for r in rs]), **kwargs)
    new = dict(gather_in_order([(i, (i, r.to_dict())) for i, r in zip(mine, scored, strict=True)]))
    rows = [done[(ex.suite, ex.id)] if i not in new else new[i] for i, ex in enumerate(all_examples)]
    result = summarize(rows, suite_list, config, n_boot=st.n_boot)
    if prior:  # graded conflicts: the closed-book prior of each question, then the adoption curves
        from ctxrely.engine.prior import add_adoption

        add_adoption(result, model, tokenizer, suite_list, st, backend=backend, reports=reports)
    result.summary["processes"] = world
    if out_dir is not None and rank == 0:
        result.save(out_dir)
        resume.clear()  # type: ignore[union-attr]
    if world > 1:
        all_gather(None)  # every process returns after the files exist
    return result
