"""The swing-up schedule shared by the in-process demo controller and mpc_node (``hamwm_ros.mpc.swingup``).

No ROS here: the schedule on the shipped learned models through the real onnxruntime, its settings' validation, and
the swing-up parameter files kept in step with the in-process configs they mirror.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from hamwm_ros.closedloop.swingup import CONFIGS, SwingUpController
from hamwm_ros.mpc.lqr import discrete_lqr, linearise
from hamwm_ros.mpc.swingup import SwingUpSchedule, SwingUpTask, pole_inertia, terminal_value_matrix, wrap_angle
from hamwm_ros.runtime import SessionConfig, WorldModelRuntime
from hamwm_ros.safety import JointLimits
from hamwm_ros.sim import robot_urdf_path

ROOT = Path(__file__).resolve().parent.parent


def _runtime(robot: str) -> WorldModelRuntime:
    path = ROOT / 'models' / robot
    if not (path / 'metadata.json').is_file():
        pytest.skip(f'{path} is missing: run `hamwm models` (make models)')
    return WorldModelRuntime.load(path, config=SessionConfig(providers=('cpu',)))


def _schedule(robot: str, terminal_value: np.ndarray | None = None, **task_changes
              ) -> tuple[SwingUpSchedule, WorldModelRuntime]:
    runtime = _runtime(robot)
    config = CONFIGS[robot]
    limits = JointLimits.from_urdf(robot_urdf_path(robot), runtime.metadata.joint_names)
    pole = pole_inertia(robot_urdf_path(robot), limits.names[config.angle_joint]) \
        if config.energy_source == 'pole' else None
    schedule = SwingUpSchedule(config.task().replace(**task_changes), runtime, limits.position, limits.velocity,
                               energy_weight=2.0, tracking_weight=3.0, limits_weight=1.0, pole=pole,
                               terminal_value=terminal_value)
    return schedule, runtime


def test_energy_shaping_far_from_upright_tracking_near_it():
    schedule, _ = _schedule('pendulum')
    task = schedule.task
    encoded = schedule.prepare(np.array([0.1]))                       # hanging: pump energy, weak tracking
    assert schedule.near is False
    assert schedule.energy.weight == 2.0 and schedule.tracking.weight == pytest.approx(3.0 * task.far_tracking_fraction)
    assert encoded == pytest.approx([0.1])
    assert schedule.plan_update == task.far_update_perturbation == 'sampled'   # pumping: the plan may sit on the bound
    schedule.prepare(np.array([math.pi - 0.5 * task.energy_gate]))   # inside the gate: tracking alone
    assert schedule.near is True and schedule.energy.weight == 0.0 and schedule.tracking.weight == 3.0
    assert schedule.plan_update is None                              # balancing: the planner's own update
    # run-time weights (mpc_node's critics.*.weight) are scheduled from the next plan on
    schedule.energy_weight, schedule.tracking_weight = 5.0, 7.0
    schedule.prepare(np.array([0.0]))
    assert schedule.energy.weight == 5.0 and schedule.tracking.weight == pytest.approx(7.0 * task.far_tracking_fraction)


def test_one_model_energy_target_per_side_of_upright():
    schedule, runtime = _schedule('pendulum', energy_margin=0.1)
    below, above = schedule.energy_targets
    # the targets are the model's own Hamiltonian of upright at rest, reached through -pi and through +pi
    for angle, target in ((-math.pi, below), (math.pi, above)):
        z = runtime.encode(np.array([angle]), np.zeros(1))
        energy = runtime.rollout(z, np.zeros((1, 1, 1), np.float32)).energy[0, 0]
        assert target == pytest.approx(float(energy), rel=1e-5)
    assert schedule.energy.scale > 0
    schedule.prepare(np.array([0.5]))
    assert schedule.energy.target == pytest.approx(above - 0.1 * schedule.energy.scale)
    schedule.prepare(np.array([-0.5]))
    assert schedule.energy.target == pytest.approx(below - 0.1 * schedule.energy.scale)


def test_wrapped_encoding_and_upright_goal_on_the_circle():
    schedule, _ = _schedule('pendulum')
    assert float(wrap_angle(3 * math.pi)) == pytest.approx(-math.pi)
    encoded = schedule.prepare(np.array([2 * math.pi + 0.3]))       # turned over once
    assert encoded == pytest.approx([0.3])
    assert schedule.prepare(np.array([0.3]))[0] == pytest.approx(0.3)
    schedule.update_task(schedule.task.replace(wrap_encode=False))
    assert schedule.prepare(np.array([2 * math.pi + 0.3]))[0] == pytest.approx(2 * math.pi + 0.3)
    goal = schedule.goal_observation(np.array([0.0]))
    assert goal[0] == pytest.approx(math.pi) and goal[1] == 0.0
    assert schedule.tracking.wrap.tolist() == [0]
    with pytest.raises(ValueError, match='fixed'):
        schedule.update_task(schedule.task.replace(energy_source='pole'))


def test_cartpole_pole_energy_and_rail_envelope():
    schedule, _ = _schedule('cartpole')
    mass, lever, inertia = pole_inertia(robot_urdf_path('cartpole'), 'pole_hinge')
    upright = 2 * mass * 9.81 * lever
    assert schedule.energy_targets == pytest.approx((upright, upright))
    observations = np.zeros((1, 2, 4), np.float32)
    observations[0, 1, 1] = math.pi                                  # step 1: pole upright at rest
    observations[0, 0, 3] = 2.0                                      # step 0: hanging, spinning at 2 rad/s
    energy = schedule.energy.energy_fn(observations)
    assert energy[0, 1] == pytest.approx(upright) and energy[0, 0] == pytest.approx(0.5 * inertia * 4.0)
    schedule.prepare(np.array([0.0, 0.0]))
    assert schedule.energy.target == pytest.approx(upright * (1 + 0.15))    # 15 % above upright
    # the rail: cart only (the pole's +-4 pi stops are left out), shrunk to 60 % of +-2 m; velocities at 50 %
    limits = schedule.limits
    assert limits is not None and limits.position_index.tolist() == [0]
    assert limits.velocity_index.tolist() == [2, 3]
    low, high = limits._pos[0], limits._pos[1]
    assert (float(low[0]), float(high[0])) == pytest.approx((-1.2, 1.2))
    assert limits._vel[0] == pytest.approx([2.5, 15.0])
    pendulum, _ = _schedule('pendulum')
    assert pendulum.limits is None and len(pendulum.critics) == 2


def test_terminal_value_is_the_lqr_cost_to_go_in_tracking_units():
    """P = the LQR value of the upright cart-pole with the planner's own stage costs, averaged over the horizon."""
    task = CONFIGS['cartpole'].task()
    names = ('cart_slider', 'pole_hinge')
    value = terminal_value_matrix(task, robot_urdf_path('cartpole'), names, [0], 0.02, 32, effort_ratio=0.01,
                                  effort_scale=12.0, goal=np.array([0.3, 0.0]))
    a, b = linearise(robot_urdf_path('cartpole'), names, [0.3, math.pi], [0], 0.02)
    expected, _ = discrete_lqr(a, b, np.diag([0.2, 1.0, 0.2, 0.05]), np.array([[0.01 / 144.0]]))
    assert value == pytest.approx(expected / 32, rel=1e-9)
    # the cost-to-go of a balanced pole with the cart off centre exceeds the tracking cost of its last step: the
    # cart must first move the wrong way to bring it back
    offset = np.array([0.5, 0.0, 0.0, 0.0])
    assert offset @ value @ offset > 0.2 * 0.5 ** 2 / 32
    with pytest.raises(ValueError, match='effort_ratio'):
        terminal_value_matrix(task, robot_urdf_path('cartpole'), names, [0], 0.02, 32, 0.0, 12.0)
    with pytest.raises(ValueError, match='horizon'):
        terminal_value_matrix(task, robot_urdf_path('cartpole'), names, [0], 0.02, 0, 0.01, 12.0)


