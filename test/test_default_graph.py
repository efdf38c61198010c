"""The graph `ros2 launch hamwm_ros sim.launch.py` starts by default keeps the simulated humanoid standing.

sim_node, balance_node, world_model_node and mpc_node each in their own process (as the launch file starts them),
all from ``config/hamwm.yaml`` with the launch file's overrides (robot, model_dir, use_sim_time, autostart), the
shipped humanoid model through the real onnxruntime, MuJoCo in sim_node, over real DDS. On a 2-core machine this
graph does not keep real time; what must hold regardless: the robot stands (mpc_node's PD-residual plans and its
fallback and safe hold all leave the stiff PD loop to the driver, over the trajectory interface), mpc_node plans at
times, no effort command is published, and a 10 N s push at 3 s of simulated time (/sim/push) moves the robot without
toppling it. Each node's declared parameters, listed over its parameter service, are exactly those of its section of
the file (every parameter is in ``config/hamwm.yaml``, set or, where its default depends on the robot, named in a
comment; and the file sets none a node ignores). Before session 10
the same graph toppled the robot within a second (the PD hold through DDS with the robot's gains is unstable at 2 ms
of delay, and a safe hold commanded zero effort).
"""

from __future__ import annotations

from pathlib import Path
import subprocess
import time

import numpy as np
from param_files import commented_parameters
import pytest
from rcl_interfaces.srv import ListParameters
from ros_probe import start_node_processes
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory
import yaml

from hamwm_ros.sim.cli import TopicProbe, interrupt_process

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / 'config' / 'hamwm.yaml'
STANDING = 0.5              # m, pelvis height; the robot stands at 0.59, a fallen one lies below 0.3
# rclpy declares these on every node by itself; the file need not set them
RCLPY_DECLARED = {'use_sim_time', 'start_type_description_service'}
PUSH_N = 50.0               # N forward; the PD hold alone survives ~27 N s in-process (the demo's push stage)


def test_the_default_humanoid_graph_stands_and_commands_through_the_driver():
    from geometry_msgs.msg import WrenchStamped
    from nav_msgs.msg import Odometry

    model = ROOT / 'models' / 'humanoid'
    if not (model / 'metadata.json').is_file():
        pytest.skip(f'{model} is missing: run `hamwm models`')
    topics = {'/odom': Odometry, '/hamwm/mpc/mode': String, '/effort_controller/commands': Float64MultiArray,
              '/joint_trajectory_controller/joint_trajectory': JointTrajectory}
    nodes = {'sim_node': {'robot': 'humanoid'},
             'balance_node': {'use_sim_time': True},
             'world_model_node': {'model_dir': str(model), 'autostart': True, 'use_sim_time': True},
             'mpc_node': {'model_dir': str(model), 'autostart': True, 'use_sim_time': True}}
    processes: dict[str, subprocess.Popen] = {}
    with TopicProbe(topics, name='default_graph_probe', keep=20000) as probe:
        try:
            processes, logs = start_node_processes(nodes, PARAMS, ROOT, 'default_graph')
            first = probe.wait_for('/odom', timeout=90.0)
            assert first is not None, logs['sim_node'].read_text()[-3000:]
            push = WrenchStamped()
            push.header.frame_id = 'odom'
            push.wrench.force.x = PUSH_N            # for sim_node's push_duration (hamwm.yaml: 0.2 s): 10 N s
            pusher = probe.node.create_publisher(WrenchStamped, '/sim/push', 10)
            pushed_at = None
            deadline = time.monotonic() + 120.0
            while probe.latest('/odom').header.stamp.sec < 8:    # 8 s of simulated time
                assert all(p.poll() is None for p in processes.values()), {
                    n: logs[n].read_text()[-1500:] for n, p in processes.items() if p.poll() is not None}
                assert time.monotonic() < deadline, 'simulated time stalled'
                if pushed_at is None and probe.latest('/odom').header.stamp.sec >= 3:
                    pusher.publish(push)
                    pushed_at = probe.latest('/odom').header.stamp.sec
                time.sleep(0.2)
            declared = {name: set(probe.call(ListParameters, f'/{name}/list_parameters',
                                             ListParameters.Request()).result.names) for name in nodes}
        finally:
            codes = {name: interrupt_process(p) for name, p in reversed(processes.items())}
        odom = probe.recent('/odom')
        heights = np.array([m.pose.pose.position.z for m in odom])
        forward = np.array([m.pose.pose.position.x for m in odom])
        modes = [m.data for m in probe.recent('/hamwm/mpc/mode')]
        efforts = probe.seq('/effort_controller/commands')
        targets = probe.recent('/joint_trajectory_controller/joint_trajectory')
    mpc_log = logs['mpc_node'].read_text()
    assert all(code == 0 for code in codes.values()), (codes, mpc_log[-3000:])
    assert heights.size > 1000 and heights.min() > STANDING, (heights.min(), mpc_log[-3000:])
    assert pushed_at is not None and forward.max() - forward[0] > 0.005, 'the push did not move the robot'
    assert efforts == 0, 'the trajectory interface must leave the effort topic alone'
    assert any(m.startswith('PLANNING') for m in modes) or 'PLANNING: following' in mpc_log, mpc_log[-3000:]
    assert targets and all(len(t.points) <= 1 for t in targets), 'expected one-point PD targets and holds'
    sections, commented = yaml.safe_load(PARAMS.read_text()), commented_parameters(PARAMS)
    for name, names in declared.items():
        in_file = set(sections[name]['ros__parameters'])
        assert not in_file & commented.get(name, set()), 'a parameter both set and commented'
        in_file |= commented.get(name, set())
        assert not in_file - names, f'{PARAMS.name} sets parameters {name} does not declare: {in_file - names}'
        assert not names - in_file - RCLPY_DECLARED, f'{name} declares parameters missing from {PARAMS.name}: ' \
                                                     f'{names - in_file - RCLPY_DECLARED}'
    for name in logs:
        logs[name].unlink(missing_ok=True)
