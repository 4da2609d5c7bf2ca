"""The one metric table: everything that names metrics is derived from it."""

from __future__ import annotations

import pytest

from ctxrely.integrations.lmeval.export import GEN_METRICS, HIGHER_IS_BETTER, MC_METRICS
from ctxrely.metrics import table
from ctxrely.metrics.conflict import aggregate, flat_metrics
from ctxrely.registry import METRICS
from ctxrely.track.inversion import points_scale
from ctxrely.track.probe import Probe

ROWS = [{"cf_hit": True, "param_hit": False, "bucket": "cf_only", "logp_cf": -1.0, "m_c": 0.7, "cf_wins": True,
         "logp_margin": 0.8},
        {"cf_hit": False, "param_hit": True, "bucket": "param_only", "logp_cf": -3.0, "m_c": 0.2, "cf_wins": False,
         "logp_margin": -1.4}]


def test_flat_metrics_are_the_tables_flat_conflict_metrics():
    flat = flat_metrics(aggregate(ROWS, n_boot=0), "s")
    assert list(flat) == [f"s/{m.name}" for m in table.metrics(family="conflict", flat=True)]
    assert flat["s/cf_acc"] == 0.5 and flat["s/cf_only"] == 0.5 and flat["s/m_c"] == pytest.approx(0.45)


def test_probe_names_units_and_export_come_from_the_table():
    probe = Probe(examples=[], suites=["a"], mode="both")
    assert probe.metric_names() == [f"a/{m.name}" for m in table.metrics(family="conflict", flat=True)]
    assert tuple(m.lmeval for m in table.metrics(lmeval=True)) == GEN_METRICS + MC_METRICS
    assert HIGHER_IS_BETTER["param_acc"] is False and HIGHER_IS_BETTER["acc"] is True
    for m in table.metrics():
        assert points_scale(f"x/{m.name}") == (100.0 if m.unit == "rate" else 1.0)
    assert points_scale("id/heldout/acc") == 100.0 and points_scale("attn/context_mass") == 100.0


def test_catalogue_is_the_table_and_names_cannot_collide():
    assert [e.name for e in METRICS] == sorted(m.name for m in table.metrics())
    with pytest.raises(ValueError, match="already registered"):
        table.register_metric("cf_acc", family="conflict", mode="generate", higher_is_better=True, description="x")
    with pytest.raises(KeyError, match="did you mean 'cf_acc'"):
        table.get_metric("cf_ac")


def test_aggregate_without_param_answers_leaves_param_metrics_absent():
    rows = [{"cf_hit": True, "param_hit": None, "bucket": None, "logp_cf": -1.0, "m_c": None, "cf_wins": None,
             "logp_margin": None}]
    agg = aggregate(rows, n_boot=0)
    assert agg["cf_acc"]["mean"] == 1.0 and agg["logp_cf"]["mean"] == -1.0
    assert agg["param_acc"] is None and agg["buckets"] is None and agg["m_c"] is None
