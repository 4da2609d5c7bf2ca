"""The prior pass of graded conflicts: what the model answers without the passage.

Per distinct question (the graded variants of one question share it) one closed-book request,
one prefill: greedy decoding gives the closed-book answer (and the log-probability of each of its
tokens, for ClashEval's token-probability correction), and the true answer is scored teacher-forced
on the same cache, exactly as logit mode scores answers. So the pass costs at most one extra prefill
per item (``benchmarks/prior_pass.py`` counts them). It always runs plain: no CAD / PASTA, the prior
is the model's own.

Fields added to each ``examples.jsonl`` row (:data:`PRIOR_KEYS`): ``prior_output``,
``prior_correct`` (the closed-book answer contains the true one), ``prior_logp`` / ``prior_n_tok``
(log p(true answer | question)), ``prior_p`` (its probability), ``prior_output_p`` (the mean token
probability of the closed-book answer), and the example's ``perturb``, ``degree``,
``degree_rank``, ``degree_label``, ``source_id``.

Example:
    >>> priors = prior_pass(model, tok, graded_examples, fmt=get_format("raw"))  # doctest: +SKIP
    >>> attach_prior(rows, graded_examples, priors)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ctxrely.data.schema import ConflictExample
from ctxrely.engine.backend import Backend, Outcome
from ctxrely.metrics.conflict import gen_flags
from ctxrely.metrics.matching import MatchMode
from ctxrely.prompts import PromptFormat

PRIOR_KEYS = ("prior_output", "prior_correct", "prior_logp", "prior_n_tok", "prior_p", "prior_output_p")
DEGREE_KEYS = ("perturb", "degree", "degree_rank", "degree_label", "source_id")


def prior_key(ex: ConflictExample) -> tuple[str, str]:
    """The closed-book request an example shares with its graded siblings: (question, true answer)."""
    return ex.question, ex.param_answer or ex.cf_answer


def closed_book(examples: Sequence[ConflictExample]) -> dict[tuple[str, str], ConflictExample]:
    """One context-free example per distinct :func:`prior_key`; its ``cf_answer`` is the true answer."""
    out: dict[tuple[str, str], ConflictExample] = {}
    for ex in examples:
        key = prior_key(ex)
        if key not in out:
            aliases = ex.param_aliases if ex.param_answer is not None else ex.cf_aliases
            out[key] = ConflictExample(id=f"prior-{len(out)}", suite=ex.suite, context="", question=ex.question,
                                       cf_answer=key[1], cf_aliases=tuple(aliases))
    return out


def prior_pass(model: Any, tokenizer: Any, examples: Sequence[ConflictExample], *, fmt: PromptFormat,
               max_new_tokens: int = 32, batch_size: int | None = None, batch_tokens: int | None = None,
               stop: Sequence[str] | None = None, match: MatchMode = "squad", indicator: str | None = None,
               backend: Backend | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """``{prior_key: prior fields}`` for every distinct question of ``examples`` (see the module docstring).

    On several processes each decodes every world-th question in lock-step (sharded parameters: the
    same number of forwards on every rank) and every rank returns the whole dict.
    """
    from ctxrely.engine.distributed import all_gather, lockstep, world_info

    books = closed_book(examples)
    if not books:
        return {}
    keys, exs = list(books), list(books.values())
    kw = dict(fmt=fmt, max_new_tokens=max_new_tokens, batch_size=batch_size, batch_tokens=batch_tokens, stop=stop,
              match=match, indicator=indicator, backend=backend)
    rank, world = world_info()
    if world == 1:
        return _prior(model, tokenizer, keys, exs, **kw)
    with lockstep(model, "prior pass"):
        part = _prior(model, tokenizer, keys[rank::world], exs[rank::world], **kw) if exs[rank::world] else {}
    return {k: v for d in all_gather(part, "prior pass") for k, v in d.items()}


def _prior(model: Any, tokenizer: Any, keys: list[tuple[str, str]], exs: list[ConflictExample], *,
           fmt: PromptFormat, max_new_tokens: int, batch_size: int | None, batch_tokens: int | None,
           stop: Sequence[str] | None, match: MatchMode, indicator: str | None,
           backend: Backend | None) -> dict[tuple[str, str], dict[str, Any]]:
    """The prior fields of the closed-book examples ``exs`` (one process's share)."""
    from ctxrely.engine.generate import DEFAULT_STOP
    from ctxrely.engine.prompting import build_prompts
    from ctxrely.engine.scoring import _requests
    from ctxrely.models.load import model_max_length

    answer_len = max(len(ids) for ids in tokenizer([e.cf_answer for e in exs], add_special_tokens=False)["input_ids"])
    prompts = build_prompts(exs, fmt, tokenizer, model_max_length(model, tokenizer),
                            max(max_new_tokens, answer_len + 1), indicator)
    requests, owner = _requests(exs, prompts, tokenizer, fmt, True, True, max_new_tokens)
    if backend is None:
        from ctxrely.engine.backend import make_backend

        backend = make_backend(model, tokenizer)  # the closed-book pass is plain decoding
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        outs = backend.run(requests, stop=list(DEFAULT_STOP if stop is None else stop), batch_size=batch_size,
                           batch_tokens=batch_tokens)
    finally:
        if was_training:
            model.train()
    merged: list[Outcome] = [Outcome() for _ in exs]
    for e, o in zip(owner, outs, strict=True):  # two requests only where tokenisation is not prefix-stable
        merged[e].scores += o.scores
        if o.text is not None:
            merged[e].text, merged[e].token_logps = o.text, o.token_logps
    result = {}
    for key, ex, o in zip(keys, exs, merged, strict=True):
        s = o.scores[0]
        lps = o.token_logps
        result[key] = {
            "prior_output": o.text,
            "prior_correct": bool(gen_flags(o.text or "", ex.cf_targets(), [], match)["cf_hit"]),
            "prior_logp": s.logp, "prior_n_tok": s.n_tokens, "prior_p": math.exp(s.logp),
            "prior_output_p": math.exp(sum(lps) / len(lps)) if lps else None,
        }
    return result


def attach_prior(rows: list[dict[str, Any]], examples: Sequence[ConflictExample],
                 priors: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Add the prior fields and the example's degree to each row (rows and examples in the same order)."""
    for row, ex in zip(rows, examples, strict=True):
        row.update(priors.get(prior_key(ex), {}))
        for k in DEGREE_KEYS:
            if k in (ex.meta or {}):
                row[k] = ex.meta[k]


def add_adoption(result: Any, model: Any, tokenizer: Any, suites: Sequence[Any], settings: Any,
                 backend: Backend | None = None, reports: dict[str, Any] | None = None) -> None:
    """Run the prior pass for ``suites``, add its fields to ``result.rows`` and the adoption curves to
    ``result.summary["adoption"]`` (per suite and pooled as ``all``) and to the flat metrics.

    ``settings`` is the run's :class:`~ctxrely.engine.settings.EvalSettings` (format, batching, stop,
    matching, indicator, bootstrap); ``reports`` the grading reports of user files (``summary["grading"]``).
    """
    from ctxrely.metrics.adoption import adoption_flat, adoption_summary

    examples = [ex for s in suites for ex in s.examples]
    priors = prior_pass(model, tokenizer, examples, fmt=settings.prompt_format,
                        max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                        batch_tokens=settings.batch_tokens, stop=settings.stop_list(), match=settings.match,
                        indicator=settings.indicator,
                        backend=backend if settings.intervention is None else None)
    attach_prior(result.rows, examples, priors)
    groups = {s.name: [r for r in result.rows if r["suite"] == s.name] for s in suites}
    if len(groups) > 1:
        groups["all"] = result.rows
    adoption = {name: adoption_summary(rows, n_boot=settings.n_boot) for name, rows in groups.items()}
    result.summary["adoption"] = adoption
    result.summary["prior_pass"] = {"decoding": "plain, closed-book", "n_questions": len(priors),
                                    "n_items": len(examples)}
    if reports:
        result.summary["grading"] = reports
    for name, summ in adoption.items():
        result.summary["flat"].update(adoption_flat(summ, name))


def graded_suites(suites: list[Any], grade: bool, prior: bool | None) -> tuple[list[Any], dict[str, Any], bool]:
    """``(suites, grading reports, run the prior pass?)`` for ``evaluate(..., grade=, prior=)``.

    ``grade`` turns each suite that is not graded yet into ``graded_<name>`` (items that cannot be
    perturbed are counted in its report); ``prior=None`` means: run it when any suite is graded.
    """
    from ctxrely.data.graded import grade_suite, is_graded
    from ctxrely.errors import DataError

    reports: dict[str, Any] = {}
    if grade:
        out = []
        for s in suites:
            g, report = grade_suite(s)
            reports[g.name] = report.to_dict()
            if not g.examples:
                raise DataError(f"no item could be graded (skipped: {report.skipped}); graded answers must be "
                                "numbers or years stated in their passage", path=s.name)
            out.append(g)
        suites = out
    if prior is None:
        prior = any(is_graded(s) for s in suites)
    return suites, reports, bool(prior)
