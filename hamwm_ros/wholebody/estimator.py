"""Floating-base state and accelerations for the balance computation, from what a robot actually publishes.

``sensor_msgs/JointState`` carries positions and velocities but no accelerations, and a legged robot's base pose is
not a joint. `BalanceEstimator` fills both gaps:

* **Base state.** With an IMU + odometry measurement (`BaseMeasurement`): orientation, body angular velocity and
  proper acceleration from the IMU, position and linear velocity from odometry. With an IMU alone: the same from
  the IMU, position and linear velocity from the stance sole's point held still (``imu+stance``). Without
  either: *stance-foot kinematics* under the flat-foot assumption. The stance sole lies flat on the ground at an
  anchored ``(x, y, yaw)``; the base pose follows from forward kinematics, the base twist and acceleration from
  requiring the stance sole's spatial velocity and acceleration to be zero (``J_sole [v_b; qd] = 0``). The stance
  foot is the lowest sole; it changes only when another sole is lower by more than ``contact_height``
  (hysteresis). Given joint efforts (``sensor_msgs/JointState.effort``), stance kinematics still gives the base
  pose and twist but the base acceleration comes from the equations of motion instead (``stance+effort``, see
  `dynamics_base_acceleration`): the flat-foot second derivative is blind to the soles rocking on a compliant
  contact by a fraction of a degree, and that rocking's angular acceleration moves the ZMP by
  ``I_sole alpha / (m g)`` (~45 mm per rad/s^2 on the shipped humanoid). The joint torques see it.
  ``BalanceState.base_source`` says which is in use: ``'imu_odometry'``, ``'imu+stance:<frame>'``,
  ``'stance+effort:<frame>'``, ``'stance:<frame>'`` or ``'fixed'``.
* **Accelerations.** Joint accelerations may be passed in (a simulator or an observer has them). Otherwise they are
  finite differences of successive joint velocities over the message stamps, smoothed by a first-order low-pass
  filter (time constant ``accel_time_constant``; 0 = raw differences). Base angular acceleration without a
  measurement is estimated the same way from the IMU angular velocity. The filter delays the ZMP by about the time
  constant; raw differences are exact for a semi-implicit Euler simulator sampled every step, noisy on hardware.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import pinocchio as pin

from hamwm_ros.wholebody.model import BalanceState, WholeBodyError, WholeBodyModel


@dataclass
class BaseMeasurement:
    """Base state as an IMU (sensor_msgs/Imu) plus odometry (nav_msgs/Odometry) give it.

    ``position`` and ``linear_velocity`` None (an IMU without odometry): they come from stance-foot kinematics, the
    rest from the IMU (``BalanceState.base_source`` is then ``imu+stance:<sole>``).

    Attributes
    ----------
    position
        (3,) base origin in the world (odometry pose), or None.
    orientation_xyzw
        (4,) base orientation quaternion (IMU or odometry).
    linear_velocity
        (3,) base origin velocity in **world** axes (the odometry twist rotated to the world), or None.
    angular_velocity
        (3,) base angular velocity in the **base** frame (IMU gyro).
    linear_acceleration
        (3,) proper acceleration in the base frame (IMU accelerometer, includes +g when at rest), or None (then the
        linear velocity is differentiated).
    angular_acceleration
        (3,) in the base frame, or None (then the angular velocity is differentiated).
    """

    position: np.ndarray | None
    orientation_xyzw: np.ndarray
    linear_velocity: np.ndarray | None
    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray | None = None
    angular_acceleration: np.ndarray | None = None


def base_measurement(t: float, imu: tuple[float, Any] | None, odom: tuple[float, Any] | None,
                     timeout: float) -> BaseMeasurement | None:
    """The base measurement for a joint state at ``t`` from the latest IMU and odometry messages.

    Parameters
    ----------
    t
        Time of the joint state (the same clock as the messages' times).
    imu, odom
        ``(time, message)`` of the latest ``sensor_msgs/Imu`` and ``nav_msgs/Odometry`` (read by attribute, so this
        module needs no ROS), or None.
    timeout
        Messages further than this (s) from ``t`` are not used.

    Returns
    -------
    BaseMeasurement or None
        IMU + odometry when both are fresh; the IMU alone (position and velocity then come from the stance sole)
        when only it is; None (stance-foot kinematics) without a fresh IMU, or when the orientation is unusable: an
        IMU without orientation (REP 145: covariance[0] = -1) needs odometry's, and a zero or non-finite
        quaternion is refused.
    """
    if imu is None or abs(t - imu[0]) > timeout:
        return None
    imu_msg = imu[1]
    odom_msg = odom[1] if odom is not None and abs(t - odom[0]) <= timeout else None
    if imu_msg.orientation_covariance[0] == -1.0:
        if odom_msg is None:
            return None
        o = odom_msg.pose.pose.orientation
    else:
        o = imu_msg.orientation
    xyzw = np.array([o.x, o.y, o.z, o.w], dtype=np.float64)
    norm = float(np.linalg.norm(xyzw))
    if not (math.isfinite(norm) and norm > 1e-6):
        return None
    xyzw /= norm
    position = linear_velocity = None
    if odom_msg is not None:
        pose, twist = odom_msg.pose.pose, odom_msg.twist.twist
        x, y, z, w = xyzw
        rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                             [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                             [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        position = np.array([pose.position.x, pose.position.y, pose.position.z])
        # nav_msgs/Odometry: the twist is in the child (base) frame; BaseMeasurement wants world axes
        linear_velocity = rotation @ np.array([twist.linear.x, twist.linear.y, twist.linear.z])
    av, la = imu_msg.angular_velocity, imu_msg.linear_acceleration
    return BaseMeasurement(position=position, orientation_xyzw=xyzw, linear_velocity=linear_velocity,
                           angular_velocity=np.array([av.x, av.y, av.z]),
                           linear_acceleration=np.array([la.x, la.y, la.z]))


class LowPassDerivative:
    """Finite-difference derivative of a sampled vector, smoothed by a first-order low-pass filter.

    Parameters
    ----------
    time_constant
        Filter time constant, seconds (0 returns raw differences).

    Raises
    ------
    ValueError
        If ``time_constant`` is negative or not finite.
    """

    def __init__(self, time_constant: float = 0.0) -> None:
        if not (time_constant >= 0.0 and math.isfinite(time_constant)):
            raise ValueError(f'time_constant must be >= 0, got {time_constant}')
        self.time_constant = float(time_constant)
        self.reset()

    def reset(self) -> None:
        """Forget the history; the next sample yields a zero derivative."""
        self._t: float | None = None
        self._x: np.ndarray | None = None
        self._d: np.ndarray | None = None

    def update(self, t: float, x: np.ndarray) -> np.ndarray:
        """Add the sample ``x`` at time ``t`` and return the filtered derivative.

        Raises
        ------
        ValueError
            If ``t`` does not increase (the caller drops the sample).
        """
        x = np.array(x, dtype=np.float64)
        if self._t is None or self._x is None or self._x.shape != x.shape:
            self._t, self._x, self._d = t, x, np.zeros_like(x)
            return self._d.copy()
        dt = t - self._t
        if not dt > 0.0:
            raise ValueError(f'time did not increase ({t} after {self._t})')
        raw = (x - self._x) / dt
        alpha = dt / (self.time_constant + dt)
        self._d = self._d + alpha * (raw - self._d)
        self._t, self._x = t, x
        return self._d.copy()


def _flat(placement: pin.SE3, ground: float) -> pin.SE3:
    """The placement projected flat onto the ground: same x, y and yaw, z = ground, no roll or pitch."""
    rotation = placement.rotation
    yaw = math.atan2(rotation[1, 0], rotation[0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    flat_rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    p = placement.translation
    return pin.SE3(flat_rotation, np.array([p[0], p[1], ground]))


class BalanceEstimator:
    """Turns joint states (+ optional base measurement) into `BalanceState` every tick.

    Parameters
    ----------
    model
        The whole-body model.
    accel_time_constant
        Low-pass time constant for finite-difference accelerations, seconds.

    Raises
    ------
    WholeBodyError
        If the model has a floating base but no sole frames (stance kinematics would be impossible).
    """

    def __init__(self, model: WholeBodyModel, accel_time_constant: float = 0.0) -> None:
        self.wb = model
        self.joint_accel = LowPassDerivative(accel_time_constant)
        self.base_accel = LowPassDerivative(accel_time_constant)
        self.stance: int | None = None
        self.anchor: pin.SE3 | None = None
        self.last_q: np.ndarray | None = None
        self.last_v: np.ndarray | None = None
        self.last_a: np.ndarray | None = None
        self._last_t: float | None = None

    @property
    def last_stamp(self) -> float | None:
        """Time of the last accepted sample (None before the first)."""
        return self._last_t

    @property
    def accel_time_constant(self) -> float:
        """Low-pass time constant of the finite-difference accelerations, seconds."""
        return self.joint_accel.time_constant

    @accel_time_constant.setter
    def accel_time_constant(self, value: float) -> None:
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError(f'accel_time_constant must be >= 0, got {value}')
        self.joint_accel.time_constant = self.base_accel.time_constant = float(value)

    def reset(self, anchor: pin.SE3 | None = None, stance: int | None = None) -> None:
        """Forget filter history; optionally place the stance sole (world placement, flattened) and pick it."""
        self.joint_accel.reset()
        self.base_accel.reset()
        self.anchor = None if anchor is None else _flat(anchor, self.wb.ground_height)
        self.stance = stance
        self._last_t = None

    def update(self, t: float, joint_positions: np.ndarray, joint_velocities: np.ndarray,
               joint_accelerations: np.ndarray | None = None, base: BaseMeasurement | None = None,
               contacts: tuple[bool, ...] | None = None, external: np.ndarray | None = None,
               joint_efforts: np.ndarray | None = None) -> BalanceState:
        """Balance state for a joint-state sample at time ``t`` (seconds), arrays in model joint order.

        ``contacts`` overrides the sole contact flags; ``external`` is a known non-contact wrench (see
        `WholeBodyModel.tick`). ``joint_efforts`` (N m or N, the torques the actuators apply) are used only
        without a base measurement: the base acceleration then comes from the equations of motion
        (``stance+effort``) instead of the flat-foot constraint.

        Raises
        ------
        ValueError
            If ``t`` does not increase or an input is not finite (nothing is updated then).
        """
        wb = self.wb
        qj = np.asarray(joint_positions, dtype=np.float64)
        vj = np.asarray(joint_velocities, dtype=np.float64)
        named = [('positions', qj), ('velocities', vj)]
        tau = None
        if joint_efforts is not None:
            tau = np.asarray(joint_efforts, dtype=np.float64)
            named.append(('efforts', tau))
        for name, array in named:
            if array.shape != (wb.n_joints,) or not np.all(np.isfinite(array)):
                raise ValueError(f'joint {name} must be {wb.n_joints} finite values')
        if self._last_t is not None and not t > self._last_t:
            raise ValueError(f'stamp did not increase ({t} after {self._last_t})')
        if joint_accelerations is None:
            aj = self.joint_accel.update(t, vj)
        else:
            aj = np.asarray(joint_accelerations, dtype=np.float64)
            if aj.shape != (wb.n_joints,) or not np.all(np.isfinite(aj)):
                raise ValueError(f'joint accelerations must be {wb.n_joints} finite values')
        if not wb.floating_base:
            q, v, a, source = wb.configuration(qj), vj.copy(), aj.copy(), 'fixed'
        elif base is not None and base.position is None:
            if not wb.feet:
                raise WholeBodyError('an IMU without odometry needs sole frames (stance-foot kinematics)')
            q, v, a = self._from_measurement(t, qj, vj, aj, self._imu_with_stance(qj, vj, base))
            source = f'imu+stance:{wb.feet[self.stance].frame}'
        elif base is not None:
            q, v, a = self._from_measurement(t, qj, vj, aj, base)
            source = 'imu_odometry'
        else:
            if not wb.feet:
                raise WholeBodyError('floating base without a base measurement needs sole frames')
            q, v, a = self._from_stance(qj, vj, aj)
            source = f'stance:{wb.feet[self.stance].frame}'
            if contacts is None:
                contacts = self._stance_contacts
            if tau is not None:
                support = tuple(k for k, c in enumerate(contacts) if c) or (self.stance,)
                a[:6] = dynamics_base_acceleration(wb, q, v, a, tau, support, external)
                source = f'stance+effort:{wb.feet[self.stance].frame}'
        self._last_t = t
        self.last_q, self.last_v, self.last_a = q, v, a
        return wb.evaluate(q, v, a, contacts=contacts, base_source=source, external=external)

    # ---------------------------------------------------------------- IMU + odometry
    def _from_measurement(self, t: float, qj: np.ndarray, vj: np.ndarray, aj: np.ndarray,
                          base: BaseMeasurement) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wb = self.wb
        parts = [base.position, base.orientation_xyzw, base.linear_velocity, base.angular_velocity]
        parts += [x for x in (base.linear_acceleration, base.angular_acceleration) if x is not None]
        values = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in parts])
        if values.shape[0] != 13 + 3 * (len(parts) - 4) or not np.isfinite(values).all():
            raise ValueError('base measurement must be finite 3-vectors and a quaternion')
        q = wb.configuration(qj, values[0:3], values[3:7])
        rotation = pin.Quaternion(q[6], q[3], q[4], q[5]).toRotationMatrix()
        omega = values[10:13]
        v_lin_local = rotation.T @ values[7:10]
        v = wb.velocity(vj, np.concatenate([v_lin_local, omega]))
        derivative = None
        if base.angular_acceleration is None or base.linear_acceleration is None:
            derivative = self.base_accel.update(t, values[7:13])  # (world linear, body angular) velocity rates
        alpha = derivative[3:] if base.angular_acceleration is None else values[-3:]
        if base.linear_acceleration is not None:
            # accelerometer: proper acceleration f = R^T (a_world - g_vec), g_vec = (0, 0, -g)
            a_world = rotation @ values[13:16]
            a_world[2] -= wb.gravity
        else:
            a_world = derivative[:3]
        # Pinocchio's free-flyer acceleration is spatial: classical minus omega x v (both in the base frame)
        wx, wy, wz = omega.tolist()
        vx, vy, vz = v_lin_local.tolist()
        a_lin_local = rotation.T @ a_world - np.array([wy * vz - wz * vy, wz * vx - wx * vz, wx * vy - wy * vx])
        a = wb.velocity(aj, np.concatenate([a_lin_local, alpha]))
        return q, v, a

    # ---------------------------------------------------------------- IMU + stance-foot kinematics
    def _imu_with_stance(self, qj: np.ndarray, vj: np.ndarray, imu: BaseMeasurement) -> BaseMeasurement:
        """Complete an IMU-only measurement with base position and velocity from the stance sole.

        Orientation, angular velocity and accelerations stay the IMU's; the stance sole's *point* is held at its
        anchor (no flat-foot assumption on its orientation) and has zero velocity.
        """
        wb = self.wb
        model, data = wb.model, wb.data
        xyzw = np.asarray(imu.orientation_xyzw, dtype=np.float64)
        omega = np.asarray(imu.angular_velocity, dtype=np.float64)
        if xyzw.shape != (4,) or omega.shape != (3,) or not (np.isfinite(xyzw).all() and np.isfinite(omega).all()):
            raise ValueError('IMU orientation and angular velocity must be finite')
        q = wb.configuration(qj, np.zeros(3), xyzw)  # base at the origin, IMU orientation
        pin.framesForwardKinematics(model, data, q)
        relative = [data.oMf[foot.frame_id].translation.copy() for foot in wb.feet]
        heights = [p[2] for p in relative]
        lowest = int(np.argmin(heights))
        if self.stance is None or self.anchor is None:
            self.stance = lowest
            self.anchor = pin.SE3(np.eye(3), np.array([relative[lowest][0], relative[lowest][1], wb.ground_height]))
        elif heights[lowest] < heights[self.stance] - wb.contact_height:  # another sole is clearly lower
            world = self.anchor.translation - relative[self.stance] + relative[lowest]
            self.anchor = pin.SE3(np.eye(3), np.array([world[0], world[1], wb.ground_height]))
            self.stance = lowest
        position = self.anchor.translation - relative[self.stance]
        q[:3] = position
        fid = wb.feet[self.stance].frame_id
        jac = pin.computeFrameJacobian(model, data, q, fid, pin.LOCAL_WORLD_ALIGNED)
        # sole point velocity zero: R v_lin_local + J_ang-part omega + J_j qd = 0 (world axes)
        rotation = data.oMi[1].rotation
        rest = jac[:3, 3:6] @ omega + jac[:3, 6:] @ vj
        linear_local = -np.linalg.solve(jac[:3, :3], rest)
        return BaseMeasurement(position=position, orientation_xyzw=xyzw, linear_velocity=rotation @ linear_local,
                               angular_velocity=omega, linear_acceleration=imu.linear_acceleration,
                               angular_acceleration=imu.angular_acceleration)

    # ---------------------------------------------------------------- stance-foot kinematics
    def _from_stance(self, qj: np.ndarray, vj: np.ndarray,
                     aj: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wb = self.wb
        model, data = wb.model, wb.data
        q = wb.configuration(qj)  # base at the origin: sole placements relative to the base
        pin.framesForwardKinematics(model, data, q)
        relative = [data.oMf[foot.frame_id].copy() for foot in wb.feet]
        if self.stance is None:
            self.stance = int(np.argmin([r.translation[2] for r in relative]))
        stance_inv = relative[self.stance].inverse()
        # sole heights in the stance sole's (flat) frame
        heights = [(stance_inv * r).translation[2] for r in relative]
        lowest = int(np.argmin(heights))
        if self.anchor is None:
            self.anchor = _flat(relative[self.stance], wb.ground_height)
        if heights[lowest] < -wb.contact_height:  # another sole is clearly lower: it is the stance foot now
            new_placement = self.anchor * stance_inv * relative[lowest]
            self.anchor = _flat(new_placement, wb.ground_height)
            self.stance = lowest
            stance_inv = relative[lowest].inverse()
            heights = [(stance_inv * r).translation[2] for r in relative]
        self._stance_contacts = tuple(bool(abs(z) <= wb.contact_height) for z in heights)
        support = tuple(k for k, c in enumerate(self._stance_contacts) if c)
        return stance_state(wb, qj, vj, aj, self.stance, self.anchor, support)


def stance_state(wb: WholeBodyModel, joint_positions: np.ndarray, joint_velocities: np.ndarray,
                 joint_accelerations: np.ndarray, stance: int, anchor: pin.SE3,
                 support: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ``(q, v, a)`` with the base placed so that sole ``stance`` lies at ``anchor`` and does not move.

    Parameters
    ----------
    wb
        A floating-base model.
    joint_positions, joint_velocities, joint_accelerations
        (n,) arrays in model joint order.
    stance
        Index into ``wb.feet``.
    anchor
        World placement of the stance sole (flat: yaw only, on the ground).
    support
        Other soles in contact. Their velocity and acceleration are also required to vanish, in the least-squares
        sense with the stance sole's: in double support each leg's joint readings then inform the base motion, so
        the compliance of one foot's contact does not go straight into the base acceleration.

    Returns
    -------
    tuple
        ``(q, v, a)``: the base twist and acceleration make the soles' spatial velocities and accelerations zero,
        ``J_b v_b = -J_j qd`` and ``J_b a_b = -(J_j qdd + dJ v)`` in each sole frame.
    """
    model, data = wb.model, wb.data
    fid = wb.feet[stance].frame_id
    q = wb.configuration(joint_positions)
    pin.forwardKinematics(model, data, q)
    relative = pin.updateFramePlacement(model, data, fid).copy()  # stance sole relative to a base at the origin
    base = anchor * relative.inverse()
    q[:3] = base.translation
    q[3:7] = pin.Quaternion(base.rotation).coeffs()
    fids = [fid] + [wb.feet[k].frame_id for k in support if k != stance]
    jac = np.vstack([pin.computeFrameJacobian(model, data, q, f, pin.LOCAL) for f in fids])
    jb = jac[:, :6]
    solve = np.linalg.solve if len(fids) == 1 else (lambda m, b: np.linalg.lstsq(m, b, rcond=None)[0])
    v = wb.velocity(joint_velocities, -solve(jb, jac[:, 6:] @ joint_velocities))
    a = wb.velocity(joint_accelerations)
    pin.forwardKinematics(model, data, q, v, a)
    drift = np.concatenate([pin.getFrameAcceleration(model, data, f, pin.LOCAL).vector for f in fids])
    a[:6] = -solve(jb, drift)
    return q, v, a


def dynamics_base_acceleration(wb: WholeBodyModel, q: np.ndarray, v: np.ndarray, a: np.ndarray,
                               joint_efforts: np.ndarray, support: tuple[int, ...],
                               external: np.ndarray | None = None) -> np.ndarray:
    """Base acceleration from the equations of motion, given the joint torques and which soles carry the robot.

    Solves ``M(q) a + nle(q, v) = [0; tau - D qd] + sum_c J_c^T f_c (+ the external wrench)`` for the base
    acceleration ``a_b`` (6) and one contact wrench ``f_c`` (6, sole frame) per sole in ``support``, with the joint
    accelerations of ``a`` known: all ``nv`` rows, least squares (6 + 6 per sole unknowns; in double support the
    base and leg rows alone determine them, the other rows must agree). Nothing is assumed about how the soles
    move, so a sole rocking or sinking on a compliant contact is seen; ``q`` and ``v`` can come from stance-foot
    kinematics, whose small pose errors barely matter here.

    Parameters
    ----------
    wb
        A floating-base model. Its URDF joint damping ``D`` (``model.damping``) is subtracted from the efforts;
        rotor inertia set in ``model.armature`` is included by Pinocchio.
    q, v, a
        Full configuration, velocity and acceleration (``a[:6]`` is ignored).
    joint_efforts
        (n,) actuator torques (forces for prismatic joints), model joint order.
    support
        Indices into ``wb.feet`` of the soles in contact.
    external
        Known non-contact wrench (force and moment about the world origin, world axes), assumed to act on the root
        link, or None.

    Returns
    -------
    numpy.ndarray
        (6,) base acceleration in Pinocchio's free-flyer convention (spatial, base frame).

    Notes
    -----
    Its accuracy is that of the torques: a torque error ``e`` (N m) at the ankles moves the ZMP by about
    ``e / (m g)`` (2.6 mm per N m on the 38.5 kg humanoid). MuJoCo reports exact actuator forces.
    """
    if not wb.floating_base:
        raise WholeBodyError('dynamics_base_acceleration needs a floating-base model')
    model, data = wb.model, wb.data
    a_joints = a.copy()
    a_joints[:6] = 0.0
    rhs = -pin.rnea(model, data, q, v, a_joints)  # -(M[:, 6:] qdd + nle)
    rhs[6:] += joint_efforts - model.damping[6:] * v[6:]
    if external is not None:
        rhs[:6] += pin.XYZQUATToSE3(q[:7]).actInv(pin.Force(np.asarray(external, dtype=np.float64))).vector
    upper = pin.crba(model, data, q)  # upper triangle filled
    columns = [np.vstack([np.triu(upper[:6, :6]) + np.triu(upper[:6, :6], 1).T, upper[:6, 6:].T])]
    for k in support:
        columns.append(-pin.computeFrameJacobian(model, data, q, wb.feet[k].frame_id, pin.LOCAL).T)
    system = np.hstack(columns)
    try:  # QR: about half the cost of the SVD behind lstsq; lstsq if the contact Jacobians are rank deficient
        orthogonal, triangular = np.linalg.qr(system)
        return np.linalg.solve(triangular, orthogonal.T @ rhs)[:6]
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(system, rhs, rcond=None)[0][:6]
