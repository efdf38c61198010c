"""JointLimitsCritic: free well inside, soft barrier near limits, infeasible beyond them."""

import numpy as np
import pytest

from hamwm_ros.mpc.critics.base import INFEASIBLE_COST, CriticContext, CriticError
from hamwm_ros.mpc.critics.limits import JointLimitsCritic


def critic(**kw):
    return JointLimitsCritic([0], [1], position_limits=[[-1.0, 1.0]], velocity_limits=[2.0], band=0.1, **kw)


def obs(rows, horizon=3):
    return np.repeat(np.asarray(rows, np.float32)[:, None, :], horizon, axis=1)


def test_free_inside_soft_in_band_monotone_toward_limit():
    cost = critic().score(CriticContext.from_arrays(obs([[0.0, 0.0], [0.85, 0.0], [0.95, 0.0], [0.999, 0.0]])))
    assert cost[0] == 0.0
    assert 0.0 < cost[1] < cost[2] < cost[3] <= 1.0  # band is 0.2 wide at each end of a 2-wide range


def test_beyond_limits_is_infeasible_per_step():
    cost = critic().score(CriticContext.from_arrays(obs([[1.01, 0.0], [0.0, -2.5], [-1.5, 3.0]])))
    assert cost[0] >= 3 * INFEASIBLE_COST
    assert cost[1] >= 3 * INFEASIBLE_COST
    assert cost[2] >= 6 * INFEASIBLE_COST


def test_velocity_band_is_symmetric():
    cost = critic().score(CriticContext.from_arrays(obs([[0.0, 1.9], [0.0, -1.9], [0.0, 1.0]])))
    assert cost[0] == pytest.approx(cost[1]) and cost[0] > 0.0 and cost[2] == 0.0


def test_bad_configuration_refused():
    with pytest.raises(CriticError, match='band'):
        JointLimitsCritic([0], [1], position_limits=[[-1, 1]], band=0.7)
    with pytest.raises(CriticError, match='lower < upper'):
        JointLimitsCritic([0], [1], position_limits=[[1.0, -1.0]])
    with pytest.raises(CriticError, match='velocity limits'):
        JointLimitsCritic([0], [1], velocity_limits=[1.0, 2.0])
    with pytest.raises(CriticError, match='give'):
        JointLimitsCritic([0], [1])
