"""Build a MuJoCo model from a shipped URDF.

MuJoCo parses the URDF itself (``mujoco.MjSpec.from_file``), so bodies, joint axes, inertias, joint ranges and
damping come from the one robot description that Pinocchio also loads. On top of it this module adds, through the
spec API, only what a URDF cannot hold: the floor, a free joint for floating-base robots, one actuator per actuated
joint, rotor armature, an IMU site with gyro and accelerometer, the scene camera, lights, and solver options.

Actuators are MuJoCo "general" actuators with an affine bias, ``force = ctrl - kp * q - kd * qdot``, clamped to the
URDF effort limit (``forcerange``; MuJoCo additionally clamps the joint's total actuator force to the same limit from
the URDF). With ``ctrl = tau_ff + kp * q_ref + kd * qdot_ref`` that is PD tracking plus feed-forward, evaluated by
MuJoCo inside every physics step (and inside every RK4 stage), and the implicit integrator treats the ``-kd * qdot``
term implicitly, which keeps stiff gains stable at 1 kHz. With ``kp = kd = 0`` it is a plain torque motor whose
``ctrl`` is the effort, i.e. ``ctrlrange`` is the effort range; ctrl is not limited by MuJoCo because in PD mode it
carries ``kp * q_ref`` too, and the clamp that matters is on the force.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from hamwm_ros.sim.robots import SETTINGS, RobotSettings, UrdfJoints, parse_urdf_joints, robot_urdf_path

FLOOR_GEOM = 'floor'
CAMERA = 'scene'
IMU_SITE = 'imu'
GYRO = 'imu_gyro'
ACCELEROMETER = 'imu_accelerometer'
FLOOR_FRICTION = (1.0, 0.005, 0.0001)


@dataclass
class BuiltModel:
    """A compiled MuJoCo model plus the index maps the simulation needs."""

    model: mujoco.MjModel
    urdf: UrdfJoints
    settings: RobotSettings
    qpos_adr: np.ndarray  # (n,) qpos index of each joint in URDF order
    dof_adr: np.ndarray  # (n,) qvel / qacc index of each joint
    actuated: np.ndarray  # (n,) bool, effort limit > 0
    actuator_joint: np.ndarray  # (nu,) joint index (URDF order) driven by each actuator
    root_body: int
    push_body: int
    floor_geom: int


def _look_at_quat(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at ``position`` looking at ``target`` with world z up."""
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    # MuJoCo cameras look along their -z axis with +y up in the image
    rotation = np.column_stack([right, up, -forward])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rotation.flatten())
    return quat


def _add_scenery(spec: mujoco.MjSpec) -> None:
    spec.add_texture(name='sky', type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                     rgb1=[0.55, 0.7, 0.9], rgb2=[0.1, 0.15, 0.25], width=256, height=256)
    spec.add_texture(name='grid', type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=[0.32, 0.36, 0.4], rgb2=[0.22, 0.25, 0.28], width=256, height=256)
    material = spec.add_material(name='grid', texrepeat=[8.0, 8.0])
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = 'grid'
    spec.worldbody.add_light(pos=[0.0, -1.0, 5.0], dir=[0.0, 0.2, -1.0], diffuse=[0.8, 0.8, 0.8],
                             type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, castshadow=False)
    # no shadows or reflections: offscreen rendering runs on the CPU (EGL/llvmpipe) where they triple the cost


