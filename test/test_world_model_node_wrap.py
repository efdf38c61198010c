"""world_model_node ``wrap_joints`` over real DDS, with the shipped cart-pole model and a pole turned over one turn.

This process plays the robot: it publishes a cart-pole joint state with the pole one turn past a plain angle. The node
(its own process, real onnxruntime, ``wrap_joints`` from ``config/swingup_cartpole.yaml``) must forecast what the
library forecasts with the pole wrapped, in the robot's own angle; naming a joint the model lacks fails configure with
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
    """Publishes the same cart-pole joint state, stamped now, at 50 Hz."""

    def __init__(self, node) -> None:
        self._publisher = node.create_publisher(JointState, '/joint_states', 10)
        self._clock = node.get_clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = JointState(name=['cart_slider', 'pole_hinge'], position=list(POSITION), velocity=list(VELOCITY))
            msg.header.stamp = self._clock.now().to_msg()
            self._publisher.publish(msg)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


@pytest.fixture(scope='module')
def probe():
    probe = TopicProbe({'/hamwm/predicted_trajectory': JointTrajectory}, name='wm_wrap_probe')
    robot = Robot(probe.node)
    try:
        yield probe
    finally:
        robot.stop()
        probe.close()


def test_node_forecasts_a_turned_pole_wrapped_in_the_robots_own_angle(probe):
    # wrap_joints from the cart-pole's swing-up file (what `ros2 launch ... sim.launch.py` gives the node)
    node = NodeProcess(probe, {'model_dir': str(MODEL), 'input_source': 'zero', 'horizon': 8, 'rate': 20.0},
                       params_file=SWINGUP_FILE)
    try:
        assert node.set(model_dir=str(MODEL))[0].successful
        assert node.transition(Transition.TRANSITION_CONFIGURE), node.log()
        assert node.transition(Transition.TRANSITION_ACTIVATE), node.log()
        mark = probe.seq('/hamwm/predicted_trajectory')
        msg = probe.wait_for('/hamwm/predicted_trajectory', timeout=20.0, after=mark)
        assert msg is not None, node.log()
    finally:
        node.close()
    published = np.array([p.positions for p in msg.points])
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
