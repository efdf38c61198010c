"""Generate ``humanoid.urdf``: a 24-joint, ~38 kg, ~1.2 m humanoid with flat box feet.

The URDF is the one robot description: MuJoCo (``hamwm_ros.sim``) and Pinocchio (``hamwm_ros.wholebody``) both load
the shipped file. This script only exists so the numbers below can be read and changed in one place; the generated
file is committed. Run ``python -m hamwm_ros.robots.make_humanoid`` to rewrite it.

Conventions: x forward, y left, z up. The root link is ``pelvis`` (the loaders add the floating base). Links are
written depth-first with siblings sorted by joint name (left leg, right leg, waist, left arm, neck, right arm): that
is the order urdfdom, hence Pinocchio, visits them, so the file's joint order equals Pinocchio's and MuJoCo's.
Inertias are those of the solid primitive named next to each link. Every movable joint has position, velocity and
effort limits; knee flexion is positive, hip and elbow flexion negative (right-hand rule about +y). Fixed frames
``left_sole`` / ``right_sole`` sit at the centre of each sole, z up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FOOT_SIZE = (0.22, 0.11, 0.03)  # sole box: length (x), width (y), thickness (z), metres
FOOT_OFFSET_X = 0.03  # sole centre ahead of the ankle axis
ANKLE_HEIGHT = 0.05  # ankle axis above the sole plane
THIGH = 0.25
SHANK = 0.25
HIP_Y = 0.08
HIP_Z = -0.06


@dataclass
class Link:
    """One link and the joint that attaches it to its parent."""

    name: str
    parent: str | None
    joint: str | None = None
    joint_type: str = 'revolute'
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    limits: tuple[float, float, float, float] | None = None  # lower, upper, effort, velocity
    mass: float = 0.0
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shape: tuple = ()  # ('box', sx, sy, sz) | ('cylinder', r, length) | ('sphere', r), for inertia and collision
    collision: bool = False
    damping: float = 0.3
    colour: tuple[float, float, float, float] = (0.7, 0.7, 0.75, 1.0)
    children: list[Link] = field(default_factory=list)


def _inertia(mass: float, shape: tuple) -> tuple[float, float, float]:
    """Principal inertia of a solid primitive about its centre, axes aligned with the link frame."""
    kind = shape[0]
    if kind == 'box':
        sx, sy, sz = shape[1:]
        return (mass * (sy**2 + sz**2) / 12, mass * (sx**2 + sz**2) / 12, mass * (sx**2 + sy**2) / 12)
    if kind == 'cylinder':
        r, length = shape[1:]
        side = mass * (3 * r**2 + length**2) / 12
        return (side, side, mass * r**2 / 2)
    if kind == 'sphere':
        i = 2 * mass * shape[1] ** 2 / 5
        return (i, i, i)
    raise ValueError(f'unknown shape {shape!r}')


def _leg(side: str, s: float) -> Link:
    hip_roll_limits = (-0.4, 0.8) if s > 0 else (-0.8, 0.4)
    foot_z = -ANKLE_HEIGHT + FOOT_SIZE[2] / 2
    sole = Link(f'{side}_sole', None, f'{side}_sole_joint', 'fixed', (FOOT_OFFSET_X, 0.0, -ANKLE_HEIGHT))
    foot = Link(f'{side}_foot', None, f'{side}_ankle_roll', origin=(0, 0, 0), axis=(1, 0, 0),
                limits=(-0.4, 0.4, 40.0, 12.0), mass=0.8, com=(FOOT_OFFSET_X, 0.0, foot_z),
                shape=('box', *FOOT_SIZE), collision=True, colour=(0.25, 0.25, 0.3, 1.0), children=[sole])
    ankle = Link(f'{side}_ankle_link', None, f'{side}_ankle_pitch', origin=(0, 0, -SHANK), axis=(0, 1, 0),
                 limits=(-0.9, 0.7, 60.0, 12.0), mass=0.3, shape=('box', 0.05, 0.05, 0.05), children=[foot])
    shank = Link(f'{side}_shank', None, f'{side}_knee', origin=(0, 0, -THIGH), axis=(0, 1, 0),
                 limits=(0.0, 2.4, 120.0, 14.0), mass=2.0, com=(0, 0, -0.11), shape=('cylinder', 0.04, SHANK),
                 collision=True, children=[ankle])
    thigh = Link(f'{side}_thigh', None, f'{side}_hip_pitch', origin=(0, 0, 0), axis=(0, 1, 0),
                 limits=(-2.0, 0.6, 120.0, 12.0), mass=3.5, com=(0, 0, -0.11), shape=('cylinder', 0.05, THIGH),
                 collision=True, children=[shank])
    hip_roll = Link(f'{side}_hip_roll_link', None, f'{side}_hip_roll', origin=(0, 0, 0), axis=(1, 0, 0),
                    limits=(*hip_roll_limits, 100.0, 12.0), mass=1.0, shape=('box', 0.08, 0.08, 0.08),
                    children=[thigh])
    return Link(f'{side}_hip_yaw_link', None, f'{side}_hip_yaw', origin=(0, s * HIP_Y, HIP_Z), axis=(0, 0, 1),
                limits=(-0.6, 0.6, 60.0, 12.0), mass=1.0, shape=('box', 0.08, 0.08, 0.08), children=[hip_roll])


def _arm(side: str, s: float) -> Link:
    roll_limits = (-0.3, 2.5) if s > 0 else (-2.5, 0.3)
    forearm = Link(f'{side}_forearm', None, f'{side}_elbow', origin=(0, 0, -0.22), axis=(0, 1, 0),
                   limits=(-2.4, 0.0, 20.0, 14.0), mass=0.8, com=(0, 0, -0.1), shape=('cylinder', 0.03, 0.22),
                   collision=True, damping=0.1)
    upper = Link(f'{side}_upper_arm', None, f'{side}_shoulder_yaw', origin=(0, 0, 0), axis=(0, 0, 1),
                 limits=(-1.5, 1.5, 20.0, 12.0), mass=1.2, com=(0, 0, -0.1), shape=('cylinder', 0.035, 0.22),
                 collision=True, damping=0.1, children=[forearm])
    roll = Link(f'{side}_shoulder_roll_link', None, f'{side}_shoulder_roll', origin=(0, 0, 0), axis=(1, 0, 0),
                limits=(*roll_limits, 30.0, 12.0), mass=0.5, shape=('box', 0.06, 0.06, 0.06), damping=0.1,
                children=[upper])
    return Link(f'{side}_shoulder_pitch_link', None, f'{side}_shoulder_pitch', origin=(0, s * 0.18, 0.29),
                axis=(0, 1, 0), limits=(-3.0, 1.0, 30.0, 12.0), mass=0.5, shape=('box', 0.06, 0.06, 0.06),
                damping=0.1, children=[roll])


def humanoid() -> Link:
    """The humanoid's link tree, rooted at the pelvis."""
    head = Link('head', None, 'neck_pitch', origin=(0, 0, 0), axis=(0, 1, 0), limits=(-0.5, 0.8, 5.0, 8.0),
                mass=2.0, com=(0, 0, 0.1), shape=('sphere', 0.09), collision=True, damping=0.05,
                colour=(0.9, 0.75, 0.2, 1.0))
    neck = Link('neck_link', None, 'neck_yaw', origin=(0, 0, 0.34), axis=(0, 0, 1), limits=(-1.2, 1.2, 5.0, 8.0),
                mass=0.3, shape=('box', 0.04, 0.04, 0.04), damping=0.05, children=[head])
    torso = Link('torso', None, 'waist_pitch', origin=(0, 0, 0), axis=(0, 1, 0), limits=(-0.5, 1.0, 100.0, 10.0),
                 mass=7.0, com=(0, 0, 0.16), shape=('box', 0.16, 0.28, 0.32), collision=True,
                 colour=(0.2, 0.45, 0.8, 1.0), children=[_arm('left', 1.0), _arm('right', -1.0), neck])
    waist = Link('waist_link', None, 'waist_yaw', origin=(0, 0, 0.08), axis=(0, 0, 1), limits=(-1.0, 1.0, 60.0, 10.0),
                 mass=1.0, shape=('box', 0.08, 0.08, 0.08), children=[torso])
    return Link('pelvis', None, mass=5.0, shape=('box', 0.16, 0.26, 0.12), collision=True,
                colour=(0.2, 0.45, 0.8, 1.0), children=[_leg('left', 1.0), _leg('right', -1.0), waist])


