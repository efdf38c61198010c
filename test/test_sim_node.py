"""sim_node over real DDS: the node runs in its own process, a probe node in this one listens and commands.

Module-scoped node processes (pendulum, humanoid with camera); tests that stop their node (cart-pole, SIGINT) start
their own, so that a rerun is meaningful. Rate checks are generous floors in wall-clock time (shared CI machines are
noisy); schedules in simulated time are exact and checked tightly.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import TransformStamped, WrenchStamped
import numpy as np
import pytest
from ros_probe import SimHarness, other_domain, urdf_joint_names
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from hamwm_ros.nodes.sim_node import fill_base_transform
from hamwm_ros.sim.cli import SimProcess, TopicProbe, diagnostics_values

pytestmark = pytest.mark.ros

EFFORT = '/effort_controller/commands'
TRAJECTORY = '/joint_trajectory_controller/joint_trajectory'
PUSH = '/sim/push'


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _finite_state(msg) -> bool:
    return all(math.isfinite(x) for field in (msg.position, msg.velocity, msg.effort) for x in field)


# Every simulator of this file runs in a ROS domain of its own: two of them on one domain would each hear the
# other's /joint_states.
@pytest.fixture(scope='module')
def pendulum():
    harness = SimHarness('pendulum', {'camera_rate': 0.0, 'command_timeout': 0.3}, domain_id=other_domain())
    yield harness
    harness.close()


@pytest.fixture
def cartpole():
    # function scope: its one test ends by stopping it, so a rerun needs a fresh process
    harness = SimHarness('cartpole', {'camera_rate': 0.0, 'publish_tf': False}, domain_id=other_domain())
    yield harness
    harness.close()


@pytest.fixture(scope='module')
def humanoid():
    harness = SimHarness('humanoid', {'camera_rate': 30.0}, domain_id=other_domain())
    yield harness
    harness.close()


# ---------------------------------------------------------------------------------------------------- contents
def test_joint_states_contents_and_schedule(pendulum):
    records = pendulum.measure(1.5)
    messages = pendulum.probe.recent('/joint_states')
    assert len(messages) >= 50
    names = urdf_joint_names('pendulum')
    for msg in messages:
        assert list(msg.name) == names
        assert len(msg.position) == len(msg.velocity) == len(msg.effort) == len(names)
        assert _finite_state(msg)
    stamps = [_stamp(m) for m in messages]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), 'stamps must increase strictly'
    js = records['/joint_states']
    assert js.stamp_regressions == 0
    assert js.rate_sim() == pytest.approx(500.0, rel=0.01)      # schedule in simulated time: exact
    assert js.rate_wall() > 100.0                               # 500 Hz target; generous floor for shared CI
    clock = records['/clock']
    assert clock.count > 0 and clock.stamp_regressions == 0
    assert clock.rate_sim() == pytest.approx(1000.0, rel=0.02)
    assert pendulum.probe.records['/diagnostics'].seq > 0


def test_effort_command_moves_pendulum(pendulum):
    publisher = pendulum.publisher(Float64MultiArray, EFFORT)
    start = pendulum.joint_state().position[0]
    for sign in (1.0, -1.0):
        reference = pendulum.joint_state().position[0]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            publisher.publish(Float64MultiArray(data=[sign * 3.0]))
            time.sleep(0.02)
        moved = pendulum.joint_state().position[0] - reference
        assert sign * moved > 0.05, f'effort {sign * 3.0} N m moved the hinge by {moved:.3f} rad (from {start:.3f})'
        latest = pendulum.joint_state()
        assert latest.effort[0] == pytest.approx(sign * 3.0, abs=1e-6)


def test_bad_effort_commands_are_dropped(pendulum):
    publisher = pendulum.publisher(Float64MultiArray, EFFORT)
    before = pendulum.probe.seq('/joint_states')
    for data in ([math.nan], [math.inf], [1.0, 2.0], []):
        publisher.publish(Float64MultiArray(data=data))
    publisher.publish(Float64MultiArray(data=[50.0]))           # 10x the URDF limit of 5 N m: clamped
    clamped = pendulum.joint_state(lambda m: abs(m.effort[0]) > 4.0, timeout=5.0)
    assert clamped is not None and abs(clamped.effort[0]) <= 5.0 + 1e-9
    time.sleep(0.5)
    assert pendulum.process.alive()
    assert pendulum.probe.seq('/joint_states') - before > 50      # still publishing
    assert all(_finite_state(m) for m in pendulum.probe.recent('/joint_states'))
    log = pendulum.log()
    assert 'dropped effort command (1 since the last warning): non-finite value' in log
    assert 'dropped effort command (1 since the last warning): 2 values for 1 joints' in log
    assert 'clamped effort command' in log


def test_stale_effort_commands_fall_back_to_hold(pendulum):
    publisher = pendulum.publisher(Float64MultiArray, EFFORT)
    publisher.publish(Float64MultiArray(data=[2.0]))
    assert pendulum.joint_state(lambda m: abs(m.effort[0] - 2.0) < 1e-9, timeout=5.0) is not None
    time.sleep(1.0)                                              # > command_timeout 0.3 s
    assert pendulum.diagnostics().get('mode') == 'hold'
    assert 'stale' in pendulum.log()


def test_trajectory_is_tracked(pendulum):
    # The 1 kg, 1 m pendulum needs 2.9 N m against gravity at 0.3 rad; the default kp (10 N m/rad) would leave
    # 0.29 rad of steady-state error, so this test stiffens the PD through the parameters first (error ~0.015 rad).
    results = pendulum.set_parameters(trajectory_kp=[200.0], trajectory_kd=[25.0])
    assert all(r.successful for r in results), [r.reason for r in results]
    assert pendulum.get_parameter('trajectory_kp') == [200.0]
    publisher = pendulum.publisher(JointTrajectory, TRAJECTORY)
    # Earlier tests leave the pendulum swinging: settle it at 0 first (a one-point trajectory, then its hold).
    publisher.publish(JointTrajectory(joint_names=['hinge'], points=[
        JointTrajectoryPoint(positions=[0.0], time_from_start=Duration(sec=0, nanosec=300_000_000))]))
    settled = pendulum.joint_state(lambda m: abs(m.position[0]) < 0.03 and abs(m.velocity[0]) < 0.05, timeout=8.0)
    assert settled is not None, 'the pendulum never settled at 0 under the trajectory hold'
    start, goal = settled.position[0], 0.3
    trajectory = JointTrajectory(joint_names=['hinge'], points=[
        JointTrajectoryPoint(positions=[0.5 * (start + goal)], time_from_start=Duration(sec=0, nanosec=750_000_000)),
        JointTrajectoryPoint(positions=[goal], time_from_start=Duration(sec=1, nanosec=500_000_000)),
    ])
    publisher.publish(trajectory)
    tracking = pendulum.probe.wait_for('/diagnostics', lambda m: diagnostics_values(m).get('mode') == 'trajectory',
                                       timeout=3.0)
    assert tracking is not None, 'sim_node never reported trajectory mode'
    midway = pendulum.joint_state(lambda m: abs(m.position[0] - 0.5 * (start + goal)) < 0.05, timeout=8.0)
    assert midway is not None, f'hinge never passed the middle point (from {start:.3f} to {goal})'
    done = pendulum.probe.wait_for('/diagnostics', lambda m: diagnostics_values(m).get('mode') == 'hold', timeout=8.0)
    assert done is not None, 'the trajectory never finished'
    time.sleep(0.5)                                              # held at the last point
    final = [m.position[0] for m in pendulum.probe.recent('/joint_states')[-50:]]
    assert max(abs(q - goal) for q in final) < 0.05, f'held at {final[-1]:.3f}, not {goal} (from {start:.3f})'


def test_a_first_point_at_time_zero_is_where_the_trajectory_starts(pendulum):
    # joint_trajectory_controller's reading: the target steps to a point at time 0 instead of being interpolated
    # from the measured state (mpc_node's PD-residual targets and nominal holds rely on it).
    results = pendulum.set_parameters(trajectory_kp=[200.0], trajectory_kd=[25.0])
    assert all(r.successful for r in results), [r.reason for r in results]
    publisher = pendulum.publisher(JointTrajectory, TRAJECTORY)
    publisher.publish(JointTrajectory(joint_names=['hinge'], points=[
        JointTrajectoryPoint(positions=[0.0], time_from_start=Duration(sec=0, nanosec=300_000_000))]))
    settled = pendulum.joint_state(lambda m: abs(m.position[0]) < 0.03 and abs(m.velocity[0]) < 0.05, timeout=8.0)
    assert settled is not None, 'the pendulum never settled at 0 under the trajectory hold'
    goal = 0.3
    publisher.publish(JointTrajectory(joint_names=['hinge'], points=[
        JointTrajectoryPoint(positions=[goal], time_from_start=Duration()),
        JointTrajectoryPoint(positions=[goal], time_from_start=Duration(sec=2))]))
    sent = _stamp(pendulum.joint_state())
    arrived = pendulum.joint_state(lambda m: abs(m.position[0] - goal) < 0.05, timeout=8.0)
    assert arrived is not None, 'the pendulum never reached the first point'
    # Interpolated from the measured state over 2 s the target would pass 0.25 only after ~1.7 s.
    assert _stamp(arrived) - sent < 0.8, f'{_stamp(arrived) - sent:.2f} s of simulated time to a step target'


def test_bad_trajectories_are_dropped(pendulum):
    publisher = pendulum.publisher(JointTrajectory, TRAJECTORY)
    position = pendulum.joint_state().position[0]
    point = JointTrajectoryPoint(positions=[position + 1.0], time_from_start=Duration(sec=0, nanosec=300_000_000))
    publisher.publish(JointTrajectory(joint_names=['no_such_joint'], points=[point]))
    publisher.publish(JointTrajectory(joint_names=['hinge'], points=[JointTrajectoryPoint(
        positions=[math.nan], time_from_start=Duration(sec=1))]))
    wall_clock = JointTrajectory(joint_names=['hinge'], points=[point])
    wall_clock.header.stamp.sec = int(time.time())               # not simulated time: would never start
    publisher.publish(wall_clock)
    time.sleep(1.0)
    assert abs(pendulum.joint_state().position[0] - position) < 0.05
    log = pendulum.log()
    assert "dropped trajectory (1 since the last warning): unknown joints ['no_such_joint']" in log
    assert 'dropped trajectory (1 since the last warning): point 0: non-finite value' in log
    assert 'ahead of simulated time' in log


def test_parameters_validated_and_applied(pendulum):
    assert pendulum.get_parameter('joint_states_rate') == 500.0
    (result,) = pendulum.set_parameters(joint_states_rate=1.0e6)
    assert not result.successful and 'range' in result.reason
    assert pendulum.get_parameter('joint_states_rate') == 500.0
    (result,) = pendulum.set_parameters(camera_rate=10.0)          # the camera was off at start-up
    assert not result.successful and 'camera' in result.reason
    (result,) = pendulum.set_parameters(trajectory_kp=[1.0, 2.0])   # one joint: 1 or 1 value, not 2
    assert not result.successful and 'trajectory_kp' in result.reason
    (result,) = pendulum.set_parameters(physics_rate=2000.0)
    assert not result.successful and 'read-only' in result.reason.lower().replace('read only', 'read-only')

    (result,) = pendulum.set_parameters(joint_states_rate=250.0)
    assert result.successful, result.reason
    try:
        time.sleep(0.3)
        records = pendulum.measure(1.0)
        assert records['/joint_states'].rate_sim() == pytest.approx(250.0, rel=0.02)
    finally:
        pendulum.set_parameters(joint_states_rate=500.0)


def test_free_running_mode_outpaces_real_time(pendulum):
    (result,) = pendulum.set_parameters(real_time=False)
    assert result.successful, result.reason
    try:
        time.sleep(0.5)
        records = pendulum.measure(1.5)
        clock = records['/clock']
        factor = (clock.last_stamp - clock.first_stamp) / (clock.last_wall - clock.first_wall)
        assert factor > 1.2, f'free-running pendulum ran at {factor:.2f}x real time'
    finally:
        pendulum.set_parameters(real_time=True)


@pytest.mark.parametrize('robot, parameters', [('pendulum', {'camera_rate': 0.0, 'command_timeout': 0.3}),
                                               ('humanoid', {'camera_rate': 30.0})])
def test_sigint_exits_cleanly(robot, parameters):
    # Its own process (not the module's), so that a rerun stops a fresh node.
    harness = SimHarness(robot, parameters, domain_id=other_domain())
    try:
        if parameters['camera_rate'] > 0:
            assert harness.probe.wait_for('/camera/image_raw', timeout=30.0) is not None, harness.log()[-4000:]
        code = harness.process.stop()
        log = harness.log()
    finally:
        harness.close()
    assert code == 0, log[-6000:]              # 1: the simulation failed or the shutdown overran (stacks in the log)
    assert 'Traceback' not in log, log[-6000:]


def test_effort_command_moves_cart(cartpole):
    assert list(cartpole.joint_state().name) == urdf_joint_names('cartpole')
    publisher = cartpole.publisher(Float64MultiArray, EFFORT)      # joints default: the actuated cart_slider only
    reference = cartpole.joint_state().position[0]
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        publisher.publish(Float64MultiArray(data=[10.0]))
        time.sleep(0.02)
    assert cartpole.joint_state().position[0] - reference > 0.05
    publisher.publish(Float64MultiArray(data=[10.0, 0.0]))         # two values for one commanded joint: dropped
    time.sleep(0.3)
    assert '1 joints (parameter joints)' in cartpole.log() or 'for 1 joints' in cartpole.log()
    assert _tf_status(cartpole) == 'off'                            # publish_tf false
    assert cartpole.process.stop() == 0, cartpole.log()[-4000:]     # a stuck one has dumped its stacks there


def _tf_status(harness) -> str:
    """sim_node's ``tf`` diagnostics value: 'published', 'off' or 'tf2_msgs not installed'."""
    report = harness.probe.wait_for('/diagnostics', lambda m: 'tf' in diagnostics_values(m), timeout=5.0)
    assert report is not None, 'sim_node reports no tf status'
    return diagnostics_values(report)['tf']


