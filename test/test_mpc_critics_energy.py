"""EnergyCritic: zero at the target energy, symmetric, uses the model energy or a physical energy function."""

import numpy as np
import pytest

from hamwm_ros.mpc.analytic import Pendulum
from hamwm_ros.mpc.critics.base import CriticContext, CriticError
from hamwm_ros.mpc.critics.energy import EnergyCritic


def test_zero_at_target_symmetric_and_scaled():
    critic = EnergyCritic(target=2.0, scale=2.0)
    energy = np.array([[2.0, 2.0], [3.0, 3.0], [1.0, 1.0]], np.float32)
    cost = critic.score(CriticContext.from_arrays(energy=energy))
    assert cost[0] == 0.0
    assert cost[1] == pytest.approx(cost[2])
    assert cost[1] == pytest.approx(0.25)


def test_physical_energy_function_used_instead_of_model_energy():
    pendulum = Pendulum()
    critic = EnergyCritic(target=pendulum.upright_energy, energy_fn=pendulum.energy)
    upright = np.array([[[np.pi, 0.0]] * 3, [[0.0, 0.0]] * 3], np.float32)
    cost = critic.score(CriticContext.from_arrays(observations=upright, energy=np.full((2, 3), 1e3)))
    assert cost[0] == pytest.approx(0.0, abs=1e-6)
    assert cost[1] == pytest.approx((2 * pendulum.upright_energy) ** 2, rel=1e-5)


def test_retarget_and_bad_values():
    critic = EnergyCritic(target=0.0)
    critic.target = 5.0
    assert critic.score(CriticContext.from_arrays(energy=np.full((1, 2), 5.0)))[0] == 0.0
    with pytest.raises(CriticError, match='target'):
        critic.target = float('nan')
    with pytest.raises(CriticError, match='scale'):
        EnergyCritic(target=0.0, scale=0.0)
    bad_shape = EnergyCritic(target=0.0, energy_fn=lambda obs: obs[..., 0, 0])
    with pytest.raises(CriticError, match='shape'):
        bad_shape.score(CriticContext.from_arrays(energy=np.zeros((2, 3))))
