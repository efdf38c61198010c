"""Batched (linearised) balance path against the exact per-state computation, on the shipped humanoid.

The stated errors (README, ``hamwm bench wholebody``) are asserted here on fixed-seed trajectories:

* linearised at the current state, joints within ~0.2 rad of it (max |v| ~0.5 rad/s), 0.64 s horizon:
  CoM error <= 6 mm, ZMP error <= 2 mm RMS;
* linearised along a nominal plan moving up to ~1.4 rad/s, samples on the nominal: CoM <= 0.5 mm, ZMP <= 8 mm
  RMS; samples ~0.12 rad off the nominal: CoM <= 3 mm RMS, ZMP <= 12 mm RMS.
"""

from __future__ import annotations

import numpy as np
import pytest

from hamwm_ros.sim import robot_urdf_path
from hamwm_ros.wholebody.batch import BatchedBalance
from hamwm_ros.wholebody.estimator import BalanceEstimator
from hamwm_ros.wholebody.geometry import signed_distance
from hamwm_ros.wholebody.model import WholeBodyError, WholeBodyModel

B, H, DT = 8, 32, 0.02


@pytest.fixture(scope='module')
def setup():
    wb = WholeBodyModel(robot_urdf_path('humanoid'), sole_frames=('left_sole', 'right_sole'))
    q = np.zeros(wb.n_joints)
    for side in ('left', 'right'):
        q[wb.joint_names.index(f'{side}_hip_pitch')] = -0.25
        q[wb.joint_names.index(f'{side}_knee')] = 0.5
        q[wb.joint_names.index(f'{side}_ankle_pitch')] = -0.25
    rng = np.random.default_rng(0)
    v0 = rng.normal(size=wb.n_joints) * 0.1
    est = BalanceEstimator(wb)
    state = est.update(0.0, q, v0, np.zeros(wb.n_joints))
    return wb, est, state, q, v0


def smooth_trajectories(rng, q0, v0, amplitude, batch=B):
    """Sinusoidal joint motions starting at (q0, v0) with matching velocity (no jump at step 0)."""
    n = q0.size
    t = (np.arange(1, H + 1) * DT)[None, :, None]
    w = 2 * np.pi * rng.uniform(0.3, 1.5, (batch, 1, n))
    phase = rng.uniform(0, 2 * np.pi, (batch, 1, n))
    a = amplitude * rng.uniform(0.3, 1.0, (batch, 1, n))
    pos = q0 + v0 * t + a * (np.sin(w * t + phase) - np.sin(phase) - w * np.cos(phase) * t)
    vel = v0 + a * w * (np.cos(w * t + phase) - np.cos(phase))
    return pos, vel


def errors(batched, exact):
    com = np.linalg.norm(batched.com - exact.com, axis=-1)
    zmp = np.linalg.norm(batched.zmp - exact.zmp, axis=-1)
    return com.max(), np.sqrt(np.mean(com ** 2)), zmp.max(), np.sqrt(np.mean(zmp ** 2))


def test_current_state_linearisation_within_stated_error(setup):
    wb, est, state, q, v0 = setup
    bb = BatchedBalance(wb)
    bb.linearise(est.last_q, est.stance, state.support_polygon)
    pos, vel = smooth_trajectories(np.random.default_rng(1), q, v0, 0.02)
    assert np.abs(pos - q).max() < 0.25
    result = bb.evaluate(pos, vel, DT, v0)
    exact = bb.exact(pos, vel, DT, v0, est.stance, est.anchor)
    com_max, _, _, zmp_rms = errors(result, exact)
    print(f'\ncurrent-state linearisation: CoM max {com_max * 1e3:.2f} mm, ZMP RMS {zmp_rms * 1e3:.2f} mm')
    assert com_max < 0.006
    assert zmp_rms < 0.002
    # margins follow from the ZMP against the same polygon: never worse than the ZMP error
    assert np.max(np.abs(result.margin - exact.margin)) <= np.max(np.linalg.norm(result.zmp - exact.zmp, axis=-1)) \
        + 1e-12


