"""Input guard (names, finiteness, position limits) and command guard (finite, clamped, rate bounded)."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from hamwm_ros.safety.guards import CommandGuard, InputGuard
from hamwm_ros.safety.limits import JointLimits

LIMITS = JointLimits(('a', 'b', 'c'), [[-1.0, 1.0], [-2.0, 2.0], [0.0, 3.0]], [5.0, 5.0, 5.0], [10.0, 4.0, 0.0])


def test_joints_are_mapped_by_name_with_extras_ignored():
    guard = InputGuard(LIMITS)
    verdict = guard.check(['x', 'c', 'a', 'b'], [9.0, 2.5, 0.1, -0.2], [0.0, 3.0, 1.0, 2.0], [])
    assert verdict.ok
    np.testing.assert_array_equal(verdict.position, [0.1, -0.2, 2.5])
    np.testing.assert_array_equal(verdict.velocity, [1.0, 2.0, 3.0])
    assert guard.accepted == 1


@pytest.mark.parametrize(('names', 'position', 'velocity', 'effort', 'kind'), [
    (['a', 'b'], [0, 0], [0, 0], [], 'joint_names'),                       # missing joint
    (['a', 'b', 'c', 'a'], [0, 0, 1, 0], [0, 0, 0, 0], [], 'joint_names'),  # repeated name
    (['a', 'b', 'c'], [0, 0], [0, 0, 0], [], 'length'),                    # unequal arrays
    (['a', 'b', 'c'], [0, 0, 1], [0, 0, 0], [1.0], 'length'),
    (['a', 'b', 'c'], [0, 0, 1], [], [], 'no_velocity'),
    (['a', 'b', 'c'], [0, math.nan, 1], [0, 0, 0], [], 'non_finite'),
    (['a', 'b', 'c'], [0, 0, 1], [0, math.inf, 0], [], 'non_finite'),
    (['a', 'b', 'c'], [0, 0, 1], [0, 0, 0], [0, -math.inf, 0], 'non_finite'),
])
def test_unusable_messages_are_rejected_and_counted(names, position, velocity, effort, kind):
    guard = InputGuard(LIMITS)
    verdict = guard.check(names, position, velocity, effort)
    assert not verdict.ok and verdict.kind == kind and verdict.reason and not verdict.fault
    assert guard.rejected[kind] == 1 and guard.accepted == 0


def test_non_finite_value_of_an_unused_joint_is_ignored():
    assert InputGuard(LIMITS).check(['a', 'b', 'c', 'x'], [0, 0, 1, math.nan], [0, 0, 0, math.nan]).ok


def test_position_beyond_limits_by_more_than_the_tolerance_is_a_fault():
    guard = InputGuard(LIMITS, position_tolerance=0.1)
    assert guard.check(['a', 'b', 'c'], [1.09, 0, -0.05], [0, 0, 0]).ok
    verdict = guard.check(['a', 'b', 'c'], [1.2, 0, 1], [0, 0, 0])
    assert not verdict.ok and verdict.fault and verdict.kind == 'position_limit' and 'a=1.2000' in verdict.reason


def test_a_free_turning_joint_is_not_held_to_its_range_and_the_others_still_are():
    guard = InputGuard(LIMITS, position_tolerance=0.1, free_turning=[1])
    assert guard.check(['a', 'b', 'c'], [0.0, -12.7, 1.0], [0, 30.0, 0]).ok        # b has turned over twice
    assert guard.check(['a', 'b', 'c'], [0.0, 1e6, 1.0], [0, 0, 0]).ok
    verdict = guard.check(['a', 'b', 'c'], [1.2, -12.7, 1.0], [0, 0, 0])
    assert verdict.fault and verdict.kind == 'position_limit' and 'a=1.2000' in verdict.reason
    assert 'b=' not in verdict.reason
    guard.position_tolerance = 0.5                   # the bounds are rebuilt: b stays free
    assert guard.check(['a', 'b', 'c'], [1.2, -99.0, 1.0], [0, 0, 0]).ok
    assert not guard.check(['a', 'b', 'c'], [0.0, math.nan, 1.0], [0, 0, 0]).ok   # free, not unchecked
    with pytest.raises(ValueError, match='free_turning'):
        InputGuard(LIMITS, free_turning=[3])


def test_persistent_rejections_become_a_fault():
    guard = InputGuard(LIMITS, max_consecutive_rejections=3)
    bad = (['a', 'b', 'c'], [math.nan, 0, 1], [0, 0, 0])
    assert not guard.check(*bad).fault
    assert not guard.check(*bad).fault
    verdict = guard.check(*bad)
    assert verdict.fault and '3 rejected in a row' in verdict.reason
    assert guard.check(['a', 'b', 'c'], [0, 0, 1], [0, 0, 0]).ok and guard.consecutive_rejections == 0


def test_command_guard_clamps_rejects_non_finite_and_bounds_the_change():
    guard = CommandGuard([10.0, 4.0, 0.0], max_delta=3.0)
    np.testing.assert_array_equal(guard.apply([2.0, -2.0, 5.0]), [2.0, -2.0, 0.0])   # passive joint: always 0
    np.testing.assert_array_equal(guard.apply([100.0, -100.0, 0.0]), [5.0, -4.0, 0.0])
    assert guard.clamped == 2 and guard.rate_limited == 1
    np.testing.assert_array_equal(guard.apply([math.nan, 0.0, 0.0]), [2.0, -1.0, 0.0])   # refused: toward zero
    assert guard.non_finite == 1
    np.testing.assert_array_equal(guard.apply([1.0, 1.0]), [0.0, 0.0, 0.0])               # wrong size: refused
    np.testing.assert_array_equal(guard.hold(), [0.0, 0.0, 0.0])


@pytest.mark.parametrize('delta', [0.0, -1.0, math.nan])
def test_command_guard_rate_must_be_positive(delta):
    with pytest.raises(ValueError):
        CommandGuard([1.0], delta)


finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                          st.floats(min_value=-1e3, max_value=1e3))


@settings(max_examples=400, deadline=None)
@given(limits=st.lists(st.floats(min_value=0.0, max_value=500.0), min_size=1, max_size=6),
       max_delta=st.one_of(st.just(math.inf), st.floats(min_value=1e-3, max_value=100.0)),
       commands=st.lists(st.lists(finite_or_not, min_size=6, max_size=6), min_size=1, max_size=30),
       holds=st.lists(st.booleans(), min_size=30, max_size=30))
def test_command_guard_output_is_always_finite_within_limits_and_change_bounded(limits, max_delta, commands, holds):
    limits = np.asarray(limits)
    guard = CommandGuard(limits, max_delta)
    previous = np.zeros(limits.size)
    for command, hold in zip(commands, holds):
        out = guard.hold() if hold else guard.apply(command[:limits.size])
        assert out.shape == limits.shape and np.all(np.isfinite(out))
        assert np.all(np.abs(out) <= limits)
        if hold:
            assert np.all(out == 0.0)
        else:
            assert np.all(np.abs(out - previous) <= max_delta * (1 + 1e-12))
        previous = out