def test_terminal_value_weighted_near_upright_only():
    value = np.diag([1.0, 2.0, 0.5, 0.5])
    schedule, _ = _schedule('cartpole', terminal_value=value, terminal_value_weight=2.0)
    terminal = schedule.terminal
    assert terminal is not None and terminal in schedule.critics and terminal.wrap.tolist() == [1]
    assert terminal.goal.tolist() == pytest.approx([0.0, math.pi, 0.0, 0.0])
    schedule.prepare(np.array([0.0, 0.1]))                              # hanging: energy shaping, no value
    assert terminal.weight == 0.0
    schedule.prepare(np.array([0.0, math.pi - 0.2]))                    # near upright: 2 x tracking weight 3
    assert terminal.weight == pytest.approx(6.0)
    schedule.update_task(schedule.task.replace(terminal_value_weight=0.5))   # live
    schedule.prepare(np.array([0.0, -math.pi + 0.2]))
    assert terminal.weight == pytest.approx(1.5)
    plain, _ = _schedule('cartpole')
    assert plain.terminal is None and len(plain.critics) == 3


@pytest.mark.parametrize('changes, reason', [
    ({'energy_gate': -0.1}, 'energy_gate'),
    ({'far_tracking_fraction': 1.5}, 'far_tracking_fraction'),
    ({'energy_source': 'kinetic'}, 'energy_source'),
    ({'position_envelope': 0.0}, 'position_envelope'),
    ({'velocity_weights': (-1.0,)}, 'velocity_weights'),
    ({'energy_margin': 2.0, 'velocity_envelope': 1.5}, 'velocity_envelope'),   # every reason at once
    ({'terminal_value_weight': -1.0}, 'terminal_value_weight'),
    ({'far_update_perturbation': 'clipped'}, 'far_update_perturbation'),
])
def test_task_settings_are_validated(changes, reason):
    with pytest.raises(ValueError, match=reason):
        SwingUpTask(angle_joint=0).replace(**changes)


