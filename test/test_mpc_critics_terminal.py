"""TerminalCostCritic: e^T P e of the last predicted step only, angles on the circle, P validated."""

import numpy as np
import pytest

from hamwm_ros.mpc.critics.base import CriticContext, CriticError
from hamwm_ros.mpc.critics.terminal import TerminalCostCritic

P = np.array([[2.0, 0.5], [0.5, 1.0]])


def test_quadratic_form_of_the_last_step_only():
    critic = TerminalCostCritic([1.0, 0.0], P)
    obs = np.zeros((3, 4, 2), np.float32)
    obs[:, :, 0] = 1.0                     # at the goal everywhere ...
    obs[1, :-1, :] = 9.0                   # ... but far before the last step: ignored
    obs[2, -1] = [1.5, -0.2]               # off at the last step
    before = obs.copy()
    cost = critic.score(CriticContext.from_arrays(obs))
    e = np.array([0.5, -0.2])
    assert cost[:2] == pytest.approx([0.0, 0.0], abs=1e-7)
    assert cost[2] == pytest.approx(e @ P @ e, rel=1e-6)
    assert np.array_equal(obs, before)     # the rollout's buffer is left alone


def test_wrapped_angles_make_plus_and_minus_pi_the_same_goal():
    critic = TerminalCostCritic([np.pi, 0.0], P, wrap=[0])
    obs = np.zeros((3, 2, 2), np.float32)
    obs[0, -1, 0] = -np.pi                 # upright through the other side
    obs[1, -1, 0] = 3 * np.pi - 0.1        # turned over, 0.1 rad short
    obs[2, -1, 0] = np.pi - 0.1
    cost = critic.score(CriticContext.from_arrays(obs))
    assert cost[0] == pytest.approx(0.0, abs=1e-5)
    assert cost[1] == pytest.approx(cost[2], rel=1e-4) and cost[2] == pytest.approx(0.01 * 2.0, rel=1e-4)


@pytest.mark.parametrize('goal, matrix, wrap, reason', [
    ([0.0, 0.0], np.eye(3), (), 'must be a finite 2 x 2'),
    ([0.0, 0.0], np.array([[1.0, 0.3], [0.0, 1.0]]), (), 'symmetric'),
    ([0.0, 0.0], np.diag([1.0, -0.5]), (), 'positive semi-definite'),
    ([0.0, np.nan], np.eye(2), (), 'finite 1-D'),
    ([0.0, 0.0], np.eye(2), (2,), 'wrap indices'),
])
def test_invalid_settings_are_refused(goal, matrix, wrap, reason):
    with pytest.raises(CriticError, match=reason):
        TerminalCostCritic(goal, matrix, wrap=wrap)


def test_goal_can_be_retargeted_at_run_time():
    critic = TerminalCostCritic([0.0, 0.0], P)
    obs = np.zeros((1, 3, 2), np.float32)
    obs[0, -1] = [0.4, 0.0]
    critic.goal = [0.4, 0.0]
    assert critic.score(CriticContext.from_arrays(obs))[0] == pytest.approx(0.0)
    with pytest.raises(CriticError, match='goal size 3 differs from 2'):
        critic.goal = [0.0, 0.0, 0.0]
    with pytest.raises(CriticError, match='finite'):
        critic.goal = [np.inf, 0.0]


def test_value_matrix_can_be_replaced_at_run_time_and_a_bad_one_is_refused():
    critic = TerminalCostCritic([0.0, 0.0], P)
    obs = np.zeros((1, 2, 2), np.float32)
    obs[0, -1] = [1.0, 0.0]
    critic.value_matrix = 3.0 * P
    assert critic.score(CriticContext.from_arrays(obs))[0] == pytest.approx(6.0)
    for bad, reason in ((np.diag([1.0, -1.0]), 'positive semi-definite'), (np.eye(3), '2 x 2'),
                        (np.array([[1.0, 1.0], [0.0, 1.0]]), 'symmetric')):
        with pytest.raises(CriticError, match=reason):
            critic.value_matrix = bad
    assert np.allclose(critic.value_matrix, 3.0 * P)     # the old P is kept


def test_observation_size_must_match_the_goal():
    critic = TerminalCostCritic([0.0, 0.0, 0.0], np.eye(3))
    with pytest.raises(CriticError, match='3'):
        critic.score(CriticContext.from_arrays(np.zeros((2, 3, 2), np.float32)))
