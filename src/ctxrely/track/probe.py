"""The probe set the training callback evaluates, and one evaluation pass over it.

A probe holds knowledge-conflict examples (built-in suites and/or in-memory examples), optional
in-distribution (ID) sets of ``{prompt, completion}`` rows, and the scoring settings. One pass
scores this rank's share of every part through the evaluation core (``score_examples`` and
``score_continuations``), gathers all ranks' rows in order, and aggregates them exactly as
``ctxrely eval`` does.

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

from ctxrely.data.schema import ConflictExample, DataError
from ctxrely.engine.api import MODES
from ctxrely.metrics import table
from ctxrely.metrics.conflict import aggregate, flat_metrics
from ctxrely.prompts import PromptFormat, get_format
from ctxrely.track.distributed import gather_in_order, shard

EXAMPLE_KEYS = ("cf_wins", "cf_hit", "param_hit", "bucket", "m_c", "logp_margin", "output")
GEN_METRICS = tuple(m.name for m in table.metrics(family="conflict", mode="generate", flat=True))
LOGIT_METRICS = tuple(m.name for m in table.metrics(family="conflict", mode="logits", flat=True))


@dataclass
class Probe:
    """What the callback evaluates; build it with :func:`build_probe` (which validates)."""

    examples: list[ConflictExample]
    suites: list[str]
    id_sets: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    fmt: PromptFormat = field(default_factory=lambda: get_format("raw"))
    mode: str = "logits"
    indicator: str | None = None
    batch_size: int = 16
    max_new_tokens: int = 32
    attention_idx: list[int] = field(default_factory=list)

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
) -> Probe:
    """Resolve suites and examples into a validated :class:`Probe` (fails fast on bad input)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    parts: dict[str, list[ConflictExample]] = {}
    if suites:
        from ctxrely.data.suites import load_suite

        for name in suites:
            parts[name] = list(load_suite(name).examples)
    for name, exs in (examples or {}).items():
        if name in parts:
            raise ValueError(f"suite {name!r} given twice (as a suite name and in examples)")
        exs = list(exs)
        if not all(isinstance(e, ConflictExample) for e in exs):
            raise TypeError(f"examples[{name!r}] must be ConflictExample objects")
        parts[name] = [e if e.suite == name else dataclasses.replace(e, suite=name) for e in exs]
    if not parts:
        raise ValueError("nothing to probe: pass suites=[...] and/or examples={name: [...]}")
    for name, exs in parts.items():
        if not exs:
            raise ValueError(f"suite {name!r} has no examples")
        parts[name] = exs[:limit] if limit else exs
        ids = [e.id for e in parts[name]]
        if len(set(ids)) != len(ids):
            raise ValueError(f"suite {name!r} has duplicate example ids")
    flat = [e for exs in parts.values() for e in exs]
    # attention subset: round-robin over suites so every suite is represented
    offsets, start = [], 0
    for exs in parts.values():
        offsets.append((start, len(exs)))
        start += len(exs)
    order = [o + i for i in range(max(n for _, n in offsets)) for o, n in offsets if i < n]
    attention_idx = [i for i in order if flat[i].context.strip()][:max(0, attention_subset)]
    return Probe(examples=flat, suites=list(parts), id_sets=_check_id_sets(id_sets),
                 fmt=fmt if isinstance(fmt, PromptFormat) else get_format(fmt), mode=mode, indicator=indicator,
                 batch_size=batch_size, max_new_tokens=max_new_tokens, attention_idx=attention_idx)


def _gathered(fn: Any, items: Sequence[Any]) -> list[Any]:
    """Run ``fn`` on this rank's share of ``items``; every rank gets all results in order.

    An exception on any rank is re-raised on every rank (after the gather, so none waits forever).
    """
    part = shard(items)
    try:
        vals: Any = fn([x for _, x in part]) if part else []
        pairs: list[tuple[int, Any]] = [(i, v) for (i, _), v in zip(part, vals, strict=True)]
        err = None
    except Exception as e:  # sent to the other ranks, raised below
        pairs, err = [], f"{type(e).__name__}: {e}"
    merged = gather_in_order(pairs + ([(-1, _RankError(err))] if err else []))
    errors = [v for v in merged if isinstance(v, _RankError)]
    if errors:
        raise RuntimeError("probe evaluation failed: " + "; ".join(e.msg for e in errors))
    return merged


@dataclass
class _RankError:
    msg: str


def score_id_rows(model: Any, tokenizer: Any, rows: Sequence[dict[str, str]], batch_size: int = 16
                  ) -> list[tuple[bool, float]]:
    """``(greedy_match, mean token log-prob)`` of each row's completion after its prompt."""
    from ctxrely.engine.logits import encode_pair, score_continuations
    from ctxrely.models.load import model_max_length

    max_len = model_max_length(model, tokenizer)
    bos = getattr(tokenizer, "bos_token", None)
    prompts, conts = [], []
    for r in rows:
        special = not (bos and r["prompt"].startswith(bos))
        p, c = encode_pair(tokenizer, r["prompt"], r["completion"], special)
        if not c:
            raise ValueError(f"ID completion {r['completion']!r} tokenises to nothing")
        if max_len and len(p) + len(c) > max_len:  # keep the end of the prompt
            p = p[-max(1, max_len - len(c)):]
        prompts.append(p)
        conts.append([c])
    scores = score_continuations(model, tokenizer, prompts, conts, batch_size=batch_size)
    return [(s[0].greedy, s[0].logp / s[0].n_tokens) for s in scores]


def run_probe(model: Any, tokenizer: Any, probe: Probe) -> ProbeResult:
    """One evaluation pass (sharded across ranks when a process group is up); see the module docstring."""
    from ctxrely.engine.api import score_examples
    from ctxrely.track.attention import context_attention

    rows = _gathered(lambda exs: [r.to_dict() for r in score_examples(
        model, tokenizer, exs, fmt=probe.fmt, mode=probe.mode, max_new_tokens=probe.max_new_tokens,
        batch_size=probe.batch_size, indicator=probe.indicator, progress=False)], probe.examples)
    metrics: dict[str, float | None] = {}
    for name in probe.suites:
        metrics.update(flat_metrics(aggregate([r for r in rows if r["suite"] == name], n_boot=0), name))
    if len(probe.suites) > 1:
        metrics.update(flat_metrics(aggregate(rows, n_boot=0), "all"))
    for name, id_rows in probe.id_sets.items():
        scored = _gathered(lambda rs: score_id_rows(model, tokenizer, rs, probe.batch_size), id_rows)
        metrics[f"id/{name}/acc"] = sum(g for g, _ in scored) / len(scored)
        metrics[f"id/{name}/logp"] = sum(lp for _, lp in scored) / len(scored)
    if probe.attention_idx:
        subset = [probe.examples[i] for i in probe.attention_idx]
        masses = _gathered(lambda exs: context_attention(model, tokenizer, exs, fmt=probe.fmt,
                                                         indicator=probe.indicator), subset)
        vals = [m for m in masses if m is not None]
        metrics["attn/context_mass"] = sum(vals) / len(vals) if vals else None
    example_rows = [{"suite": r["suite"], "id": r["id"], **{k: r[k] for k in EXAMPLE_KEYS if k in r}} for r in rows]
    return ProbeResult(metrics=metrics, example_rows=example_rows)
