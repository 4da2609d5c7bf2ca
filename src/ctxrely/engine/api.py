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
from ctxrely.engine.generate import DEFAULT_STOP
from ctxrely.engine.result import EvalResult
from ctxrely.engine.resume import ResumeLog
from ctxrely.engine.scoring import MODES, Mode, score_examples
from ctxrely.errors import ConfigError
from ctxrely.metrics.conflict import aggregate, flat_metrics
from ctxrely.metrics.matching import MatchMode
from ctxrely.prompts import PromptFormat, get_format
from ctxrely.provenance import config_hash, provenance

__all__ = ["MODES", "Mode", "evaluate", "resolve_suites", "score_examples", "summarize", "check_options"]


def check_options(limit: int | None = None, max_new_tokens: int = 32, mode: str = "both",
                  batch_size: int | None = None, batch_tokens: int | None = None) -> None:
    """Refuse option values that would silently measure nothing (one-line :class:`ConfigError`)."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of examples per suite, got {limit}")
    if mode != "logits" and max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1 to generate answers (mode {mode}), got {max_new_tokens}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if batch_tokens is not None and batch_tokens < 1:
        raise ConfigError(f"--batch-tokens must be >= 1, got {batch_tokens}")


def resolve_suites(suites: Sequence[str | Suite] | None = None, data: Sequence[str] | str | None = None,
                   examples: Sequence[ConflictExample] | None = None, limit: int | None = None,
                   mapping: dict[str, str] | None = None) -> list[Suite]:
    """Built-in suite names, ``Suite`` objects, data files and raw examples, as one list of suites."""
    from ctxrely.data.suites import load_suite

    check_options(limit=limit)
    out: list[Suite] = []
    for s in suites or ():
        suite = s if isinstance(s, Suite) else load_suite(s)
        out.append(suite if limit is None else Suite(suite.name, suite.version, suite.examples[:limit], suite.source))
    for path in [data] if isinstance(data, str) else (data or ()):
        from ctxrely.data.loaders import load_data

        suite = load_data(path, mapping=mapping)
        out.append(suite if limit is None else Suite(suite.name, suite.version, suite.examples[:limit], suite.source))
    if examples:
        ex = list(examples)[:limit] if limit is not None else list(examples)
        out.append(Suite(name=ex[0].suite if ex else "examples", version="inline", examples=ex, source="inline"))
    if not out:
        raise ValueError("nothing to evaluate: pass suites, data or examples")
    check_unique_suites(out)
    return out


def check_unique_suites(suites: Sequence[Suite]) -> None:
    """Refuse two suites of one name (double-counted rows, one resume key): one line naming both."""
    seen: dict[str, Suite] = {}
    for s in suites:
        first = seen.setdefault(s.name, s)
        if first is not s:
            where = "given twice" if first.source == s.source else f"from both {first.source} and {s.source}"
            raise ConfigError(f"suite {s.name!r} is {where}; every suite of a run needs its own name "
                              "(rename one data file or drop the repeat)")


def summarize(rows: list[dict[str, Any]], suites: Sequence[Suite], config: dict[str, Any],
              n_boot: int = 1000) -> EvalResult:
    """Aggregate rows per suite and pooled (``all``), with provenance, into an :class:`EvalResult`."""
    metrics: dict[str, Any] = {}
    flat: dict[str, Any] = {}
    names = [s.name for s in suites]
    for name in names:
        agg = aggregate([r for r in rows if r["suite"] == name], n_boot=n_boot)
        metrics[name] = agg
        flat.update(flat_metrics(agg, name))
    if len(names) > 1:
        metrics["all"] = aggregate(rows, n_boot=n_boot)
        flat.update(flat_metrics(metrics["all"], "all"))
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
    data: Sequence[str] | str | None = None,
    examples: Sequence[ConflictExample] | None = None,
    mapping: dict[str, str] | None = None,
    fmt: str | PromptFormat = "raw",
    mode: Mode = "logits",
    limit: int | None = None,
    max_new_tokens: int = 32,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    stop: Sequence[str] | None = None,
    match: MatchMode = "squad",
    indicator: str | None = None,
    n_boot: int = 1000,
    progress: bool = True,
    out_dir: str | Path | None = None,
    model_name: str | None = None,
    backend: Backend | None = None,
    decode: str = "plain",
    cad_alpha: float = 1.0,
    cad_floor: float | None = None,
    steer: str | None = None,
) -> EvalResult:
    """Evaluate context reliance of an in-memory model on suites, data files or examples.

    Args:
        suites: built-in suite names (see ``ctxrely ls``) or ``Suite`` objects.
        data: paths of published-format files (auto-detected) or hub dataset ids.
        examples: in-memory ``ConflictExample`` objects.
        fmt: prompt format name or template string ("{context} ... {question}").
        mode: ``generate`` (answer containment), ``logits`` (log p(cf) vs log p(param)) or ``both``
            (one prefill per prompt serves both).
        limit: keep the first n examples of each suite.
        batch_size: prompts per batch (alone: a fixed count; with ``batch_tokens``: a cap).
        batch_tokens: padded tokens per length-sorted batch (default when neither is given:
            ``ctxrely.engine.batching.DEFAULT_BATCH_TOKENS``). Batching never changes an answer.
        indicator: text appended to the question (indicator-token fine-tuning).
        out_dir: if given, write ``summary.json`` and ``examples.jsonl`` there (main process only); a
            rerun with the same config resumes from the ``examples.partial*.jsonl`` files, which are
            flushed after every batch.
        backend: the model backend (default: the transformers one over ``model``).
        decode: ``plain`` greedy, ``cad`` (context-aware decoding with ``cad_alpha``) or ``adacad``
            (alpha per step = JSD of the two streams, at least ``cad_floor``); see ``ctxrely.steer``.
            Answers and answer log-probs both come from the adjusted distribution.
        steer: attention steering, ``"pasta"`` or ``"pasta:alpha=0.01,heads=FILE,target=context|user"``.
    """
    from ctxrely.engine.distributed import all_gather, gather_in_order, lockstep, world_info

    check_options(limit, max_new_tokens, mode, batch_size, batch_tokens)
    pf = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
    suite_list = resolve_suites(suites, data, examples, limit, mapping)
    config = {
        "model": model_name or getattr(getattr(model, "config", None), "_name_or_path", None),
        "format": {"name": pf.name, "hash": pf.chat_hash(tokenizer), "version": pf.version},
        "mode": mode, "max_new_tokens": max_new_tokens, "batch_size": batch_size, "batch_tokens": batch_tokens,
        "stop": list(DEFAULT_STOP if stop is None else stop), "match": match, "indicator": indicator,
        "limit": limit, "n_boot": n_boot,
        "suites": {s.name: {"version": s.version, "hash": s.hash} for s in suite_list},
    }
    intervention = _intervention(decode, cad_alpha, cad_floor, steer)
    if intervention is not None:
        config["intervention"] = intervention.config()
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
    kwargs = dict(fmt=pf, mode=mode, max_new_tokens=max_new_tokens, batch_size=batch_size,
                  batch_tokens=batch_tokens, stop=stop, match=match, indicator=indicator,
                  progress=progress and rank == 0, desc=desc, backend=backend, intervention=intervention)
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
    result = summarize(rows, suite_list, config, n_boot=n_boot)
    result.summary["processes"] = world
    if out_dir is not None and rank == 0:
        result.save(out_dir)
        resume.clear()  # type: ignore[union-attr]
    if world > 1:
        all_gather(None)  # every process returns after the files exist
    return result


def _intervention(decode: str, cad_alpha: float, cad_floor: float | None, steer: str | None) -> Any:
    """An active :class:`ctxrely.steer.plan.Intervention`, or None for plain unsteered decoding."""
    if decode == "plain" and steer is None:
        return None
    from ctxrely.steer.plan import Intervention

    return Intervention.parse(decode, cad_alpha, cad_floor, steer)
