"""balance_node in its own process, driven over real DDS by a probe node in the test process.

The node's outputs are checked against the library computing the same inputs in-process (so the node's message
handling is what is under test), plus input validation, parameter validation, start-up failures and SIGINT.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped, PolygonStamped
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParametersAtomically
import rclpy
from rclpy.executors import SingleThreadedExecutor
from ros_probe import sweep_parameters
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64, String
from visualization_msgs.msg import MarkerArray

from hamwm_ros.sim import robot_urdf_path
from hamwm_ros.wholebody.estimator import BalanceEstimator, BaseMeasurement
from hamwm_ros.wholebody.model import WholeBodyModel

pytestmark = pytest.mark.ros
SOLES = ('left_sole', 'right_sole')
TIMEOUT = 30.0  # generous: only bounds a hang, never asserts speed


def start_node(*params: str, name: str | None = None) -> subprocess.Popen:
    args = [sys.executable, '-m', 'hamwm_ros.nodes.balance_node', '--ros-args']
    if name is not None:
        args += ['-r', f'__node:={name}']
    for p in params:
        args += ['-p', p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


class Probe:
    """Publishers for the node's inputs and a record of every output message."""

    def __init__(self) -> None:
        self.node = rclpy.create_node('balance_probe')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}
        for topic, kind in (('/hamwm/com', PointStamped), ('/hamwm/zmp', PointStamped),
                            ('/hamwm/capture_point', PointStamped), ('/hamwm/support_polygon', PolygonStamped),
                            ('/hamwm/balance_margin', Float64), ('/hamwm/markers', MarkerArray),
                            ('/hamwm/base_source', String)):
            self.received[topic] = []
            qos = rclpy.qos.QoSProfile(depth=100, durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL) \
                if topic == '/hamwm/base_source' else 100
            self.node.create_subscription(kind, topic, lambda msg, t=topic: self.received[t].append(msg), qos)
        self.joint_pub = self.node.create_publisher(JointState, '/joint_states', 10)
        self.imu_pub = self.node.create_publisher(Imu, '/imu', 10)
        self.odom_pub = self.node.create_publisher(Odometry, '/odom', 10)

    def wait(self, condition, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f'timed out waiting for {what}')
            self.executor.spin_once(timeout_sec=0.05)

    def stamped(self, topic: str, sec: int) -> list:
        return [m for m in self.received[topic] if m.header.stamp.sec == sec]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope='module')
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture(scope='module')
def balance(ros):
    process = start_node('marker_rate:=1000.0', 'accel_time_constant:=0.0')
    probe = Probe()
    try:
        probe.wait(lambda: probe.joint_pub.get_subscription_count() > 0 and process.poll() is None
                   or process.poll() is not None, 'balance_node to subscribe to /joint_states')
        assert process.poll() is None, process.communicate()
        probe.wait(lambda: probe.imu_pub.get_subscription_count() > 0 and probe.odom_pub.get_subscription_count() > 0,
                   'balance_node to subscribe to /imu and /odom')
        yield process, probe
    finally:
        probe.close()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=TIMEOUT)


@pytest.fixture(scope='module')
def wb() -> WholeBodyModel:
    return WholeBodyModel(robot_urdf_path('humanoid'), sole_frames=SOLES)


def joint_state(names, positions, velocities, sec: int) -> JointState:
    msg = JointState(name=list(names), position=[float(x) for x in positions],
                     velocity=[float(x) for x in velocities])
    msg.header.stamp = Time(sec=sec, nanosec=0)
    return msg


def posture(wb: WholeBodyModel) -> np.ndarray:
    q = np.zeros(wb.n_joints)
    for side in ('left', 'right'):
        q[wb.joint_names.index(f'{side}_hip_pitch')] = -0.25
        q[wb.joint_names.index(f'{side}_knee')] = 0.5
        q[wb.joint_names.index(f'{side}_ankle_pitch')] = -0.25
    q[wb.joint_names.index('left_shoulder_pitch')] = 0.4
    return q


def send_until_output(probe: Probe, msg: JointState, sec: int) -> None:
    # DDS matching is not symmetric: the probe may see the node's subscription before the node has matched the probe,
    # so a single publish can be lost. Re-publish (the node drops repeated stamps) until the outputs arrive.
    last_publish = -1.0

    def published_and_answered() -> bool:
        nonlocal last_publish
        if time.monotonic() - last_publish > 0.5:
            probe.joint_pub.publish(msg)
            last_publish = time.monotonic()
        return bool(probe.stamped('/hamwm/com', sec) and probe.stamped('/hamwm/support_polygon', sec))

    probe.wait(published_and_answered,
               f'outputs stamped {sec}')


