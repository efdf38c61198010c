"""``Simulation``: one MuJoCo-simulated robot built from its URDF, with the interface the nodes and tools use.

Physics runs at ``timestep`` (1 ms by default). Commands are held between steps: an effort (feed-forward torque or
force) and optionally PD position targets. Both are turned into actuator force inside MuJoCo at every physics step
and clamped to the URDF effort limits (see :mod:`hamwm_ros.sim.model`).

After ``mj_step`` MuJoCo's derived quantities (accelerations, contact forces, sensor readings, body poses) belong to
the state *before* the step while ``qpos``/``qvel`` are already advanced. Queries that need derived quantities
therefore re-run ``mj_forward`` on the current state first (lazily, once per state), so every reading is consistent
with the reported positions and velocities. ``mj_forward`` changes nothing that the next ``mj_step`` depends on, so
the trajectory is the same whether or not anything is queried.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
import os
from typing import NamedTuple

import mujoco
import numpy as np

from hamwm_ros.sim.model import ACCELEROMETER, CAMERA, GYRO, build_model
from hamwm_ros.sim.robots import ROBOTS

_FLOOR_HEIGHT = 0.0
_RESET_NOISE = {'floating': 0.02, 'fixed': 0.1}  # rad (or m) of uniform noise on reset(seed=...)


class SimulationError(RuntimeError):
    """The physics diverged (MuJoCo detected a non-finite or exploding state)."""


class JointStateSample(NamedTuple):
    """Joint positions, velocities and applied actuator efforts, (n,) each, in ``Simulation.joint_names`` order."""

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


class BaseState(NamedTuple):
    """Pose and motion of the robot's root link (the floating base for the humanoid).

    ``linear_velocity`` is in the world frame, ``angular_velocity`` in the base frame, and ``linear_acceleration``
    is the proper acceleration an IMU at the base origin measures, in the base frame (about +9.81 on z at rest).
    """

    position: np.ndarray
    orientation_xyzw: np.ndarray
    linear_velocity: np.ndarray
    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray


def _vector(value, n: int, name: str, allow_scalar: bool = False) -> np.ndarray:
    """Validate a length-n float vector (or a scalar broadcast to it) and return a float64 copy."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{name} must be numeric: {err}') from err
    if allow_scalar and array.ndim == 0:
        array = np.full(n, float(array))
    if array.shape != (n,):
        raise ValueError(f'{name} must have shape ({n},), got {array.shape}')
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{name} contains non-finite values: {array}')
    return array


