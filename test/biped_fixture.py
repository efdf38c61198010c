"""A small floating-base biped written for the whole-body tests (not the shipped humanoid).

Two 6-dof legs with flat box feet, a torso yaw joint, an arm pitch joint and a continuous "head" joint (Pinocchio
stores it as cos/sin), with off-centre link masses and full inertia tensors so nothing cancels by symmetry.
"""

from __future__ import annotations

FOOT = (0.22, 0.11, 0.04)  # foot collision box (x, y, z), metres


def _inertial(mass: float, xyz: str, ixx: float, iyy: float, izz: float, ixy: float = 0.0) -> str:
    return (f'<inertial><origin xyz="{xyz}" rpy="0 0 0"/><mass value="{mass}"/>'
            f'<inertia ixx="{ixx}" ixy="{ixy}" ixz="0.001" iyy="{iyy}" iyz="0" izz="{izz}"/></inertial>')


def _link(name: str, inertial: str, collision: str = '') -> str:
    return f'<link name="{name}">{inertial}{collision}</link>'


def _joint(name: str, kind: str, parent: str, child: str, xyz: str, axis: str = '0 0 1') -> str:
    limit = '<limit lower="-2.5" upper="2.5" effort="100" velocity="10"/>' if kind in ('revolute', 'prismatic') else ''
    axis_tag = f'<axis xyz="{axis}"/>' if kind != 'fixed' else ''
    return (f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
            f'<origin xyz="{xyz}" rpy="0 0 0"/>{axis_tag}{limit}</joint>')


def biped_urdf() -> str:
    """URDF text of the test biped (sole frames ``l_sole`` and ``r_sole``)."""
    parts = ['<?xml version="1.0"?>', '<robot name="test_biped">']
    parts.append(_link('pelvis', _inertial(8.0, '0.01 0 0.02', 0.08, 0.06, 0.09, 0.002)))
    parts.append(_link('torso', _inertial(12.0, '0.02 0.01 0.25', 0.3, 0.25, 0.12)))
    parts.append(_joint('torso_yaw', 'revolute', 'pelvis', 'torso', '0 0 0.1', '0 0 1'))
    parts.append(_link('arm', _inertial(2.0, '0 0 -0.2', 0.03, 0.03, 0.004)))
    parts.append(_joint('arm_pitch', 'revolute', 'torso', 'arm', '0 0.2 0.4', '0 1 0'))
    parts.append(_link('head', _inertial(3.0, '0.03 0 0.1', 0.02, 0.02, 0.015)))
    parts.append(_joint('head_yaw', 'continuous', 'torso', 'head', '0 0 0.55', '0 0 1'))
    box = (f'<collision><origin xyz="0.03 0 0" rpy="0 0 0"/><geometry><box size="{FOOT[0]} {FOOT[1]} {FOOT[2]}"/>'
           '</geometry></collision>')
    for side, y in (('l', 0.1), ('r', -0.1)):
        chain = [
            (f'{side}_hip_yaw', '0 0 1', 'pelvis', f'0 {y} -0.05', _inertial(1.0, '0 0 -0.03', 0.003, 0.003, 0.002)),
            (f'{side}_hip_roll', '1 0 0', None, '0 0 -0.05', _inertial(1.0, '0 0 -0.02', 0.003, 0.003, 0.002)),
            (f'{side}_hip_pitch', '0 1 0', None, '0 0 -0.04', _inertial(4.0, '0.01 0 -0.15', 0.05, 0.05, 0.01)),
            (f'{side}_knee', '0 1 0', None, '0 0 -0.32', _inertial(3.0, '0 0.005 -0.15', 0.04, 0.04, 0.008)),
            (f'{side}_ankle_pitch', '0 1 0', None, '0 0 -0.32', _inertial(0.5, '0 0 0', 0.001, 0.001, 0.001)),
        ]
        parent = 'pelvis'
        for joint, axis, explicit_parent, xyz, inertial in chain:
            child = joint.replace('_', '_l', 1) + '_link'
            parts.append(_link(child, inertial))
            parts.append(_joint(joint, 'revolute', explicit_parent or parent, child, xyz, axis))
            parent = child
        parts.append(_link(f'{side}_foot', _inertial(1.2, '0.03 0 -0.01', 0.002, 0.006, 0.007), box))
        parts.append(_joint(f'{side}_ankle_roll', 'revolute', parent, f'{side}_foot', '0 0 -0.04', '1 0 0'))
        parts.append(_link(f'{side}_sole', ''))
        parts.append(_joint(f'{side}_sole_joint', 'fixed', f'{side}_foot', f'{side}_sole', f'0.03 0 -{FOOT[2] / 2}'))
    parts.append('</robot>')
    return '\n'.join(parts)
