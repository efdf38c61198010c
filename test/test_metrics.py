"""Metrics on inputs with known answers."""

import numpy as np
import pytest

from hamwm_ros.worldmodel import metrics
from hamwm_ros.worldmodel.systems import Pendulum


def test_horizon_mse_known_values():
    target = np.zeros((2, 1000, 3))
    pred = np.broadcast_to(np.arange(1, 1001, dtype=float)[None, :, None], target.shape)
    out = metrics.horizon_mse(pred, target)
    assert out[1] == 1.0
    assert out[10] == pytest.approx(np.mean(np.arange(1, 11) ** 2))
    assert out[1000] == pytest.approx(np.mean(np.arange(1, 1001) ** 2))
    assert metrics.horizon_mse(pred[:, :50], target[:, :50]).keys() == {1, 10}
    scaled = metrics.horizon_mse(pred, target, (1,), scale=np.array([2.0, 2.0, 2.0]))
    assert scaled[1] == 0.25
    bad = pred.copy()
    bad[0, 5] = np.nan
    assert metrics.horizon_mse(bad, target)[10] == float('inf')
    with pytest.raises(ValueError):
        metrics.horizon_mse(pred[:, :, :2], target)


def test_energy_metrics():
    assert metrics.energy_mse(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == 2.0
    assert metrics.energy_mse(np.array([np.nan]), np.array([1.0])) == float('inf')
    energy = np.array([[2.0, 2.1, 2.2], [4.0, 4.0, 3.0]])
    np.testing.assert_allclose(metrics.relative_energy_drift(energy), [0.1, 0.25])
    assert metrics.mse(np.ones(3), np.zeros(3)) == 1.0
    with pytest.raises(ValueError):
        metrics.mse(np.ones(3), np.zeros(2))


def test_learned_damping_recovers_true_damping():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    for gamma in (0.0, 0.1, 0.7):
        system = Pendulum(damping=gamma)
        assert metrics.learned_damping(system.grad_hamiltonian(x), system.dynamics(x), 1) == pytest.approx(gamma)
    # A field that pumps energy in reads as negative damping.
    system = Pendulum()
    pumped = system.dynamics(x) + np.stack([0 * x[:, 0], 0.5 * system.grad_hamiltonian(x)[:, 1]], -1)
    assert metrics.learned_damping(system.grad_hamiltonian(x), pumped, 1) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        metrics.learned_damping(np.zeros((3, 2)), np.ones((3, 2)), 1)


@pytest.mark.parametrize('nominal', [0.5, 0.9, 0.95])
def test_picp_of_calibrated_gaussian_is_nominal(nominal):
    rng = np.random.default_rng(1)
    n = 200_000
    mean = rng.normal(size=n)
    std = rng.uniform(0.1, 2.0, size=n)
    target = mean + std * rng.normal(size=n)
    assert metrics.picp(mean, std, target, nominal) == pytest.approx(nominal, abs=0.005)
    # Over-confident intervals under-cover.
    assert metrics.picp(mean, 0.5 * std, target, nominal) < nominal - 0.05


def test_picp_samples_of_calibrated_ensemble():
    rng = np.random.default_rng(2)
    samples = rng.normal(size=(400, 5000))
    target = rng.normal(size=5000)
    assert metrics.picp_samples(samples, target, 0.9) == pytest.approx(0.9, abs=0.02)
    with pytest.raises(ValueError):
        metrics.picp_samples(samples, target[:10])
    with pytest.raises(ValueError):
        metrics.picp(np.zeros(2), np.ones(2), np.zeros(2), nominal=1.0)


def test_trajectories_needed_and_ratio():
    n = [1, 10, 100]
    errors = [1.0, 0.1, 0.01]
    assert metrics.trajectories_needed(n, errors, 0.1) == pytest.approx(10.0)
    assert metrics.trajectories_needed(n, errors, 10 ** -1.5) == pytest.approx(10 ** 1.5)
    assert metrics.trajectories_needed(n, errors, 2.0) == 1.0
    assert metrics.trajectories_needed(n, errors, 1e-3) == float('inf')
    # A model whose learning curve is the baseline's shifted 8x to fewer trajectories.
    budgets = [1, 2, 4, 8, 16, 32, 64]
    base = [1.0 / b for b in budgets]
    model = [1.0 / (8 * b) for b in budgets]
    ratio = metrics.sample_efficiency_ratio(budgets, model, base)
    assert ratio['ratio'] == pytest.approx(8.0)
    assert ratio['reference_error'] == pytest.approx(1 / 64)
    assert metrics.sample_efficiency_ratio(budgets, base, base)['ratio'] == pytest.approx(1.0)