class Simulation:
    """A MuJoCo simulation of one of the shipped robots.

    Parameters
    ----------
    robot
        One of :data:`ROBOTS`: ``'pendulum'``, ``'cartpole'``, ``'acrobot'``, ``'humanoid'``.
    timestep
        Physics step in seconds, at most 0.01 (default 1 ms, 1 kHz).
    render_size
        ``(width, height)`` of :meth:`render`'s images, or None for no renderer (no OpenGL context is created).
    hold_nominal
        Whether :meth:`reset` arms a PD hold of :attr:`nominal_posture` with the default gains. Default: True for
        floating-base robots (so the humanoid stands after reset), False for the fixed-base ones (they start passive,
        with zero effort).

    Attributes
    ----------
    default_kp, default_kd : numpy.ndarray
        Per-joint PD gains used when :meth:`set_position_targets` gets no gains (0 on passive joints). Humanoid:
        hip pitch / hip roll / knee / ankle pitch / waist pitch 400, ankle roll 300, hip yaw / waist yaw 200,
        shoulder pitch and roll 60, shoulder yaw and elbow 40, neck 10 N m/rad, and ``kd = 0.06 * kp`` N m s/rad
        (stable at 1 kHz because the implicit integrator handles the damping term). Pendulum 50 / 10, cart
        40 N/m / 8 N s/m, acrobot elbow 10 / 1.

    Raises
    ------
    ValueError
        If the robot is unknown, the timestep invalid or the render size not two positive integers.
    RuntimeError
        If ``render_size`` is given but no offscreen OpenGL context can be created.
    """

    def __init__(self, robot: str, timestep: float = 0.001, render_size: tuple[int, int] | None = None,
                 hold_nominal: bool | None = None) -> None:
        if robot not in ROBOTS:
            raise ValueError(f'unknown robot {robot!r}; choose one of {", ".join(ROBOTS)}')
        if render_size is not None:
            if (not isinstance(render_size, (tuple, list)) or len(render_size) != 2
                    or not all(isinstance(v, (int, np.integer)) and 0 < v <= 4096 for v in render_size)):
                raise ValueError(f'render_size must be (width, height) positive integers, got {render_size!r}')
        self.robot = robot
        built = build_model(robot, timestep, render_size)
        self._built = built
        self.model = built.model
        self.data = mujoco.MjData(self.model)
        urdf = built.urdf
        self.joint_names: tuple[str, ...] = urdf.names
        self.floating_base: bool = built.settings.floating_base
        self.effort_limits: np.ndarray = urdf.effort_limits.copy()
        self.velocity_limits: np.ndarray = urdf.velocity_limits.copy()
        self.position_limits: np.ndarray = urdf.position_limits.copy()
        n = len(self.joint_names)
        self.n_joints = n
        settings = built.settings
        self.nominal_posture: np.ndarray = np.array([settings.nominal.get(j, 0.0) for j in self.joint_names])
        self.nominal_posture = np.clip(self.nominal_posture, self.position_limits[:, 0], self.position_limits[:, 1])
        actuated = built.actuated
        self.default_kp: np.ndarray = np.array([settings.kp.get(j, settings.kp.get('*', 0.0)) for j in urdf.names])
        self.default_kd: np.ndarray = np.array([settings.kd.get(j, settings.kd.get('*', 0.0)) for j in urdf.names])
        self.default_kp[~actuated] = 0.0
        self.default_kd[~actuated] = 0.0
        self.actuated: np.ndarray = actuated.copy()
        self.hold_nominal = self.floating_base if hold_nominal is None else bool(hold_nominal)

        self._qadr = built.qpos_adr
        self._dadr = built.dof_adr
        self._act_joint = built.actuator_joint
        self._gyro = self.model.sensor(GYRO)
        self._accel = self.model.sensor(ACCELEROMETER)
        self._camera = self.model.camera(CAMERA).id
        self._floor = built.floor_geom
        self._root = built.root_body
        self._push_body = built.push_body

        self._effort = np.zeros(n)
        self._q_ref = np.zeros(n)
        self._v_ref = np.zeros(n)
        self._kp = np.zeros(n)
        self._kd = np.zeros(n)
        self._push_until = -1.0
        self._stale = True
        self._warnings = 0

        self.render_size = None if render_size is None else (int(render_size[0]), int(render_size[1]))
        self._renderer = None
        if render_size is not None:
            try:
                self._renderer = mujoco.Renderer(self.model, height=int(render_size[1]), width=int(render_size[0]))
            except Exception as err:  # MuJoCo raises a bare Exception/FatalError when no GL context can be made
                raise RuntimeError(f'cannot render offscreen (MUJOCO_GL={os.environ.get("MUJOCO_GL", "")!r}): a '
                                   'headless machine needs MUJOCO_GL=egl set before mujoco is first imported, '
                                   f'and libEGL: {err}') from err
        self.reset()

    # ------------------------------------------------------------------ state and commands
    @property
    def timestep(self) -> float:
        """Physics step, seconds."""
        return float(self.model.opt.timestep)

    @property
    def joint_qpos_indices(self) -> np.ndarray:
        """Index of each joint (``joint_names`` order) in MuJoCo's ``data.qpos`` (for direct, fast reads)."""
        return self._qadr

    @property
    def joint_dof_indices(self) -> np.ndarray:
        """Index of each joint in MuJoCo's ``data.qvel`` / ``qacc`` / ``qfrc_*``."""
        return self._dadr

    @property
    def held_effort(self) -> np.ndarray:
        """The clamped effort set by :meth:`set_effort` (feed-forward when PD targets are active), (n,)."""
        return self._effort.copy()

    @property
    def time(self) -> float:
        """Simulated time since the last reset, seconds."""
        return float(self.data.time)

    def reset(self, seed: int | None = None) -> None:
        """Return to the nominal posture at rest, with zero effort and no push.

        Parameters
        ----------
        seed
            None: exactly the nominal posture. An integer: the nominal posture plus reproducible uniform noise
            (+-0.02 rad on the humanoid, +-0.1 on the fixed-base robots), clipped to the joint limits.

        Raises
        ------
        ValueError
            If ``seed`` is not None or a non-negative integer.
        """
        mujoco.mj_resetData(self.model, self.data)
        q = self.nominal_posture.copy()
        if seed is not None:
            if not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f'seed must be a non-negative integer or None, got {seed!r}')
            scale = _RESET_NOISE['floating' if self.floating_base else 'fixed']
            q += np.random.default_rng(int(seed)).uniform(-scale, scale, size=q.shape)
            q = np.clip(q, self.position_limits[:, 0], self.position_limits[:, 1])
        self.data.qpos[self._qadr] = q
        if self.floating_base:
            self._place_on_floor()
        self._effort[:] = 0.0
        self._push_until = -1.0
        self.data.xfrc_applied[:] = 0.0
        if self.hold_nominal:
            self._kp, self._kd = self.default_kp.copy(), self.default_kd.copy()
            self._q_ref, self._v_ref = self.nominal_posture.copy(), np.zeros(self.n_joints)
        else:
            self._kp, self._kd = np.zeros(self.n_joints), np.zeros(self.n_joints)
        self._apply_commands()
        self._warnings = self._warning_count()
        self._stale = True

    def set_joint_state(self, position, velocity=None) -> None:
        """Overwrite the joint positions (clipped to the URDF limits) and velocities (default 0).

        The floating base keeps its pose and velocity. Meant for initial conditions of fixed-base robots and tests.

        Raises
        ------
        ValueError
            On a wrong shape or a non-finite value; the state is left unchanged.
        """
        q = _vector(position, self.n_joints, 'joint position')
        v = np.zeros(self.n_joints) if velocity is None else _vector(velocity, self.n_joints, 'joint velocity')
        self.data.qpos[self._qadr] = np.clip(q, self.position_limits[:, 0], self.position_limits[:, 1])
        self.data.qvel[self._dadr] = v
        self._stale = True

    def _place_on_floor(self) -> None:
        """Put the floating base upright at the height where the lowest collision geom touches the floor."""
        self.data.qpos[0:3] = (0.0, 0.0, 1.0)
        self.data.qpos[3:7] = (1.0, 0.0, 0.0, 0.0)
        mujoco.mj_kinematics(self.model, self.data)
        lowest = math.inf
        for g in range(self.model.ngeom):
            if g == self._floor or self.model.geom_contype[g] == 0:
                continue
            # lowest point of the geom's bounding box in the world (exact for the axis-aligned foot boxes)
            half = self.model.geom_size[g]
            rotation = self.data.geom_xmat[g].reshape(3, 3)
            if self.model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX:
                extent = np.abs(rotation[2]) @ half
            elif self.model.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE:
                extent = half[0]
            else:
                extent = self.model.geom_rbound[g]
            lowest = min(lowest, self.data.geom_xpos[g][2] - extent)
        # start 1 mm into the floor, about where the soft contact settles, so the robot starts supported
        self.data.qpos[2] = 1.0 - (lowest - _FLOOR_HEIGHT) - 0.001

    def _apply_commands(self) -> None:
        """Write held commands into MuJoCo: ctrl = tau_ff + kp q_ref + kd v_ref, bias = -kp q - kd qdot."""
        j = self._act_joint
        self.model.actuator_biasprm[:, 1] = -self._kp[j]
        self.model.actuator_biasprm[:, 2] = -self._kd[j]
        self.data.ctrl[:] = self._effort[j] + self._kp[j] * self._q_ref[j] + self._kd[j] * self._v_ref[j]
        self._stale = True

    def set_effort(self, tau: Sequence[float] | np.ndarray) -> None:
        """Hold a joint effort (N m or N), clamped to the URDF effort limits; passive joints get 0.

        While position targets are set, the effort is added to the PD output (feed-forward) before the clamp.

        Parameters
        ----------
        tau
            (n,) efforts in :attr:`joint_names` order.

        Raises
        ------
        ValueError
            If ``tau`` has the wrong shape or a non-finite value; the previous effort is kept.
        """
        tau = _vector(tau, self.n_joints, 'effort')
        self._effort = np.clip(tau, -self.effort_limits, self.effort_limits)
        self._apply_commands()

    def set_position_targets(self, q, v=None, kp=None, kd=None) -> None:
        """Track joint positions with PD control evaluated inside the simulation at every physics step.

        ``effort = clamp(kp (q - q_meas) + kd (v - v_meas) + tau_ff, +-effort_limit)``, with ``tau_ff`` from
        :meth:`set_effort`. Targets are clipped to the URDF position limits.

        Parameters
        ----------
        q
            (n,) target positions.
        v
            (n,) target velocities, default 0.
        kp, kd
            (n,) or scalar non-negative gains; default :attr:`default_kp` / :attr:`default_kd`.

        Raises
        ------
        ValueError
            On a wrong shape, a non-finite value or a negative gain; the previous targets are kept.
        """
        n = self.n_joints
        q = _vector(q, n, 'position target')
        v = np.zeros(n) if v is None else _vector(v, n, 'velocity target')
        kp = self.default_kp.copy() if kp is None else _vector(kp, n, 'kp', allow_scalar=True)
        kd = self.default_kd.copy() if kd is None else _vector(kd, n, 'kd', allow_scalar=True)
        if np.any(kp < 0) or np.any(kd < 0):
            raise ValueError('PD gains must be non-negative')
        self._q_ref = np.clip(q, self.position_limits[:, 0], self.position_limits[:, 1])
        self._v_ref, self._kp, self._kd = v, kp, kd
        self._apply_commands()

    def clear_position_targets(self) -> None:
        """Stop PD tracking; only the effort from :meth:`set_effort` remains."""
        self._kp, self._kd = np.zeros(self.n_joints), np.zeros(self.n_joints)
        self._apply_commands()

    def apply_push(self, force_xyz, duration_s: float, torque_xyz=(0.0, 0.0, 0.0)) -> None:
        """Apply a world-frame wrench at the base's centre of mass for ``duration_s`` seconds of simulated time.

        The "base" is the floating base (humanoid); on the fixed-base robots it is their last link (pendulum bob,
        cart-pole pole, acrobot lower link), where a push does something. A new push replaces a running one.

        Parameters
        ----------
        force_xyz
            (3,) force, N, world frame.
        duration_s
            Positive duration, s.
        torque_xyz
            (3,) torque, N m, world frame.

        Raises
        ------
        ValueError
            On non-finite values or a non-positive duration.
        """
        force = _vector(force_xyz, 3, 'push force')
        torque = _vector(torque_xyz, 3, 'push torque')
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f'push duration must be positive, got {duration_s!r}')
        self.data.xfrc_applied[self._push_body, 0:3] = force
        self.data.xfrc_applied[self._push_body, 3:6] = torque
        # the push covers the physics steps that start before time + duration (at least one step)
        self._push_until = self.data.time + max(duration_s, self.timestep) - 0.5 * self.timestep
        self._stale = True

    def step(self, n: int = 1) -> None:
        """Advance the physics by ``n`` steps.

        Raises
        ------
        ValueError
            If ``n`` is not a non-negative integer.
        SimulationError
            If MuJoCo detected a diverging state (it would otherwise reset silently); call :meth:`reset`.
        """
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f'step count must be a non-negative integer, got {n!r}')
        remaining = int(n)
        while remaining > 0 and self._push_until >= 0.0:  # one step at a time while a push is on
            mujoco.mj_step(self.model, self.data)
            remaining -= 1
            if self.data.time >= self._push_until:
                self.data.xfrc_applied[self._push_body] = 0.0
                self._push_until = -1.0
        if remaining > 0:
            mujoco.mj_step(self.model, self.data, nstep=remaining)
        self._stale = True
        count = self._warning_count()
        if count != self._warnings:
            self._warnings = count
            raise SimulationError(f'{self.robot}: physics diverged at t={self.data.time:.3f} s '
                                  f'(MuJoCo warning: bad qacc or instability); call reset()')

    def _warning_count(self) -> int:
        return int(self.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number)

    def _forward(self) -> None:
        """Bring derived quantities (acceleration, contacts, sensors, poses) in line with the current state."""
        if self._stale:
            mujoco.mj_forward(self.model, self.data)
            self._stale = False

    # ------------------------------------------------------------------ readings
    def joint_state(self) -> JointStateSample:
        """Positions, velocities and applied actuator efforts of :attr:`joint_names`."""
        self._forward()
        return JointStateSample(self.data.qpos[self._qadr].copy(), self.data.qvel[self._dadr].copy(),
                                self.data.qfrc_actuator[self._dadr].copy())

    def joint_accelerations(self) -> np.ndarray:
        """MuJoCo's joint accelerations (ground truth), (n,)."""
        self._forward()
        return self.data.qacc[self._dadr].copy()

    def base_state(self) -> BaseState:
        """Pose, velocity and IMU readings of the root link (see :class:`BaseState`)."""
        self._forward()
        wxyz = self.data.xquat[self._root]
        if self.floating_base:
            linear_velocity = self.data.qvel[0:3].copy()  # free joint: world-frame linear velocity
        else:
            linear_velocity = np.zeros(3)
        return BaseState(
            position=self.data.xpos[self._root].copy(),
            orientation_xyzw=np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]]),
            linear_velocity=linear_velocity,
            angular_velocity=self.data.sensordata[self._gyro.adr[0]:self._gyro.adr[0] + 3].copy(),
            linear_acceleration=self.data.sensordata[self._accel.adr[0]:self._accel.adr[0] + 3].copy(),
        )

    def floating_base_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The free joint's MuJoCo ``qpos[0:7]`` (x, y, z, qw, qx, qy, qz) and ``qvel[0:6]``; fixed base: empty."""
        if not self.floating_base:
            return np.zeros(0), np.zeros(0)
        return self.data.qpos[0:7].copy(), self.data.qvel[0:6].copy()

    def pinocchio_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Configuration, velocity and acceleration in Pinocchio's conventions for the same URDF.

        Fixed base: the joint arrays as they are. Floating base (Pinocchio ``JointModelFreeFlyer`` root):
        ``q = [x, y, z, qx, qy, qz, qw, joints]``; ``v`` and ``a`` start with the base's linear and angular velocity
        (acceleration) expressed in the base frame. MuJoCo's free joint keeps the linear part in the world frame,
        so ``v_lin = R^T pdot`` and ``a_lin = d/dt(R^T pdot) = R^T pddot - omega x v_lin``.

        Returns
        -------
        tuple of numpy.ndarray
            ``(q, v, a)`` with Pinocchio's ``nq`` and ``nv`` lengths.
        """
        self._forward()
        qj = self.data.qpos[self._qadr]
        vj = self.data.qvel[self._dadr]
        aj = self.data.qacc[self._dadr]
        if not self.floating_base:
            return qj.copy(), vj.copy(), aj.copy()
        pos, wxyz = self.data.qpos[0:3], self.data.qpos[3:7]
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, wxyz)
        rotation = rotation.reshape(3, 3)
        omega = self.data.qvel[3:6]
        v_lin = rotation.T @ self.data.qvel[0:3]
        a_lin = rotation.T @ self.data.qacc[0:3] - np.cross(omega, v_lin)
        q = np.concatenate([pos, wxyz[1:4], wxyz[0:1], qj])
        v = np.concatenate([v_lin, omega, vj])
        a = np.concatenate([a_lin, self.data.qacc[3:6], aj])
        return q, v, a

    def center_of_pressure(self) -> tuple[np.ndarray, float] | None:
        """Centre of pressure of the floor's contact forces on the robot.

        The total contact wrench on the robot from the floor (``mj_contactForce`` rotated to the world, moments
        about the world origin, contact points where MuJoCo puts them) is reduced to the point on the floor plane
        ``z = 0`` about which its horizontal moment vanishes: ``x = -M_y / F_z``, ``y = M_x / F_z`` (with the
        ``F_x, F_y`` terms for the plane's height, 0 here). For contacts exactly on the plane this is the
        normal-force-weighted mean of the contact points.

        Returns
        -------
        tuple or None
            ``(cop_xyz, total_normal_force)``, or None when nothing touches the floor (or the force is ~0).
        """
        self._forward()
        force = np.zeros(3)
        moment = np.zeros(3)
        local = np.zeros(6)
        data = self.data
        for i in range(data.ncon):
            contact = data.contact[i]
            if contact.geom1 == self._floor:
                sign = 1.0  # the contact frame's normal points from geom1 (floor) to geom2 (robot)
            elif contact.geom2 == self._floor:
                sign = -1.0
            else:
                continue
            mujoco.mj_contactForce(self.model, data, i, local)
            frame = contact.frame.reshape(3, 3)  # rows: normal, tangent 1, tangent 2
            f_world = sign * (frame.T @ local[0:3])
            t_world = sign * (frame.T @ local[3:6])
            force += f_world
            moment += np.cross(contact.pos, f_world) + t_world
        if force[2] <= 1e-9:
            return None
        h = _FLOOR_HEIGHT
        cop = np.array([(h * force[0] - moment[1]) / force[2], (moment[0] + h * force[1]) / force[2], h])
        return cop, float(force[2])

    # ------------------------------------------------------------------ rendering
    def render(self) -> np.ndarray:
        """An RGB image from the scene camera.

        Returns
        -------
        numpy.ndarray
            (height, width, 3) uint8.

        Raises
        ------
        RuntimeError
            If the simulation was made without ``render_size`` (or closed).
        """
        if self._renderer is None:
            raise RuntimeError('this Simulation has no renderer: pass render_size=(width, height)')
        self._forward()
        self._renderer.update_scene(self.data, camera=self._camera)
        return self._renderer.render().copy()

    def camera_info(self) -> dict:
        """Pinhole intrinsics of the scene camera (sensor_msgs/CameraInfo fields), square pixels.

        Raises
        ------
        RuntimeError
            If the simulation has no render size.
        """
        if self.render_size is None:
            raise RuntimeError('this Simulation has no renderer: pass render_size=(width, height)')
        width, height = int(self.render_size[0]), int(self.render_size[1])
        fovy = math.radians(float(self.model.cam_fovy[self._camera]))
        focal = 0.5 * height / math.tan(0.5 * fovy)
        return {'width': width, 'height': height, 'fx': focal, 'fy': focal, 'cx': 0.5 * width, 'cy': 0.5 * height,
                'frame_id': 'scene_camera_optical_frame'}

    def close(self) -> None:
        """Release the renderer's OpenGL context (the simulation itself stays usable without rendering)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f'Simulation({self.robot!r}, timestep={self.timestep}, joints={self.n_joints}, '
                f'floating_base={self.floating_base})')
