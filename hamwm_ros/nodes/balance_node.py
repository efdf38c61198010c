"""balance_node: whole-body balance quantities of a legged robot from its joint states.

Wraps :mod:`hamwm_ros.wholebody` (Pinocchio): per ``/joint_states`` message it computes the CoM, the ZMP from full
multibody dynamics, the support polygon of the soles in contact, the capture point and the balance margin, and
publishes them for every message or, with ``publish_rate``, at most that often (the estimator, whose accelerations
are differences of successive messages, still takes every one).

Subscribes
    ``/joint_states`` (sensor_msgs/JointState; joints matched by name, extra joints ignored), and optionally
    ``/imu`` (sensor_msgs/Imu) + ``/odom`` (nav_msgs/Odometry, twist in the child frame) for the floating base.
Publishes
    ``/hamwm/com``, ``/hamwm/zmp``, ``/hamwm/capture_point`` (geometry_msgs/PointStamped), ``/hamwm/support_polygon``
    (geometry_msgs/PolygonStamped), ``/hamwm/balance_margin`` (std_msgs/Float64, metres, positive inside; -inf
    without support or in flight), ``/hamwm/markers`` (visualization_msgs/MarkerArray: CoM, ZMP, capture point,
    support polygon) and ``/hamwm/base_source`` (std_msgs/String, latched: ``imu_odometry``, ``imu+stance:<sole>``
    (IMU without odometry), ``stance:<sole>`` (neither) or ``fixed``; changes are also logged). Stamps are the
    joint state's; frame is ``world_frame``.

Accelerations: JointState has none, so joint accelerations are backward differences of successive joint
velocities over the message stamps, low-pass filtered with ``accel_time_constant`` (base angular acceleration
likewise from the gyro). Bad input (NaN/Inf, length mismatches, missing joints, stamps that do not increase) is
dropped with a throttled warning.
"""

from __future__ import annotations

import math
from pathlib import Path
import time

from geometry_msgs.msg import Point, Point32, PointStamped, PolygonStamped
from nav_msgs.msg import Odometry
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import ColorRGBA, Float64, String
from visualization_msgs.msg import Marker, MarkerArray

from hamwm_ros.jointmap import JointMapError
from hamwm_ros.nodes import finish_node_process, init_node_process, message_executor, spin_until_shutdown
from hamwm_ros.nodes.params import declare_executor
from hamwm_ros.nodes.params import descriptor as _descriptor
from hamwm_ros.wholebody.estimator import BalanceEstimator, BaseMeasurement, LowPassDerivative, base_measurement
from hamwm_ros.wholebody.model import Foot, WholeBodyError, WholeBodyModel

