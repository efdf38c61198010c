"""The analytic pendulum used as a reference system: physics and the rollout contract."""

import math

import numpy as np
import pytest

from hamwm_ros.mpc.analytic import Pendulum


def test_rollout_matches_stepping_and_has_contract_shapes():
    p = Pendulum()
    actions = np.random.default_rng(0).uniform(-2, 2, (3, 7, 1)).astype(np.float32)
    out = p(np.array([0.2, -0.1], np.float32), actions)
    assert out.latent.shape == out.observations.shape == (3, 7, 2) and out.energy.shape == (3, 7)
    x = np.array([0.2, -0.1])
    for t in range(7):
        x = p.step(x, actions[1, t])
        np.testing.assert_allclose(out.observations[1, t], x, rtol=1e-5, atol=1e-5)


def test_energy_is_conserved_without_damping_or_input_and_upright_energy():
    p = Pendulum(damping=0.0, dt=0.01, substeps=10)
    out = p(np.array([2.0, 0.0], np.float32), np.zeros((1, 500, 1), np.float32))
    e0 = p.energy(np.array([2.0, 0.0]))
    error = np.abs(out.energy[0] - e0)
    assert error.max() < 1e-2 * abs(e0)  # semi-implicit Euler: O(h) oscillation of the energy ...
    assert error[250:].max() < 1.5 * error[:250].max()  # ... but no drift (symplectic)
    assert p.energy(np.array([np.pi, 0.0])) == pytest.approx(p.upright_energy)


def test_damping_dissipates():
    out = Pendulum(damping=0.5)(np.array([1.0, 0.0], np.float32), np.zeros((1, 100, 1), np.float32))
    assert out.energy[0, -1] < out.energy[0, 0]


def test_outside_valid_speed_predictions_are_nan_from_then_on():
    p = Pendulum(valid_speed=1.0)
    out = p(np.array([0.0, 0.0], np.float32), np.full((2, 20, 1), [[[0.0]], [[5.0]]], np.float32))
    assert np.isfinite(out.observations[0]).all()
    bad = ~np.isfinite(out.observations[1, :, 0])
    assert bad.any() and bad[np.argmax(bad):].all()


def test_bad_parameters_refused():
    with pytest.raises(ValueError):
        Pendulum(dt=0.0)
    assert math.isnan(Pendulum(mass=math.nan)(np.zeros(2, np.float32), np.zeros((1, 2, 1), np.float32)).energy[0, 0])
