"""sim_node: a MuJoCo-simulated robot on ROS 2 topics.

Wraps :class:`hamwm_ros.sim.Simulation` (pendulum, cartpole, acrobot or humanoid) and exposes it the way a real
robot driver plus ros2_control would:

Publishes
    ``/joint_states`` (sensor_msgs/JointState), ``/camera/image_raw`` (sensor_msgs/Image, rgb8),
    ``/camera/camera_info`` (sensor_msgs/CameraInfo), ``/imu`` (sensor_msgs/Imu) and ``/odom`` (nav_msgs/Odometry,
    ground truth) for floating-base robots, ``/clock`` (rosgraph_msgs/Clock) and ``/diagnostics``
    (diagnostic_msgs/DiagnosticArray: real-time factor, achieved rates, dropped commands). Every stamp is simulated
    time, so the rest of the graph runs on ``use_sim_time``. With ``publish_tf`` (default) also the transform
    ``odom_frame`` -> ``base_frame`` (tf2_msgs/TFMessage): on ``/tf`` with every ``/odom`` for a floating base, once
    on ``/tf_static`` for a fixed one, so robot_state_publisher's link transforms hang off the simulated world in
    rviz. tf2_msgs comes with a ROS 2 installation, not with the Python wheels the set-up installs without one: there
    no transform is published, and ``/diagnostics`` says so (``tf``).
Subscribes
    ``/effort_controller/commands`` (std_msgs/Float64MultiArray; ForwardCommandController convention, one effort per
    entry of the ``joints`` parameter), ``/joint_trajectory_controller/joint_trajectory``
    (trajectory_msgs/JointTrajectory; joints by name, tracked by the simulation's PD loop) and ``/sim/push``
    (geometry_msgs/WrenchStamped; a world-frame wrench on the base for ``push_duration`` seconds).

Threading: a dedicated thread owns the simulation. It steps physics in batches of at most 1 ms of simulated time,
publishes on a schedule counted in physics steps (so publish rates are exact in simulated time), and, when
``real_time`` is true, sleeps against absolute wall-clock targets so the pace does not drift (more than 0.25 s
behind, it re-anchors instead of racing to catch up, and counts a lag reset). Subscription and parameter callbacks
run in the executor thread; they only validate input and leave it in a lock-protected slot that the simulation
thread picks up before its next batch, so the physics is only ever touched by one thread. Rendering takes tens of
milliseconds on a CPU, so a third thread with its own OpenGL context renders copies of the joint positions handed
over at camera times (latest wins; frames it cannot keep up with are skipped and counted), and physics never waits
for it. With ``camera_lazy`` (default) a camera time renders only while the camera topics have a subscriber.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass
import faulthandler
import math
import threading
import time
from typing import Any
import xml.etree.ElementTree as ET

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped, WrenchStamped
from nav_msgs.msg import Odometry
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from hamwm_ros.jointmap import JointMap, JointMapError
from hamwm_ros.nodes import finish_node_process, init_node_process, name_os_thread, spin_until_shutdown
from hamwm_ros.nodes.params import descriptor as _descriptor
from hamwm_ros.sim import ROBOTS, Simulation, SimulationError, robot_urdf_path
from hamwm_ros.sim.initial import initial_joint_state
from hamwm_ros.sim.model import CAMERA
from hamwm_ros.sim.trajectory import TrajectorySampler
from hamwm_ros.throttle import EventThrottle

try:  # a ROS 2 installation has it; the ROS 2 Python wheels on the package index do not
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

NODE_NAME = 'sim_node'
SHUTDOWN_LIMIT_S = 10.0   # s from SIGINT to exit at most (the SimProcess helper waits 15 s before killing)
MAX_LAG_S = 0.25          # real-time mode: further behind wall clock than this, re-anchor instead of catching up
BATCH_S = 0.001           # longest stretch of simulated time stepped between two looks at the command slots
DIAGNOSTICS_PERIOD_S = 1.0
WAIT_REPORT_S = 5.0       # while the first physics step waits for its wait_for_* counts: a warning this often
MAX_TRAJECTORY_DELAY_S = 30.0   # a trajectory stamped further ahead of simulated time is dropped
WARN_PERIOD_S = 2.0       # throttle for warnings about dropped input, per kind
PUSH_FRAMES = ('', 'world', 'map')   # plus the odom_frame parameter




def _stamp(seconds: float) -> Time:
    """builtin_interfaces/Time for a non-negative time in seconds (rounded to the nanosecond)."""
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def _doubles(values: np.ndarray) -> array.array:
    """A float64 array as array.array('d'), the fast path into a ROS double[] field."""
    return array.array('d', np.ascontiguousarray(values, dtype=np.float64).tobytes())


def _rotation_matrix(xyzw) -> np.ndarray:
    """Rotation matrix of a unit quaternion given as (x, y, z, w)."""
    x, y, z, w = xyzw
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def fill_base_transform(msg: TransformStamped, stamp: Time, position: Any, orientation_xyzw: Any) -> TransformStamped:
    """Write a base pose (world position, unit quaternion x, y, z, w) into ``msg`` (frames left as they are).

    Returns
    -------
    TransformStamped
        ``msg`` itself (the node reuses one message per publisher).
    """
    msg.header.stamp = stamp
    translation, rotation = msg.transform.translation, msg.transform.rotation
    translation.x, translation.y, translation.z = np.asarray(position, dtype=np.float64).tolist()
    rotation.x, rotation.y, rotation.z, rotation.w = np.asarray(orientation_xyzw, dtype=np.float64).tolist()
    return msg


def urdf_root_link(robot: str) -> str:
    """Name of the root link of a robot's URDF (the link that is no joint's child)."""
    root = ET.parse(robot_urdf_path(robot)).getroot()
    children = {joint.find('child').get('link') for joint in root.iter('joint') if joint.find('child') is not None}
    roots = [link.get('name') for link in root.findall('link') if link.get('name') not in children]
    return roots[0] if roots else 'base_link'


@dataclass(frozen=True)
class _Settings:
    """Dynamic parameters as the simulation thread uses them; replaced as a whole on every accepted change."""

    joint_states_period: float      # in physics steps
    camera_period: float            # in physics steps; inf when the camera is off
    clock_period: float             # in physics steps
    real_time: bool
    real_time_factor: float
    command_timeout: float
    timeout_action: str
    kp: np.ndarray | None           # (n,) over all actuated joints, None: the simulation's default gains
    kd: np.ndarray | None
    push_duration: float
    max_push_force: float
    max_push_torque: float


@dataclass
class _Trajectory:
    """A validated JointTrajectory waiting for the simulation thread."""

    start: float | None             # simulated time of time_from_start == 0; None: when picked up
    offsets: np.ndarray             # (k,) time_from_start in seconds
    positions: np.ndarray           # (k, m) in ``joints`` order
    velocities: np.ndarray | None




class _Camera:
    """Renders snapshots of the simulation state in its own thread, with its own OpenGL context and MjData.

    CPU rendering takes tens of milliseconds per frame, far longer than a physics step, so it must not run in the
    physics thread: the physics thread hands over a copy of ``qpos`` with its stamp (latest wins; a frame whose
    predecessor is still being rendered replaces it and counts as skipped) and keeps stepping.

    Parameters
    ----------
    model
        The simulation's MjModel (read only here).
    size
        (width, height) in pixels.
    quality
        'fast': no shadows and no multisampling (CPU rendering); 'full': the model's visual settings.
    publish
        Called from the camera thread with (pixels (H, W, 3) uint8, stamp).
    on_error
        Called from the camera thread with the exception when the renderer cannot be created or fails.
    """

    def __init__(self, model: Any, size: tuple[int, int], quality: str, publish, on_error) -> None:
        self._model = model
        self._size = size
        self._quality = quality
        self._publish = publish
        self._on_error = on_error
        self._condition = threading.Condition()
        self._slot: tuple[np.ndarray, Time] | None = None
        self._stopping = False
        self.skipped = 0
        self.render_seconds = 0.0
        self.rendered = 0
        self._thread = threading.Thread(target=self._run, name='sim_camera', daemon=True)
        self._thread.start()

    def submit(self, qpos: np.ndarray, stamp: Time) -> None:
        """Queue a state for rendering (replacing one not yet picked up)."""
        with self._condition:
            if self._slot is not None:
                self.skipped += 1
            self._slot = (qpos, stamp)
            self._condition.notify()

    def _run(self) -> None:
        import mujoco

        name_os_thread()
        renderer = None
        try:
            if self._quality == 'fast':
                self._model.vis.quality.offsamples = 0
                self._model.light_castshadow[:] = 0
            renderer = mujoco.Renderer(self._model, height=self._size[1], width=self._size[0])
            data = mujoco.MjData(self._model)
            while True:
                with self._condition:
                    while self._slot is None and not self._stopping:
                        self._condition.wait()
                    if self._stopping:
                        return
                    (qpos, stamp), self._slot = self._slot, None
                start = time.perf_counter()
                data.qpos[:] = qpos
                mujoco.mj_kinematics(self._model, data)
                mujoco.mj_comPos(self._model, data)
                mujoco.mj_camlight(self._model, data)
                renderer.update_scene(data, camera=CAMERA)
                pixels = renderer.render()
                self.render_seconds += time.perf_counter() - start
                self.rendered += 1
                self._publish(pixels, stamp)
        except Exception as error:  # noqa: BLE001 - reported to the node; physics goes on without a camera
            if not self._stopping:
                self._on_error(error)
        finally:
            if renderer is not None:
                renderer.close()

    def stop(self) -> None:
        """Stop the camera thread and release its OpenGL context."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(timeout=5.0)


