"""Hand-over: the step at a switch between two control laws decays linearly to zero."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from hamwm_ros.safety import Handover


def test_no_duration_means_no_blend():
    handover = Handover(0.0)
    assert not handover.start(0.0, np.array([2.0, -1.0]), np.zeros(2))
    command, added = handover.apply(0.0, np.zeros(2))
    assert added is None and np.all(command == 0.0) and not handover.active


def test_the_step_decays_linearly_and_the_blend_ends_at_its_duration():
    handover = Handover(0.1)
    assert handover.start(1.0, np.array([2.0, -1.0]), np.array([0.0, 1.0]))
    command, added = handover.apply(1.0, np.array([0.0, 1.0]))
    assert command == pytest.approx([2.0, -1.0]) and added == pytest.approx([2.0, -2.0])   # continuous at the switch
    command, _ = handover.apply(1.025, np.array([0.0, 1.0]))
    assert command == pytest.approx([1.5, -0.5])
    command, added = handover.apply(1.05, np.array([4.0, 1.0]))        # the new law moves; the step's share is added
    assert command == pytest.approx([5.0, 0.0]) and added == pytest.approx([1.0, -1.0])
    assert handover.added(1.075) == pytest.approx([0.5, -0.5])         # what a trajectory target adds then
    command, added = handover.apply(1.1, np.array([0.0, 1.0]))
    assert added is None and command == pytest.approx([0.0, 1.0]) and not handover.active
    assert handover.added(1.1) is None


def test_a_switch_during_a_blend_starts_from_the_output_in_force():
    handover = Handover(0.1)
    handover.start(0.0, np.array([2.0]), np.array([0.0]))
    in_force, _ = handover.apply(0.05, np.array([0.0]))                # 1.0: half the step left
    assert handover.start(0.05, in_force, np.array([3.0]))
    command, _ = handover.apply(0.05, np.array([3.0]))
    assert command == pytest.approx([1.0])
    command, _ = handover.apply(0.1, np.array([3.0]))
    assert command == pytest.approx([2.0])


@pytest.mark.parametrize('previous, command', [([math.nan, 0.0], [0.0, 0.0]), ([0.0, 0.0], [math.inf, 0.0])])
def test_a_non_finite_value_never_starts_a_blend_and_drops_the_one_in_progress(previous, command):
    handover = Handover(0.1)
    handover.start(0.0, np.array([5.0, 5.0]), np.zeros(2))
    assert not handover.start(0.01, np.array(previous), np.array(command))
    assert not handover.active
    out, added = handover.apply(0.02, np.ones(2))
    assert added is None and np.all(out == 1.0)


def test_bad_durations_and_shapes_are_refused():
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match='duration'):
            Handover(bad)
    handover = Handover(0.1)
    with pytest.raises(ValueError, match='shape'):
        handover.start(0.0, np.zeros(2), np.zeros(3))
    handover.start(0.0, np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match='shape'):
        handover.apply(0.0, np.zeros(3))
    handover.duration = 0.0                                            # switching blending off ends a blend at once
    assert not handover.active


@settings(max_examples=200, deadline=None)
@given(previous=st.lists(st.floats(-100, 100), min_size=3, max_size=3),
       target=st.lists(st.floats(-100, 100), min_size=3, max_size=3),
       duration=st.floats(1e-3, 1.0), elapsed=st.floats(-1.0, 2.0))
def test_the_blend_never_leaves_the_segment_between_the_two_commands(previous, target, duration, elapsed):
    handover = Handover(duration)
    previous, target = np.array(previous), np.array(target)
    handover.start(0.0, previous, target)
    out, _ = handover.apply(elapsed, target)
    low, high = np.minimum(previous, target), np.maximum(previous, target)
    slack = 1e-9 * (1.0 + np.abs(previous) + np.abs(target))
    assert np.all(out >= low - slack) and np.all(out <= high + slack)