def test_schedule_refuses_inconsistent_sizes():
    runtime = _runtime('pendulum')
    limits = JointLimits.from_urdf(robot_urdf_path('pendulum'))
    with pytest.raises(ValueError, match='angle_joint'):
        SwingUpSchedule(SwingUpTask(angle_joint=1), runtime, limits.position, limits.velocity)
    with pytest.raises(ValueError, match='position_weights'):
        SwingUpSchedule(SwingUpTask(angle_joint=0, position_weights=(1.0, 2.0, 3.0)), runtime, limits.position,
                        limits.velocity)
    with pytest.raises(ValueError, match='pole'):
        SwingUpSchedule(SwingUpTask(angle_joint=0, energy_source='pole'), runtime, limits.position, limits.velocity)


def test_in_process_controller_plans_with_the_shared_schedule():
    path = ROOT / 'models' / 'pendulum'
    if not (path / 'metadata.json').is_file():
        pytest.skip('shipped pendulum model missing')
    controller = SwingUpController(CONFIGS['pendulum'], path)
    critics = controller.optimizer.critics
    assert critics['energy'] is controller.schedule.energy and critics['tracking'] is controller.schedule.tracking
    controller.reset(0)
    tick = controller.step(np.array([0.05]), np.zeros(1))
    assert tick.valid and controller.schedule.near is False and controller.energy.weight == 1.0
    controller.step(np.array([math.pi + 0.1]), np.zeros(1))
    assert controller.schedule.near is True and controller.energy.weight == 0.0


def test_pole_inertia_reads_urdf_text_too():
    path = robot_urdf_path('cartpole')
    assert pole_inertia(path.read_text(), 'pole_hinge') == pytest.approx(pole_inertia(path, 'pole_hinge'))
    with pytest.raises(ValueError, match='no joint'):
        pole_inertia(path, 'elbow')


@pytest.mark.parametrize('robot', ['pendulum', 'cartpole'])
def test_swingup_parameter_files_match_the_in_process_configs(robot):
    """config/swingup_<robot>.yaml sets mpc_node to the in-process episode's settings, sim_node to its start.

    (The fallback gains may differ: in-process episodes never fall back; over ROS a late plan does.)
    """
    sections = yaml.safe_load((ROOT / 'config' / f'swingup_{robot}.yaml').read_text())
    mpc, sim = sections['mpc_node']['ros__parameters'], sections['sim_node']['ros__parameters']
    config = CONFIGS[robot]
    expected = {
        'task': 'swingup', 'mppi.num_samples': config.num_samples, 'mppi.horizon': config.horizon,
        'mppi.iterations': config.iterations, 'mppi.temperature': config.temperature,
        'mppi.normalise_costs': config.normalise_costs, 'mppi.noise_std': config.noise_std,
        'mppi.noise_correlation': config.noise_correlation, 'mppi.seed': config.seed,
        'mppi.update_perturbation': config.update_perturbation,
        'critics.tracking.weight': config.tracking_weight, 'critics.energy.weight': config.energy_weight,
        'critics.effort.weight': config.effort_weight, 'critics.smoothness.weight': config.smoothness_weight,
        'critics.limits.weight': config.limits_weight, 'swingup.effort_fraction': config.effort_fraction,
        'planner_rate': 1.0 / 0.02,    # one plan per model step, as the in-process loop
        'plan_playback': 'hold',       # each step's effort held over the step, as in-process and in training
    }
    expected.update({f'swingup.{name}': getattr(config, name) for name in SwingUpTask.field_names()
                     if name != 'angle_joint'})
    for name in ('swingup.position_weights', 'swingup.velocity_weights'):
        expected[name] = list(expected[name])
    assert {name: mpc.get(name) for name in expected} == expected
    from hamwm_ros.sim import parse_urdf_joints

    assert mpc['swingup.angle_joint'] == parse_urdf_joints(robot_urdf_path(robot)).names[config.angle_joint]
    assert sim['robot'] == robot and sim['initial_noise'] == config.initial_noise and sim['initial_seed'] >= 0
    # world_model_node (sim.launch.py starts it too) encodes the pole wrapped, as mpc_node does, and reads mpc_node's
    # commands in their order where they do not carry every model input (the cart-pole's passive pole)
    world_model = sections['world_model_node']['ros__parameters']
    assert world_model['wrap_joints'] == [mpc['swingup.angle_joint']]
    if 'joints' in mpc:
        assert world_model['command_joints'] == mpc['joints']