def _f(values) -> str:
    return ' '.join(f'{v:.6g}' for v in values)


def _geometry(shape: tuple) -> str:
    if shape[0] == 'box':
        return f'<box size="{_f(shape[1:])}"/>'
    if shape[0] == 'cylinder':
        return f'<cylinder radius="{shape[1]:.6g}" length="{shape[2]:.6g}"/>'
    return f'<sphere radius="{shape[1]:.6g}"/>'


def _emit(link: Link, parent: str | None, out: list[str]) -> None:
    if parent is not None:
        out.append(f'  <joint name="{link.joint}" type="{link.joint_type}">')
        out.append(f'    <parent link="{parent}"/>')
        out.append(f'    <child link="{link.name}"/>')
        out.append(f'    <origin xyz="{_f(link.origin)}" rpy="0 0 0"/>')
        if link.joint_type != 'fixed':
            lower, upper, effort, velocity = link.limits
            out.append(f'    <axis xyz="{_f(link.axis)}"/>')
            out.append(f'    <limit lower="{lower:.6g}" upper="{upper:.6g}" effort="{effort:.6g}" '
                       f'velocity="{velocity:.6g}"/>')
            out.append(f'    <dynamics damping="{link.damping:.6g}" friction="0"/>')
        out.append('  </joint>')
    out.append(f'  <link name="{link.name}">')
    if link.mass > 0:
        ixx, iyy, izz = _inertia(link.mass, link.shape)
        out.append('    <inertial>')
        out.append(f'      <origin xyz="{_f(link.com)}" rpy="0 0 0"/>')
        out.append(f'      <mass value="{link.mass:.6g}"/>')
        out.append(f'      <inertia ixx="{ixx:.6g}" ixy="0" ixz="0" iyy="{iyy:.6g}" iyz="0" izz="{izz:.6g}"/>')
        out.append('    </inertial>')
    if link.collision:
        # the collision primitive sits where the mass is (feet: the sole box)
        geometry = _geometry(link.shape)
        out.append('    <visual>')
        out.append(f'      <origin xyz="{_f(link.com)}" rpy="0 0 0"/>')
        out.append(f'      <geometry>{geometry}</geometry>')
        out.append(f'      <material name="{link.name}_colour"><color rgba="{_f(link.colour)}"/></material>')
        out.append('    </visual>')
        out.append('    <collision>')
        out.append(f'      <origin xyz="{_f(link.com)}" rpy="0 0 0"/>')
        out.append(f'      <geometry>{geometry}</geometry>')
        out.append('    </collision>')
    out.append('  </link>')
    # urdfdom (hence Pinocchio) visits children sorted by joint name; writing them in that order keeps the file's
    # joint order equal to Pinocchio's and MuJoCo's
    for child in sorted(link.children, key=lambda c: c.joint):
        _emit(child, link.name, out)


def urdf_text() -> str:
    """The humanoid URDF as a string."""
    out = ['<?xml version="1.0"?>',
           '<!-- Generated by hamwm_ros/robots/make_humanoid.py; edit the script, not this file. -->',
           '<robot name="humanoid">']
    _emit(humanoid(), None, out)
    out.append('</robot>')
    return '\n'.join(out) + '\n'


def main() -> int:
    """Write ``humanoid.urdf`` next to this script."""
    path = Path(__file__).resolve().parent / 'humanoid.urdf'
    path.write_text(urdf_text())
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
