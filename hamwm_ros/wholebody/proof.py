"""ZMP versus MuJoCo contact centre of pressure on the simulated humanoid (used by the tests and the benchmark).

MuJoCo (``hamwm_ros.sim``) is the independent engine: its soft-contact solver produces the floor forces, from which
the simulation reports the centre of pressure. This module runs the scenarios and evaluates, at every physics step,
the ZMP the balance module computes from what a robot would publish, in three modes:

``imu_odometry+qacc``
    base state from the IMU + odometry readings; joint and base angular accelerations from MuJoCo (an ideal
    observer: MuJoCo's ``qacc``, the accelerations its contact forces belong to);
``imu_odometry+fd``
    same base state, joint and base angular accelerations as backward differences of the joint velocities and
    the gyro over one physics step (what ``balance_node`` does). The humanoid runs MuJoCo's implicit integrator,
    whose velocity update is not ``qacc * h``, so this mode also carries that integrator difference;
``imu+stance+fd``
    an IMU but no odometry: orientation, gyro and accelerometer from the IMU, base position and velocity from the
    stance sole's point held still; finite-difference accelerations as above (what ``balance_node`` does when
    /odom is missing);
``stance+qacc``
    no base measurement: stance-foot kinematics, flat-foot assumption (anchored where the sole starts), MuJoCo's
    joint accelerations. This mixes two descriptions of the motion: ``qacc`` is the acceleration the contact
    forces belong to, but the implicitfast integrator does not realise it for damped joints, and in ``qacc`` terms
    the soles rock (``sole_angular_accel_rms``) far more than they actually move (``sole_angular_accel_fd_rms``);
``stance+fd``
    what ``balance_node`` does without an IMU: stance-foot kinematics with finite-difference joint accelerations
    (the realised motion, in which the soles only rock noticeably under pushes);
``stance+effort+fd``
    no base measurement either, but the joint efforts (``JointState.effort``; MuJoCo's actuator forces): pose and
    velocity from stance-foot kinematics, base acceleration from the equations of motion
    (`hamwm_ros.wholebody.estimator.dynamics_base_acceleration`), joint accelerations by finite differences;
``stance+true_base_accel``
    a diagnosis, not something a robot has: the ``stance+qacc`` pose and velocity with the simulator's base
    acceleration. It isolates what stance kinematics misses: the soles rock on MuJoCo's compliant contacts by a
    fraction of a degree (``ScenarioResult.sole_tilt_max``), but with angular accelerations that move the ZMP by
    about ``I_sole alpha / (m g)``, ~45 mm per rad/s^2 on the humanoid. Flat-foot kinematics sets that
    acceleration to zero by construction.

MuJoCo is imported only when a scenario runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np
import pinocchio as pin

from hamwm_ros.wholebody.estimator import BalanceEstimator, BaseMeasurement
from hamwm_ros.wholebody.model import WholeBodyModel

SCENARIOS = ('quiet', 'swing', 'push')
SOLES = ('left_sole', 'right_sole')
SETTLE_S = 0.3
PUSHES = ((0.5, (60.0, 0.0, 0.0)), (1.3, (0.0, -45.0, 0.0)), (2.1, (-50.0, 20.0, 0.0)))
PUSH_S = 0.1
DURATION_S = {'quiet': 1.5, 'swing': 2.0, 'push': 2.8}


@dataclass
class ScenarioResult:
    """Per-mode ZMP-CoP errors of one scenario (metres)."""

    scenario: str
    samples: int = 0
    rms: dict[str, float] = field(default_factory=dict)
    max_error: dict[str, float] = field(default_factory=dict)
    cop_spread: float = 0.0
    initial_margin: float = math.nan
    min_margin: float = math.nan
    push_error_unknown: float = math.nan
    sole_tilt_max: float = 0.0  # largest sole tilt from the ground plane (simulator), radians
    sole_angular_accel_rms: float = 0.0  # RMS norm of the soles' angular accelerations from qacc, rad/s^2
    sole_angular_accel_fd_rms: float = 0.0  # the same from differences of their angular velocities (realised)


def _targets(sim, t: float, scenario: str) -> np.ndarray:
    target = sim.nominal_posture.copy()
    if scenario == 'swing':
        names = sim.joint_names
        swing = 0.4 * math.sin(2 * math.pi * 0.5 * t)
        target[names.index('left_shoulder_pitch')] += swing
        target[names.index('right_shoulder_pitch')] -= swing
        target[names.index('left_elbow')] -= 0.2 * (1 + math.sin(2 * math.pi * 0.9 * t))
        target[names.index('waist_yaw')] += 0.15 * math.sin(2 * math.pi * 0.5 * t)
        target[names.index('waist_pitch')] += 0.06 * math.sin(2 * math.pi * 0.6 * t)
    return target


def run_scenario(scenario: str, timestep: float = 0.001) -> ScenarioResult:
    """Run one scenario (see `SCENARIOS`) and compare the module's ZMP with MuJoCo's contact CoP.

    Raises
    ------
    ValueError
        For an unknown scenario name.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario '{scenario}' (have {SCENARIOS})")
    from hamwm_ros.sim import Simulation, robot_urdf_path

    sim = Simulation('humanoid', timestep=timestep)
    sim.reset()
    wb = WholeBodyModel(robot_urdf_path('humanoid'), sole_frames=SOLES)
    if tuple(sim.joint_names) != wb.joint_names:
        raise RuntimeError('MuJoCo and Pinocchio joint orders differ')
    sim.set_position_targets(sim.nominal_posture)
    sim.step(int(round(SETTLE_S / timestep)))

    estimators = {'imu_odometry+qacc': BalanceEstimator(wb), 'imu_odometry+fd': BalanceEstimator(wb),
                  'imu+stance+fd': BalanceEstimator(wb), 'stance+qacc': BalanceEstimator(wb),
                  'stance+fd': BalanceEstimator(wb), 'stance+effort+fd': BalanceEstimator(wb)}
    # anchor the stance-kinematics estimate where the left sole really is
    base = sim.base_state()
    q_true = wb.configuration(sim.joint_state().position, base.position, base.orientation_xyzw)
    pin.framesForwardKinematics(wb.model, wb.data, q_true)
    for mode in ('stance+qacc', 'imu+stance+fd', 'stance+fd', 'stance+effort+fd'):
        estimators[mode].reset(anchor=wb.data.oMf[wb.feet[0].frame_id].copy(), stance=0)

    errors: dict[str, list[np.ndarray]] = {mode: [] for mode in estimators}
    errors['stance+true_base_accel'] = []
    tilts, sole_alpha, sole_alpha_fd = [], [], []
    sole_omega = None
    cops, margins, unknown = [], [], []
    pushes = list(PUSHES) if scenario == 'push' else []
    push_force, push_end = None, -1.0
    t0 = sim.time
    steps = int(round(DURATION_S[scenario] / timestep))
    for k in range(steps + 1):
        t = sim.time - t0
        if pushes and t >= pushes[0][0] - 1e-9:
            start, force = pushes.pop(0)
            sim.apply_push(force, PUSH_S)
            push_force, push_end = np.array(force), t + PUSH_S
        if scenario == 'swing':
            sim.set_position_targets(_targets(sim, t, scenario))
        if k:
            sim.step()
        t = sim.time - t0
        joints = sim.joint_state()
        base = sim.base_state()
        qacc = sim.joint_accelerations()
        cop = sim.center_of_pressure()
        measurement = BaseMeasurement(base.position, base.orientation_xyzw, base.linear_velocity,
                                      base.angular_velocity, base.linear_acceleration)
        # the ideal observer also has the base's angular acceleration (MuJoCo's qacc of the free joint, body axes)
        imu_only = BaseMeasurement(None, base.orientation_xyzw, None, base.angular_velocity,
                                   base.linear_acceleration)
        observer = BaseMeasurement(base.position, base.orientation_xyzw, base.linear_velocity,
                                   base.angular_velocity, base.linear_acceleration, sim.data.qacc[3:6].copy())
        active = push_force is not None and t <= push_end + 0.5 * timestep
        edge = push_force is not None and (abs(t - push_end) < 1.5 * timestep
                                           or abs(t - (push_end - PUSH_S)) < 1.5 * timestep)
        external = None
        if active:
            # the simulation pushes at the base's centre of mass: the module is told about the known wrench
            q_now = wb.configuration(joints.position, base.position, base.orientation_xyzw)
            pin.forwardKinematics(wb.model, wb.data, q_now)
            point = wb.data.oMi[1].act(wb.model.inertias[1].lever)
            external = np.concatenate([push_force, np.cross(point, push_force)])
        states = {
            'imu_odometry+qacc': estimators['imu_odometry+qacc'].update(sim.time, joints.position, joints.velocity,
                                                                        qacc, base=observer, external=external),
            'imu_odometry+fd': estimators['imu_odometry+fd'].update(sim.time, joints.position, joints.velocity,
                                                                    None, base=measurement, external=external),
            'imu+stance+fd': estimators['imu+stance+fd'].update(sim.time, joints.position, joints.velocity, None,
                                                                base=imu_only, external=external),
            'stance+qacc': estimators['stance+qacc'].update(sim.time, joints.position, joints.velocity, qacc,
                                                            external=external),
            'stance+fd': estimators['stance+fd'].update(sim.time, joints.position, joints.velocity, None,
                                                        external=external),
            'stance+effort+fd': estimators['stance+effort+fd'].update(sim.time, joints.position, joints.velocity,
                                                                      None, external=external,
                                                                      joint_efforts=joints.effort),
        }
        if active and not edge:
            blind = wb.evaluate(estimators['imu_odometry+qacc'].last_q, estimators['imu_odometry+qacc'].last_v,
                                estimators['imu_odometry+qacc'].last_a)
            if cop is not None:
                unknown.append(float(np.linalg.norm(blind.zmp[:2] - cop[0][:2])))
        stance = estimators['stance+qacc']
        a_diagnosis = stance.last_a.copy()
        q_sim, v_sim, a_sim = sim.pinocchio_state()
        a_diagnosis[:6] = a_sim[:6]
        states['stance+true_base_accel'] = wb.evaluate(stance.last_q, stance.last_v, a_diagnosis, external=external)
        pin.forwardKinematics(wb.model, wb.data, q_sim, v_sim, a_sim)
        omega = [pin.getFrameVelocity(wb.model, wb.data, foot.frame_id, pin.LOCAL_WORLD_ALIGNED).angular.copy()
                 for foot in wb.feet]
        previous_omega, sole_omega = sole_omega, omega
        if cop is None or k < 2 or edge:  # finite differences need two samples; push edges are ambiguous
            continue
        for foot, now, before in zip(wb.feet, omega, previous_omega):
            placement = pin.updateFramePlacement(wb.model, wb.data, foot.frame_id)
            tilts.append(math.acos(min(1.0, float(placement.rotation[2, 2]))))
            alpha = pin.getFrameAcceleration(wb.model, wb.data, foot.frame_id, pin.LOCAL_WORLD_ALIGNED).angular
            sole_alpha.append(float(np.linalg.norm(alpha)))
            sole_alpha_fd.append(float(np.linalg.norm(now - before)) / timestep)
        cops.append(cop[0][:2])
        margins.append(states['imu_odometry+qacc'].margin)
        for mode, state in states.items():
            errors[mode].append(state.zmp[:2] - cop[0][:2])

    result = ScenarioResult(scenario, samples=len(cops))
    for mode, values in errors.items():
        e = np.linalg.norm(np.array(values), axis=1)
        result.rms[mode] = float(np.sqrt(np.mean(e ** 2)))
        result.max_error[mode] = float(e.max())
    cops_array = np.array(cops)
    result.cop_spread = float(np.max(np.ptp(cops_array, axis=0)))
    result.initial_margin = float(margins[0])
    result.min_margin = float(np.min(margins))
    result.sole_tilt_max = float(np.max(tilts))
    result.sole_angular_accel_rms = float(np.sqrt(np.mean(np.square(sole_alpha))))
    result.sole_angular_accel_fd_rms = float(np.sqrt(np.mean(np.square(sole_alpha_fd))))
    if unknown:
        result.push_error_unknown = float(np.max(unknown))
    sim.close()
    return result
