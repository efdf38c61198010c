"""NoiseGenerator: seeded reproducibility, per-dimension std, AR(1) correlation over time."""

import numpy as np
import pytest

from hamwm_ros.mpc.noise import NoiseGenerator


def test_same_seed_same_draws_and_reseed_restarts():
    a = NoiseGenerator(64, 8, 2, np.array([1.0, 2.0]), 0.5, seed=7)
    b = NoiseGenerator(64, 8, 2, np.array([1.0, 2.0]), 0.5, seed=7)
    first = a.sample().copy()
    np.testing.assert_array_equal(first, b.sample())
    assert not np.array_equal(first, a.sample())
    a.reseed(7)
    np.testing.assert_array_equal(first, a.sample())


@pytest.mark.parametrize('rho', [0.0, 0.8])
def test_std_per_dimension_holds_at_every_step(rho):
    gen = NoiseGenerator(20000, 6, 2, np.array([0.5, 3.0]), rho, seed=1)
    eps = gen.sample()
    assert eps.dtype == np.float32 and eps.shape == (20000, 6, 2)
    std = eps.std(axis=0)  # (H, m)
    np.testing.assert_allclose(std[:, 0], 0.5, rtol=0.05)
    np.testing.assert_allclose(std[:, 1], 3.0, rtol=0.05)


@pytest.mark.parametrize('rho', [0.0, 0.5, 0.9])
def test_lag_one_correlation_matches(rho):
    eps = NoiseGenerator(20000, 10, 1, np.array([1.0]), rho, seed=2).sample()[..., 0]
    lag1 = np.mean([np.corrcoef(eps[:, t], eps[:, t + 1])[0, 1] for t in range(9)])
    assert lag1 == pytest.approx(rho, abs=0.03)


def test_bad_parameters_refused():
    with pytest.raises(ValueError, match='correlation'):
        NoiseGenerator(4, 4, 1, np.array([1.0]), 1.0)
    with pytest.raises(ValueError, match='std'):
        NoiseGenerator(4, 4, 1, np.array([0.0]))
    with pytest.raises(ValueError, match='shape'):
        NoiseGenerator(0, 4, 1, np.array([1.0]))
