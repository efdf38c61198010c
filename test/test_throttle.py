"""Tests for hamwm_ros.throttle."""

from hamwm_ros.throttle import EventThrottle


def test_first_event_is_due_and_repeats_are_counted_until_the_period_ends():
    throttle = EventThrottle(period=3600.0)
    assert throttle.due('nan') == 1
    assert throttle.due('nan') == 0
    assert throttle.due('nan') == 0
    assert throttle.count['nan'] == 2


def test_kinds_are_throttled_independently():
    throttle = EventThrottle(period=3600.0)
    assert throttle.due('nan') == 1
    assert throttle.due('length') == 1


def test_zero_period_reports_every_event():
    throttle = EventThrottle(period=0.0)
    assert [throttle.due('x') for _ in range(3)] == [1, 1, 1]
