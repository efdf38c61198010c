"""Plan timing helpers: committed steps from measured latencies, elapsed steps from stamps or receipts."""

from __future__ import annotations

import math

import pytest

from hamwm_ros.mpc.timing import MAX_COMMITTED, MIN_LATENCY_SAMPLES, committed_steps, elapsed_steps

DT = 0.02


def test_a_fixed_count_wins_over_the_measurement():
    assert committed_steps([0.5] * 20, DT, fixed=0) == 0
    assert committed_steps([0.5] * 20, DT, fixed=3) == 3


def test_measured_committed_steps_are_the_p90_latency_rounded_up():
    assert committed_steps([0.03] * (MIN_LATENCY_SAMPLES - 1), DT) == 0      # too few plans measured yet
    assert committed_steps([0.03] * MIN_LATENCY_SAMPLES, DT) == 2             # 1.5 steps -> 2
    assert committed_steps([0.04] * 10, DT) == 2          # exactly 2 steps (up to float error) commits 2, not 3
    assert committed_steps([0.01] * 9 + [0.1], DT) == 1       # one slow plan in ten: p90 0.019 s
    assert committed_steps([0.01] * 17 + [0.1] * 3, DT) == 5  # three in twenty: p90 0.1 s
    assert committed_steps([10.0] * 10, DT) == MAX_COMMITTED     # capped at the parameter's range


def test_elapsed_steps_count_stamps_and_ignore_receipt_jitter():
    stamps = {100.000: 5_000_000_000, 100.047: 5_040_000_000}   # received 47 ms apart, stamped 40 ms apart
    assert elapsed_steps(stamps, 100.000, 100.047, DT) == 2
    # no stamp for one of them (or a zero stamp, or stamps out of order): receipt times instead
    assert elapsed_steps({100.000: 5_000_000_000}, 100.000, 100.047, DT) == 2
    assert elapsed_steps({100.000: 0, 100.061: 5_000_000_000}, 100.000, 100.061, DT) == 3
    assert elapsed_steps({100.000: 6_000_000_000, 100.061: 5_000_000_000}, 100.000, 100.061, DT) == 3
    assert elapsed_steps({}, 100.061, 100.000, DT) == 0      # never negative


@pytest.mark.parametrize('dt', [0.0, -0.02, math.nan, math.inf])
def test_bad_dt_is_refused(dt):
    with pytest.raises(ValueError, match='dt must be finite'):
        committed_steps([0.03] * 10, dt)
    with pytest.raises(ValueError, match='dt must be finite'):
        elapsed_steps({}, 0.0, 0.1, dt)
