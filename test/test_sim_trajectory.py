"""TrajectorySampler: linear and cubic Hermite interpolation between knots, hold after the last."""

from __future__ import annotations

import numpy as np
import pytest

from hamwm_ros.sim.trajectory import TrajectorySampler


def test_linear_interpolates_and_holds():
    linear = TrajectorySampler(np.array([0.0, 1.0, 3.0]), np.array([[0.0], [1.0], [2.0]]), None)
    assert linear.end_time == 3.0
    assert linear.sample(0.5)[0] == pytest.approx([0.5]) and linear.sample(0.5)[1] == pytest.approx([1.0])
    assert linear.sample(2.0)[0] == pytest.approx([1.5]) and linear.sample(2.0)[1] == pytest.approx([0.5])
    assert linear.sample(10.0)[0] == pytest.approx([2.0]) and linear.sample(10.0)[1] == pytest.approx([0.0])
    assert linear.sample(-1.0)[0] == pytest.approx([0.0]) and linear.sample(-1.0)[1] == pytest.approx([0.0])


def test_hermite_starts_at_rest_and_rises_monotonically():
    hermite = TrajectorySampler(np.array([0.0, 2.0]), np.array([[0.0], [1.0]]), np.array([[0.0], [0.0]]))
    positions = [hermite.sample(t)[0][0] for t in np.linspace(0.0, 2.0, 21)]
    assert positions[0] == pytest.approx(0.0) and positions[-1] == pytest.approx(1.0)
    assert positions[10] == pytest.approx(0.5) and all(b >= a for a, b in zip(positions, positions[1:]))
    assert hermite.sample(1e-9)[1][0] == pytest.approx(0.0, abs=1e-6)       # starts at rest
    assert hermite.sample(1.0)[1][0] == pytest.approx(0.75)                  # cubic peak velocity 1.5 * 1 / 2


def test_hermite_velocity_is_the_derivative_of_its_position_and_meets_the_knots():
    rng = np.random.default_rng(3)
    times = np.array([0.0, 0.3, 0.7, 1.5])
    positions, velocities = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    sampler = TrajectorySampler(times, positions, velocities)
    for k, t in enumerate(times[:-1]):
        q, v = sampler.sample(t)
        np.testing.assert_allclose(q, positions[k], atol=1e-12)
        np.testing.assert_allclose(v, velocities[k], atol=1e-12)
    h = 1e-6
    for t in np.linspace(0.01, 1.49, 37):
        numeric = (sampler.sample(t + h)[0] - sampler.sample(t - h)[0]) / (2 * h)
        np.testing.assert_allclose(sampler.sample(t)[1], numeric, atol=1e-5)
    # position is continuous through every inner knot
    for t in times[1:-1]:
        np.testing.assert_allclose(sampler.sample(t - 1e-9)[0], sampler.sample(t + 1e-9)[0], atol=1e-7)


def test_a_single_knot_is_held():
    single = TrajectorySampler(np.array([1.0]), np.array([[0.2, -0.4]]), None)
    q, v = single.sample(0.0)
    np.testing.assert_array_equal(q, [0.2, -0.4])
    np.testing.assert_array_equal(v, [0.0, 0.0])
