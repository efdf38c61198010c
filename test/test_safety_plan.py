"""Plan playback between model steps: linear, or zero-order hold (the effort input a world model is trained with)."""

from __future__ import annotations

import numpy as np
import pytest

from hamwm_ros.safety import Plan


def test_hold_plays_each_step_over_the_whole_step_linear_interpolates():
    sequence = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
    held = Plan(sequence, start=10.0, dt=0.02, hold=True)
    linear = Plan(sequence, start=10.0, dt=0.02)
    assert not linear.hold                                       # the default stays linear
    for offset, step in ((0.0, 0), (0.019, 0), (0.021, 1), (0.039, 1), (0.045, 2)):
        assert held.sample(10.0 + offset)[0] == pytest.approx(sequence[step, 0])
    assert linear.sample(10.01)[0] == pytest.approx(2.0) and linear.sample(10.03)[0] == pytest.approx(4.0)
    for plan in (held, linear):
        assert plan.sample(9.0)[0] == pytest.approx(1.0)         # before the start: step 0
        assert plan.sample(10.06) is None                        # past the last step: the plan expired


def test_predicted_state_is_interpolated_between_rows_and_ends_with_them():
    sequence = np.zeros((3, 1))
    states = np.array([[0.0, 1.0], [0.02, 1.0], [0.04, 0.0], [0.05, 0.0]])   # (H + 1, 2n): row k at start + k dt
    plan = Plan(sequence, start=10.0, dt=0.02, hold=True, states=states)
    np.testing.assert_allclose(plan.state_at(10.01), [0.01, 1.0])
    np.testing.assert_allclose(plan.state_at(10.03), [0.03, 0.5])
    np.testing.assert_allclose(plan.state_at(9.0), states[0])              # before the start: row 0
    assert plan.state_at(10.06) is None                                     # past the last row
    assert Plan(sequence, start=10.0, dt=0.02).state_at(10.01) is None     # a plan without predictions
