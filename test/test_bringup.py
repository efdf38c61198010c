"""``hamwm bringup``: the node graph in one process starts from its robot's parameter file, runs, stops on SIGINT."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory
import yaml

from hamwm_ros.bringup import NODE_CLASSES, available_nodes, default_params_file, merged_parameters, plan_nodes
from hamwm_ros.sim.cli import TopicProbe

ROOT = Path(__file__).resolve().parent.parent


def test_plan_nodes_and_overrides():
    present = available_nodes()
    assert 'sim_node' in present and set(present) <= set(NODE_CLASSES)
    assert 'balance_node' not in plan_nodes('pendulum', True, None)
    assert 'sim_node' not in plan_nodes('humanoid', False, None)
    with pytest.raises(ValueError):
        plan_nodes('pendulum', True, ['no_such_node'])
    params = merged_parameters(ROOT / 'config' / 'hamwm.yaml', {'sim_node': {'robot': 'cartpole'},
                                                                 'new_node': {'x': 1.0}})
    assert params['sim_node']['ros__parameters']['robot'] == 'cartpole'
    assert params['sim_node']['ros__parameters']['physics_rate'] == 1000.0     # the file's other values stay
    assert params['new_node'] == {'ros__parameters': {'x': 1.0}}


def test_each_robot_gets_its_parameter_file_as_sim_launch_does():
    import ast

    assert default_params_file() == default_params_file('humanoid') == ROOT / 'config' / 'hamwm.yaml'
    assert default_params_file('acrobot') == ROOT / 'config' / 'hamwm.yaml'       # no swing-up file of its own
    swingup = {path.stem.removeprefix('swingup_') for path in (ROOT / 'config').glob('swingup_*.yaml')}
    assert swingup == {'pendulum', 'cartpole'}
    for robot in swingup:
        path = default_params_file(robot)
        assert path == ROOT / 'config' / f'swingup_{robot}.yaml'
        assert yaml.safe_load(path.read_text())['sim_node']['ros__parameters']['robot'] == robot
    # sim.launch.py's params_file default: evaluate its PythonExpression's pieces the way launch joins them
    tree = ast.parse((ROOT / 'launch' / 'sim.launch.py').read_text())
    robots = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], 'id', '') == 'SWINGUP_ROBOTS')
    assert set(robots) == swingup
    pieces = next(n.value.args[0] for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], 'id', '') == 'robot_params')
    share = str(ROOT)
    for robot in ('pendulum', 'cartpole', 'acrobot', 'humanoid'):
        names = {'os': os, 'share': share, 'robot': robot, 'SWINGUP_ROBOTS': robots,
                 'default_params': os.path.join(share, 'config', 'hamwm.yaml')}
        expression = ''.join(str(eval(compile(ast.Expression(p), 'launch', 'eval'), names))  # noqa: S307
                             for p in pieces.elts)
        assert Path(eval(expression)) == default_params_file(robot), (robot, expression)  # noqa: S307


def test_swingup_files_start_the_sim_once_its_controller_can_hear_and_command_it():
    """Each swing-up file's sim_node waits until mpc_node can hear and command it, then settles.

    That is: mpc_node's joint-state and /clock subscriptions and every publisher its efforts can come from (its own
    and its relay's). Without these waits the first 0.2-2 s of an episode were lost now and then (sessions 23-26).
    """
    for robot in ('pendulum', 'cartpole'):
        sections = yaml.safe_load(default_params_file(robot).read_text())
        sim = sections['sim_node']['ros__parameters']
        mpc = sections['mpc_node']['ros__parameters']
        # mpc_node's declared defaults where the file is silent: command_relay true, command_interface effort
        relay = mpc.get('command_relay', True) and mpc.get('command_interface', 'effort') in ('effort', 'both')
        assert sim.get('wait_for_subscribers', 0) >= 1, robot
        if sim.get('publish_clock', True):
            assert sim.get('wait_for_clock_subscribers', 0) >= 1, robot
        assert sim.get('wait_for_command_publishers', 0) == (2 if relay else 1), robot
        assert sim.get('subscriber_settle_time', 0.0) > 0.0, robot


@pytest.mark.ros
@contextlib.contextmanager
def _bringup_process(*args: str) -> Iterator[subprocess.Popen]:
    """``hamwm bringup ARGS`` running (output piped); killed on the way out if the test did not stop it."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, '-m', 'hamwm_ros.cli', 'bringup', *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _interrupt(proc: subprocess.Popen, again: bool = False) -> str:
    """SIGINT, as Ctrl-C (``again``: then every 20 ms until it has exited, as an impatient user); the output."""
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60.0
    while again and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)[0]


