"""BalanceCritic: more margin costs less, capture distance costs, ZMP outside the polygon is infeasible."""

import numpy as np
import pytest

from hamwm_ros.mpc.critics.balance import BalanceCritic
from hamwm_ros.mpc.critics.base import INFEASIBLE_COST, CriticContext, CriticError

HALF_FOOT = 0.1  # m, a 1-D support interval [-0.1, 0.1] for an inverted-pendulum CoM model
OMEGA = np.sqrt(9.81 / 0.9)


def lipm_balance(obs):
    """Analytic linear-inverted-pendulum balance: obs = (CoM x, CoM xdot) -> (ZMP margin, capture point distance)."""
    x, xd = obs[..., 0], obs[..., 1]
    margin = HALF_FOOT - np.abs(x)   # ZMP ~ CoM for a slow pendulum: signed distance to the nearer edge
    capture = np.abs(x + xd / OMEGA)
    return margin, capture


def states(rows, horizon=4):
    return np.repeat(np.asarray(rows, np.float32)[:, None, :], horizon, axis=1)


def test_more_margin_costs_less():
    critic = BalanceCritic(lipm_balance, margin_target=0.05, capture_weight=0.0)
    cost = critic.score(CriticContext.from_arrays(states([[0.0, 0.0], [0.06, 0.0], [0.08, 0.0]])))
    assert cost[0] == 0.0  # margin 0.1 >= target
    assert 0.0 < cost[1] < cost[2] < INFEASIBLE_COST


def test_capture_point_distance_costs():
    critic = BalanceCritic(lipm_balance, margin_target=0.05, capture_weight=1.0)
    cost = critic.score(CriticContext.from_arrays(states([[0.0, 0.0], [0.0, 0.2], [0.0, -0.2]])))
    assert cost[0] == 0.0
    assert cost[1] > 0.0 and cost[1] == pytest.approx(cost[2])


def test_zmp_outside_support_is_infeasible_unless_soft():
    obs = states([[0.0, 0.0], [0.15, 0.0]])
    hard = BalanceCritic(lipm_balance).score(CriticContext.from_arrays(obs))
    assert hard[1] >= INFEASIBLE_COST * 4 > hard[0]
    soft = BalanceCritic(lipm_balance, hard=False).score(CriticContext.from_arrays(obs))
    assert soft[1] < INFEASIBLE_COST


def test_contract_violations_refused():
    with pytest.raises(CriticError, match='callable'):
        BalanceCritic(None)
    with pytest.raises(CriticError, match='margin_target'):
        BalanceCritic(lipm_balance, margin_target=0.0)
    wrong = BalanceCritic(lambda obs: (obs[..., 0], obs[:, 0, 0]))
    with pytest.raises(CriticError, match='expected'):
        wrong.score(CriticContext.from_arrays(states([[0.0, 0.0]])))


def test_result_objects_with_a_margin_attribute_are_accepted():
    class Result:
        def __init__(self, margin):
            self.com, self.zmp, self.margin = None, None, margin

    critic = BalanceCritic(lambda obs: Result(lipm_balance(obs)[0]), margin_target=0.05, capture_weight=1.0)
    obs = states([[0.0, 0.5], [0.08, 0.0]])
    cost = critic.score(CriticContext.from_arrays(obs))
    assert cost[0] == 0.0 and cost[1] > 0.0  # no capture term without a capture attribute