def _tf_message_type(harness):
    """tf2_msgs/TFMessage where a ROS 2 installation provides it, else None (the package-index wheels).

    Either way sim_node must say so in its diagnostics: 'published', or that tf2_msgs is not installed.
    """
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        assert _tf_status(harness) == 'tf2_msgs not installed'
        return None
    assert _tf_status(harness) == 'published'
    return TFMessage


def test_base_transform_is_filled_in_place():
    msg = TransformStamped(child_frame_id='pelvis')
    msg.header.frame_id = 'odom'
    same = fill_base_transform(msg, Time(sec=3, nanosec=5), np.array([0.1, -0.2, 0.6]), [0.0, 0.0, 0.6, 0.8])
    assert same is msg and (msg.header.frame_id, msg.child_frame_id) == ('odom', 'pelvis')
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 5)
    t, r = msg.transform.translation, msg.transform.rotation
    assert (t.x, t.y, t.z, r.x, r.y, r.z, r.w) == (0.1, -0.2, 0.6, 0.0, 0.0, 0.6, 0.8)


def test_fixed_base_transform_is_latched_where_tf2_msgs_exists(pendulum):
    message_type = _tf_message_type(pendulum)
    if message_type is None:
        return
    # a late subscriber still gets it: /tf_static is transient-local, like robot_state_publisher's fixed joints
    with TopicProbe({'/tf_static': message_type}, domain_id=pendulum.domain_id, name='tf_static_probe',
                    latched=('/tf_static',)) as probe:
        static = probe.wait_for('/tf_static', timeout=5.0)
    assert static is not None, 'no /tf_static'
    transform = static.transforms[0]
    assert (transform.header.frame_id, transform.child_frame_id) == ('odom', 'base')
    assert transform.transform.rotation.w == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------- humanoid
