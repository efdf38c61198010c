"""TrackingCritic: zero at the goal, grows with distance, wraps angles, weights select dimensions."""

import numpy as np
import pytest

from hamwm_ros.mpc.critics.base import CriticContext, CriticError
from hamwm_ros.mpc.critics.tracking import TrackingCritic


def obs_at(values, horizon=5):
    values = np.asarray(values, np.float32)
    return np.repeat(values[:, None, :], horizon, axis=1)


def test_zero_at_goal_and_monotone_in_distance():
    critic = TrackingCritic([1.0, -2.0])
    cost = critic.score(CriticContext.from_arrays(obs_at([[1.0, -2.0], [1.5, -2.0], [2.0, -2.0], [3.0, -2.0]])))
    assert cost[0] == 0.0
    assert np.all(np.diff(cost) > 0)
    assert cost[2] == pytest.approx(1.0)  # (2 - 1)^2 averaged over identical steps


def test_angles_wrap_so_plus_and_minus_pi_are_both_upright():
    critic = TrackingCritic([np.pi, 0.0], wrap=[0])
    cost = critic.score(CriticContext.from_arrays(obs_at([[np.pi, 0.0], [-np.pi, 0.0], [3 * np.pi, 0.0], [0.0, 0.0]])))
    np.testing.assert_allclose(cost[:3], 0.0, atol=1e-5)
    assert cost[3] == pytest.approx(np.pi**2, rel=1e-5)
    unwrapped = TrackingCritic([np.pi, 0.0]).score(CriticContext.from_arrays(obs_at([[-np.pi, 0.0]])))
    assert unwrapped[0] == pytest.approx((2 * np.pi) ** 2, rel=1e-5)


def test_zero_weight_dimension_is_ignored_and_terminal_weight_counts_last_step():
    critic = TrackingCritic([0.0, 0.0], state_weights=[1.0, 0.0], terminal_weight=1.0)
    obs = np.zeros((2, 4, 2), np.float32)
    obs[0, :, 1] = 5.0   # untracked dimension
    obs[1, -1, 0] = 1.0  # only the last step off
    cost = critic.score(CriticContext.from_arrays(obs))
    assert cost[0] == 0.0
    assert cost[1] == pytest.approx(1.0 / 4 + 1.0)


def test_goal_can_be_retargeted_but_not_resized():
    critic = TrackingCritic([0.0, 0.0])
    critic.goal = [1.0, 1.0]
    assert critic.score(CriticContext.from_arrays(obs_at([[1.0, 1.0]])))[0] == 0.0
    with pytest.raises(CriticError, match='size'):
        critic.goal = [1.0]
    with pytest.raises(CriticError, match='wrap'):
        TrackingCritic([0.0], wrap=[3])
    with pytest.raises(CriticError, match='state_weights'):
        TrackingCritic([0.0], state_weights=[-1.0])
