"""Score examples: prompts -> backend requests (one per example) -> :class:`ScoredRow` objects.

In ``both`` mode each example is one request: its prompt is prefilled once, the two answers are
scored on that cache and greedy decoding continues from it. Scoring tokenises as lm-eval does
(trailing prompt whitespace moves onto the answer), so the generation prompt may run a token or two
past the scored prompt: those tokens are fed as ``forced`` tokens before decoding starts.

Example:
    >>> rows = score_examples(model, tok, examples, mode="both", batch_tokens=4096)  # doctest: +SKIP
    >>> rows[0].output, rows[0].m_c  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ctxrely.data.schema import ConflictExample
from ctxrely.engine.backend import Backend, Outcome, Request, make_backend
from ctxrely.engine.logits import encode_pairs
from ctxrely.engine.prompting import build_prompts, continuation, encode
from ctxrely.engine.result import ScoredRow
from ctxrely.engine.settings import MODES, EvalSettings, Mode
from ctxrely.metrics.conflict import gen_flags, logit_flags
from ctxrely.metrics.matching import MatchMode
from ctxrely.metrics.rc import rc_flags
from ctxrely.prompts import PromptFormat

__all__ = ["MODES", "Mode", "score_examples"]


def score_examples(
    model: Any,
    tokenizer: Any,
    examples: Sequence[ConflictExample],
    settings: EvalSettings | None = None,
    *,
    progress: bool = True,
    desc: str = "eval",
    backend: Backend | None = None,
    on_rows: Callable[[list[ScoredRow]], None] | None = None,
    intervention: Any = None,
    **overrides: Any,
) -> list[ScoredRow]:
    """Per-example rows (prompt, output, flags, log-probs) in the order of ``examples``.

    Args:
        settings: how to score (:class:`~ctxrely.engine.settings.EvalSettings`); its fields also work
            as keyword arguments (``fmt=``, ``mode=``, ``max_new_tokens=``, ``batch_size=``,
            ``batch_tokens=``, ``stop=``, ``match=``, ``indicator=``, ``decode=``, ...), which override it.
            ``batch_tokens`` counts padded tokens per batch, prompt plus the tokens it will generate
            or score (default when neither batch option is given: ``batching.DEFAULT_BATCH_TOKENS``).
        backend: the model backend (default: :func:`ctxrely.engine.backend.make_backend` over
            ``model`` with the settings' decode strategy).
        on_rows: called with the rows every batch finishes (resume files flush per batch).
        intervention: a :class:`ctxrely.steer.plan.Intervention` that replaces the settings' one
            (CAD / AdaCAD decoding, PASTA steering; scores and answers both change).
    """
    from ctxrely.models.load import model_max_length

    st = EvalSettings.build(settings, overrides)
    pf, mode, max_new_tokens, match, indicator = st.prompt_format, st.mode, st.max_new_tokens, st.match, st.indicator
    if intervention is None:
        intervention = st.intervention
    examples = list(examples)
    if not examples:
        return []
    gen, logit = mode in ("generate", "both"), mode in ("logits", "both")
    stop = st.stop_list()
    targets = [a for ex in examples for a in ex.cf_targets() + ex.param_targets()]
    answer_len = max(len(ids) for ids in tokenizer(targets, add_special_tokens=False)["input_ids"]) + 1
    reserve = max(max_new_tokens if gen else 0, answer_len if logit else 0)
    prompts = build_prompts(examples, pf, tokenizer, model_max_length(model, tokenizer), reserve, indicator)
    requests, owner = _requests(examples, prompts, tokenizer, pf, gen, logit, max_new_tokens)
    rows = [ScoredRow(id=ex.id, suite=ex.suite, prompt=p.text, cf_answer=ex.cf_answer,
                      param_answer=ex.param_answer, context_truncated=p.context_truncated)
            for ex, p in zip(examples, prompts, strict=True)]
    pending = [0] * len(examples)
    for e in owner:
        pending[e] += 1
    bar = _progress(len(examples), desc, progress)

    def finished(idx: list[int], outs: list[Outcome]) -> None:
        ready = []
        for i, o in zip(idx, outs, strict=True):
            e = owner[i]
            _fill(rows[e], examples[e], o, match)
            pending[e] -= 1
            if pending[e] == 0:
                ready.append(rows[e])
        bar.update(len(ready))
        if on_rows and ready:
            on_rows(ready)

    if intervention is not None and intervention.active:
        if backend is not None:
            raise ValueError("decode/steer interventions run on the default transformers backend; pass no backend")
        if intervention.steer is not None:
            for row, n in zip(rows, intervention.span_tokens(tokenizer, pf, examples, prompts), strict=True):
                row.steer_span_tokens = n
    if backend is None:
        backend = make_backend(model, tokenizer, intervention, fmt=pf, indicator=indicator)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        backend.run(requests, stop=stop, batch_size=st.batch_size, batch_tokens=st.batch_tokens, on_batch=finished)
    finally:
        bar.close()
        if was_training:
            model.train()
    return rows


def _requests(examples: list[ConflictExample], prompts: list[Any], tokenizer: Any, pf: PromptFormat, gen: bool,
              logit: bool, max_new_tokens: int) -> tuple[list[Request], list[int]]:
    """One request per example (two where the scored prompt is not a prefix of the generation prompt)."""
    gen_ids = [p.ids or encode(tokenizer, p.text, pf) for p in prompts]
    n_new = max_new_tokens if gen else 0
    if not logit:
        return [Request(ids, (), n_new, example=ex, text=p.text)
                for ids, ex, p in zip(gen_ids, examples, prompts, strict=True)], list(range(len(examples)))
    answers = [[ex.cf_answer] + ([ex.param_answer] if ex.param_answer is not None else []) for ex in examples]
    pairs = encode_pairs(tokenizer, [p.text for p in prompts],
                         [[continuation(p.text, a) for a in ans] for p, ans in zip(prompts, answers, strict=True)],
                         not pf.chat, prompt_ids=[p.ids for p in prompts])
    requests: list[Request] = []
    owner: list[int] = []
    for e, (ex, p, ans, (ctx, conts), g) in enumerate(zip(examples, prompts, answers, pairs, gen_ids, strict=True)):
        for a, c in zip(ans, conts, strict=True):
            if not c:
                raise ValueError(f"{ex.suite}:{ex.id}: answer {a!r} tokenises to nothing")
        head = p.text.rstrip()  # the scored prompt: trailing whitespace moves onto the answers
        if not gen or list(g[:len(ctx)]) == ctx:
            requests.append(Request(ctx, conts, n_new, tuple(g[len(ctx):]) if gen else (), example=ex, text=head))
            owner.append(e)
        else:  # tokenisation is not prefix-stable here: score and generate separately
            requests += [Request(ctx, conts, example=ex, text=head), Request(g, (), n_new, example=ex, text=p.text)]
            owner += [e, e]
    return requests, owner


def _fill(row: ScoredRow, ex: ConflictExample, out: Outcome, match: MatchMode) -> None:
    if out.text is not None:
        row.output = out.text
        if out.token_logps:  # ClashEval's token-probability correction compares these (metrics.adoption)
            row.output_p = math.exp(sum(out.token_logps) / len(out.token_logps))
        flags = gen_flags(out.text, ex.cf_targets(), ex.param_targets(), match)
        row.cf_hit, row.param_hit, row.bucket = flags["cf_hit"], flags["param_hit"], flags["bucket"]
        if ex.param_answer is None:  # gold answers only (reading comprehension): EM / F1 too
            rc = rc_flags(out.text, ex.cf_targets())
            row.contains, row.exact_match, row.f1 = rc["contains"], rc["exact_match"], rc["f1"]
    if out.scores:
        cf, pa = out.scores[0], (out.scores[1] if len(out.scores) > 1 else None)
        row.logp_cf, row.n_tok_cf, row.first_logp_cf, row.cf_greedy = cf.logp, cf.n_tokens, cf.first_logp, cf.greedy
        if pa is not None:
            row.logp_param, row.n_tok_param, row.first_logp_param = pa.logp, pa.n_tokens, pa.first_logp
        flags = logit_flags(cf.logp, None if pa is None else pa.logp)
        row.m_c, row.cf_wins, row.logp_margin = flags["m_c"], flags["cf_wins"], flags["logp_margin"]


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
