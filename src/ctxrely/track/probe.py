"""The probe set the training callback evaluates, and one evaluation pass over it.

A probe holds knowledge-conflict examples (built-in suites and/or in-memory examples), optional
in-distribution (ID) sets of ``{prompt, completion}`` rows, and one
:class:`~ctxrely.engine.settings.EvalSettings`. One pass runs the conflict suites through the
engine's :func:`~ctxrely.engine.api.evaluate` (its sharding across ranks, its per-suite and ``all``
aggregation: the metrics equal ``ctxrely eval``'s on the same examples and settings), and scores
the ID rows and the attention subset through the same backend seam
(:func:`~ctxrely.engine.backend.make_backend`).

ID sets are scored by teacher-forced greedy match: a row counts as correct when every completion
token is the argmax given the prompt and the completion so far, i.e. when greedy decoding would
reproduce the completion (exact match of its prefix), in one forward pass; ``id/<set>/logp`` is
the mean per-token log-probability of the completion.

Example:
    >>> probe = build_probe(examples={"toy": toy_examples}, id_sets=[{"prompt": "2+2=", "completion": "4"}])  # doctest: +SKIP
    >>> result = run_probe(model, tokenizer, probe)  # doctest: +SKIP
    >>> result.metrics["toy/logit_cf_rate"], result.metrics["id/id/acc"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ctxrely.data.schema import ConflictExample, DataError, Suite
from ctxrely.engine.distributed import run_sharded
from ctxrely.engine.settings import EvalSettings
from ctxrely.metrics import table
from ctxrely.prompts import PromptFormat, get_format

EXAMPLE_KEYS = ("cf_wins", "cf_hit", "param_hit", "bucket", "m_c", "logp_margin", "output")
GEN_METRICS = tuple(m.name for m in table.metrics(family="conflict", mode="generate", flat=True))
LOGIT_METRICS = tuple(m.name for m in table.metrics(family="conflict", mode="logits", flat=True))


@dataclass
class Probe:
    """What the callback evaluates; build it with :func:`build_probe` (which validates).

    ``settings`` is what runs; built from ``fmt``/``mode``/``indicator``/``batch_size``/
    ``max_new_tokens`` when not given (and then those mirror it).
    """

    examples: list[ConflictExample]
    suites: list[str]
    id_sets: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    fmt: PromptFormat = field(default_factory=lambda: get_format("raw"))
    mode: str = "logits"
    indicator: str | None = None
    batch_size: int = 16
    max_new_tokens: int = 32
    attention_idx: list[int] = field(default_factory=list)
    settings: EvalSettings = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = EvalSettings(fmt=self.fmt, mode=self.mode, indicator=self.indicator,  # type: ignore[arg-type]
                                         batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, n_boot=0)
        st = self.settings
        self.fmt, self.mode, self.indicator = st.prompt_format, st.mode, st.indicator
        self.batch_size, self.max_new_tokens = st.batch_size or self.batch_size, st.max_new_tokens

    def suite_list(self) -> list[Suite]:
        """The probe's examples as one :class:`Suite` per name (what :func:`evaluate` runs)."""
        return [Suite(name, "probe", [e for e in self.examples if e.suite == name], "probe") for name in self.suites]

    def metric_names(self) -> list[str]:
        """Every conflict metric this probe produces, as ``<suite>/<metric>``."""
        kinds = (GEN_METRICS if self.mode != "logits" else ()) + (LOGIT_METRICS if self.mode != "generate" else ())
        groups = self.suites + (["all"] if len(self.suites) > 1 else [])
        return [f"{g}/{k}" for g in groups for k in kinds]


@dataclass
class ProbeResult:
    metrics: dict[str, float | None]
    example_rows: list[dict[str, Any]]


def _check_id_sets(id_sets: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]] | None
                   ) -> dict[str, list[dict[str, str]]]:
    if not id_sets:
        return {}
    named = {"id": id_sets} if not isinstance(id_sets, Mapping) else dict(id_sets)
    out: dict[str, list[dict[str, str]]] = {}
    for name, rows in named.items():
        if "/" in name:
            raise ValueError(f"ID set name {name!r} may not contain '/'")
        checked = []
        for i, row in enumerate(rows):
            for key in ("prompt", "completion"):
                if not isinstance(row, Mapping) or not isinstance(row.get(key), str) or not row[key].strip():
                    raise DataError("needs non-empty string 'prompt' and 'completion'", path=f"id_sets[{name}]",
                                    line=i, field=key)
            checked.append({"prompt": row["prompt"], "completion": row["completion"]})
        if not checked:
            raise ValueError(f"ID set {name!r} is empty")
        out[name] = checked
    return out