def test_humanoid_topics(humanoid):
    records = humanoid.measure(2.0)
    probe = humanoid.probe
    state = humanoid.joint_state()
    assert list(state.name) == urdf_joint_names('humanoid')
    assert len(state.position) == len(state.velocity) == len(state.effort) == len(state.name) and _finite_state(state)

    image, info = probe.latest('/camera/image_raw'), probe.latest('/camera/camera_info')
    assert image is not None and info is not None
    assert (image.width, image.height, image.encoding, image.step) == (320, 240, 'rgb8', 320 * 3)
    assert len(image.data) == image.step * image.height
    pixels = np.frombuffer(bytes(image.data), dtype=np.uint8)
    assert pixels.std() > 5.0, 'the image is blank'
    assert (info.width, info.height) == (image.width, image.height)
    assert info.header.frame_id == image.header.frame_id != ''
    fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
    assert fx > 0 and fy > 0 and 0 < cx < info.width and 0 < cy < info.height
    assert list(info.p[:3]) == [fx, 0.0, cx] and info.k[8] == 1.0

    imu, odom = probe.latest('/imu'), probe.latest('/odom')
    q = np.array([imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w])
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)
    assert imu.linear_acceleration.z == pytest.approx(9.81, abs=2.0)   # standing: proper acceleration ~ +g
    assert odom.header.frame_id == 'odom' and odom.child_frame_id == imu.header.frame_id == 'pelvis'
    assert odom.pose.pose.position.z > 0.3                              # standing, not fallen
    # one stamp per physics tick on both (read one after the other, the latest two may be a tick apart)
    imu_stamps, odom_stamps = ({_stamp(m) for m in probe.recent(t)} for t in ('/imu', '/odom'))
    assert _stamp(odom) in imu_stamps or _stamp(imu) in odom_stamps

    for topic in ('/joint_states', '/imu', '/odom', '/camera/image_raw', '/clock'):
        assert records[topic].stamp_regressions == 0, topic
    assert records['/joint_states'].rate_wall() > 100.0
    assert records['/camera/image_raw'].rate_wall() > 3.0           # 30 Hz target; CPU rendering on a busy CI
    assert records['/imu'].count > 0 and records['/odom'].count > 0


