"""Benchmark systems: analytic energies, integrators, and the HNN paper's dataset protocol."""

import numpy as np
import pytest

from hamwm_ros.worldmodel.systems import (
    SYSTEMS,
    Pendulum,
    angle_from_image,
    hnn_dataset,
    integrate_fixed,
    make_system,
    pixel_energy,
    pixel_pendulum_dataset,
    render_pendulum,
    rollout_dataset,
    solve_ivp,
)


@pytest.mark.parametrize('name', sorted(SYSTEMS))
def test_gradient_matches_finite_differences(name):
    system = make_system(name)
    x = system.sample_initial(np.random.default_rng(3), 6)
    eps = 1e-6
    numeric = np.stack([(system.hamiltonian(x + eps * e) - system.hamiltonian(x - eps * e)) / (2 * eps)
                        for e in np.eye(system.state_dim)], axis=-1)
    np.testing.assert_allclose(system.grad_hamiltonian(x), numeric, atol=1e-6)


@pytest.mark.parametrize('name', ['mass_spring', 'pendulum', 'double_pendulum', 'cartpole', 'acrobot'])
def test_fine_integrator_conserves_analytic_energy(name):
    system = make_system(name)
    x0 = system.sample_initial(np.random.default_rng(0), 4)
    traj = solve_ivp(system.dynamics, x0, np.linspace(0.0, 5.0, 51))  # unforced: u = None
    energy = system.hamiltonian(traj)
    assert np.all(np.abs(energy - energy[:, :1]) <= 1e-7 * np.maximum(1.0, np.abs(energy[:, :1])))
    # ...and the state really moved, so conservation is not trivial.
    assert np.abs(traj[:, -1] - traj[:, 0]).max() > 0.1


def test_solve_ivp_matches_closed_form_spring():
    # H = q^2 + p^2: dq/dt = 2p, dp/dt = -2q, a rotation at angular rate 2.
    system = make_system('mass_spring')
    t = np.linspace(0.0, 10.0, 40)
    out = solve_ivp(system.dynamics, np.array([[1.0, 0.0]]), t)[0]
    np.testing.assert_allclose(out[:, 0], np.cos(2 * t), atol=1e-8)
    np.testing.assert_allclose(out[:, 1], -np.sin(2 * t), atol=1e-8)
    fixed = integrate_fixed(system.dynamics, np.array([[1.0, 0.0]]), t, substeps=50)[0]
    np.testing.assert_allclose(fixed[:, 0], np.cos(2 * t), atol=1e-6)


def test_solve_ivp_rejects_bad_times():
    with pytest.raises(ValueError):
        solve_ivp(lambda x: -x, np.ones((1, 2)), np.array([0.0, 1.0, 0.5]))


def test_damped_pendulum_loses_energy_and_input_acts_on_momentum():
    system = Pendulum(damping=0.1, actuated=True)
    x0 = system.sample_initial(np.random.default_rng(1), 3)
    energy = system.hamiltonian(solve_ivp(system.dynamics, x0, np.linspace(0, 5, 30)))
    assert np.all(np.diff(energy, axis=1) < 0)
    x = np.array([[0.3, 0.2]])
    delta = system.dynamics(x, np.array([[1.5]])) - system.dynamics(x)
    np.testing.assert_allclose(delta, [[0.0, 1.5]])
    with pytest.raises(ValueError):
        system.dynamics(x, np.ones((1, 2)))


def test_make_system_unknown():
    with pytest.raises(KeyError, match='known'):
        make_system('trebuchet')


@pytest.mark.parametrize('name, points, radius', [('mass_spring', 30, (0.1, 1.0)), ('pendulum', 45, (1.3, 2.3))])
def test_hnn_dataset_follows_paper_protocol(name, points, radius):
    system = make_system(name)
    data = hnn_dataset(system, seed=0)
    assert data['t'].shape == (points,) and data['t'][0] == 0.0 and data['t'][-1] == pytest.approx(3.0)
    assert data['x'].shape == data['dx'].shape == (25 * points, 2)
    assert data['test_x'].shape == (25 * points, 2)
    r = np.linalg.norm(data['x0'], axis=1)
    assert len(r) == 50 and r.min() >= radius[0] and r.max() <= radius[1]
    # Noise 0.1 on the states, clean derivatives at the clean states; the first 25 trajectories train.
    clean = data['clean']
    noise = data['x'] - clean[:25].reshape(-1, 2)
    assert 0.09 < noise.std() < 0.11 and abs(noise.mean()) < 0.01
    np.testing.assert_allclose(data['dx'], system.dynamics(clean[:25]).reshape(-1, 2))
    np.testing.assert_allclose(data['test_dx'], system.dynamics(clean[25:]).reshape(-1, 2))
    # Reproducible from the seed, different across seeds.
    np.testing.assert_array_equal(hnn_dataset(system, seed=0)['x'], data['x'])
    assert not np.allclose(hnn_dataset(system, seed=1)['x'], data['x'])


def test_rollout_dataset_with_inputs():
    system = make_system('cartpole')
    data = rollout_dataset(system, 3, 20, 0.05, seed=2, action_scale=2.0)
    assert data['states'].shape == (3, 21, 4) and data['actions'].shape == (3, 20, 1)
    assert data['actions'].std() > 0.5
    # Forced: energy changes; the same system unforced conserves it.
    energy = system.hamiltonian(data['states'])
    assert np.abs(energy[:, -1] - energy[:, 0]).max() > 1e-3


def test_pixel_pendulum_render_and_energy_estimator():
    q = np.linspace(-3.0, 3.0, 13)
    img = render_pendulum(q)
    assert img.shape == (13, 28, 28) and img.max() <= 1.0 and img.min() >= 0.0
    np.testing.assert_allclose(angle_from_image(img), q, atol=1e-3)
    data = pixel_pendulum_dataset(seed=0, n_trajectories=4, n_points=10)
    assert data['frames'].shape == (4, 10, 2, 28, 28) and data['frames'].dtype == np.float32
    assert data['split'] == 2
    energy = pixel_energy(data['frames'], float(data['frame_gap']))
    true = Pendulum().hamiltonian(data['states'])
    assert np.mean(np.abs(energy - true)) < 0.02 * np.mean(true)
