"""The four shipped robots: where their URDFs are, what the URDF says about their joints, and sim-side settings.

The URDF is the only description of a robot's kinematics, inertia and limits. What is here is what a URDF cannot
say: the resting posture, default PD gains, the integrator, rotor inertia (armature) and where the scene camera
looks. Joint limits are read from the URDF with a small parser so that they need neither MuJoCo nor Pinocchio.

Convention for underactuated robots: a joint whose URDF effort limit is 0 is passive (the cart-pole's pole, the
acrobot's shoulder). It is still listed in ``joint_names`` (it is part of the state), but no effort reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import xml.etree.ElementTree as ET

import numpy as np

from hamwm_ros import package_path

ROBOTS: tuple[str, ...] = ('pendulum', 'cartpole', 'acrobot', 'humanoid')


def robot_urdf_path(robot: str) -> Path:
    """Path of a shipped robot's URDF file.

    Parameters
    ----------
    robot
        One of :data:`ROBOTS`.

    Returns
    -------
    pathlib.Path
        The URDF inside the installed package.

    Raises
    ------
    ValueError
        If ``robot`` is not a shipped robot.
    FileNotFoundError
        If the package was installed without its URDFs.
    """
    if robot not in ROBOTS:
        raise ValueError(f'unknown robot {robot!r}; choose one of {", ".join(ROBOTS)}')
    path = package_path('robots', f'{robot}.urdf')
    if not path.is_file():
        raise FileNotFoundError(f'URDF for {robot!r} missing at {path}')
    return path


@dataclass(frozen=True)
class UrdfJoints:
    """Movable joints of a URDF, in file order (the shipped files are written in Pinocchio's depth-first order)."""

    names: tuple[str, ...]
    types: tuple[str, ...]
    position_limits: np.ndarray  # (n, 2)
    velocity_limits: np.ndarray  # (n,)
    effort_limits: np.ndarray  # (n,)
    damping: np.ndarray  # (n,)
    root_link: str


def parse_urdf_joints(path: str | Path) -> UrdfJoints:
    """Read the movable joints and their limits from a URDF.

    Parameters
    ----------
    path
        URDF file.

    Returns
    -------
    UrdfJoints
        Names, types and limits of the revolute and prismatic joints, in file order.

    Raises
    ------
    ValueError
        If the file is not a URDF, has continuous/planar/floating joints (unsupported: Pinocchio gives continuous
        joints two configuration variables), a movable joint without complete, finite limits, or no single root.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f'cannot read URDF {path}: {err}') from err
    if root.tag != 'robot':
        raise ValueError(f'{path}: root element is <{root.tag}>, expected <robot>')
    names, types, pos, vel, eff, damp = [], [], [], [], [], []
    children = set()
    for joint in root.findall('joint'):
        jtype = joint.get('type')
        name = joint.get('name')
        child = joint.find('child')
        if child is not None:
            children.add(child.get('link'))
        if jtype == 'fixed':
            continue
        if jtype not in ('revolute', 'prismatic'):
            raise ValueError(f'{path}: joint {name!r} has unsupported type {jtype!r} (use revolute or prismatic)')
        limit = joint.find('limit')
        if limit is None:
            raise ValueError(f'{path}: joint {name!r} has no <limit>')
        try:
            values = [float(limit.get(key)) for key in ('lower', 'upper', 'velocity', 'effort')]
        except (TypeError, ValueError) as err:
            raise ValueError(f'{path}: joint {name!r} needs numeric lower, upper, velocity and effort') from err
        lower, upper, velocity, effort = values
        if not np.all(np.isfinite(values)) or lower >= upper or velocity <= 0 or effort < 0:
            raise ValueError(f'{path}: joint {name!r} has invalid limits {values}')
        dynamics = joint.find('dynamics')
        names.append(name)
        types.append(jtype)
        pos.append((lower, upper))
        vel.append(velocity)
        eff.append(effort)
        damp.append(float(dynamics.get('damping', 0.0)) if dynamics is not None else 0.0)
    roots = [link.get('name') for link in root.findall('link') if link.get('name') not in children]
    if len(roots) != 1:
        raise ValueError(f'{path}: expected one root link, found {roots}')
    if not names:
        raise ValueError(f'{path}: no movable joints')
    return UrdfJoints(tuple(names), tuple(types), np.array(pos, dtype=np.float64), np.array(vel, dtype=np.float64),
                      np.array(eff, dtype=np.float64), np.array(damp, dtype=np.float64), roots[0])


@dataclass(frozen=True)
class RobotSettings:
    """Simulation-side settings of one robot (everything the URDF cannot express)."""

    floating_base: bool
    integrator: str  # MuJoCo integrator name: 'RK4' conserves energy on the smooth robots, 'IMPLICITFAST' is
    # stable with stiff PD gains and contacts
    nominal: dict[str, float]  # joint -> nominal angle; joints not named are 0
    kp: dict[str, float]  # joint (or '*' default) -> stiffness, N m / rad or N / m
    kd: dict[str, float]  # joint (or '*' default) -> damping, N m s / rad or N s / m
    armature_per_effort: float  # rotor inertia added per N m of effort limit (kg m^2 per N m)
    camera_target: tuple[float, float, float]  # what the scene camera looks at (humanoid: offset from the CoM)
    camera_position: tuple[float, float, float]
    camera_fovy: float = 45.0
    push_body: str | None = None  # body apply_push acts on; None -> the URDF root link


def _leg_gains(kp_scale: float) -> dict[str, float]:
    gains = {}
    for side in ('left', 'right'):
        gains.update({f'{side}_hip_yaw': 200.0, f'{side}_hip_roll': 400.0, f'{side}_hip_pitch': 400.0,
                      f'{side}_knee': 400.0, f'{side}_ankle_pitch': 400.0, f'{side}_ankle_roll': 300.0,
                      f'{side}_shoulder_pitch': 60.0, f'{side}_shoulder_roll': 60.0, f'{side}_shoulder_yaw': 40.0,
                      f'{side}_elbow': 40.0})
    gains.update({'waist_yaw': 200.0, 'waist_pitch': 400.0, 'neck_yaw': 10.0, 'neck_pitch': 10.0})
    return {k: v * kp_scale for k, v in gains.items()}


SETTINGS: dict[str, RobotSettings] = {
    'pendulum': RobotSettings(
        floating_base=False, integrator='RK4', nominal={}, kp={'*': 50.0}, kd={'*': 10.0}, armature_per_effort=0.0,
        camera_target=(0.0, 0.0, 1.2), camera_position=(0.0, -3.2, 1.2), push_body='pole'),
    'cartpole': RobotSettings(
        floating_base=False, integrator='RK4', nominal={}, kp={'*': 40.0}, kd={'*': 8.0}, armature_per_effort=0.0,
        camera_target=(0.0, 0.0, 1.0), camera_position=(0.0, -5.0, 1.0), push_body='pole'),
    'acrobot': RobotSettings(
        floating_base=False, integrator='RK4', nominal={}, kp={'*': 10.0}, kd={'*': 1.0}, armature_per_effort=0.0,
        camera_target=(0.0, 0.0, 2.2), camera_position=(0.0, -5.5, 2.2), push_body='lower_link'),
    'humanoid': RobotSettings(
        floating_base=True, integrator='IMPLICITFAST',
        nominal={'left_hip_pitch': -0.25, 'left_knee': 0.5, 'left_ankle_pitch': -0.25,
                 'right_hip_pitch': -0.25, 'right_knee': 0.5, 'right_ankle_pitch': -0.25,
                 'left_shoulder_roll': 0.15, 'right_shoulder_roll': -0.15,
                 'left_elbow': -0.3, 'right_elbow': -0.3},
        kp=_leg_gains(1.0), kd={k: 0.06 * v for k, v in _leg_gains(1.0).items()},
        armature_per_effort=2e-4, camera_target=(0.0, 0.0, 0.0), camera_position=(2.2, -1.6, 0.5)),
}
