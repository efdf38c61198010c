"""generate_rollouts: shapes, reproducibility, variety, and that ``action`` is the effort that really acted."""

import numpy as np
import pytest

from hamwm_ros.sim import ROBOTS, Simulation
from hamwm_ros.sim.rollouts import generate_rollouts


@pytest.mark.parametrize('robot', ['pendulum', 'cartpole', 'acrobot'])
def test_fixed_base_rollouts_shapes_limits_and_seed(robot):
    data = generate_rollouts(robot, 3, 40, 0.01, seed=7)
    sim = Simulation(robot)
    n = sim.n_joints
    assert data['position'].shape == (3, 41, n) and data['velocity'].shape == (3, 41, n)
    assert data['action'].shape == (3, 40, n)
    assert data['dt'] == 0.01 and data['joint_names'] == list(sim.joint_names)
    assert all(np.all(np.isfinite(data[k])) for k in ('position', 'velocity', 'action'))
    assert np.all(np.abs(data['action']) <= sim.effort_limits + 1e-12)
    assert np.all(data['action'][..., ~sim.actuated] == 0.0)  # passive joints
    assert np.all(data['action'][..., sim.actuated].std(axis=1) > 0.01)  # inputs vary within a trajectory
    assert not np.allclose(data['position'][0], data['position'][1])  # and trajectories differ
    again = generate_rollouts(robot, 3, 40, 0.01, seed=7)
    for key in ('position', 'velocity', 'action'):
        np.testing.assert_array_equal(data[key], again[key])
    other = generate_rollouts(robot, 3, 40, 0.01, seed=8)
    assert not np.allclose(data['position'], other['position'])


def test_recorded_actions_reproduce_the_recorded_motion():
    """Replaying ``action`` from the first state in a fresh simulation gives the stored trajectory exactly."""
    data = generate_rollouts('cartpole', 2, 30, 0.02, seed=3)
    sim = Simulation('cartpole')
    sim.set_joint_state(data['position'][1, 0], data['velocity'][1, 0])
    for t in range(30):
        sim.set_effort(data['action'][1, t])
        sim.step(20)
        state = sim.joint_state()
        np.testing.assert_allclose(state.position, data['position'][1, t + 1], atol=1e-12)
        np.testing.assert_allclose(state.velocity, data['velocity'][1, t + 1], atol=1e-12)


def test_humanoid_rollouts_stay_standing_and_record_applied_effort():
    data = generate_rollouts('humanoid', 2, 25, 0.01, seed=1)
    sim = Simulation('humanoid')
    assert data['position'].shape == (2, 26, sim.n_joints) and data['action'].shape == (2, 25, sim.n_joints)
    assert data['base_position'].shape == (2, 26, 3) and data['base_orientation_xyzw'].shape == (2, 26, 4)
    assert np.all(data['base_position'][..., 2] > 0.5)
    assert np.all(np.abs(data['action']) <= sim.effort_limits + 1e-9)
    # the PD hold is part of the applied effort: the knees carry the body (flexed knee, gravity -> negative torque)
    knee = sim.joint_names.index('left_knee')
    assert np.mean(data['action'][..., knee]) < -2.0
    # the motion is excited: joints leave the nominal posture by more than the reset noise
    assert np.max(np.abs(data['position'] - sim.nominal_posture)) > 0.03
    again = generate_rollouts('humanoid', 2, 25, 0.01, seed=1)
    np.testing.assert_array_equal(data['action'], again['action'])


def test_humanoid_feedforward_actions_are_the_held_command_over_the_same_motion():
    """``action_source='feedforward'``: the same seed gives the same motion; the action is the command alone."""
    applied = generate_rollouts('humanoid', 2, 25, 0.01, seed=1)
    feedforward = generate_rollouts('humanoid', 2, 25, 0.01, seed=1, action_source='feedforward')
    assert feedforward['action_source'] == 'feedforward' and applied['action_source'] == 'applied'
    np.testing.assert_array_equal(applied['position'], feedforward['position'])
    np.testing.assert_array_equal(applied['velocity'], feedforward['velocity'])
    sim = Simulation('humanoid')
    # the random excitation: 10 % of each effort limit per unit amplitude, no gravity-carrying PD in it
    assert np.all(np.abs(feedforward['action']) <= 0.1 * sim.effort_limits * 4.5 + 1e-9)
    knee = sim.joint_names.index('left_knee')
    assert abs(np.mean(feedforward['action'][..., knee])) < 0.5 * abs(np.mean(applied['action'][..., knee]))
    with pytest.raises(ValueError, match='action_source'):
        generate_rollouts('humanoid', 1, 2, 0.01, seed=1, action_source='torque')


def test_rollout_images():
    data = generate_rollouts('pendulum', 2, 4, 0.05, seed=0, render_size=(32, 24))
    images = data['images']
    assert images.shape == (2, 5, 24, 32, 3) and images.dtype == np.uint8
    assert images.std() > 5.0
    assert np.any(images[0, 0] != images[0, -1])  # the pendulum moved between the first and last frame


@pytest.mark.parametrize('kwargs, reason', [
    ({'robot': 'r2d2'}, 'unknown robot'),
    ({'n_trajectories': 0}, 'n_trajectories'),
    ({'steps': -1}, 'steps'),
    ({'seed': -1}, 'seed'),
    ({'control_dt': 0.0105}, 'whole multiple'),
    ({'control_dt': float('nan')}, 'control_dt'),
])
def test_bad_arguments_rejected(kwargs, reason):
    arguments = {'robot': 'pendulum', 'n_trajectories': 1, 'steps': 2, 'control_dt': 0.01, 'seed': 0, **kwargs}
    with pytest.raises(ValueError, match=reason):
        generate_rollouts(**arguments)


def test_all_robots_known():
    assert ROBOTS == ('pendulum', 'cartpole', 'acrobot', 'humanoid')


def test_cartpole_data_cover_the_swingup_planners_rail_envelope():
    """The cart starts across the whole envelope the swing-up planner may use, so the model has seen it there.

    From starts within +-0.5 m the data reached 1.3 m only rarely, and a model trained on them could fail the swing-up
    with the cart out near the envelope (README, "Known weaknesses").
    """
    from hamwm_ros.closedloop.swingup import CONFIGS

    data = generate_rollouts('cartpole', 100, 5, 0.02, seed=5)
    rail = Simulation('cartpole').position_limits[0, 1]
    envelope = CONFIGS['cartpole'].position_envelope * rail
    start = data['position'][:, 0, 0]
    assert np.abs(start).max() <= envelope + 1e-12
    assert start.min() < -0.8 * envelope and start.max() > 0.8 * envelope
    # anywhere in between, not clustered: every fifth of the envelope holds a start
    counts, _ = np.histogram(start, bins=5, range=(-envelope, envelope))
    assert np.all(counts > 0)