def test_standing_robot_balance_matches_the_library(balance, wb):
    _, probe = balance
    q = posture(wb)
    rng = np.random.default_rng(0)
    order = rng.permutation(wb.n_joints)
    names = [wb.joint_names[i] for i in order] + ['gripper_finger']  # any order, an extra joint
    reference = BalanceEstimator(wb)
    for sec in (100, 101):  # zero velocity twice: finite-difference accelerations are zero
        send_until_output(probe, joint_state(names, list(q[order]) + [0.3], np.zeros(wb.n_joints + 1), sec), sec)
        expected = reference.update(float(sec), q, np.zeros(wb.n_joints))
    com = probe.stamped('/hamwm/com', 101)[0]
    zmp = probe.stamped('/hamwm/zmp', 101)[0]
    polygon = probe.stamped('/hamwm/support_polygon', 101)[0]
    np.testing.assert_allclose([com.point.x, com.point.y, com.point.z], expected.com, atol=1e-9)
    # static: the ZMP is the CoM's ground projection
    np.testing.assert_allclose([zmp.point.x, zmp.point.y], [com.point.x, com.point.y], atol=1e-9)
    assert zmp.header.frame_id == 'odom'
    assert len(polygon.polygon.points) == 4  # double support: one rectangle hull
    np.testing.assert_allclose([[p.x, p.y] for p in polygon.polygon.points], expected.support_polygon, atol=1e-6)
    # std_msgs/Float64 has no stamp: wait for the value the library computed for these inputs
    assert expected.margin > 0.0
    probe.wait(lambda: any(abs(m.data - expected.margin) < 1e-9 for m in probe.received['/hamwm/balance_margin']),
               f'balance margin {expected.margin}')
    probe.wait(lambda: probe.received['/hamwm/base_source'], 'base source')
    assert probe.received['/hamwm/base_source'][-1].data == 'stance:left_sole'
    probe.wait(lambda: probe.received['/hamwm/markers'], 'markers')
    markers = probe.received['/hamwm/markers'][-1].markers
    assert [m.id for m in markers] == [0, 1, 2, 3]
    assert len(markers[3].points) == 5  # closed support polygon outline


def test_bad_input_is_dropped_and_the_node_carries_on(balance, wb):
    process, probe = balance
    q = posture(wb)
    names = list(wb.joint_names)
    zeros = np.zeros(wb.n_joints)
    nan = q.copy()
    nan[3] = np.nan
    bad = [
        joint_state(names, nan, zeros, 200),                       # NaN
        joint_state(names[:-1], q[:-1], zeros[:-1], 201),          # a joint missing
        joint_state(names, q[:-1], zeros, 202),                    # length mismatch
        joint_state(names, q, zeros, 50),                          # stamp goes backwards
    ]
    for msg in bad:
        probe.joint_pub.publish(msg)
    send_until_output(probe, joint_state(names, q, zeros, 203), 203)
    for sec in (200, 201, 202, 50):
        assert not probe.stamped('/hamwm/com', sec), f'message stamped {sec} should have been dropped'
    assert process.poll() is None


def test_imu_and_odometry_are_used_when_fresh(balance, wb):
    _, probe = balance
    q = posture(wb)
    zeros = np.zeros(wb.n_joints)
    position, xyzw = np.array([0.3, -0.2, 0.58]), np.array([0.0, 0.0, np.sin(0.2), np.cos(0.2)])
    reference = BalanceEstimator(wb, 0.0)
    measurement = BaseMeasurement(position, xyzw, np.zeros(3), np.zeros(3), np.array([0.0, 0.0, 9.81]))
    for sec in (300, 301):
        imu = Imu()
        imu.header.stamp = Time(sec=sec)
        imu.orientation.z, imu.orientation.w = float(xyzw[2]), float(xyzw[3])
        imu.linear_acceleration.z = 9.81
        odom = Odometry()
        odom.header.stamp = Time(sec=sec)
        odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z = (float(c) for c in position)
        odom.pose.pose.orientation = imu.orientation
        probe.imu_pub.publish(imu)
        probe.odom_pub.publish(odom)
        time.sleep(0.2)  # let /imu and /odom arrive first (only orders the inputs; nothing is timed)
        send_until_output(probe, joint_state(wb.joint_names, q, zeros, sec), sec)
        expected = reference.update(float(sec), q, zeros, base=measurement)
    probe.wait(lambda: probe.received['/hamwm/base_source'][-1].data == 'imu_odometry', 'base source switch')
    com = probe.stamped('/hamwm/com', 301)[0].point
    np.testing.assert_allclose([com.x, com.y, com.z], expected.com, atol=1e-6)
    assert expected.com[0] == pytest.approx(position[0], abs=0.1)  # really placed by odometry, not at the origin