def test_floating_base_transform_follows_odom_where_tf2_msgs_exists(humanoid):
    message_type = _tf_message_type(humanoid)
    if message_type is None:
        return
    with TopicProbe({'/tf': message_type}, domain_id=humanoid.domain_id, name='tf_probe') as probe:
        transform = probe.wait_for('/tf', timeout=5.0)
        assert transform is not None, 'no /tf'
        transform = transform.transforms[0]
        assert (transform.header.frame_id, transform.child_frame_id) == ('odom', 'pelvis')
        # the same pose as /odom at the same stamp
        stamp = _stamp(transform)
        odom = humanoid.probe.wait_for('/odom', lambda m: _stamp(m) >= stamp, timeout=5.0)
        match = next((m for m in humanoid.probe.recent('/odom') if _stamp(m) == stamp), None)
    assert odom is not None and match is not None, 'no /odom with the transform\'s stamp'
    pose, t = match.pose.pose, transform.transform
    assert (t.translation.x, t.translation.y, t.translation.z) == (pose.position.x, pose.position.y, pose.position.z)
    assert (t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w) == (
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w)


def test_push_moves_humanoid_base(humanoid):
    publisher = humanoid.publisher(WrenchStamped, PUSH)
    first = humanoid.probe.wait_for('/odom', lambda m: True, timeout=10.0)  # do not rely on an earlier test
    assert first is not None, 'no /odom from the humanoid'
    before = first.pose.pose.position
    push = WrenchStamped()
    push.header.frame_id = 'base_link_that_does_not_exist'
    push.wrench.force.x = 200.0
    publisher.publish(push)                                          # not the world frame: dropped
    push.header.frame_id = 'world'
    publisher.publish(push)
    moved = humanoid.probe.wait_for(
        '/odom', lambda m: m.pose.pose.position.x - before.x > 0.03 or m.twist.twist.linear.x > 0.2, timeout=5.0)
    assert moved is not None, 'a 200 N push for 0.2 s did not move the base'
    assert "frame 'base_link_that_does_not_exist'" in humanoid.log()


