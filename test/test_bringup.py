"""``hamwm bringup``: the node graph in one process starts from config/hamwm.yaml, runs, and stops cleanly on SIGINT."""

from __future__ import annotations

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

from hamwm_ros.bringup import NODE_CLASSES, available_nodes, merged_parameters, plan_nodes
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


@pytest.mark.ros
def test_bringup_runs_the_graph_and_stops_on_sigint():
    nodes = [n for n in ('sim_node', 'world_model_node', 'mpc_node') if n in available_nodes()]
    model = ROOT / 'models' / 'pendulum'
    args = ['--robot', 'pendulum', '--nodes', *nodes]
    if not (model / 'metadata.json').is_file():
        nodes = ['sim_node']
        args = ['--robot', 'pendulum', '--nodes', 'sim_node']
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, '-m', 'hamwm_ros.cli', 'bringup', *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The file's mpc_node section says where commands go (hamwm.yaml: the trajectory interface, for the humanoid)
        interface = yaml.safe_load((ROOT / 'config' / 'hamwm.yaml').read_text())['mpc_node']['ros__parameters'][
            'command_interface']
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
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output[-4000:]
    for name in nodes:
        assert f'  {name}' in output, output[-4000:]
    if 'mpc_node' in nodes:
        assert 'mpc_node          active' in output, output[-4000:]
    assert 'bringup: stopped' in output and 'Traceback' not in output, output[-4000:]