def test_imu_without_odometry_uses_stance_kinematics_for_position(balance, wb):
    _, probe = balance
    q = posture(wb)
    zeros = np.zeros(wb.n_joints)
    pitch = 0.05
    xyzw = np.array([0.0, np.sin(pitch / 2), 0.0, np.cos(pitch / 2)])  # /odom (stamped 301) is stale by now
    reference = BalanceEstimator(wb, 0.0)
    measurement = BaseMeasurement(None, xyzw, None, np.zeros(3), np.array([0.0, 0.0, 9.81]))
    for sec in (350, 351):
        imu = Imu()
        imu.header.stamp = Time(sec=sec)
        imu.orientation.y, imu.orientation.w = float(xyzw[1]), float(xyzw[3])
        imu.linear_acceleration.z = 9.81
        probe.imu_pub.publish(imu)
        time.sleep(0.2)  # orders the inputs only
        send_until_output(probe, joint_state(wb.joint_names, q, zeros, sec), sec)
        expected = reference.update(float(sec), q, zeros, base=measurement)
    assert expected.base_source == 'imu+stance:left_sole'
    probe.wait(lambda: probe.received['/hamwm/base_source'][-1].data == expected.base_source, 'base source switch')
    com = probe.stamped('/hamwm/com', 351)[0].point
    assert com.z == pytest.approx(expected.com[2], abs=1e-9)  # height set by the IMU tilt over the stance sole


def test_joint_efforts_give_the_base_acceleration_without_an_imu(balance, wb):
    _, probe = balance
    q = posture(wb)
    zeros = np.zeros(wb.n_joints)
    # Ankle torques that do not balance gravity: the feet rock, which only the efforts reveal (stance+effort).
    efforts = np.zeros(wb.n_joints)
    for side in ('left', 'right'):
        efforts[wb.joint_names.index(f'{side}_ankle_pitch')] = 8.0
    reference = BalanceEstimator(wb)
    for sec in (360, 361):
        msg = joint_state(wb.joint_names, q, zeros, sec)
        msg.effort = [float(x) for x in efforts]
        send_until_output(probe, msg, sec)
        expected = reference.update(float(sec), q, zeros, joint_efforts=efforts)
    assert expected.base_source == 'stance+effort:left_sole'
    probe.wait(lambda: probe.received['/hamwm/base_source'][-1].data == expected.base_source, 'base source switch')
    zmp = probe.stamped('/hamwm/zmp', 361)[0].point
    com = probe.stamped('/hamwm/com', 361)[0].point
    np.testing.assert_allclose([zmp.x, zmp.y], expected.zmp[:2], atol=1e-6)
    assert abs(zmp.x - com.x) > 1e-3          # not the static answer: the efforts moved the ZMP off the CoM
    # A non-finite effort: the sample still counts, by stance kinematics alone.
    msg = joint_state(wb.joint_names, q, zeros, 362)
    msg.effort = [math.nan] * wb.n_joints
    send_until_output(probe, msg, 362)
    probe.wait(lambda: probe.received['/hamwm/base_source'][-1].data == 'stance:left_sole', 'back to stance')


def _set(probe: Probe, **values):
    """Set parameters in one atomic request (sole lengths and widths must change together)."""
    client = probe.node.create_client(SetParametersAtomically, '/balance_node/set_parameters_atomically')
    probe.wait(client.service_is_ready, 'parameter service')
    request = SetParametersAtomically.Request()
    for name, value in values.items():
        if isinstance(value, list):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=value)
        elif isinstance(value, str):
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        request.parameters.append(ParameterMsg(name=name, value=pv))
    future = client.call_async(request)
    probe.wait(future.done, 'set_parameters response')
    probe.node.destroy_client(client)
    return future.result().result


def test_parameters_are_validated(balance, wb):
    _, probe = balance
    result = _set(probe, sole_lengths=[0.2, 0.2], sole_widths=[0.1, -0.1])
    assert not result.successful and 'positive' in result.reason
    result = _set(probe, sole_lengths=[0.2])
    assert not result.successful
    result = _set(probe, contact_height=5.0)  # out of the declared range
    assert not result.successful
    result = _set(probe, world_frame='map')
    assert not result.successful  # read-only
    assert _set(probe, sole_lengths=[0.3, 0.3], sole_widths=[0.2, 0.2]).successful
    q = posture(wb)
    send_until_output(probe, joint_state(wb.joint_names, q, np.zeros(wb.n_joints), 400), 400)
    points = np.array([[p.x, p.y] for p in probe.stamped('/hamwm/support_polygon', 400)[0].polygon.points])
    assert np.ptp(points[:, 0]) == pytest.approx(0.3, abs=1e-3)  # the new sole length is in use


