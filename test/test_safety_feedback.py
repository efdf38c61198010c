"""PlanFeedback: PD on the deviation from the plan's predicted joint state, with angles compared on the circle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hamwm_ros.safety import PlanFeedback


def test_pd_on_the_deviation_from_the_prediction():
    feedback = PlanFeedback([10.0, 2.0], [1.0, 0.5])
    assert feedback.active
    added = feedback.effort(np.array([0.2, -1.0, 0.5, 0.0]), np.array([0.1, -1.5]), np.array([0.0, 1.0]))
    np.testing.assert_allclose(added, [10.0 * 0.1 + 1.0 * 0.5, 2.0 * 0.5 + 0.5 * -1.0])


def test_wrapped_joints_compare_positions_on_the_circle():
    feedback = PlanFeedback([1.0, 1.0], [0.0, 0.0], wrapped=[True, False])
    # predicted just past -pi, measured just short of +pi: 0.2 rad apart on the circle, 2 pi - 0.2 on the line
    added = feedback.effort(np.array([-math.pi + 0.1, 0.0, 0.0, 0.0]), np.array([math.pi - 0.1, 2 * math.pi]),
                            np.zeros(2))
    assert added[0] == pytest.approx(0.2) and added[1] == pytest.approx(-2 * math.pi)


def test_zero_gains_are_inactive_and_non_finite_gives_none():
    assert not PlanFeedback([0.0], [0.0]).active
    feedback = PlanFeedback([1.0], [0.0])
    assert feedback.effort(np.array([math.nan, 0.0]), np.zeros(1), np.zeros(1)) is None
    assert feedback.effort(np.array([0.0, 0.0]), np.array([math.inf]), np.zeros(1)) is None


@pytest.mark.parametrize('kp, kd, wrapped, message', [
    ([1.0, 1.0], [1.0], None, 'one kp and one kd per joint'),
    ([], [], None, 'one kp and one kd per joint'),
    ([-1.0], [0.0], None, 'finite and >= 0'),
    ([math.nan], [0.0], None, 'finite and >= 0'),
    ([1.0], [math.inf], None, 'finite and >= 0'),
    ([1.0], [1.0], [True, False], 'wrapped names 2 joints'),
])
def test_bad_gains_are_refused_with_a_reason(kp, kd, wrapped, message):
    with pytest.raises(ValueError, match=message):
        PlanFeedback(kp, kd, wrapped)