def build_probe(
    suites: Sequence[str] | None = None,
    examples: Mapping[str, Sequence[ConflictExample]] | None = None,
    id_sets: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    *,
    limit: int | None = None,
    fmt: str | PromptFormat = "raw",
    mode: str = "logits",
    indicator: str | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    attention_subset: int = 16,
    settings: EvalSettings | None = None,
) -> Probe:
    """Resolve suites and examples into a validated :class:`Probe` (fails fast on bad input).

    ``settings`` replaces ``limit``/``fmt``/``mode``/``indicator``/``batch_size``/``max_new_tokens``
    (its ``n_boot`` is set to 0: the callback reports means).
    """
    from ctxrely.engine.api import resolve_suites

    if settings is None:
        settings = EvalSettings(fmt=fmt, mode=mode, limit=limit, indicator=indicator,  # type: ignore[arg-type]
                                batch_size=batch_size, max_new_tokens=max_new_tokens, n_boot=0)
    else:
        settings = settings.replace(n_boot=0) if settings.n_boot else settings
    inline: list[Suite] = []
    for name, exs in (examples or {}).items():
        exs = list(exs)
        if not all(isinstance(e, ConflictExample) for e in exs):
            raise TypeError(f"examples[{name!r}] must be ConflictExample objects")
        if not exs:
            raise ValueError(f"suite {name!r} has no examples")
        inline.append(Suite(name, "inline", [e if e.suite == name else dataclasses.replace(e, suite=name)
                                             for e in exs], "inline"))
    if not suites and not inline:
        raise ValueError("nothing to probe: pass suites=[...] and/or examples={name: [...]}")
    parts = resolve_suites([*(suites or ()), *inline], limit=settings.limit)  # the engine's resolution
    for suite in parts:
        if not suite.examples:
            raise ValueError(f"suite {suite.name!r} has no examples")
        ids = [e.id for e in suite.examples]
        if len(set(ids)) != len(ids):
            raise ValueError(f"suite {suite.name!r} has duplicate example ids")
    flat = [e for s in parts for e in s.examples]
    # attention subset: round-robin over suites so every suite is represented
    offsets, start = [], 0
    for s in parts:
        offsets.append((start, len(s.examples)))
        start += len(s.examples)
    order = [o + i for i in range(max(n for _, n in offsets)) for o, n in offsets if i < n]
    attention_idx = [i for i in order if flat[i].context.strip()][:max(0, attention_subset)]
    return Probe(examples=flat, suites=[s.name for s in parts], id_sets=_check_id_sets(id_sets),
                 attention_idx=attention_idx, settings=settings)


def _gathered(fn: Any, items: Sequence[Any], model: Any = None, what: str = "probe") -> list[Any]:
    """Run ``fn`` on this rank's share of ``items``; every rank gets all results in order.

    In lock-step under sharded parameters (FSDP / ZeRO-3); an exception on any rank raises the same
    one-line :class:`~ctxrely.engine.distributed.RankError` on every rank (none waits forever).
    """
    return run_sharded(fn, items, model, what)


def id_requests(tokenizer: Any, rows: Sequence[dict[str, str]], max_len: int | None = None) -> list[Any]:
    """One backend :class:`~ctxrely.engine.backend.Request` per ID row: its completion scored after its prompt
    (the prompt's start cut when the pair exceeds ``max_len``)."""
    from ctxrely.engine.backend import Request
    from ctxrely.engine.logits import encode_pair

    bos = getattr(tokenizer, "bos_token", None)
    reqs = []
    for r in rows:
        special = not (bos and r["prompt"].startswith(bos))
        p, c = encode_pair(tokenizer, r["prompt"], r["completion"], special)
        if not c:
            raise ValueError(f"ID completion {r['completion']!r} tokenises to nothing")
        if max_len and len(p) + len(c) > max_len:  # keep the end of the prompt
            p = p[-max(1, max_len - len(c)):]
        reqs.append(Request(p, [c]))
    return reqs


def score_id_rows(model: Any, tokenizer: Any, rows: Sequence[dict[str, str]], batch_size: int = 16,
                  backend: Any = None) -> list[tuple[bool, float]]:
    """``(greedy_match, mean token log-prob)`` of each row's completion after its prompt."""
    from ctxrely.engine.backend import make_backend
    from ctxrely.models.load import model_max_length

    backend = backend or make_backend(model, tokenizer)
    outs = backend.run(id_requests(tokenizer, rows, model_max_length(model, tokenizer)), batch_size=batch_size)
    return [(o.scores[0].greedy, o.scores[0].logp / o.scores[0].n_tokens) for o in outs]


def run_probe(model: Any, tokenizer: Any, probe: Probe) -> ProbeResult:
    """One evaluation pass (sharded across ranks when a process group is up); see the module docstring."""
    from ctxrely.engine.api import evaluate
    from ctxrely.engine.backend import make_backend

    backend = make_backend(model, tokenizer)  # ID rows and attention: plain decoding
    plain = probe.settings.intervention is None
    res = evaluate(model, tokenizer, probe.suite_list(), settings=probe.settings, progress=False,
                   backend=backend if plain else None)
    rows, metrics = res.rows, dict(res.metrics)
    for name, id_rows in probe.id_sets.items():
        scored = _gathered(lambda rs: score_id_rows(model, tokenizer, rs, probe.batch_size, backend), id_rows,
                           model, "ID probe")
        metrics[f"id/{name}/acc"] = sum(g for g, _ in scored) / len(scored)
        metrics[f"id/{name}/logp"] = sum(lp for _, lp in scored) / len(scored)
    if probe.attention_idx:
        subset = [probe.examples[i] for i in probe.attention_idx]
        masses = _gathered(lambda exs: backend.context_attention(exs, probe.fmt, probe.indicator), subset,
                           model, "attention probe")
        vals = [m for m in masses if m is not None]
        metrics["attn/context_mass"] = sum(vals) / len(vals) if vals else None
    example_rows = [{"suite": r["suite"], "id": r["id"], **{k: r[k] for k in EXAMPLE_KEYS if k in r}} for r in rows]
    return ProbeResult(metrics=metrics, example_rows=example_rows)
