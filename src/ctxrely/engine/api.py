"""The one evaluation engine: examples -> prompts -> model -> per-example rows -> metrics.

The CLI (``ctxrely eval``), the training callback, the lab and the lm-eval export all call this.

Example:
    >>> from ctxrely.models.tiny import tiny_model
    >>> model, tok = tiny_model("llama")  # doctest: +SKIP
    >>> res = evaluate(model, tok, suites=["cf_capitals"], mode="both", limit=16)  # doctest: +SKIP
    >>> sorted(res.metrics)[:2]  # doctest: +SKIP
    ['all/both', 'all/cf_acc']
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ctxrely.data.schema import ConflictExample, Suite
from ctxrely.engine.generate import DEFAULT_STOP, greedy_generate
from ctxrely.engine.logits import encode_pairs, score_continuations
from ctxrely.engine.prompting import build_prompts, continuation, encode
from ctxrely.engine.result import EvalResult
from ctxrely.metrics.conflict import aggregate, flat_metrics, gen_flags, logit_flags
from ctxrely.metrics.matching import MatchMode
from ctxrely.prompts import PromptFormat, get_format
from ctxrely.provenance import config_hash, provenance

Mode = Literal["generate", "logits", "both"]
MODES = ("generate", "logits", "both")
log = logging.getLogger(__name__)


def resolve_suites(suites: Sequence[str | Suite] | None = None, data: Sequence[str] | str | None = None,
                   examples: Sequence[ConflictExample] | None = None, limit: int | None = None,
                   mapping: dict[str, str] | None = None) -> list[Suite]:
    """Built-in suite names, ``Suite`` objects, data files and raw examples, as one list of suites."""
    from ctxrely.data.suites import load_suite

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
    return out


def score_examples(
    model: Any,
    tokenizer: Any,
    examples: Sequence[ConflictExample],
    *,
    fmt: str | PromptFormat = "raw",
    mode: Mode = "logits",
    max_new_tokens: int = 32,
    batch_size: int = 16,
    stop: Sequence[str] | None = None,
    match: MatchMode = "squad",
    indicator: str | None = None,
    progress: bool = True,
    desc: str = "eval",
    intervention: Any = None,
) -> list[dict[str, Any]]:
    """Per-example rows (prompt, output, flags, log-probs) in the order of ``examples``.

    ``intervention``: a :class:`ctxrely.steer.plan.Intervention` (CAD / AdaCAD decoding, PASTA steering).
    """
    if intervention is not None and not intervention.active:
        intervention = None
    from ctxrely.models.load import model_max_length

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    pf = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
    examples = list(examples)
    if not examples:
        return []
    stop = list(DEFAULT_STOP if stop is None else stop)
    targets = [a for ex in examples for a in ex.cf_targets() + ex.param_targets()]
    answer_len = max(len(ids) for ids in tokenizer(targets, add_special_tokens=False)["input_ids"]) + 1
    reserve = max(max_new_tokens if mode != "logits" else 0, answer_len if mode != "generate" else 0)
    prompts = build_prompts(examples, pf, tokenizer, model_max_length(model, tokenizer), reserve, indicator)
    rows: list[dict[str, Any]] = [
        {"id": ex.id, "suite": ex.suite, "prompt": p.text, "cf_answer": ex.cf_answer,
         "param_answer": ex.param_answer, "context_truncated": p.context_truncated}
        for ex, p in zip(examples, prompts, strict=True)
    ]
    passes = (mode in ("generate", "both")) + (mode in ("logits", "both"))
    bar = _progress(len(examples) * passes, desc, progress)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        if mode in ("generate", "both"):
            ids = [p.ids or encode(tokenizer, p.text, pf) for p in prompts]
            if intervention is None:
                outs = greedy_generate(model, tokenizer, ids, max_new_tokens=max_new_tokens, stop=stop,
                                       batch_size=batch_size, on_batch=bar.update)
            else:  # ctxrely.steer: CAD / AdaCAD / PASTA
                outs, spans = intervention.generate(model, tokenizer, examples, [p.text for p in prompts], ids, pf,
                                                    max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size,
                                                    on_batch=bar.update, suffix=indicator)
                if intervention.steer is not None:
                    for row, n in zip(rows, spans, strict=True):
                        row["steer_span_tokens"] = n
            for row, ex, out in zip(rows, examples, outs, strict=True):
                row["output"] = out
                row.update(gen_flags(out, ex.cf_targets(), ex.param_targets(), match))
        if mode in ("logits", "both"):
            _score_logits(model, tokenizer, pf, examples, prompts, rows, batch_size, bar.update, intervention,
                          indicator)
    finally:
        bar.close()
        if was_training:
            model.train()
    return rows


def _score_logits(model: Any, tokenizer: Any, pf: PromptFormat, examples: list[ConflictExample],
                  prompts: list[Any], rows: list[dict[str, Any]], batch_size: int, on_batch: Any,
                  intervention: Any = None, indicator: str | None = None) -> None:
    answers = [[ex.cf_answer] + ([ex.param_answer] if ex.param_answer is not None else []) for ex in examples]
    pairs = encode_pairs(tokenizer, [p.text for p in prompts],
                         [[continuation(p.text, a) for a in ans] for p, ans in zip(prompts, answers, strict=True)],
                         not pf.chat, prompt_ids=[p.ids for p in prompts])
    for ex, ans, (_, cs) in zip(examples, answers, pairs, strict=True):
        for a, c in zip(ans, cs, strict=True):
            if not c:
                raise ValueError(f"{ex.suite}:{ex.id}: answer {a!r} tokenises to nothing")
    prompt_ids = [p for p, _ in pairs]
    conts = [cs for _, cs in pairs]
    if intervention is None:
        scores = score_continuations(model, tokenizer, prompt_ids, conts, batch_size=batch_size, on_batch=on_batch)
    else:  # ctxrely.steer: answers scored under the CAD-adjusted / steered distribution
        scores = intervention.score(model, tokenizer, examples, [p.text for p in prompts], prompt_ids, conts, pf,
                                    batch_size=batch_size, on_batch=on_batch, suffix=indicator)
    for row, sc in zip(rows, scores, strict=True):
        cf, pa = sc[0], (sc[1] if len(sc) > 1 else None)
        row.update({"logp_cf": cf.logp, "n_tok_cf": cf.n_tokens, "first_logp_cf": cf.first_logp,
                    "cf_greedy": cf.greedy})
        row.update({"logp_param": None if pa is None else pa.logp,
                    "n_tok_param": None if pa is None else pa.n_tokens,
                    "first_logp_param": None if pa is None else pa.first_logp})
        row.update(logit_flags(cf.logp, None if pa is None else pa.logp))


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", leave=False)


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
    batch_size: int = 16,
    stop: Sequence[str] | None = None,
    match: MatchMode = "squad",
    indicator: str | None = None,
    n_boot: int = 1000,
    progress: bool = True,
    out_dir: str | Path | None = None,
    model_name: str | None = None,
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
        mode: ``generate`` (answer containment), ``logits`` (log p(cf) vs log p(param)) or ``both``.
        limit: keep the first n examples of each suite.
        indicator: text appended to the question (indicator-token fine-tuning).
        out_dir: if given, write ``summary.json`` and ``examples.jsonl`` there; a rerun with the
            same config resumes from ``examples.partial.jsonl`` instead of starting over.
        decode: ``plain`` greedy, ``cad`` (context-aware decoding with ``cad_alpha``) or ``adacad``
            (alpha per step = JSD of the two streams, at least ``cad_floor``); see ``ctxrely.steer``.
        steer: attention steering, ``"pasta"`` or ``"pasta:alpha=0.01,heads=FILE,target=context|user"``.
    """
    pf = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
    suite_list = resolve_suites(suites, data, examples, limit, mapping)
    config = {
        "model": model_name or getattr(getattr(model, "config", None), "_name_or_path", None),
        "format": {"name": pf.name, "hash": pf.chat_hash(tokenizer), "version": pf.version},
        "mode": mode, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "stop": list(DEFAULT_STOP if stop is None else stop), "match": match, "indicator": indicator,
        "limit": limit, "n_boot": n_boot,
        "suites": {s.name: {"version": s.version, "hash": s.hash} for s in suite_list},
    }
    intervention = _intervention(decode, cad_alpha, cad_floor, steer)
    if intervention is not None:
        config["intervention"] = intervention.config()
    all_examples = [ex for s in suite_list for ex in s.examples]
    kwargs = dict(fmt=pf, mode=mode, max_new_tokens=max_new_tokens, batch_size=batch_size, stop=stop,
                  match=match, indicator=indicator, progress=progress, intervention=intervention)
    if out_dir is None:
        rows = score_examples(model, tokenizer, all_examples, **kwargs)
    else:
        rows = _score_resumable(model, tokenizer, all_examples, Path(out_dir), config_hash(config), kwargs)
    result = summarize(rows, suite_list, config, n_boot=n_boot)
    if out_dir is not None:
        result.save(out_dir)
        (Path(out_dir) / "examples.partial.jsonl").unlink(missing_ok=True)
    return result