class SimNode(Node):
    """ROS 2 front end of :class:`hamwm_ros.sim.Simulation`; see the module docstring for topics."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._throttle = EventThrottle(WARN_PERIOD_S)
        self._dropped = 0
        self._diagnostics_windows = 0
        self._failed = False
        self._camera: _Camera | None = None
        self._camera_idle = 0           # camera times not rendered for want of a subscriber (camera_lazy)
        self._thread: threading.Thread | None = None

        robot = self.declare_parameter('robot', 'humanoid', _descriptor(
            'simulated robot', read_only=True, constraints='one of ' + ', '.join(ROBOTS))).value
        if robot not in ROBOTS:
            raise ValueError(f"parameter robot: '{robot}' is not one of {', '.join(ROBOTS)}")
        self._robot = robot
        physics_rate = self.declare_parameter('physics_rate', 1000.0, _descriptor(
            'physics steps per second of simulated time (the MuJoCo timestep is its inverse)',
            read_only=True, float_range=(1000.0, 10000.0))).value
        self._physics_rate = float(physics_rate)
        self.declare_parameter('joint_states_rate', 500.0, _descriptor(
            '/joint_states (and /imu, /odom) rate in Hz of simulated time; at most physics_rate',
            float_range=(1.0, 10000.0)))
        self.declare_parameter('camera_rate', 30.0, _descriptor(
            '/camera/image_raw rate in Hz of simulated time; 0 at start-up disables rendering altogether',
            float_range=(0.0, 120.0)))
        width = self.declare_parameter('camera_width', 320, _descriptor(
            'camera image width in pixels', read_only=True, int_range=(16, 1920))).value
        height = self.declare_parameter('camera_height', 240, _descriptor(
            'camera image height in pixels', read_only=True, int_range=(16, 1080))).value
        quality = self.declare_parameter('camera_quality', 'fast', _descriptor(
            "'fast': no shadows, no multisampling (CPU rendering); 'full': the model's shadows and 4x multisampling",
            read_only=True, constraints="'fast' or 'full'")).value
        self._camera_lazy = bool(self.declare_parameter('camera_lazy', True, _descriptor(
            'render only while /camera/image_raw or /camera/camera_info has a subscriber (CPU rendering costs a '
            'quarter of a core at 30 Hz); false: render every camera time', read_only=True)).value)
        if quality not in ('fast', 'full'):
            raise ValueError(f"parameter camera_quality: '{quality}' is not 'fast' or 'full'")
        self.declare_parameter('clock_rate', 1000.0, _descriptor(
            '/clock rate in Hz of simulated time; at most physics_rate', float_range=(1.0, 10000.0)))
        publish_clock = self.declare_parameter('publish_clock', True, _descriptor(
            'publish /clock so other nodes can run with use_sim_time', read_only=True)).value
        self.declare_parameter('real_time', True, _descriptor(
            'true: paced against the wall clock at real_time_factor; false: free-running, as fast as possible'))
        self.declare_parameter('real_time_factor', 1.0, _descriptor(
            'target simulated seconds per wall-clock second when real_time is true', float_range=(0.01, 100.0)))
        self.declare_parameter('command_timeout', 0.5, _descriptor(
            'effort commands older than this (simulated seconds) are stale; then timeout_action applies',
            float_range=(0.001, 60.0)))
        self.declare_parameter('timeout_action', 'hold', _descriptor(
            "on stale effort commands: 'hold' (PD hold of the current posture) or 'zero' (zero effort)",
            constraints="'hold' or 'zero'"))
        self.declare_parameter('push_duration', 0.2, _descriptor(
            'seconds (simulated) for which a /sim/push wrench is applied', float_range=(0.001, 10.0)))
        self.declare_parameter('max_push_force', 1000.0, _descriptor(
            'pushes with a larger force norm (N) are scaled down to it', float_range=(0.0, 1.0e5)))
        self.declare_parameter('max_push_torque', 200.0, _descriptor(
            'pushes with a larger torque norm (N m) are scaled down to it', float_range=(0.0, 1.0e4)))
        self._odom_frame = self.declare_parameter('odom_frame', 'odom', _descriptor(
            'frame of /odom poses and of /sim/push wrenches (the simulation world)', read_only=True)).value
        base_frame = self.declare_parameter('base_frame', '', _descriptor(
            'frame of the robot base (/odom child, /imu); empty: the root link of the URDF', read_only=True)).value
        self._base_frame = base_frame or urdf_root_link(robot)
        publish_tf = bool(self.declare_parameter('publish_tf', True, _descriptor(
            'publish odom_frame -> base_frame on /tf (floating base, with /odom) or once on /tf_static (fixed '
            'base), for robot_state_publisher and rviz; needs tf2_msgs (a ROS 2 installation)',
            read_only=True)).value)
        # Initial joint state (seeded episodes over ROS): applied once, after the simulation is built.
        initial = {
            'positions': self.declare_parameter('initial_positions', Parameter.Type.DOUBLE_ARRAY, _descriptor(
                'joint positions at start-up, one per joint in /joint_states order (all movable joints, URDF order); '
                'unset: the nominal posture', read_only=True)).value,
            'velocities': self.declare_parameter('initial_velocities', Parameter.Type.DOUBLE_ARRAY, _descriptor(
                'joint velocities at start-up, same order as initial_positions; unset: at rest',
                read_only=True)).value,
            'seed': self.declare_parameter('initial_seed', -1, _descriptor(
                'seed of uniform noise added to the initial state (the in-process swing-up episodes\' draw); '
                '-1: no noise', read_only=True, int_range=(-1, 2**31 - 1))).value,
            'noise': self.declare_parameter('initial_noise', 0.0, _descriptor(
                'half-width of that noise: rad or m on positions, rad/s or m/s on velocities', read_only=True,
                float_range=(0.0, 1.0))).value,
        }
        # A seeded episode must start when its controller listens: DDS discovery can take seconds under load.
        self._wait_subscribers = int(self.declare_parameter('wait_for_subscribers', 0, _descriptor(
            'physics (and simulated time) starts only once /joint_states has this many subscribers, so a '
            'controller sees the initial state; 0: at once', read_only=True, int_range=(0, 100))).value)
        # A controller on use_sim_time judges joint-state stamps against /clock: until it has matched this node's
        # /clock it ignores them (or, after an earlier simulation, finds them seconds old) and holds.
        self._wait_clock_subscribers = int(self.declare_parameter('wait_for_clock_subscribers', 0, _descriptor(
            'physics starts only once /clock also has this many subscribers (the controllers on use_sim_time); '
            '0: do not wait', read_only=True, int_range=(0, 100))).value)
        # Commands sent before this node's subscription knows their publisher are lost. mpc_node publishes efforts
        # from its command relay, a process (and DDS participant) of its own, besides its own publisher: 2.
        self._wait_command_publishers = int(self.declare_parameter('wait_for_command_publishers', 0, _descriptor(
            'physics starts only once effort_controller/commands or joint_trajectory_controller/joint_trajectory '
            'has this many publishers (mpc_node with its command relay: 2 on the effort topic); 0: do not wait',
            read_only=True, int_range=(0, 100))).value)
        # A count above tells that this node has matched the other side, but the other side may match it only later
        # and drops what comes before: a fresh mpc_node's input saw its first joint state 0.25 s after physics
        # started in some demo episodes (session 23).
        self._settle_time = float(self.declare_parameter('subscriber_settle_time', 0.0, _descriptor(
            'after the wait_for_* counts are met: wall seconds to the first physics step, for the other side of '
            'each match to complete too (until then messages are dropped)', read_only=True,
            float_range=(0.0, 10.0))).value)

        camera_on = float(self.get_parameter('camera_rate').value) > 0.0
        # MuJoCo (and the renderer's OpenGL context, which is bound to one thread) lives in the simulation thread:
        # it builds the Simulation, then waits until the node is fully set up before stepping.
        self._ready = threading.Event()
        self._go = threading.Event()
        self._startup_error: BaseException | None = None
        self._sim: Simulation | None = None
        self._camera_ok = False
        self._thread = threading.Thread(
            target=self._run, name='sim_loop', daemon=True,
            args=(robot, 1.0 / self._physics_rate, (int(width), int(height)) if camera_on else None, initial))
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise ValueError(f'cannot build the {robot} simulation: {self._startup_error}')
        sim = self._sim
        self._names = tuple(sim.joint_names)
        actuated = [name for name, active in zip(self._names, sim.actuated) if active]
        joints = self.declare_parameter('joints', actuated, _descriptor(
            'joint order of /effort_controller/commands, the joints trajectories may name, and the order of '
            'per-joint trajectory gains (default: all actuated joints in URDF order)', read_only=True)).value
        unknown = [j for j in joints if j not in actuated]
        if not joints or unknown or len(set(joints)) != len(joints):
            self._stop.set()
            raise ValueError(f'parameter joints: must be distinct actuated joints of {robot} ({actuated}); '
                             f'not actuated or unknown: {unknown}')
        self._joints = tuple(joints)
        self._joint_map = JointMap(self._joints)
        self._joint_index = np.array([self._names.index(j) for j in self._joints], dtype=np.intp)
        self.declare_parameter('trajectory_kp', [float(k) for k in sim.default_kp[self._joint_index]], _descriptor(
            'PD stiffness (N m/rad or N/m) for trajectories and holds: one value for all joints or one per entry of '
            'joints (default: the simulation\'s per-robot gains)', constraints='finite, >= 0'))
        self.declare_parameter('trajectory_kd', [float(k) for k in sim.default_kd[self._joint_index]], _descriptor(
            'PD damping (N m s/rad or N s/m), same shape rules as trajectory_kp', constraints='finite, >= 0'))
        self._effort_limits = np.asarray(sim.effort_limits, dtype=np.float64)
        self._velocity_limits = np.asarray(sim.velocity_limits, dtype=np.float64)
        self._position_limits = np.asarray(sim.position_limits, dtype=np.float64)

        try:
            self._settings = self._read_settings({})
        except ValueError:
            self._stop.set()
            raise
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        # Slots filled by callbacks, emptied by the simulation thread (under self._lock).
        self._pending_command: tuple[str, Any] | None = None
        self._pending_pushes: list[tuple[np.ndarray, np.ndarray, float]] = []

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._joint_state_pub = self.create_publisher(JointState, 'joint_states', reliable)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, 'diagnostics', reliable)
        self._clock_pub = self.create_publisher(Clock, 'clock', reliable) if publish_clock else None
        self._image_pub = self._info_pub = None
        if self._camera_ok:
            image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
            self._image_pub = self.create_publisher(Image, 'camera/image_raw', image_qos)
            self._info_pub = self.create_publisher(CameraInfo, 'camera/camera_info', reliable)
        self._imu_pub = self._odom_pub = None
        if sim.floating_base:
            self._imu_pub = self.create_publisher(Imu, 'imu', reliable)
            self._odom_pub = self.create_publisher(Odometry, 'odom', reliable)
        self._tf_pub, self._tf_msg = None, None
        self._tf_status = 'off' if not publish_tf else 'tf2_msgs not installed' if TFMessage is None else 'published'
        if self._tf_status == 'published':
            transform = TransformStamped(child_frame_id=self._base_frame)
            transform.header.frame_id = self._odom_frame
            self._tf_msg = TFMessage(transforms=[transform])
            if sim.floating_base:
                self._tf_pub = self.create_publisher(TFMessage, '/tf', QoSProfile(
                    history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE))
            else:  # a fixed base never moves: one latched message, as robot_state_publisher sends fixed joints
                static = self.create_publisher(TFMessage, '/tf_static', QoSProfile(
                    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.TRANSIENT_LOCAL))
                base = sim.base_state()
                fill_base_transform(transform, _stamp(0.0), base.position, base.orientation_xyzw)
                static.publish(self._tf_msg)
        elif self._tf_status == 'tf2_msgs not installed':
            self.get_logger().info('publish_tf: tf2_msgs is not importable (it comes with a ROS 2 installation), so '
                                   'no transform is published')
        self._command_subscriptions = (
            self.create_subscription(Float64MultiArray, 'effort_controller/commands', self._on_effort, 10),
            self.create_subscription(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                                     self._on_trajectory, 10))
        self.create_subscription(WrenchStamped, 'sim/push', self._on_push, 10)

        self._joint_state_msg = JointState(name=list(self._names))
        self._imu_msg = Imu()
        self._imu_msg.header.frame_id = self._base_frame
        self._odom_msg = Odometry()
        self._odom_msg.header.frame_id = self._odom_frame
        self._odom_msg.child_frame_id = self._base_frame
        self._camera_info_msg = self._make_camera_info() if self._camera_ok else None
        if self._camera_ok:
            self._camera = _Camera(sim.model, (int(width), int(height)), quality, self._publish_image,
                                   self._camera_failed)
        self._stats = {'steps': 0, 'joint_states': 0, 'clock': 0, 'lag_resets': 0, 'mode': 'hold'}

        self._go.set()
        s = self._settings
        self.get_logger().info(
            f'{robot}: {len(self._names)} joints ({len(self._joints)} commanded), physics {self._physics_rate:g} Hz, '
            f'joint_states '
            f'{self._physics_rate / s.joint_states_period:g} Hz, camera '
            f'{(self._physics_rate / s.camera_period) if self._camera_ok else 0:g} Hz, '
            f"{'real time x' + format(s.real_time_factor, 'g') if s.real_time else 'free-running'}")

    # ------------------------------------------------------------------ set-up helpers
    def _make_simulation(self, robot: str, timestep: float,
                         render_size: tuple[int, int] | None) -> tuple[Simulation, bool]:
        """Create and reset the simulation; fall back to no camera when no renderer can be created."""
        sim = None
        if render_size is not None:
            try:
                sim = Simulation(robot, timestep=timestep, render_size=render_size)
            except Exception as error:  # noqa: BLE001 - any renderer failure (no EGL, no GL) means: no camera
                self.get_logger().error(f'no camera: cannot create the renderer ({error}); set MUJOCO_GL=egl and '
                                        'install libegl1 libegl-mesa0 libgl1-mesa-dri, or set camera_rate to 0')
        camera_ok = sim is not None
        if camera_ok:
            sim.close()   # the camera thread renders with its own context; camera_info() still works
        if sim is None:
            sim = Simulation(robot, timestep=timestep, render_size=None)
        sim.reset()
        return sim, camera_ok

    @staticmethod
    def _set_initial_state(sim: Simulation, initial: dict[str, Any]) -> None:
        """Put the simulation in the initial state the ``initial_*`` parameters give (before the first step).

        Raises
        ------
        ValueError
            With the parameter's name: wrong size, non-finite, or positions outside the URDF limits.
        """
        n = sim.n_joints
        try:
            q, v = initial_joint_state(
                n, initial['seed'], float(initial['noise']),
                positions=initial['positions'] if initial['positions'] else sim.nominal_posture,
                velocities=initial['velocities'])
        except ValueError as error:
            raise ValueError(f'parameters initial_*: {error} ({n} joints: {list(sim.joint_names)})') from None
        lower, upper = sim.position_limits[:, 0], sim.position_limits[:, 1]
        if np.any(q < lower) or np.any(q > upper):
            raise ValueError(f'parameters initial_*: initial positions {q.tolist()} outside the URDF limits')
        if initial['positions'] or initial['velocities'] or (initial['seed'] >= 0 and initial['noise'] > 0):
            sim.set_joint_state(q, v)

    def _make_camera_info(self) -> CameraInfo:
        info = self._sim.camera_info()
        fx, fy, cx, cy = (float(info[k]) for k in ('fx', 'fy', 'cx', 'cy'))
        msg = CameraInfo()
        msg.header.frame_id = str(info.get('frame_id', 'camera'))
        msg.width, msg.height = int(info['width']), int(info['height'])
        msg.distortion_model = 'plumb_bob'
        msg.d = [0.0] * 5
        msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return msg

    # ------------------------------------------------------------------ parameters
    def _gains(self, values: list[float] | None, name: str) -> np.ndarray | None:
        """A gain parameter as an (n,) array over all actuated joints, None for the simulation defaults."""
        if values is None or len(values) == 0:
            return None
        array_ = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(array_)) or np.any(array_ < 0):
            raise ValueError(f'{name} must be finite and >= 0')
        if array_.size == 1:
            return np.full(len(self._names), float(array_[0]))
        if array_.size != len(self._joints):
            raise ValueError(f'{name} has {array_.size} values; give 1 or one per joint ({len(self._joints)})')
        full = np.array(self._sim.default_kp if name.endswith('kp') else self._sim.default_kd, dtype=np.float64)
        full[self._joint_index] = array_     # joints outside `joints` keep the simulation's default gains
        return full

    def _read_settings(self, changes: dict[str, Any]) -> _Settings:
        """Build the settings from current parameter values overridden by ``changes``; ValueError when invalid."""
        def value(name: str) -> Any:
            return changes[name] if name in changes else self.get_parameter(name).value

        rate = self._physics_rate
        joint_states_rate, camera_rate, clock_rate = (float(value(k)) for k in
                                                      ('joint_states_rate', 'camera_rate', 'clock_rate'))
        for name, hz in (('joint_states_rate', joint_states_rate), ('clock_rate', clock_rate)):
            if hz > rate:
                raise ValueError(f'{name} {hz:g} Hz is above physics_rate {rate:g} Hz')
        if camera_rate > 0 and not self._camera_ok:
            raise ValueError('the camera is off (camera_rate was 0 at start-up or no renderer could be created); '
                             'restart the node with camera_rate > 0')
        if camera_rate > rate:
            raise ValueError(f'camera_rate {camera_rate:g} Hz is above physics_rate {rate:g} Hz')
        action = str(value('timeout_action'))
        if action not in ('hold', 'zero'):
            raise ValueError(f"timeout_action must be 'hold' or 'zero', not '{action}'")
        return _Settings(
            joint_states_period=rate / joint_states_rate,
            camera_period=rate / camera_rate if camera_rate > 0 else math.inf,
            clock_period=rate / clock_rate,
            real_time=bool(value('real_time')),
            real_time_factor=float(value('real_time_factor')),
            command_timeout=float(value('command_timeout')),
            timeout_action=action,
            kp=self._gains(value('trajectory_kp'), 'trajectory_kp'),
            kd=self._gains(value('trajectory_kd'), 'trajectory_kd'),
            push_duration=float(value('push_duration')),
            max_push_force=float(value('max_push_force')),
            max_push_torque=float(value('max_push_torque')),
        )

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse (with a reason) any change that would give invalid settings; old values are then kept."""
        try:
            self._read_settings({p.name: p.value for p in parameters})
        except (ValueError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        """Publish accepted values to the simulation thread."""
        self._settings = self._read_settings({})
        self.get_logger().info('parameters set: ' + ', '.join(f'{p.name}={p.value}' for p in parameters))

    # ------------------------------------------------------------------ subscriptions (executor thread)
    def _drop(self, kind: str, key: str, reason: str) -> None:
        """Drop an input with a warning throttled per kind of input and kind of fault (``key``)."""
        self._dropped += 1
        count = self._throttle.due(f'{kind}: {key}')
        if count:
            self.get_logger().warning(f'dropped {kind} ({count} since the last warning): {reason}')

    def _clamp_warning(self, kind: str, reason: str) -> None:
        count = self._throttle.due('clamp ' + kind)
        if count:
            self.get_logger().warning(f'clamped {kind} ({count} since the last warning): {reason}')

    def _on_effort(self, msg: Float64MultiArray) -> None:
        effort = np.asarray(msg.data, dtype=np.float64)
        if effort.shape != (len(self._joints),):
            self._drop('effort command', 'length',
                       f'{effort.size} values for {len(self._joints)} joints (parameter joints)')
            return
        if not np.all(np.isfinite(effort)):
            self._drop('effort command', 'non-finite', 'non-finite value')
            return
        limits = self._effort_limits[self._joint_index]
        if np.any(np.abs(effort) > limits):
            over = [self._joints[i] for i in np.flatnonzero(np.abs(effort) > limits)]
            self._clamp_warning('effort command', f'beyond the URDF effort limit on {over}')
            effort = np.clip(effort, -limits, limits)
        with self._lock:
            self._pending_command = ('effort', effort)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        names = list(msg.joint_names)
        unknown = [name for name in names if name not in self._joints]
        if unknown:
            self._drop('trajectory', 'unknown joints',
                       f'unknown joints {unknown} (parameter joints lists the controlled ones)')
            return
        try:
            index = self._joint_map.indices(names)
        except JointMapError as error:
            self._drop('trajectory', 'joint names', str(error))
            return
        offsets, positions, velocities = [], [], []
        for k, point in enumerate(msg.points):
            q = np.asarray(point.positions, dtype=np.float64)
            v = np.asarray(point.velocities, dtype=np.float64)
            if q.shape != (len(names),) or v.size not in (0, len(names)):
                self._drop('trajectory', 'shape',
                           f'point {k}: {q.size} positions / {v.size} velocities for {len(names)} joints')
                return
            if not (np.all(np.isfinite(q)) and np.all(np.isfinite(v))):
                self._drop('trajectory', 'non-finite', f'point {k}: non-finite value')
                return
            offsets.append(point.time_from_start.sec + point.time_from_start.nanosec * 1e-9)
            positions.append(q[index])
            velocities.append(v[index] if v.size else None)
        if offsets and (offsets[0] < 0 or np.any(np.diff(offsets) <= 0)):
            self._drop('trajectory', 'time order', 'time_from_start must be >= 0 and strictly increasing')
            return
        if not offsets:   # an empty trajectory means: stop and hold where you are
            with self._lock:
                self._pending_command = ('hold', None)
            return
        q = np.array(positions)
        lower, upper = self._position_limits[self._joint_index, 0], self._position_limits[self._joint_index, 1]
        if np.any(q < lower) or np.any(q > upper):
            self._clamp_warning('trajectory', 'positions beyond the URDF joint limits')
            q = np.clip(q, lower, upper)
        v = None
        if all(item is not None for item in velocities):
            limit = self._velocity_limits[self._joint_index]
            v = np.clip(np.array(velocities), -limit, limit)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        trajectory = _Trajectory(start=stamp if stamp > 0 else None, offsets=np.array(offsets), positions=q,
                                 velocities=v)
        with self._lock:
            self._pending_command = ('trajectory', trajectory)

    def _on_push(self, msg: WrenchStamped) -> None:
        frame = msg.header.frame_id
        if frame not in PUSH_FRAMES and frame != self._odom_frame:
            self._drop('push', 'frame', f"frame '{frame}' is not the world frame ('{self._odom_frame}' or empty)")
            return
        wrench = msg.wrench
        force = np.array([wrench.force.x, wrench.force.y, wrench.force.z], dtype=np.float64)
        torque = np.array([wrench.torque.x, wrench.torque.y, wrench.torque.z], dtype=np.float64)
        if not (np.all(np.isfinite(force)) and np.all(np.isfinite(torque))):
            self._drop('push', 'non-finite', 'non-finite value')
            return
        s = self._settings
        for vector, limit, kind in ((force, s.max_push_force, 'force'), (torque, s.max_push_torque, 'torque')):
            norm = float(np.linalg.norm(vector))
            if norm > limit:
                self._clamp_warning('push', f'{kind} {norm:.1f} above max_push_{kind} {limit:g}')
                vector *= limit / norm
        with self._lock:
            self._pending_pushes.append((force, torque, s.push_duration))

    # ------------------------------------------------------------------ simulation thread
    def _run(self, robot: str, timestep: float, render_size: tuple[int, int] | None,
             initial: dict[str, Any] | None = None) -> None:
        """Simulation thread: build the simulation, wait for the node, then step and publish until stopped."""
        name_os_thread()
        try:
            self._sim, self._camera_ok = self._make_simulation(robot, timestep, render_size)
            if initial is not None:
                self._set_initial_state(self._sim, initial)
        except Exception as error:  # noqa: BLE001 - reported to the constructor, which raises it
            self._startup_error = error
            if self._sim is not None:
                self._sim.close()
            return
        finally:
            self._ready.set()
        try:
            while not self._go.wait(0.1):
                if self._stop.is_set():
                    return
            waits = self._start_conditions()
            for what, parameter, count, wanted in waits:
                if count() < wanted:
                    self.get_logger().info(f'waiting for {wanted} {what} before the first physics step')
                    reported = time.monotonic()
                    while (now_count := count()) < wanted:
                        if self._stop.wait(0.01):
                            return
                        if time.monotonic() - reported >= WAIT_REPORT_S:    # a wait that never ends says why
                            reported = time.monotonic()
                            self.get_logger().warning(f'still waiting for {what}: {now_count} of {wanted} '
                                                      f'(parameter {parameter})')
                    self.get_logger().info(f'{what} matched')
            if waits and self._settle_time > 0.0:
                self.get_logger().info(f'first physics step in {self._settle_time:g} s, for the other side of each '
                                       'match to complete too')
                if self._stop.wait(self._settle_time):
                    return
            self._loop()
        except Exception as error:  # noqa: BLE001 - the thread must report any failure and stop the node
            # Shutting down (publishers may already be gone): SIGINT shuts the context down from the signal handler,
            # so give it a moment before calling this a failure rather than a consequence of the shutdown.
            if self._stop.is_set() or not self.context.ok() or self._stop.wait(0.2) or not self.context.ok():
                return
            self._failed = True
            self.get_logger().fatal(f'simulation thread failed: {type(error).__name__}: {error}')
            self.context.try_shutdown()
        finally:
            self._sim.close()

    def _start_conditions(self) -> list[tuple[str, str, Callable[[], int], int]]:
        """The counts the first physics step waits for: (what, parameter, current count, wanted), wanted > 0."""
        conditions = [('/joint_states subscribers', 'wait_for_subscribers',
                       self._joint_state_pub.get_subscription_count, self._wait_subscribers)]
        if self._clock_pub is not None:
            conditions.append(('/clock subscribers', 'wait_for_clock_subscribers',
                               self._clock_pub.get_subscription_count, self._wait_clock_subscribers))
        elif self._wait_clock_subscribers > 0:
            self.get_logger().warning('wait_for_clock_subscribers ignored: publish_clock is false')
        conditions.append(('command publishers (on one command topic)', 'wait_for_command_publishers',
                           lambda: max(sub.get_publisher_count() for sub in self._command_subscriptions),
                           self._wait_command_publishers))
        return [condition for condition in conditions if condition[3] > 0]

    def _loop(self) -> None:
        sim = self._sim
        n = len(self._names)
        zeros = np.zeros(n)
        batch = max(1, int(round(self._physics_rate * BATCH_S)))
        settings = self._settings
        step = 0
        next_joint_states = settings.joint_states_period
        next_camera = settings.camera_period
        next_clock = settings.clock_period
        anchor: tuple[float, float] | None = None     # (wall time, simulated time) the pacing counts from
        initial_mode = 'hold' if sim.hold_nominal else 'zero'
        mode = initial_mode
        last_effort = 0.0
        trajectory: TrajectorySampler | None = None
        trajectory_target = (np.asarray(sim.nominal_posture, dtype=np.float64).copy(), zeros.copy())
        hold = np.asarray(sim.nominal_posture, dtype=np.float64).copy()
        if mode == 'hold' and (settings.kp is not None or settings.kd is not None):
            sim.set_position_targets(hold, zeros, kp=settings.kp, kd=settings.kd)
        diagnostics_wall = time.perf_counter()
        diagnostics_counts = (0, 0, 0, sim.time)
        time_offset = 0.0    # simulated time before the last reset (stamps keep increasing across resets)
        clock_msg = Clock()

        def enter_hold(position: np.ndarray, s: _Settings) -> None:
            sim.set_effort(zeros)
            sim.set_position_targets(position, zeros, kp=s.kp, kd=s.kd)

        while not self._stop.is_set():
            current = self._settings
            if current is not settings:   # parameters changed: re-aim schedules, re-anchor pacing, new gains
                next_joint_states = min(next_joint_states, step + current.joint_states_period)
                next_camera = min(next_camera, step + current.camera_period)
                next_clock = min(next_clock, step + current.clock_period)
                anchor = None
                if mode == 'hold':
                    enter_hold(hold, current)
                settings = current

            with self._lock:
                command, self._pending_command = self._pending_command, None
                pushes, self._pending_pushes = self._pending_pushes, []
            for force, torque, duration in pushes:
                sim.apply_push(force, duration, torque_xyz=torque)
            if command is not None:
                kind, payload = command
                if kind == 'effort':
                    if mode != 'effort':
                        sim.clear_position_targets()
                    tau = zeros.copy()
                    tau[self._joint_index] = payload
                    sim.set_effort(tau)
                    mode, last_effort, trajectory = 'effort', sim.time, None
                elif kind == 'hold':
                    hold = np.asarray(sim.joint_state().position, dtype=np.float64).copy()
                    enter_hold(hold, settings)
                    mode, trajectory = 'hold', None
                else:
                    started = self._start_trajectory(payload, time_offset)
                    if started is not None:
                        trajectory, trajectory_target = started
                        sim.set_effort(zeros)
                        mode = 'trajectory'
            if mode == 'effort' and sim.time - last_effort > settings.command_timeout:
                hold = np.asarray(sim.joint_state().position, dtype=np.float64).copy()
                if settings.timeout_action == 'hold':
                    enter_hold(hold, settings)
                    mode = 'hold'
                else:
                    sim.set_effort(zeros)
                    mode = 'zero'
                count = self._throttle.due('stale')
                if count:
                    self.get_logger().warning(f'effort commands stale for more than {settings.command_timeout:g} s '
                                              f'(simulated): {settings.timeout_action}')
            if mode == 'trajectory':
                q_full, v_full = trajectory_target
                q, v = trajectory.sample(sim.time)
                q_full[self._joint_index] = q
                v_full[self._joint_index] = v
                sim.set_position_targets(q_full, v_full, kp=settings.kp, kd=settings.kd)
                if sim.time >= trajectory.end_time:
                    hold, mode, trajectory = q_full.copy(), 'hold', None
                    enter_hold(hold, settings)

            due = min(next_joint_states, next_camera, next_clock)
            count = int(min(batch, max(1, math.ceil(due - step - 1e-9))))
            try:
                sim.step(count)
            except SimulationError as error:
                self.get_logger().error(f'{error}: resetting to the nominal posture')
                time_offset += sim.time
                sim.reset()
                mode, trajectory, hold = initial_mode, None, np.asarray(sim.nominal_posture, dtype=np.float64).copy()
            step += count
            self._stats['steps'] = step
            self._stats['mode'] = mode
            now_sim = time_offset + sim.time

            stamp = None
            if step >= next_clock - 1e-9:
                stamp = _stamp(now_sim)
                if self._clock_pub is not None:
                    clock_msg.clock = stamp
                    self._clock_pub.publish(clock_msg)
                    self._stats['clock'] += 1
                next_clock = max(next_clock + settings.clock_period, step + 1e-6)
            if step >= next_joint_states - 1e-9:
                stamp = _stamp(now_sim) if stamp is None else stamp
                self._publish_state(stamp)
                next_joint_states = max(next_joint_states + settings.joint_states_period, step + 1e-6)
            if step >= next_camera - 1e-9:
                stamp = _stamp(now_sim) if stamp is None else stamp
                if self._camera_ok and self._camera_wanted():
                    self._camera.submit(sim.data.qpos.copy(), stamp)
                next_camera = max(next_camera + settings.camera_period, step + 1e-6)

            now = time.perf_counter()
            if now - diagnostics_wall >= DIAGNOSTICS_PERIOD_S:
                images = self._camera.rendered if self._camera is not None else 0
                counts = (step, self._stats['joint_states'], images, now_sim)
                self._publish_diagnostics(now - diagnostics_wall, diagnostics_counts, counts, settings)
                diagnostics_wall, diagnostics_counts = now, counts

            if settings.real_time:
                if anchor is None:
                    anchor = (now, now_sim)
                target = anchor[0] + (now_sim - anchor[1]) / settings.real_time_factor
                if target > now:
                    time.sleep(target - now)     # at most ~1 ms (one batch); stop() is seen on the next pass
                elif now - target > MAX_LAG_S:
                    anchor = (now, now_sim)
                    self._stats['lag_resets'] += 1
            else:
                anchor = None

    def _start_trajectory(self, request: _Trajectory, time_offset: float
                          ) -> tuple[TrajectorySampler, tuple[np.ndarray, np.ndarray]] | None:
        """Turn a validated trajectory into a sampler whose first knot is the current joint state.

        The sampler runs on the simulation's own clock, which is the stamp time less ``time_offset``. A
        trajectory stamped in the future holds the current posture until its start. Returns None (trajectory
        dropped) when the stamp is more than MAX_TRAJECTORY_DELAY_S ahead: a wall-clock stamp from a node that
        does not run on use_sim_time.
        """
        sim = self._sim
        state = sim.joint_state()
        q_now = np.asarray(state.position, dtype=np.float64)
        v_now = np.asarray(state.velocity, dtype=np.float64)
        now = sim.time
        start = now if request.start is None else request.start - time_offset
        if start - now > MAX_TRAJECTORY_DELAY_S:
            self._drop('trajectory', 'stamp', f'header.stamp is {start - now:.1f} s ahead of simulated time '
                       '(publishers must run with use_sim_time, or leave the stamp zero for "now")')
            return None
        index = self._joint_index
        if request.start is None and request.offsets[0] <= 1e-9:
            # A first point at time 0 of a trajectory for "now" is where it starts (joint_trajectory_controller's
            # reading): the targets step there instead of being interpolated from the measured state, so a
            # position hold of another posture acts as a PD hold of it (no interpolated velocity target).
            first_v = np.zeros(len(index)) if request.velocities is None else request.velocities[0]
            q_start, v_start = request.positions[0], first_v
            times, positions = now + request.offsets[1:], request.positions[1:]
            velocities = None if request.velocities is None else request.velocities[1:]
        else:
            q_start, v_start = q_now[index], v_now[index]
            times = start + request.offsets
            keep = times > now + 1e-9
            times, positions = times[keep], request.positions[keep]
            velocities = None if request.velocities is None else request.velocities[keep]
            if times.size == 0:   # every point is in the past: go to the last one
                times, positions = np.array([now]), request.positions[-1:]
                velocities = None
        knot_times = np.concatenate([[now], times])
        knot_positions = np.vstack([q_start, positions])
        knot_velocities = None if velocities is None else np.vstack([v_start, velocities])
        if start > now + 1e-9 and times[0] > start + 1e-9:    # starts later: hold until then
            knot_times = np.concatenate([[now, start], times])
            knot_positions = np.vstack([q_now[index], q_now[index], positions])
            if knot_velocities is not None:
                knot_velocities = np.vstack([np.zeros(len(index)), np.zeros(len(index)), velocities])
        if knot_times[-1] - knot_times[0] < 1e-9:
            knot_times, knot_positions, knot_velocities = knot_times[-1:], knot_positions[-1:], None
        sampler = TrajectorySampler(knot_times, knot_positions, knot_velocities)
        return sampler, (q_now.copy(), np.zeros_like(q_now))

    def _publish_state(self, stamp: Time) -> None:
        """Publish /joint_states and, for floating-base robots, /imu and /odom (messages reused: no allocation)."""
        sim = self._sim
        state = sim.joint_state()
        position, velocity, effort = state.position, state.velocity, state.effort
        if not math.isfinite(float(np.sum(position) + np.sum(velocity) + np.sum(effort))):
            count = self._throttle.due('diverged')
            if count:
                self.get_logger().error('simulation state is not finite: resetting to the nominal posture')
            sim.reset()
            return
        msg = self._joint_state_msg
        msg.header.stamp = stamp
        msg.position, msg.velocity, msg.effort = _doubles(position), _doubles(velocity), _doubles(effort)
        self._joint_state_pub.publish(msg)
        self._stats['joint_states'] += 1
        if self._odom_pub is None:
            return
        base = sim.base_state()
        qx, qy, qz, qw = np.asarray(base.orientation_xyzw, dtype=np.float64).tolist()
        linear_body = (_rotation_matrix((qx, qy, qz, qw)).T @ np.asarray(base.linear_velocity)).tolist()
        wx, wy, wz = np.asarray(base.angular_velocity, dtype=np.float64).tolist()

        imu = self._imu_msg
        imu.header.stamp = stamp
        orientation = imu.orientation
        orientation.x, orientation.y, orientation.z, orientation.w = qx, qy, qz, qw
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = wx, wy, wz
        acceleration = imu.linear_acceleration
        acceleration.x, acceleration.y, acceleration.z = np.asarray(base.linear_acceleration, dtype=np.float64).tolist()
        self._imu_pub.publish(imu)

        odom = self._odom_msg
        odom.header.stamp = stamp
        pose = odom.pose.pose
        pose.position.x, pose.position.y, pose.position.z = np.asarray(base.position, dtype=np.float64).tolist()
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
        twist = odom.twist.twist
        twist.linear.x, twist.linear.y, twist.linear.z = linear_body
        twist.angular.x, twist.angular.y, twist.angular.z = wx, wy, wz
        self._odom_pub.publish(odom)
        if self._tf_pub is not None:
            fill_base_transform(self._tf_msg.transforms[0], stamp, base.position, (qx, qy, qz, qw))
            self._tf_pub.publish(self._tf_msg)

    def _camera_wanted(self) -> bool:
        """Whether this camera time renders: always, or (camera_lazy) while someone subscribes (physics thread)."""
        if not self._camera_lazy:
            return True
        if self._image_pub.get_subscription_count() or self._info_pub.get_subscription_count():
            return True
        self._camera_idle += 1
        return False

    def _publish_image(self, pixels: np.ndarray, stamp: Time) -> None:
        """Publish a rendered frame on /camera/image_raw with its /camera/camera_info (camera thread)."""
        info = self._camera_info_msg
        height, width = pixels.shape[:2]
        image = Image()
        image.header.stamp = stamp
        image.header.frame_id = info.header.frame_id
        image.height, image.width = int(height), int(width)
        image.encoding = 'rgb8'
        image.is_bigendian = 0
        image.step = int(width) * 3
        image.data = array.array('B', np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
        self._image_pub.publish(image)
        info.header.stamp = stamp
        self._info_pub.publish(info)

    def _camera_failed(self, error: BaseException) -> None:
        """The camera thread stopped on an error: go on without a camera."""
        self._camera_ok = False
        if self._stop.is_set() or not self.context.ok():
            return   # shutting down: the publishers went away under the camera thread
        self.get_logger().error(f'camera off: rendering failed ({type(error).__name__}: {error})')

    def _publish_diagnostics(self, wall: float, before: tuple, after: tuple, settings: _Settings) -> None:
        """Publish achieved rates and the real-time factor on /diagnostics."""
        steps, joint_states, images, sim_time = (b - a for a, b in zip(before, after))
        self._diagnostics_windows += 1
        camera = self._camera
        factor = sim_time / wall
        self._stats['real_time_factor'] = factor
        status = DiagnosticStatus(name=f'{NODE_NAME}: simulation', hardware_id=self._robot,
                                  level=DiagnosticStatus.OK, message='running')
        if settings.real_time and factor < 0.9 * settings.real_time_factor:
            status.level = DiagnosticStatus.WARN
            status.message = f'slower than the target real-time factor ({factor:.2f} < {settings.real_time_factor:g})'
            count = self._throttle.due('slow') if self._diagnostics_windows >= 2 else 0   # not while starting
            if count:
                self.get_logger().warning(status.message)
        values = {
            'real_time_factor': f'{factor:.3f}',
            'physics_steps_per_s': f'{steps / wall:.1f}',
            'joint_states_per_s': f'{joint_states / wall:.1f}',
            'images_per_s': f'{images / wall:.2f}',
            'camera_frames_skipped': str(self._camera.skipped if self._camera is not None else 0),
            'camera_frames_unwatched': str(self._camera_idle),
            'sim_time': f'{after[3]:.3f}',
            'mode': str(self._stats['mode']),
            'render_ms_mean': f'{1e3 * camera.render_seconds / max(1, camera.rendered):.1f}' if camera else '-',
            'lag_resets': str(self._stats['lag_resets']),
            'dropped_inputs': str(self._dropped),
            'tf': self._tf_status,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        message = DiagnosticArray(status=[status])
        message.header.stamp = _stamp(after[3])
        self._diagnostics_pub.publish(message)

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> None:
        """Stop the simulation thread (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def destroy_node(self) -> None:
        """Stop the simulation thread, then destroy the node."""
        self.stop()
        if self._camera is not None:
            self._camera.stop()
        super().destroy_node()

    @property
    def failed(self) -> bool:
        """True when the simulation thread stopped on an error."""
        return self._failed


def main(args: list[str] | None = None) -> int:
    """Run sim_node until SIGINT or an external shutdown; return the process exit code."""
    init_node_process(args)
    executor = SingleThreadedExecutor()
    node = None
    code = 0
    try:
        node = SimNode()
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, InvalidParameterValueException, InvalidParameterTypeException) as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {error}')
        code = 2
    finally:
        # Bounded shutdown: past the limit a C watchdog prints every thread's stack to stderr and exits with code 1.
        faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)
        if node is not None:
            code = 1 if node.failed else code
            node.destroy_node()
        executor.shutdown()
        finish_node_process()
        faulthandler.cancel_dump_traceback_later()
    return code


if __name__ == '__main__':
    import sys

    sys.exit(main())