def test_camera_rate_changes_at_run_time(humanoid):
    (result,) = humanoid.set_parameters(camera_rate=0.0)
    assert result.successful, result.reason
    time.sleep(0.5)                                              # let a frame in the renderer drain
    assert humanoid.measure(1.0)['/camera/image_raw'].count == 0
    (result,) = humanoid.set_parameters(camera_rate=10.0)
    assert result.successful, result.reason
    images = humanoid.probe.seq('/camera/image_raw')
    assert humanoid.probe.wait_for('/camera/image_raw', timeout=5.0, after=images) is not None
    rate = humanoid.measure(2.0)['/camera/image_raw'].rate_sim()
    assert 5.0 < rate < 10.5, f'{rate:.1f} images per simulated second for camera_rate 10 (skips allowed, not 30)'


def test_camera_renders_only_while_watched():
    """camera_lazy (default): no subscriber to the camera topics, no rendering; one subscribes, frames come."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    domain = other_domain()

    def simulation(diagnostics):
        return diagnostics_values(diagnostics) if any('simulation' in s.name for s in diagnostics.status) else {}

    with SimProcess('pendulum', {'camera_rate': 30.0}, params_file=False, env={'ROS_DOMAIN_ID': str(domain)}) as sim, \
            TopicProbe({'/diagnostics': DiagnosticArray}, domain_id=domain, name='unwatched_probe') as probe:
        unwatched = probe.wait_for('/diagnostics', lambda m: int(simulation(m).get('camera_frames_unwatched', 0)) > 30,
                                   timeout=60.0)
        assert unwatched is not None, sim.log()[-3000:]
        assert float(simulation(unwatched)['images_per_s']) == 0.0
        with TopicProbe({'/camera/image_raw': Image}, domain_id=domain, name='camera_viewer') as viewer:
            image = viewer.wait_for('/camera/image_raw', timeout=30.0)
            assert image is not None, sim.log()[-3000:]
            assert (image.width, image.height) == (320, 240)
            watched = probe.wait_for('/diagnostics', lambda m: float(simulation(m).get('images_per_s', 0)) > 1.0,
                                     timeout=10.0)
            assert watched is not None, 'rendering did not show in the diagnostics while watched'
        # the viewer left: once DDS has seen it go, a whole diagnostics window renders nothing
        idle = probe.wait_for('/diagnostics', lambda m: simulation(m).get('images_per_s') == '0.00', timeout=15.0)
        assert idle is not None, 'rendering went on after the last camera subscriber left'
        assert int(simulation(idle)['camera_frames_unwatched']) > int(simulation(watched)['camera_frames_unwatched'])


def test_humanoid_effort_order_follows_joints(humanoid):
    names = urdf_joint_names('humanoid')                         # `joints` default: all actuated, URDF order
    publisher = humanoid.publisher(Float64MultiArray, EFFORT)
    command = [0.0] * len(names)
    command[names.index('neck_yaw')] = 1.5
    command[names.index('left_knee')] = -20.0
    publisher.publish(Float64MultiArray(data=command))
    applied = humanoid.joint_state(lambda m: abs(m.effort[names.index('neck_yaw')] - 1.5) < 1e-6, timeout=5.0)
    assert applied is not None, 'the effort command never showed up in /joint_states'
    effort = dict(zip(applied.name, applied.effort))
    assert effort['left_knee'] == pytest.approx(-20.0)
    assert all(abs(v) < 1e-9 for k, v in effort.items() if k not in ('neck_yaw', 'left_knee'))


# ---------------------------------------------------------------------------------------------------- CLI, sampler
def test_hamwm_sim_cli_reports_topics():
    result = subprocess.run([sys.executable, '-m', 'hamwm_ros.cli', 'sim', '--robot', 'pendulum', '--duration', '1.5',
                             '--camera-rate', '0'], capture_output=True, text=True, timeout=120,
                            env={**os.environ, 'ROS_DOMAIN_ID': str(other_domain())})
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith('/')}
    assert set(rows) >= {'/joint_states', '/clock', '/diagnostics'}
    topic, type_name, count, hz_wall, hz_sim = rows['/joint_states']
    assert type_name == 'sensor_msgs/JointState' and int(count) > 100 and float(hz_wall) > 100.0
    import yaml

    from hamwm_ros.sim.cli import find_params_file
    # `hamwm sim` reads config/hamwm.yaml (its sim_node section: the humanoid graph's rates)
    rate = yaml.safe_load(find_params_file().read_text())['sim_node']['ros__parameters']['joint_states_rate']
    assert float(hz_sim) == pytest.approx(rate, rel=0.01)
    assert 'real-time factor' in result.stdout and 'exit code after SIGINT: 0' in result.stdout


@pytest.mark.parametrize('override, reason', [
    ('robot:=nope', "robot: 'nope' is not one of"),
    ('joint_states_rate:=5000.0', 'above physics_rate'),
    ('joints:=[pole_hinge]', 'must be distinct actuated joints'),
    ('initial_positions:=[0.1]', 'initial positions needs 2 finite values'),
    ('initial_positions:=[5.0,0.0]', 'outside the URDF limits'),
    ('initial_noise:=2.0', 'initial_noise'),
])
def test_bad_startup_parameters_exit_with_reason(override, reason):
    from hamwm_ros.sim.cli import sim_node_command

    command = sim_node_command('cartpole', None, {'camera_rate': 0.0}) + ['-p', override]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert reason in result.stdout + result.stderr
    assert 'Traceback' not in result.stderr
