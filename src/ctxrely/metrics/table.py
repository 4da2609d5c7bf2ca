"""The one metric table: every metric ctxrely reports is declared here once, with its facts.

What is derived from it: the ``ctxrely ls`` catalogue, :func:`ctxrely.metrics.conflict.flat_metrics`
(the scalars loggers and the trajectory store get), the training probe's metric names, the
inversion detector's units (rates drop in percentage points) and the lm-eval export's
``metric_list``. A new metric is one :func:`register_metric` call (in this file for the core ones,
or in the module that computes it); a name registered twice raises, an unknown one suggests near
names.

Example:
    >>> get_metric("logit_cf_rate").lmeval, get_metric("param_acc").higher_is_better
    ('acc', False)
    >>> [m.name for m in metrics(family="conflict", mode="logits", flat=True)]
    ['logit_cf_rate', 'm_c', 'logp_margin']
    >>> is_rate("cf_capitals/m_c"), is_rate("all/logp_margin")
    (True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ctxrely.registry import METRICS

Aggregation = Literal["mean", "share"]
Unit = Literal["rate", "nats"]


@dataclass(frozen=True)
class Metric:
    """One metric's facts.

    Attributes:
        name: the key in aggregates and the last part of a logged name (``<suite>/<name>``).
        family: what it measures: ``conflict`` (knowledge-conflict suites), ``id`` (in-distribution
            rows of the training probe), ``attention``; other families register their own.
        mode: the pass that produces it: ``generate``, ``logits`` (or ``attention``).
        higher_is_better: for reports and the lm-eval export.
        aggregation: ``mean`` of the per-example field ``row_key``, or ``share`` of the examples
            whose ``row_key`` field equals the metric's name (the four answer buckets).
        unit: ``rate`` (in [0, 1]; drops are reported in percentage points) or ``nats``.
        row_key: the per-example field it aggregates (as written to ``examples.jsonl``).
        needs_param: absent (None, not 0) when the data has no parametric answer.
        flat: logged as a scalar by the callback and the trajectory store.
        lmeval: its name in the lm-eval export (None: not exported).
        description: one line for ``ctxrely ls``.
    """

    name: str
    family: str
    mode: str
    higher_is_better: bool
    description: str
    aggregation: Aggregation = "mean"
    unit: Unit = "rate"
    row_key: str | None = None
    needs_param: bool = False
    flat: bool = True
    lmeval: str | None = None


def register_metric(name: str, *, family: str, mode: str, higher_is_better: bool, description: str,
                    **facts: object) -> Metric:
    """Declare a metric (see :class:`Metric` for the fields); raises if the name is taken."""
    m = Metric(name=name, family=family, mode=mode, higher_is_better=higher_is_better, description=description,
               **facts)  # type: ignore[arg-type]
    return METRICS.add(name, m, description=description, mode=mode, family=family)


def get_metric(name: str) -> Metric:
    """The declared metric (raises with near names when unknown)."""
    return METRICS.get(name)


def metrics(*, family: str | None = None, mode: str | None = None, flat: bool | None = None,
            lmeval: bool | None = None) -> list[Metric]:
    """Declared metrics in declaration order, filtered by family / mode / flat / exported to lm-eval."""
    out = [e.obj for e in sorted(METRICS, key=lambda e: _ORDER.get(e.name, len(_ORDER)))]
    return [m for m in out if (family is None or m.family == family) and (mode is None or m.mode == mode)
            and (flat is None or m.flat == flat) and (lmeval is None or (m.lmeval is not None) == lmeval)]


def is_rate(logged_name: str) -> bool:
    """Whether ``<group>/<name>`` (or ``<name>``) is a declared rate in [0, 1]."""
    name = logged_name.rsplit("/", 1)[-1]
    return name in METRICS and METRICS.get(name).unit == "rate"


# ----------------------------------------------------------------------------- the core metrics

_GEN = dict(family="conflict", mode="generate")
_LOGIT = dict(family="conflict", mode="logits")
_CORE: list[tuple[str, dict]] = [
    ("cf_acc", dict(_GEN, higher_is_better=True, row_key="cf_hit", lmeval="cf_acc",
                    description="share of outputs containing the counterfactual (context) answer")),
    ("param_acc", dict(_GEN, higher_is_better=False, row_key="param_hit", needs_param=True, lmeval="param_acc",
                       description="share of outputs containing the parametric (memorised) answer")),
    ("cf_only", dict(_GEN, higher_is_better=True, aggregation="share", row_key="bucket", needs_param=True,
                     lmeval="cf_only", description="share with the context answer and not the memorised one")),
    ("param_only", dict(_GEN, higher_is_better=False, aggregation="share", row_key="bucket", needs_param=True,
                        lmeval="param_only", description="share with the memorised answer and not the context one")),
    ("both", dict(_GEN, higher_is_better=True, aggregation="share", row_key="bucket", needs_param=True,
                  lmeval="both", description="share with both answers (often copying a context that names both)")),
    ("neither", dict(_GEN, higher_is_better=False, aggregation="share", row_key="bucket", needs_param=True,
                     lmeval="neither", description="share with neither answer")),
    ("logit_cf_rate", dict(_LOGIT, higher_is_better=True, row_key="cf_wins", needs_param=True, lmeval="acc",
                           description="share of items where log p(cf answer) > log p(param answer)")),
    ("m_c", dict(_LOGIT, higher_is_better=True, row_key="m_c", needs_param=True, lmeval="m_c",
                 description="mean p_cf / (p_cf + p_param), Theorem 1 of Goyal et al. 2024")),
    ("logp_margin", dict(_LOGIT, higher_is_better=True, unit="nats", row_key="logp_margin", needs_param=True,
                         lmeval="logp_margin", description="mean log p(cf) - log p(param)")),
    ("logp_cf", dict(_LOGIT, higher_is_better=True, unit="nats", row_key="logp_cf", flat=False,
                     description="mean log p(cf answer) (in summary.json; not logged)")),
    ("acc", dict(family="id", mode="logits", higher_is_better=True,
                 description="in-distribution rows: share whose completion is the greedy continuation (id/<set>/acc)")),
    ("logp", dict(family="id", mode="logits", higher_is_better=True, unit="nats",
                  description="in-distribution rows: mean log p(completion) per token (id/<set>/logp)")),
    ("context_mass", dict(family="attention", mode="attention", higher_is_better=True,
                          description="attention of the answer position on the context, mean over heads and layers "
                                      "(attn/context_mass)")),
]
_ORDER = {name: i for i, (name, _) in enumerate(_CORE)}
for _name, _facts in _CORE:
    register_metric(_name, **_facts)  # type: ignore[arg-type]

# reading comprehension (gold answers only; computed in :mod:`ctxrely.metrics.rc`)
from ctxrely.metrics.rc import RC_METRICS  # noqa: E402  (rc.py is pure: no import of this table)

for _name, _facts in RC_METRICS.items():
    _ORDER.setdefault(_name, len(_ORDER))
    register_metric(_name, family="rc", mode=_facts["mode"], higher_is_better=_facts["higher_is_better"],
                    description=_facts["description"])
