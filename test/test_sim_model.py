"""The URDFs, and MuJoCo's model of them against Pinocchio's model of the same files (two independent parsers)."""

from pathlib import Path

import mujoco
import numpy as np
import pinocchio as pin
import pytest

from hamwm_ros.sim import ROBOTS, Simulation, parse_urdf_joints, robot_urdf_path

FREE = mujoco.mjtJoint.mjJNT_FREE


def _pinocchio(robot: str, floating: bool) -> pin.Model:
    path = str(robot_urdf_path(robot))
    return pin.buildModelFromUrdf(path, pin.JointModelFreeFlyer()) if floating else pin.buildModelFromUrdf(path)


def _random_state(sim: Simulation, rng: np.random.Generator) -> None:
    """Random joint angles within the limits and, for the humanoid, a random base pose, written into MuJoCo."""
    low, high = sim.position_limits[:, 0], sim.position_limits[:, 1]
    sim.set_joint_state(rng.uniform(np.maximum(low, -3.0), np.minimum(high, 3.0)))
    if sim.floating_base:
        quat = rng.normal(size=4)
        sim.data.qpos[0:3] = rng.uniform(-1.0, 1.0, 3)
        sim.data.qpos[3:7] = quat / np.linalg.norm(quat)


@pytest.mark.parametrize('robot', ROBOTS)
def test_same_joints_order_limits_and_mass_as_pinocchio(robot):
    sim = Simulation(robot)
    model = _pinocchio(robot, sim.floating_base)
    first = 2 if sim.floating_base else 1  # skip 'universe' (and the free flyer)
    assert tuple(model.names[first:]) == sim.joint_names
    assert model.nv == sim.n_joints + (6 if sim.floating_base else 0)
    offset = 7 if sim.floating_base else 0
    np.testing.assert_allclose(model.lowerPositionLimit[offset:], sim.position_limits[:, 0])
    np.testing.assert_allclose(model.upperPositionLimit[offset:], sim.position_limits[:, 1])
    voff = 6 if sim.floating_base else 0
    np.testing.assert_allclose(model.effortLimit[voff:], sim.effort_limits)
    np.testing.assert_allclose(model.velocityLimit[voff:], sim.velocity_limits)
    assert pin.computeTotalMass(model) == pytest.approx(mujoco.mj_getTotalmass(sim.model), abs=1e-9)
    # MuJoCo's own joint ranges came from its own URDF parser
    for name, (low, high) in zip(sim.joint_names, sim.position_limits):
        np.testing.assert_allclose(sim.model.joint(name).range, [low, high])


@pytest.mark.parametrize('robot', ROBOTS)
def test_forward_kinematics_com_and_mass_matrix_agree_with_pinocchio(robot):
    sim = Simulation(robot)
    model = _pinocchio(robot, sim.floating_base)
    data = model.createData()
    rng = np.random.default_rng(11)
    body_names = [sim.model.body(b).name for b in range(1, sim.model.nbody)]
    for _ in range(3):
        _random_state(sim, rng)
        sim.data.qvel[:] = 0.0
        mujoco.mj_forward(sim.model, sim.data)
        q, _, _ = sim.pinocchio_state()
        pin.framesForwardKinematics(model, data, q)
        for name in body_names:  # every link, including the fixed sole frames
            placement = data.oMf[model.getFrameId(name, pin.FrameType.BODY)]
            np.testing.assert_allclose(sim.data.body(name).xpos, placement.translation, atol=1e-6)
            np.testing.assert_allclose(sim.data.body(name).xmat.reshape(3, 3), placement.rotation, atol=1e-6)
        com = pin.centerOfMass(model, data, q)
        np.testing.assert_allclose(sim.data.subtree_com[0], com, atol=1e-6)
        # joint-space inertia (MuJoCo adds rotor armature on the diagonal; Pinocchio's model has none)
        mass = np.zeros((sim.model.nv, sim.model.nv))
        mujoco.mj_fullM(sim.model, sim.data, mass)
        mass -= np.diag(sim.model.dof_armature)
        crba = pin.crba(model, data, q)
        crba = np.triu(crba) + np.triu(crba, 1).T
        dof = sim.joint_dof_indices
        voff = 6 if sim.floating_base else 0
        np.testing.assert_allclose(mass[np.ix_(dof, dof)], crba[voff:, voff:], atol=1e-9)