def build_model(robot: str, timestep: float = 0.001, render_size: tuple[int, int] | None = None) -> BuiltModel:
    """Compile the MuJoCo model of a shipped robot from its URDF.

    Parameters
    ----------
    robot
        One of :data:`hamwm_ros.sim.ROBOTS`.
    timestep
        Physics step in seconds.
    render_size
        ``(width, height)`` of offscreen rendering, or None; sizes the offscreen buffer.

    Returns
    -------
    BuiltModel
        The compiled model and its joint/actuator maps.

    Raises
    ------
    ValueError
        If the robot is unknown, the timestep is not a positive finite number, or the URDF's joint order differs
        from MuJoCo's.
    """
    if not (np.isfinite(timestep) and 0.0 < timestep <= 0.01):
        raise ValueError(f'timestep must be in (0, 0.01] s, got {timestep!r}')
    path = robot_urdf_path(robot)
    settings = SETTINGS[robot]
    urdf = parse_urdf_joints(path)

    spec = mujoco.MjSpec.from_file(str(path))
    spec.compiler.fusestatic = False  # keep fixed frames (left_sole, right_sole) as bodies
    # the URDF's visual elements were already dropped by the parser (their colours went onto the collision geoms);
    # keeping discardvisual would now also drop contact-free geoms and the scenery textures
    spec.compiler.discardvisual = False
    spec.modelname = robot
    spec.option.timestep = float(timestep)
    spec.option.integrator = getattr(mujoco.mjtIntegrator, f'mjINT_{settings.integrator}')
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0  # stiffer friction: feet do not creep under a standing robot
    if render_size is not None:
        spec.visual.global_.offwidth = max(640, int(render_size[0]))
        spec.visual.global_.offheight = max(480, int(render_size[1]))
    # no multisample anti-aliasing: on the CPU renderer (EGL/llvmpipe) 4x MSAA triples the cost of a frame
    spec.visual.quality.offsamples = 0

    root = spec.body(urdf.root_link)
    for geom in spec.geoms:
        if settings.floating_base:
            # robot geoms touch the floor only (conaffinity 0: no self-collision, as on the real robot's model)
            geom.contype, geom.conaffinity = 1, 0
        else:
            # the classic robots hang above the floor: no contacts at all keeps them ideal (energy-conserving)
            geom.contype, geom.conaffinity = 0, 0
        geom.friction = list(FLOOR_FRICTION)
    if settings.floating_base:
        root.add_freejoint(name='floating_base')

    _add_scenery(spec)
    spec.worldbody.add_geom(name=FLOOR_GEOM, type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0.0, 0.0, 0.05],
                            material='grid', contype=0, conaffinity=1, friction=list(FLOOR_FRICTION))

    for name, effort in zip(urdf.names, urdf.effort_limits):
        joint = spec.joint(name)
        joint.armature = settings.armature_per_effort * effort
        if effort <= 0.0:
            continue  # passive joint
        actuator = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        actuator.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        actuator.gainprm[0] = 1.0
        actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        actuator.forcerange = [-effort, effort]
        actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE

    root.add_site(name=IMU_SITE, pos=[0.0, 0.0, 0.0], size=[0.01, 0.01, 0.01], group=4)
    spec.add_sensor(name=GYRO, type=mujoco.mjtSensor.mjSENS_GYRO, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=IMU_SITE)
    spec.add_sensor(name=ACCELEROMETER, type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
                    objtype=mujoco.mjtObj.mjOBJ_SITE, objname=IMU_SITE)

    position = np.array(settings.camera_position, dtype=np.float64)
    target = np.array(settings.camera_target, dtype=np.float64)
    if settings.floating_base:
        # follows the robot's centre of mass at a fixed world offset, so a walking/falling robot stays in view
        root.add_camera(name=CAMERA, pos=position, quat=_look_at_quat(position, target), fovy=settings.camera_fovy,
                        mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM)
    else:
        spec.worldbody.add_camera(name=CAMERA, pos=position, quat=_look_at_quat(position, target),
                                  fovy=settings.camera_fovy)

    model = spec.compile()

    mj_names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)
                if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_FREE]
    if tuple(mj_names) != urdf.names:
        raise ValueError(f'{path}: MuJoCo joint order {mj_names} differs from the URDF order {list(urdf.names)}')
    joint_ids = [model.joint(name).id for name in urdf.names]
    actuator_joint = np.array([urdf.names.index(model.joint(model.actuator_trnid[a, 0]).name)
                               for a in range(model.nu)], dtype=np.int64)
    push_name = settings.push_body or urdf.root_link
    return BuiltModel(
        model=model, urdf=urdf, settings=settings,
        qpos_adr=np.array([model.jnt_qposadr[j] for j in joint_ids], dtype=np.int64),
        dof_adr=np.array([model.jnt_dofadr[j] for j in joint_ids], dtype=np.int64),
        actuated=urdf.effort_limits > 0.0, actuator_joint=actuator_joint,
        root_body=model.body(urdf.root_link).id, push_body=model.body(push_name).id,
        floor_geom=model.geom(FLOOR_GEOM).id)
