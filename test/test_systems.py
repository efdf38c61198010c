"""Benchmark systems: analytic energies, integrators, and the HNN paper's dataset protocol."""

import numpy as np
import pytest

from hamwm_ros.worldmodel.systems import (
    GYM_DT,
    SYSTEMS,
    Pendulum,
    gym_pendulum_energy,
    gym_pendulum_trajectories,
    gym_pixel_dataset,
    hnn_dataset,
    integrate_fixed,
    make_system,
    render_gym_pendulum,
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


def test_gym_pendulum_episodes_follow_pendulum_v0():
    states = gym_pendulum_trajectories(np.random.default_rng(0), 400, 60)
    assert states.shape == (400, 60, 2)
    # Starts: |theta| < pi/6 (the paper's redraw), theta' in U[-1, 1].
    assert np.abs(states[:, 0, 0]).max() < np.pi / 6 and np.abs(states[:, 0, 1]).max() <= 1.0
    assert np.abs(states[:, 0, 0]).max() > 0.9 * np.pi / 6
    # Gym's semi-implicit Euler step: omega first, then theta with the new omega.
    th, om = states[:, 10, 0], states[:, 10, 1]
    om_next = om - 15.0 * np.sin(th) * GYM_DT
    np.testing.assert_allclose(states[:, 11, 1], om_next, atol=1e-12)
    np.testing.assert_allclose(states[:, 11, 0], th + om_next * GYM_DT, atol=1e-12)
    # The paper's energy 1.9 (1 - cos theta) + (theta' / 4)^2 is nearly conserved: the step keeps a nearby modified
    # energy, so H oscillates by about dt * omega / 2 ~ 10 % along an orbit but does not drift.
    energy = gym_pendulum_energy(states * np.array([1.0, 0.25]))
    rel = (energy.max(1) - energy.min(1)) / energy.mean(1)
    assert np.median(rel) < 0.25 and rel.max() < 0.45
    assert np.abs(energy[:, -10:].mean(1) - energy[:, :10].mean(1)).max() < 0.1 * energy.mean(1).max()
    assert gym_pendulum_energy(np.array([np.pi / 2, 0.5])) == pytest.approx(1.9 + 0.25)


def test_gym_pendulum_frames_show_the_rod_where_it_is():
    theta = np.array([0.0, 0.4, -0.4, 0.55])
    img = render_gym_pendulum(theta)
    assert img.shape == (4, 28, 28) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() == 1.0
    # The rod's area is the same at every angle: (capsule 0.2 x 1 + two caps) - axle, over (1.496 / 28)^2 per pixel.
    area = (0.2 * 1.0 + np.pi * 0.1 ** 2 - np.pi * 0.05 ** 2) / (1.496 / 28) ** 2
    np.testing.assert_allclose(img.sum(axis=(1, 2)), area, rtol=0.03)
    # Hanging straight down: left-right symmetric; positive angles swing to the image's right, mirrored for negative.
    np.testing.assert_allclose(img[0], img[0][:, ::-1], atol=1e-6)
    np.testing.assert_allclose(img[1], img[2][:, ::-1], atol=1e-6)
    cols = np.arange(28) - 13.5
    centroid = (img * cols).sum(axis=(1, 2)) / img.sum(axis=(1, 2))
    assert abs(centroid[0]) < 1e-6 and centroid[1] > 2.0 and centroid[3] > centroid[1]
    data = gym_pixel_dataset(seed=0, n_trajectories=3, n_frames=5)
    assert data['frames'].shape == (3, 5, 28, 28) and data['states'].shape == (3, 5, 2)
    np.testing.assert_allclose(data['coords'][..., 1], 0.25 * data['states'][..., 1])
    np.testing.assert_allclose(data['frames'][1, 2], render_gym_pendulum(data['states'][1, 2, 0]))
