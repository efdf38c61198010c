"""Latched e-stop with conditional reset; planner overrun counter."""

import math

import pytest

from hamwm_ros.safety.estop import EStop
from hamwm_ros.safety.overrun import OverrunCounter


def test_estop_latches_until_an_unblocked_reset():
    stop = EStop()
    assert stop.trigger('operator') and stop.latched
    assert not stop.trigger('again') and stop.reason == 'operator'   # stays latched with the first reason
    released, message = stop.reset(['joint states stale'])
    assert not released and stop.latched and 'joint states stale' in message and stop.refused_resets == 1
    released, message = stop.reset()
    assert released and not stop.latched and 'operator' in message
    assert stop.reset() == (True, 'e-stop was not latched')


def test_estop_needs_a_reason():
    with pytest.raises(ValueError):
        EStop().trigger('')


def test_overruns_trip_after_k_in_a_row_and_clear_on_time():
    counter = OverrunCounter(3)
    for _ in range(2):
        assert counter.record(0.03, 0.02)
    assert not counter.tripped
    assert not counter.record(0.01, 0.02)              # on time: the run is broken
    assert counter.consecutive == 0 and counter.total == 2
    for _ in range(3):
        counter.record(0.05, 0.02)
    assert counter.tripped and counter.total == 5 and counter.worst == 0.05
    assert counter.record(math.nan, 0.02)              # a broken timing counts as an overrun
    counter.record(0.001, 0.02)
    assert not counter.tripped and counter.iterations == 8


@pytest.mark.parametrize('limit', [0, -1, 1.5, True])
def test_overrun_limit_must_be_a_positive_int(limit):
    with pytest.raises(ValueError):
        OverrunCounter(limit)
