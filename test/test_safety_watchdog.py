"""Joint-state watchdog: stamp checks on arrival, receipt-time staleness, latched recovery."""

import math

import pytest

from hamwm_ros.safety.watchdog import StampPolicy, Watchdog


def test_nothing_received_is_not_healthy():
    state = Watchdog(timeout=0.01).update(100.0)
    assert not state.healthy and state.stale and 'no joint states' in state.reason


# Times are multiples of 1/1024 s so that float sums are exact.
MS = 1.0 / 1024


def test_stale_by_receipt_time_exactly_after_the_timeout():
    w = Watchdog(timeout=8 * MS)
    w.feed(1.0)
    assert w.update(1.0 + 8 * MS).healthy     # at the timeout: still fresh
    state = w.update(1.0 + 9 * MS)            # past it: stale
    assert not state.healthy and state.stale and 'stale' in state.reason
    assert w.stale_events == 1


def test_recovery_needs_uninterrupted_fresh_data_for_the_recovery_time():
    w = Watchdog(timeout=8 * MS, recovery_time=64 * MS)
    t = 0.0
    for _ in range(16):                       # 60 ms of data every 4 ms: not yet recovered
        w.feed(t)
        assert not w.update(t).healthy
        t += 4 * MS
    w.feed(t)
    assert w.update(t).healthy                # 64 ms of data
    assert not w.update(t + 16 * MS).healthy  # a gap longer than the timeout: stale, latched
    t += 16 * MS
    w.feed(t)                                 # data again: the recovery period starts over
    assert not w.update(t).healthy
    for _ in range(16):
        t += 4 * MS
        w.feed(t)
    assert w.update(t).healthy


def test_invalidate_restarts_recovery():
    w = Watchdog(timeout=0.01, recovery_time=0.02)
    for k in range(6):
        w.feed(0.005 * k)
    assert w.update(0.025).healthy
    w.invalidate()
    assert not w.update(0.025).healthy
    w.feed(0.03)
    assert not w.update(0.03).healthy
    for k in range(1, 5):
        w.feed(0.03 + 0.005 * k)
    assert w.update(0.05).healthy


@pytest.mark.parametrize(('stamp', 'kind'), [(10.0 - 0.6, 'old_stamp'), (10.0 + 0.1, 'future_stamp'),
                                              (0.0, 'zero_stamp'), (math.nan, 'old_stamp')])
def test_bad_stamps_are_ignored(stamp, kind):
    w = Watchdog(timeout=0.01, max_stamp_age=0.5, max_future_stamp=0.05)
    verdict = w.check_stamp(stamp, 10.0)
    assert not verdict.accepted and verdict.kind == kind and verdict.reason


def test_a_clock_that_has_not_started_is_not_called_a_future_stamp():
    """use_sim_time before the first /clock: the ROS clock reads 0, so no stamp can be judged yet."""
    w = Watchdog(timeout=0.01, max_future_stamp=0.2)
    verdict = w.check_stamp(1.64, 0.0)
    assert not verdict.accepted and verdict.kind == 'clock_not_started' and '/clock' in verdict.reason
    assert w.check_stamp(1.65, 1.65).accepted          # once the clock runs, the same stream is used
    assert w.check_stamp(0.0, 0.0).kind == 'zero_stamp'   # an unstamped message is still judged by its own rule


def test_zero_stamp_accepted_under_accept_policy_with_a_warning():
    w = Watchdog(timeout=0.01, zero_stamp='accept')
    verdict = w.check_stamp(0.0, 10.0)
    assert verdict.accepted and verdict.kind == 'zero_stamp' and 'receipt time' in verdict.reason
    assert w.zero_stamp is StampPolicy.ACCEPT


def test_stamps_must_increase():
    w = Watchdog(timeout=0.01)
    assert w.check_stamp(9.99, 10.0).accepted
    assert w.check_stamp(9.99, 10.0).kind == 'stamp_not_newer'
    assert w.check_stamp(9.98, 10.0).kind == 'stamp_not_newer'
    assert w.check_stamp(9.995, 10.0).accepted


def test_a_clock_that_went_back_starts_a_new_time_line():
    # A restarted simulation under sim time: the clock is back at 0.2 s after stamps up to 500 s were accepted.
    w = Watchdog(timeout=0.01, max_stamp_age=0.5, max_future_stamp=0.05)
    assert w.check_stamp(500.0, 500.0).accepted
    verdict = w.check_stamp(0.19, 0.2)
    assert verdict.accepted and verdict.kind == 'clock_jumped_back' and 'restart' in verdict.reason
    assert w.check_stamp(0.21, 0.21).accepted
    assert w.check_stamp(0.20, 0.21).kind == 'stamp_not_newer'       # an old message on the new line is still old
    # Within max_future_stamp of the clock the last stamp is just recent, not a sign of a new time line.
    assert w.check_stamp(0.24, 0.2).accepted
    assert w.check_stamp(0.23, 0.2).kind == 'stamp_not_newer'


@pytest.mark.parametrize('kwargs', [{'timeout': 0.0}, {'timeout': math.inf}, {'timeout': 0.01, 'recovery_time': -1},
                                    {'timeout': 0.01, 'zero_stamp': 'maybe'},
                                    {'timeout': 0.01, 'max_stamp_age': math.nan}])
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError):
        Watchdog(**kwargs)


def test_a_gap_seen_only_on_arrival_still_latches():
    w = Watchdog(timeout=8 * MS, recovery_time=16 * MS)
    for k in range(8):
        w.feed(4 * MS * k)
    assert w.update(28 * MS).healthy
    w.feed(28 * MS + 20 * MS)                  # no tick saw the 20 ms gap: the arrival does
    state = w.update(28 * MS + 20 * MS)
    assert not state.healthy and not state.stale and 'gap' in state.reason and w.gaps == 1
