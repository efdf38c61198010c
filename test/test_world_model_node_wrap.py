"""world_model_node with the cart-pole swing-up file's section over real DDS (shipped cart-pole model).

This process plays the robot: it publishes a cart-pole joint state with the pole one turn past a plain angle and, in
one test, mpc_node's one-value cart command. The node (its own process, real onnxruntime, ``wrap_joints`` and
``command_joints`` from ``config/swingup_cartpole.yaml``) must forecast what the library forecasts with the pole
wrapped, in the robot's own angle, under the cart force commanded; naming a joint the model lacks fails configure with
the name in the reason.
"""

from __future__ import annotations

import math
from pathlib import Path
import threading
import time

from lifecycle_msgs.msg import State, Transition
import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from test_world_model_node import NodeProcess
from trajectory_msgs.msg import JointTrajectory

from hamwm_ros.monitor import predict_tick
from hamwm_ros.runtime import SessionConfig, WorldModelRuntime
from hamwm_ros.sim.cli import TopicProbe

MODEL = Path(__file__).resolve().parent.parent / 'models' / 'cartpole'
SWINGUP_FILE = Path(__file__).resolve().parent.parent / 'config' / 'swingup_cartpole.yaml'
POSITION = (0.1, 2.0 + 2.0 * math.pi)       # the pole 2 rad from hanging, one turn on
VELOCITY = (0.0, 0.0)


pytestmark = [pytest.mark.ros, pytest.mark.skipif(not (MODEL / 'metadata.json').is_file(),
                                                  reason='models/cartpole is missing: run `hamwm models`')]


class Robot:
    """Publishes the same cart-pole joint state, stamped now, at 50 Hz (and ``command``, when set, as mpc_node)."""

    def __init__(self, node) -> None:
        self._publisher = node.create_publisher(JointState, '/joint_states', 10)
        self._commands = node.create_publisher(Float64MultiArray, '/effort_controller/commands', 10)
        self.command: list[float] | None = None
        self._clock = node.get_clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = JointState(name=['cart_slider', 'pole_hinge'], position=list(POSITION), velocity=list(VELOCITY))
            msg.header.stamp = self._clock.now().to_msg()
            self._publisher.publish(msg)
            if self.command is not None:
                self._commands.publish(Float64MultiArray(data=list(self.command)))
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


@pytest.fixture(scope='module')
def robot_and_probe():
    probe = TopicProbe({'/hamwm/predicted_trajectory': JointTrajectory}, name='wm_wrap_probe')
    robot = Robot(probe.node)
    try:
        yield robot, probe
    finally:
        robot.stop()
        probe.close()


@pytest.fixture
def probe(robot_and_probe):
    robot, probe = robot_and_probe
    robot.command = None
    return probe


def _first_forecast(node: NodeProcess, probe: TopicProbe) -> np.ndarray:
    """Configure and activate ``node``, wait for a forecast made after that, close the node; (steps, joints)."""
    try:
        assert node.set(model_dir=str(MODEL))[0].successful
        assert node.transition(Transition.TRANSITION_CONFIGURE), node.log()
        assert node.transition(Transition.TRANSITION_ACTIVATE), node.log()
        time.sleep(0.5)     # a few commands and states in its history first
        mark = probe.seq('/hamwm/predicted_trajectory')
        msg = probe.wait_for('/hamwm/predicted_trajectory', timeout=20.0, after=mark)
        assert msg is not None, node.log()
        return np.array([p.positions for p in msg.points]), node.log()
    finally:
        node.close()


def test_node_forecasts_a_turned_pole_wrapped_in_the_robots_own_angle(probe):
    # wrap_joints from the cart-pole's swing-up file (what `ros2 launch ... sim.launch.py` gives the node)
    node = NodeProcess(probe, {'model_dir': str(MODEL), 'input_source': 'zero', 'horizon': 8, 'rate': 20.0},
                       params_file=SWINGUP_FILE)
    published, _ = _first_forecast(node, probe)
    runtime = WorldModelRuntime.load(MODEL, config=SessionConfig(providers=('cpu',)))
    state = np.array([*POSITION, *VELOCITY])
    u = np.zeros(runtime.metadata.action_dim)
    wrapped = predict_tick(runtime, state, u, 8, wrap_joints=(1,)).position
    raw = predict_tick(runtime, state, u, 8).position
    np.testing.assert_allclose(published, wrapped, atol=1e-5)
    assert published[0, 1] == pytest.approx(POSITION[1], abs=0.05)     # the robot's own angle, one turn on
    assert np.abs(raw - wrapped).max() > 0.1, 'raw and wrapped encodings agree: the test shows nothing'


def test_a_wrap_joint_the_model_lacks_fails_configure_with_its_name(probe):
    node = NodeProcess(probe, {'model_dir': str(MODEL), 'wrap_joints': '[pole_hinge, elbow]'})
    try:
        assert not node.transition(Transition.TRANSITION_CONFIGURE)
        assert node.state() == State.PRIMARY_STATE_UNCONFIGURED
        log = node.log()
        assert "wrap_joints names ['elbow']" in log, log
    finally:
        node.close()


def test_a_cart_only_command_is_the_models_cart_input_and_its_pole_input_is_zero(robot_and_probe):
    robot, probe = robot_and_probe
    robot.command = [6.0]                 # what mpc_node publishes for the cart-pole: the cart's effort only
    node = NodeProcess(probe, {'model_dir': str(MODEL), 'input_source': 'commands', 'horizon': 8, 'rate': 20.0},
                       params_file=SWINGUP_FILE)
    published, log = _first_forecast(node, probe)
    runtime = WorldModelRuntime.load(MODEL, config=SessionConfig(providers=('cpu',)))
    state = np.array([*POSITION, *VELOCITY])
    pushed = predict_tick(runtime, state, np.array([6.0, 0.0]), 8, wrap_joints=(1,)).position
    unforced = predict_tick(runtime, state, np.zeros(2), 8, wrap_joints=(1,)).position
    np.testing.assert_allclose(published, pushed, atol=1e-5)
    assert np.abs(pushed - unforced).max() > 1e-3, 'the force changes nothing: the test shows nothing'
    assert 'effort command' not in log, log       # nothing dropped


def test_command_joints_must_be_distinct_model_inputs():
    from hamwm_ros.nodes.world_model_node import _Loaded
    from hamwm_ros.runtime import MetadataError

    runtime = WorldModelRuntime.load(MODEL, config=SessionConfig(providers=('cpu',)))
    assert _Loaded(runtime, 'cartpole', [], [], ['cart_slider']).command_index.tolist() == [0]
    assert _Loaded(runtime, 'cartpole', [], [], ['pole_hinge', 'cart_slider']).command_index.tolist() == [1, 0]
    assert _Loaded(runtime, 'cartpole', [], []).command_index is None
    with pytest.raises(MetadataError, match=r"command_joints names \['elbow'\]"):
        _Loaded(runtime, 'cartpole', [], [], ['cart_slider', 'elbow'])
    with pytest.raises(MetadataError, match=r"command_joints repeats \['cart_slider'\]"):
        _Loaded(runtime, 'cartpole', [], [], ['cart_slider', 'cart_slider'])