def _intervention(decode: str, cad_alpha: float, cad_floor: float | None, steer: str | None) -> Any:
    """An active :class:`ctxrely.steer.plan.Intervention`, or None for plain unsteered decoding."""
    if decode == "plain" and steer is None:
        return None
    from ctxrely.steer.plan import Intervention

    return Intervention.parse(decode, cad_alpha, cad_floor, steer)


def _score_resumable(model: Any, tokenizer: Any, examples: list[ConflictExample], out: Path, fingerprint: str,
                     kwargs: dict[str, Any], chunk: int = 256) -> list[dict[str, Any]]:
    """Score in chunks, appending rows to a partial file, skipping rows a previous run finished."""
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "examples.partial.jsonl"
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if partial.exists():
        lines = partial.read_text(encoding="utf-8").splitlines()
        if lines and json.loads(lines[0]).get("config_hash") == fingerprint:
            for line in lines[1:]:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a crash
                    continue
                done[(r["suite"], r["id"])] = r
            if done:
                log.info("resuming: %d of %d examples already scored in %s", len(done), len(examples), partial)
        else:
            partial.unlink()
    if not partial.exists():
        partial.write_text(json.dumps({"config_hash": fingerprint}) + "\n", encoding="utf-8")
    todo = [ex for ex in examples if (ex.suite, ex.id) not in done]
    with open(partial, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            desc = f"eval {start + len(done)}/{len(examples)}"
            for r in score_examples(model, tokenizer, part, desc=desc, **kwargs):
                done[(r["suite"], r["id"])] = r
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
    return [done[(ex.suite, ex.id)] for ex in examples]