def test_bringup_runs_the_graph_and_stops_on_sigint():
    nodes = [n for n in ('sim_node', 'world_model_node', 'mpc_node') if n in available_nodes()]
    model = ROOT / 'models' / 'pendulum'
    args = ['--robot', 'pendulum', '--nodes', *nodes]
    if not (model / 'metadata.json').is_file():
        nodes = ['sim_node']
        args = ['--robot', 'pendulum', '--nodes', 'sim_node']
    with _bringup_process(*args) as proc:
        # the pendulum's file (its swing-up) sets no command interface: mpc_node's default, effort
        interface = yaml.safe_load(default_params_file('pendulum').read_text())['mpc_node']['ros__parameters'].get(
            'command_interface', 'effort')
        command_topic, command_type = (('/effort_controller/commands', Float64MultiArray) if interface == 'effort'
                                       else ('/joint_trajectory_controller/joint_trajectory', JointTrajectory))
        topics = {'/joint_states': JointState, command_topic: command_type}
        with TopicProbe(topics, name='bringup_probe') as probe:
            msg = probe.wait_for('/joint_states', timeout=60.0)
            assert msg is not None, 'no /joint_states from the bringup graph'
            assert list(msg.name) == ['hinge']
            first = probe.seq('/joint_states')
            assert probe.wait_for('/joint_states', after=first + 20, timeout=30.0) is not None
            if 'mpc_node' in nodes:  # the loop is closed: mpc_node commands the simulated pendulum
                command = probe.wait_for(command_topic, timeout=60.0)
                assert command is not None
                assert len(command.data) == 1 if interface == 'effort' else list(command.joint_names) == ['hinge']
        time.sleep(0.5)
        output = _interrupt(proc, again=True)     # the nodes still deactivate and stop cleanly
    assert proc.returncode == 0, output[-4000:]
    for name in nodes:
        assert f'  {name}' in output, output[-4000:]
    if 'mpc_node' in nodes:
        assert 'mpc_node          active' in output, output[-4000:]
    assert 'bringup: stopped' in output and 'Traceback' not in output, output[-4000:]


def test_the_acrobot_graph_commands_its_actuated_joint_only():
    """sim.launch.py's robot:=acrobot (config/hamwm.yaml): mpc_node's default joints leave the passive shoulder out."""
    from diagnostic_msgs.msg import DiagnosticArray

    from hamwm_ros.sim.cli import diagnostics_values

    if not (ROOT / 'models' / 'acrobot' / 'metadata.json').is_file():
        pytest.skip('models/acrobot is not built')
    interface = yaml.safe_load(default_params_file('acrobot').read_text())['mpc_node']['ros__parameters'][
        'command_interface']
    assert interface == 'trajectory'    # the file's humanoid settings: PD-residual plans as trajectories
    with _bringup_process('--robot', 'acrobot', '--nodes', 'sim_node', 'world_model_node', 'mpc_node') as proc:
        topics = {'/joint_trajectory_controller/joint_trajectory': JointTrajectory, '/diagnostics': DiagnosticArray}
        with TopicProbe(topics, name='acrobot_probe') as probe:
            command = probe.wait_for('/joint_trajectory_controller/joint_trajectory', timeout=60.0)
            assert command is not None, 'mpc_node sent no trajectory'
            # sim_node drops, and counts, a trajectory naming a joint it does not command: none in its next 3 reports

            def dropped() -> list[str]:
                reports = (diagnostics_values(m) for m in probe.recent('/diagnostics'))
                return [r['dropped_inputs'] for r in reports if 'dropped_inputs' in r]

            before, deadline = len(dropped()), time.monotonic() + 30.0
            while len(dropped()) < before + 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            commands = probe.recent('/joint_trajectory_controller/joint_trajectory')
            counts = dropped()
        assert len(commands) > 50 and all(list(c.joint_names) == ['elbow'] for c in commands)
        assert len(counts) >= before + 3 and set(counts) == {'0'}, counts
        output = _interrupt(proc)
    assert proc.returncode == 0 and 'dropped trajectory' not in output, output[-4000:]


def _bringup(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, '-m', 'hamwm_ros.cli', 'bringup', *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_an_unknown_robot_is_refused_before_anything_starts():
    result = _bringup('--robot', 'no_such_robot', '--duration', '1')
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot simulate robot 'no_such_robot'" in result.stderr
    assert 'running' not in result.stdout


@pytest.mark.ros
@pytest.mark.parametrize('activate', [True, False], ids=['activated', 'no-activate'])
def test_bringup_owns_the_lifecycle_even_where_the_file_says_autostart(activate):
    """Bring-up drives world_model_node's lifecycle although hamwm.yaml sets its autostart (for ros2 launch).

    The node's own autostart must neither race bring-up's transitions (an error about a failed configure on an
    active node, seen before) nor override --no-activate.
    """
    sections = yaml.safe_load((ROOT / 'config' / 'hamwm.yaml').read_text())
    assert sections['world_model_node']['ros__parameters']['autostart'] is True
    if not (ROOT / 'models' / 'humanoid' / 'metadata.json').is_file():
        pytest.skip('models/humanoid is not built')
    result = _bringup('--no-sim', '--nodes', 'world_model_node', '--duration', '3',
                      *([] if activate else ['--no-activate']))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    state = 'active' if activate else 'unconfigured'
    assert f'  world_model_node  {state}' in output, output[-3000:]
    assert 'ERROR' not in output and 'autostart' not in output, output[-3000:]
    assert ('model ' in output and 'latent 48' in output) == activate, output[-3000:]   # configure logs the model
