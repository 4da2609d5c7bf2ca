"""The inversion detector on synthetic metric sequences."""

from __future__ import annotations

import pytest

from ctxrely.track.inversion import InversionDetector, detect, points_scale


def feed(values, **kw):
    det = InversionDetector(**kw)
    events = [det.update(step, v) for step, v in values]
    return det, events


def test_rise_then_fall_fires_once_at_the_kth_drop():
    seq = [(0, 0.40), (5, 0.60), (10, 0.75), (15, 0.70), (20, 0.62), (25, 0.55), (30, 0.50)]
    det, events = feed(seq, drop_threshold=10, patience=2)
    fired = [e for e in events if e is not None]
    assert len(fired) == 1  # once only, even though later evaluations keep falling
    ev = fired[0]
    assert (ev.peak_step, ev.first_step, ev.step) == (10, 20, 25)
    assert ev.peak == pytest.approx(0.75) and ev.value == pytest.approx(0.55)
    assert ev.drop == pytest.approx(20.0)
    assert det.state()["drop"] == pytest.approx(25.0) and det.state()["inverted"] == 1.0


def test_single_dip_and_recovery_do_not_fire():
    # one evaluation below threshold, then back up: the streak resets
    seq = [(0, 0.5), (1, 0.8), (2, 0.6), (3, 0.79), (4, 0.6), (5, 0.78)]
    det, events = feed(seq, drop_threshold=10, patience=2)
    assert not any(events) and det.event is None and det.streak == 0


def test_patience_one_and_threshold_is_strict():
    det, events = feed([(0, 0.5), (1, 0.375)], drop_threshold=12.5, patience=1)
    assert det.event is None  # exactly 12.5 points (exact in binary) is not "more than" 12.5
    det, events = feed([(0, 0.5), (1, 0.37)], drop_threshold=12.5, patience=1)
    assert det.event is not None and det.event.step == 1


def test_new_peak_after_partial_drop_moves_the_reference():
    seq = [(0, 0.5), (1, 0.45), (2, 0.9), (3, 0.85), (4, 0.7), (5, 0.65)]
    det, _ = feed(seq, drop_threshold=10, patience=2)
    assert det.event is not None and det.event.peak_step == 2 and det.event.step == 5


def test_missing_values_are_skipped():
    seq = [(0, 0.8), (1, None), (2, 0.6), (3, float("nan")), (4, 0.6)]
    det, _ = feed(seq, drop_threshold=10, patience=2)
    assert det.event is not None and det.event.step == 4
    assert [s for s, _ in det.history] == [0, 2, 4]


def test_units_for_non_rate_metrics():
    assert points_scale("all/logit_cf_rate") == 100 and points_scale("x/logp_margin") == 1
    det = detect([(0, 2.0), (1, 0.5), (2, 0.4)], drop_threshold=1.0, patience=2, scale=1.0)
    assert det.event is not None and det.event.drop == pytest.approx(1.6)


@pytest.mark.parametrize("kw", [dict(drop_threshold=0), dict(drop_threshold=-1), dict(patience=0),
                                dict(patience=1.5)])
def test_bad_arguments_fail_fast(kw):
    with pytest.raises(ValueError):
        InversionDetector(**kw)
