"""Proof against an independent engine: the module's ZMP versus the centre of pressure of MuJoCo's contact forces.

The simulated humanoid (``hamwm_ros.sim``, same URDF) stands on flat feet under PD posture control while it stands
still, swings its arms and torso, and is pushed. At every 1 ms physics step the module gets what a robot would have:
joint positions and velocities, and the IMU + odometry base state, the IMU alone, or nothing (stance-foot
kinematics). The ZMP it computes from full multibody dynamics is compared with the CoP MuJoCo's contact solver
produced. Accelerations are either MuJoCo's (an ideal observer) or finite differences of the joint velocities and
the gyro (what balance_node does). Modes and figures: ``hamwm_ros.wholebody.proof``.

The figures are printed (``pytest -s``) and asserted against the 5 mm RMS target; ``hamwm bench wholebody`` reports
the same table.
"""

from __future__ import annotations

import numpy as np
import pytest

from hamwm_ros.wholebody.proof import SCENARIOS, run_scenario

TARGET_RMS = 0.005  # metres


@pytest.fixture(scope='module')
def results() -> dict:
    return {name: run_scenario(name) for name in SCENARIOS}


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_zmp_matches_mujoco_contact_cop(results, scenario):
    result = results[scenario]
    print(f'\n{scenario}: ' + ', '.join(f'{mode} {rms * 1e3:.3f} mm RMS (max {result.max_error[mode] * 1e3:.3f})'
                                         for mode, rms in result.rms.items()))
    assert result.samples > 500
    # the robot really moved: the CoP wandered by more than the error we claim
    assert result.cop_spread > 0.003
    # with the IMU + odometry base state the identity is exact up to the accelerations used
    assert result.rms['imu_odometry+qacc'] < 1e-5
    assert result.rms['imu_odometry+fd'] < TARGET_RMS
    assert result.rms['imu+stance+fd'] < TARGET_RMS  # an IMU and no odometry: what most robots have
    # stance-foot kinematics cannot see the feet rock on their compliant contacts: within target only when quiet
    assert result.rms['stance+qacc'] < {'quiet': TARGET_RMS, 'swing': 0.025, 'push': 0.1}[scenario]


def test_push_is_seen_as_a_margin_drop(results):
    result = results['push']
    assert result.min_margin < result.initial_margin - 0.02
    assert np.isfinite(result.min_margin)


def test_unknown_push_moves_the_zmp_away_from_the_cop(results):
    """Without being told about the push the module reports the ZMP of all external forces.

    During the push that differs from the contact CoP by about F * h / (m g): the comparison can fail.
    """
    result = results['push']
    assert result.push_error_unknown > 0.02