def test_contact_center_of_pressure_equals_pinocchio_zmp_while_moving():
    """The CoP from MuJoCo's contact forces and the ZMP from Pinocchio's centroidal dynamics of the same state.

    Two independent computations (contact solver vs. rigid-body dynamics of q, v, a) meet only if the CoP is exact
    and pinocchio_state() converts the free-flyer velocity/acceleration conventions correctly.
    """
    sim = Simulation('humanoid')
    model = _pinocchio('humanoid', True)
    data = model.createData()
    mass = pin.computeTotalMass(model)
    gravity = np.array([0.0, 0.0, -9.81])
    rng = np.random.default_rng(5)
    sim.step(300)
    errors = []
    for _ in range(40):
        sim.set_effort(rng.normal(0.0, 0.1, sim.n_joints) * sim.effort_limits)
        sim.step(10)
        q, v, a = sim.pinocchio_state()
        assert np.linalg.norm(v) > 1e-3  # the robot really moves
        pin.computeCentroidalMomentumTimeVariation(model, data, q, v, a)
        force = data.dhg.linear - mass * gravity
        moment = np.cross(data.com[0], force) + data.dhg.angular
        zmp = np.array([-moment[1] / force[2], moment[0] / force[2]])
        cop, normal = sim.center_of_pressure()
        assert normal == pytest.approx(force[2], rel=1e-5)  # agreement up to the contact solver tolerance
        assert cop[2] == 0.0
        errors.append(np.linalg.norm(cop[:2] - zmp))
    assert max(errors) < 1e-5


def test_humanoid_description():
    joints = parse_urdf_joints(robot_urdf_path('humanoid'))
    assert joints.root_link == 'pelvis'
    assert len(joints.names) >= 20
    assert np.all(joints.effort_limits > 0) and np.all(joints.velocity_limits > 0)
    assert np.all(joints.position_limits[:, 0] < joints.position_limits[:, 1])
    model = _pinocchio('humanoid', True)
    assert 30.0 <= pin.computeTotalMass(model) <= 40.0
    sim = Simulation('humanoid')
    mujoco.mj_forward(sim.model, sim.data)
    head = sim.model.geom(int(sim.model.body('head').geomadr[0]))
    top = sim.data.geom_xpos[head.id][2] + head.size[0]
    assert 1.1 <= top <= 1.3  # standing height, knees slightly bent
    for side in ('left', 'right'):
        sole = sim.data.body(f'{side}_sole')
        assert sole.xpos[2] == pytest.approx(-0.001, abs=1e-9)  # sole plane on (1 mm into) the floor
        np.testing.assert_allclose(sole.xmat.reshape(3, 3), np.eye(3), atol=1e-9)  # z up, feet flat
        foot = sim.model.body(f'{side}_foot')
        box = sim.model.geom(int(foot.geomadr[0]))
        assert box.type == mujoco.mjtGeom.mjGEOM_BOX
        # the sole frame is the centre of the box's bottom face
        np.testing.assert_allclose(sim.data.geom_xpos[box.id] - sole.xpos, [0, 0, box.size[2]], atol=1e-9)


def test_classic_robots_passive_joints_have_zero_effort_limit():
    assert parse_urdf_joints(robot_urdf_path('cartpole')).effort_limits.tolist() == [20.0, 0.0]
    assert parse_urdf_joints(robot_urdf_path('acrobot')).effort_limits.tolist() == [0.0, 10.0]
    sim = Simulation('acrobot')
    assert sim.actuated.tolist() == [False, True]
    assert sim.model.nu == 1


def test_generated_humanoid_urdf_is_up_to_date():
    from hamwm_ros.robots.make_humanoid import urdf_text

    assert robot_urdf_path('humanoid').read_text() == urdf_text()


@pytest.mark.parametrize('text, reason', [
    ('<robot name="x"><link name="a"/><link name="b"/><joint name="j" type="continuous"><parent link="a"/>'
     '<child link="b"/></joint></robot>', 'unsupported type'),
    ('<robot name="x"><link name="a"/><link name="b"/><joint name="j" type="revolute"><parent link="a"/>'
     '<child link="b"/></joint></robot>', 'no <limit>'),
    ('<robot name="x"><link name="a"/><link name="b"/><joint name="j" type="revolute"><parent link="a"/>'
     '<child link="b"/><limit lower="1" upper="-1" effort="1" velocity="1"/></joint></robot>', 'invalid limits'),
    ('<robot name="x"><link name="a"/><link name="b"/><joint name="j" type="revolute"><parent link="a"/>'
     '<child link="b"/><limit lower="-1" upper="1" effort="nan" velocity="1"/></joint></robot>', 'invalid limits'),
    ('<robot name="x"><link name="a"/><link name="b"/></robot>', 'one root link'),
    ('<sdf/>', 'expected <robot>'),
    ('<robot', 'cannot read URDF'),
])
def test_bad_urdf_rejected_with_reason(tmp_path: Path, text, reason):
    path = tmp_path / 'bad.urdf'
    path.write_text(text)
    with pytest.raises(ValueError, match=reason):
        parse_urdf_joints(path)


def test_unknown_robot_rejected():
    with pytest.raises(ValueError, match='unknown robot'):
        robot_urdf_path('r2d2')
    with pytest.raises(ValueError, match='unknown robot'):
        Simulation('r2d2')
    with pytest.raises(ValueError, match='timestep'):
        Simulation('pendulum', timestep=0.0)
    with pytest.raises(ValueError, match='timestep'):
        Simulation('pendulum', timestep=float('nan'))
