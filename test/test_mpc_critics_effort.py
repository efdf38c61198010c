"""EffortCritic: zero for zero action, quadratic, scaled per dimension."""

import numpy as np
import pytest

from hamwm_ros.mpc.critics.base import CriticContext, CriticError
from hamwm_ros.mpc.critics.effort import EffortCritic


def test_zero_action_costs_nothing_and_cost_is_quadratic():
    critic = EffortCritic()
    u = np.zeros((3, 4, 1), np.float32)
    u[1] = 1.0
    u[2] = 2.0
    cost = critic.score(CriticContext.from_arrays(actions=u))
    assert cost[0] == 0.0
    assert cost[2] == pytest.approx(4 * cost[1])
    assert cost[1] == pytest.approx(1.0)


def test_scale_makes_dimensions_comparable():
    critic = EffortCritic(scale=[1.0, 10.0])
    u = np.zeros((2, 3, 2), np.float32)
    u[0, :, 0] = 1.0
    u[1, :, 1] = 10.0
    cost = critic.score(CriticContext.from_arrays(actions=u, observations=np.zeros((2, 3, 2))))
    assert cost[0] == pytest.approx(cost[1])


def test_bad_scale_refused():
    with pytest.raises(CriticError, match='scale'):
        EffortCritic(scale=0.0)