def test_nominal_linearisation_within_stated_error(setup):
    wb, est, state, q, v0 = setup
    rng = np.random.default_rng(2)
    nominal_pos, nominal_vel = smooth_trajectories(rng, q, v0, 0.15, batch=1)
    bb = BatchedBalance(wb)
    bb.linearise(est.last_q, est.stance, state.support_polygon, nominal_pos[0], est.anchor)
    for sigma, com_bound, zmp_bound in ((0.0, 0.0005, 0.008), (0.02, 0.003, 0.012)):
        vel = nominal_vel + np.cumsum(rng.normal(size=(B, H, wb.n_joints)) * sigma, axis=1)
        pos = nominal_pos + np.cumsum((vel - nominal_vel) * DT, axis=1)
        result = bb.evaluate(pos, vel, DT, v0)
        exact = bb.exact(pos, vel, DT, v0, est.stance, est.anchor)
        _, com_rms, _, zmp_rms = errors(result, exact)
        print(f'\nnominal linearisation, {np.abs(pos - nominal_pos).max():.3f} rad off nominal: '
              f'CoM RMS {com_rms * 1e3:.2f} mm, ZMP RMS {zmp_rms * 1e3:.2f} mm')
        assert com_rms < com_bound
        assert zmp_rms < zmp_bound


def test_static_states_are_exact(setup):
    """At the linearisation point with no motion the batch equals the exact path: ZMP = capture = CoM projection."""
    wb, est, state, q, _ = setup
    bb = BatchedBalance(wb)
    bb.linearise(est.last_q, est.stance, state.support_polygon)
    zeros = np.zeros(wb.n_joints)
    pos = np.broadcast_to(q, (2, 3, wb.n_joints))
    result = bb.evaluate(pos, np.zeros_like(pos), DT, zeros)
    np.testing.assert_allclose(result.com, np.broadcast_to(state.com, (2, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(result.zmp, np.broadcast_to(state.com[:2], (2, 3, 2)), atol=1e-12)
    np.testing.assert_allclose(result.capture_point, result.zmp, atol=1e-12)
    np.testing.assert_allclose(result.margin, signed_distance(state.support_polygon, state.com[:2]), atol=1e-12)
    assert np.all(result.capture == 0.0)


def test_free_fall_is_flagged_not_nan_margins(setup):
    wb, est, state, q, _ = setup
    bb = BatchedBalance(wb)
    bb.linearise(est.last_q, est.stance, state.support_polygon)
    zeros = np.zeros(wb.n_joints)
    # a huge joint deceleration in one step: the CoM is predicted to fall faster than g
    vel = np.zeros((1, 2, wb.n_joints))
    vel[0, 0, wb.joint_names.index('left_knee')] = 400.0
    vel[0, 0, wb.joint_names.index('right_knee')] = 400.0
    result = bb.evaluate(np.broadcast_to(q, vel.shape), vel, DT, zeros)
    assert not np.any(np.isnan(result.margin))
    flagged = ~np.isfinite(result.margin)
    assert np.all(np.isnan(result.zmp[flagged]))
    assert flagged.any()


def test_misuse_is_refused(setup):
    wb, est, state, q, v0 = setup
    bb = BatchedBalance(wb)
    with pytest.raises(WholeBodyError, match='linearise'):
        bb.evaluate(np.zeros((1, 1, wb.n_joints)), np.zeros((1, 1, wb.n_joints)), DT, v0)
    bb.linearise(est.last_q, est.stance, state.support_polygon)
    with pytest.raises(WholeBodyError, match='expected'):
        bb.evaluate(np.zeros((1, 1, 3)), np.zeros((1, 1, 3)), DT, v0)
    with pytest.raises(WholeBodyError, match='dt must be positive'):
        bb.evaluate(np.zeros((1, 1, wb.n_joints)), np.zeros((1, 1, wb.n_joints)), 0.0, v0)
    with pytest.raises(WholeBodyError, match='stance index'):
        bb.linearise(est.last_q, 5, state.support_polygon)