NODE_NAME = 'balance_node'
WARN_PERIOD_S = 2.0
DEFAULT_URDF = Path(__file__).resolve().parent.parent / 'robots' / 'humanoid.urdf'


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class BalanceNode(Node):
    """ROS 2 front end of :class:`hamwm_ros.wholebody.estimator.BalanceEstimator`; topics in the module docstring.

    Raises
    ------
    WholeBodyError
        If the URDF cannot be loaded or the sole configuration does not fit it (the message says why).
    """

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.executor_kind = declare_executor(self)
        description = self.declare_parameter('robot_description', '', _descriptor(
            'URDF XML (as robot_state_publisher takes it); wins over urdf_file', read_only=True)).value
        urdf_file = self.declare_parameter('urdf_file', '', _descriptor(
            'URDF file path, used when robot_description is empty; both empty: the shipped humanoid',
            read_only=True)).value
        floating = self.declare_parameter('floating_base', True, _descriptor(
            'the URDF root moves freely (legged robot); false: fixed to the world', read_only=True)).value
        soles = self.declare_parameter('sole_frames', ['left_sole', 'right_sole'], _descriptor(
            'sole frames: origin at the sole centre, z normal to the sole', read_only=True,
            constraints='frames of the URDF')).value
        self.declare_parameter('sole_lengths', Parameter.Type.DOUBLE_ARRAY, _descriptor(
            'sole rectangle length (x) per sole frame, m; unset: from the foot collision box',
            constraints='one per sole frame, > 0'))
        self.declare_parameter('sole_widths', Parameter.Type.DOUBLE_ARRAY, _descriptor(
            'sole rectangle width (y) per sole frame, m; unset: from the foot collision box',
            constraints='one per sole frame, > 0'))
        ground = self.declare_parameter('ground_height', 0.0, _descriptor(
            'height of the flat ground in world_frame, m', float_range=(-100.0, 100.0))).value
        contact = self.declare_parameter('contact_height', 0.01, _descriptor(
            'a sole corner at most this far above the ground touches it; the support polygon is the hull of the '
            'touching corners (a sole rolled onto its toe adds its toe edge), m',
            float_range=(0.0005, 0.2))).value
        tau = self.declare_parameter('accel_time_constant', 0.005, _descriptor(
            'low-pass time constant of the finite-difference accelerations, s (0: raw differences)',
            float_range=(0.0, 1.0))).value
        self.declare_parameter('use_imu', True, _descriptor(
            'use /imu (+ /odom) for the floating base when fresh; otherwise stance-foot kinematics'))
        self.declare_parameter('use_joint_efforts', True, _descriptor(
            'without /imu: take the base acceleration from the equations of motion with the JointState efforts '
            '(stance+effort) when every joint has a finite effort; otherwise from stance-foot kinematics alone'))
        self.declare_parameter('base_timeout', 0.1, _descriptor(
            '/imu and /odom older than this (s, against the joint state stamp) are ignored',
            float_range=(0.001, 10.0)))
        self.declare_parameter('marker_rate', 10.0, _descriptor(
            'rviz marker rate, Hz (0 disables markers)', float_range=(0.0, 1000.0)))
        self.declare_parameter('publish_rate', 0.0, _descriptor(
            'balance topics (com, zmp, capture point, support polygon, margin) at most this often, Hz, on the '
            'joint-state stamps; 0: one set per joint state. The estimator still takes every joint state',
            float_range=(0.0, 1000.0)))
        self._frame = self.declare_parameter('world_frame', 'odom', _descriptor(
            'frame of all published points (the frame of /odom poses)', read_only=True)).value

        if description:
            source, urdf = 'robot_description', description
        elif urdf_file:
            source, urdf = urdf_file, urdf_file
        else:
            source, urdf = str(DEFAULT_URDF), str(DEFAULT_URDF)
        sizes = self._sole_sizes(len(soles), self._optional('sole_lengths'), self._optional('sole_widths'))
        self._wb = WholeBodyModel(urdf, floating_base=bool(floating), sole_frames=list(soles), sole_sizes=sizes,
                                  ground_height=float(ground), contact_height=float(contact))
        self._estimator = BalanceEstimator(self._wb, float(tau))
        self._position_rate = LowPassDerivative(0.0)  # joint velocities when a JointState carries none
        self._joint_map = self._wb.joint_map()
        self.get_logger().info(f'loaded {source}: {self._wb.n_joints} joints, {self._wb.mass:.2f} kg, soles '
                               f'{[f"{f.frame} {f.length:.3f}x{f.width:.3f}" for f in self._wb.feet]}')
        self.add_on_set_parameters_callback(self._validate)
        self.add_post_set_parameters_callback(self._apply)

        self._imu: tuple[float, Imu] | None = None
        self._odom: tuple[float, Odometry] | None = None
        self._last_warn: dict[str, float] = {}
        self._dropped: dict[str, int] = {}
        self._source = ''
        self._last_markers = -math.inf
        self._last_published = -math.inf     # joint-state stamp of the last published set

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._com_pub = self.create_publisher(PointStamped, 'hamwm/com', qos)
        self._zmp_pub = self.create_publisher(PointStamped, 'hamwm/zmp', qos)
        self._capture_pub = self.create_publisher(PointStamped, 'hamwm/capture_point', qos)
        self._polygon_pub = self.create_publisher(PolygonStamped, 'hamwm/support_polygon', qos)
        self._margin_pub = self.create_publisher(Float64, 'hamwm/balance_margin', qos)
        self._marker_pub = self.create_publisher(MarkerArray, 'hamwm/markers', qos)
        self._source_pub = self.create_publisher(String, 'hamwm/base_source', latched)
        # best effort subscriptions match both reliable and best-effort sensor publishers
        sensor = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(JointState, 'joint_states', self._on_joint_state, sensor)
        self.create_subscription(Imu, 'imu', self._on_imu, sensor)
        self.create_subscription(Odometry, 'odom', self._on_odom, sensor)

    # ------------------------------------------------------------------ parameters
    def _optional(self, name: str) -> list[float]:
        """Value of an array parameter that may be left unset (then empty)."""
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:
            return []
        return list(value) if value is not None else []

    @staticmethod
    def _sole_sizes(count: int, lengths, widths) -> list[tuple[float, float]] | None:
        """Sole sizes from the two array parameters (None: read from the URDF).

        Raises
        ------
        WholeBodyError
            If only one is set, a length differs from the sole count, or a size is not positive.
        """
        lengths = list(lengths) if lengths is not None else []
        widths = list(widths) if widths is not None else []
        if not lengths and not widths:
            return None
        if len(lengths) != count or len(widths) != count:
            raise WholeBodyError(f'sole_lengths and sole_widths need {count} entries each (one per sole frame), '
                                 f'got {len(lengths)} and {len(widths)}')
        if not all(math.isfinite(x) and x > 0.0 for x in lengths + widths):
            raise WholeBodyError('sole sizes must be positive and finite')
        return list(zip(lengths, widths))

    def _validate(self, parameters: list[Parameter]) -> SetParametersResult:
        lengths, widths = self._optional('sole_lengths'), self._optional('sole_widths')
        for p in parameters:
            if p.name == 'sole_lengths':
                lengths = p.value
            elif p.name == 'sole_widths':
                widths = p.value
            elif p.type_ == Parameter.Type.DOUBLE and not math.isfinite(p.value):
                return SetParametersResult(successful=False, reason=f'{p.name} must be finite')
        if any(p.name in ('sole_lengths', 'sole_widths') for p in parameters):
            try:
                sizes = self._sole_sizes(len(self._wb.feet), lengths, widths)
            except WholeBodyError as error:
                return SetParametersResult(successful=False, reason=str(error))
            if sizes is None:
                return SetParametersResult(successful=False, reason='sole sizes cannot be unset at run time')
        return SetParametersResult(successful=True)

    def _apply(self, parameters: list[Parameter]) -> None:
        wb = self._wb
        for p in parameters:
            if p.name == 'ground_height':
                wb.ground_height = float(p.value)
            elif p.name == 'contact_height':
                wb.contact_height = float(p.value)
            elif p.name == 'accel_time_constant':
                self._estimator.accel_time_constant = float(p.value)
        if any(p.name in ('sole_lengths', 'sole_widths') for p in parameters):
            sizes = self._sole_sizes(len(wb.feet), self._optional('sole_lengths'), self._optional('sole_widths'))
            wb.feet = tuple(Foot(f.frame, f.frame_id, length, width) for f, (length, width) in zip(wb.feet, sizes))

    # ------------------------------------------------------------------ input
    def _drop(self, kind: str, reason: str) -> None:
        self._dropped[kind] = self._dropped.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._last_warn.get(kind, -math.inf) >= WARN_PERIOD_S:
            self._last_warn[kind] = now
            count, self._dropped[kind] = self._dropped[kind], 0
            self.get_logger().warning(f'dropped {count} {kind} message(s): {reason}')

    def _stamp(self, header) -> float:
        stamp = _seconds(header.stamp)
        return stamp if stamp > 0.0 else self.get_clock().now().nanoseconds * 1e-9

    def _on_imu(self, msg: Imu) -> None:
        values = [msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w,
                  msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z,
                  msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z]
        if not all(math.isfinite(v) for v in values):
            self._drop('imu', 'non-finite values')
            return
        self._imu = (self._stamp(msg.header), msg)

    def _on_odom(self, msg: Odometry) -> None:
        pose, twist = msg.pose.pose, msg.twist.twist
        values = [pose.position.x, pose.position.y, pose.position.z, pose.orientation.x, pose.orientation.y,
                  pose.orientation.z, pose.orientation.w, twist.linear.x, twist.linear.y, twist.linear.z]
        if not all(math.isfinite(v) for v in values):
            self._drop('odom', 'non-finite values')
            return
        self._odom = (self._stamp(msg.header), msg)

    def _base_measurement(self, t: float) -> BaseMeasurement | None:
        """The base measurement for a joint state at ``t`` (see :func:`hamwm_ros.wholebody.base_measurement`)."""
        if not (self._wb.floating_base and self.get_parameter('use_imu').value):
            return None
        return base_measurement(t, self._imu, self._odom, self.get_parameter('base_timeout').value)

    def _on_joint_state(self, msg: JointState) -> None:
        t = self._stamp(msg.header)
        try:
            positions = self._joint_map.reorder(msg.name, msg.position, field='position')
            velocities = self._joint_map.reorder(msg.name, msg.velocity, field='velocity', allow_empty=True)
        except JointMapError as error:
            self._drop('joint_states', str(error))
            return
        last = self._estimator.last_stamp
        if last is not None and not t > last:
            self._drop('joint_states', f'stamp {t:.6f} does not increase (last {last:.6f})')
            return
        if velocities is None:
            velocities = self._position_rate.update(t, positions)
        efforts = None
        if self._wb.floating_base and self.get_parameter('use_joint_efforts').value:
            try:   # optional: incomplete or non-finite efforts only mean stance kinematics alone for this sample
                efforts = self._joint_map.reorder(msg.name, msg.effort, field='effort', allow_empty=True)
            except JointMapError:
                efforts = None
        try:
            state = self._estimator.update(t, positions, velocities, base=self._base_measurement(t),
                                           joint_efforts=efforts)
        except (ValueError, WholeBodyError) as error:
            self._drop('joint_states', str(error))
            return
        rate = self.get_parameter('publish_rate').value
        # 1e-6 s of slack: stamps a whole period apart must not miss it by float rounding
        if rate > 0.0 and t - self._last_published < 1.0 / rate - 1e-6:
            return
        self._last_published = t
        self._publish(msg.header.stamp if _seconds(msg.header.stamp) > 0 else self.get_clock().now().to_msg(),
                      state)

    # ------------------------------------------------------------------ output
    def _point(self, stamp, xyz) -> PointStamped:
        msg = PointStamped()
        msg.header.stamp, msg.header.frame_id = stamp, self._frame
        msg.point.x, msg.point.y, msg.point.z = (float(c) for c in xyz)
        return msg

    def _publish(self, stamp, state) -> None:
        if state.base_source != self._source:
            self.get_logger().info(f'floating-base state from: {state.base_source}')
            self._source = state.base_source
            self._source_pub.publish(String(data=state.base_source))
        self._com_pub.publish(self._point(stamp, state.com))
        if np.all(np.isfinite(state.zmp)):
            self._zmp_pub.publish(self._point(stamp, state.zmp))
        if np.all(np.isfinite(state.capture_point)):
            self._capture_pub.publish(self._point(stamp, state.capture_point))
        polygon = PolygonStamped()
        polygon.header.stamp, polygon.header.frame_id = stamp, self._frame
        h = self._wb.ground_height
        polygon.polygon.points = [Point32(x=float(x), y=float(y), z=float(h)) for x, y in state.support_polygon]
        self._polygon_pub.publish(polygon)
        self._margin_pub.publish(Float64(data=float(state.margin)))
        rate = self.get_parameter('marker_rate').value
        now = time.monotonic()
        if rate > 0.0 and now - self._last_markers >= 1.0 / rate:
            self._last_markers = now
            self._marker_pub.publish(self._markers(stamp, state))

    def _markers(self, stamp, state) -> MarkerArray:
        def marker(ident: int, kind: int, rgba: tuple[float, float, float, float], scale: float) -> Marker:
            m = Marker()
            m.header.stamp, m.header.frame_id = stamp, self._frame
            m.ns, m.id, m.type, m.action = 'hamwm_balance', ident, kind, Marker.ADD
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = m.scale.z = scale
            m.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
            return m

        markers = []
        for ident, (xyz, rgba) in enumerate(((state.com, (0.1, 0.4, 1.0, 1.0)), (state.zmp, (1.0, 0.2, 0.1, 1.0)),
                                             (state.capture_point, (0.1, 0.8, 0.2, 1.0)))):
            m = marker(ident, Marker.SPHERE, rgba, 0.04)
            if np.all(np.isfinite(xyz)):
                m.pose.position = Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))
            else:
                m.action = Marker.DELETE
            markers.append(m)
        outline = marker(3, Marker.LINE_STRIP, (1.0, 0.8, 0.0, 1.0), 0.005)
        h = self._wb.ground_height
        points = [Point(x=float(x), y=float(y), z=float(h)) for x, y in state.support_polygon]
        outline.points = points + points[:1]
        if not points:
            outline.action = Marker.DELETE
        markers.append(outline)
        return MarkerArray(markers=markers)


def main(args: list[str] | None = None) -> int:
    """Run balance_node until SIGINT or an external shutdown; return the process exit code."""
    init_node_process(args)
    executor = node = None
    code = 0
    try:
        node = BalanceNode()
        executor = message_executor(node.executor_kind)
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (WholeBodyError, ValueError) as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {error}')
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        if executor is not None:
            executor.shutdown()
        finish_node_process()
    return code


if __name__ == '__main__':
    import sys

    sys.exit(main())