def test_publish_rate_thins_the_outputs_on_the_joint_state_clock(balance, wb):
    _, probe = balance
    assert _set(probe, publish_rate=10.0).successful
    try:
        q = posture(wb)
        # 0.3 s of joint states every 20 ms (stamps 450.00 .. 450.30), sent 20 ms apart in wall time
        for k in range(16):
            msg = joint_state(wb.joint_names, q, np.zeros(wb.n_joints), 450)
            msg.header.stamp.nanosec = k * 20_000_000
            probe.joint_pub.publish(msg)
            deadline = time.monotonic() + 0.02
            while time.monotonic() < deadline:
                probe.executor.spin_once(timeout_sec=0.005)
        # a set is due at the first state and then every 0.1 s of stamps: 450.00, .10, .20, .30 when none is lost
        probe.wait(lambda: any(m.header.stamp.nanosec >= 200_000_000 for m in probe.stamped('/hamwm/com', 450)),
                   'a set stamped 450.2 or later')
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            probe.executor.spin_once(timeout_sec=0.01)
        stamps = sorted(m.header.stamp.nanosec * 1e-9 for m in probe.stamped('/hamwm/com', 450))
        assert 3 <= len(stamps) <= 4 and min(np.diff(stamps)) >= 0.1 - 1e-6, stamps
        assert len(probe.stamped('/hamwm/support_polygon', 450)) == len(stamps)
    finally:
        assert _set(probe, publish_rate=0.0).successful
    send_until_output(probe, joint_state(wb.joint_names, q, np.zeros(wb.n_joints), 451), 451)   # every state again


def test_every_writable_parameter_at_its_range_ends_leaves_the_node_estimating(balance, wb):
    """Tuning cannot crash the node (see ``ros_probe.sweep_parameters``); afterwards it still answers a state."""
    process, probe = balance
    clients: dict[str, object] = {}

    def call(kind: type, name: str, request: object) -> object:
        client = clients.get(name) or clients.setdefault(name, probe.node.create_client(kind, name))
        probe.wait(client.service_is_ready, name)
        future = client.call_async(request)
        probe.wait(future.done, f'{name} response')
        return future.result()

    try:
        sweep = sweep_parameters(call, '/balance_node', lambda: process.poll() is None)
    finally:
        for client in clients.values():
            probe.node.destroy_client(client)
    assert sweep.swept >= 5, sweep
    assert not sweep.refused, sweep
    q = posture(wb)
    send_until_output(probe, joint_state(wb.joint_names, q, np.zeros(wb.n_joints), 500), 500)
    com = probe.stamped('/hamwm/com', 500)[0].point
    assert all(math.isfinite(v) for v in (com.x, com.y, com.z))


@pytest.mark.parametrize(('params', 'message'), [
    (('urdf_file:=/nonexistent/robot.urdf',), 'URDF file not found'),
    (('sole_frames:=[left_sole, no_such_sole]',), "sole frame 'no_such_sole' is not in the model"),
    (('sole_lengths:=[0.2, 0.2]', 'sole_widths:=[0.1, 0.0]'), 'sole sizes must be positive'),
    (('executor:=multi_threaded',), "parameter executor must be one of events, single_threaded, got 'multi_threaded'"),
])
def test_bad_configuration_refused_at_start(ros, params, message):
    process = start_node(*params)
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 2
    assert message in output


@pytest.mark.parametrize('executor', ['events', 'single_threaded'])
def test_either_executor_serves_the_node_and_sigint_exits_cleanly(ros, executor):
    name = f'balance_{executor}'     # apart from the module's node, which runs alongside
    process = start_node(f'executor:={executor}', name=name)
    lines = []
    for line in process.stdout:  # until the node reports its model (it is then spinning); EOF if it died
        lines.append(line)
        if 'loaded' in line:
            break
    assert process.poll() is None, ''.join(lines)
    # The parameter service answers only if the chosen executor spins the node; the answer is the kind it runs.
    node = rclpy.create_node(f'{name}_client')
    try:
        client = node.create_client(GetParameters, f'/{name}/get_parameters')
        assert client.wait_for_service(timeout_sec=TIMEOUT)
        future = client.call_async(GetParameters.Request(names=['executor']))
        rclpy.spin_until_future_complete(node, future, timeout_sec=TIMEOUT)
        assert future.done(), 'no answer from the parameter service'
        assert future.result().values[0].string_value == executor
    finally:
        node.destroy_node()
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output
