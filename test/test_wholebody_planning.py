"""PlanBalance, the planner's balance term, against BatchedBalance on the shipped humanoid.

Where BatchedBalance's scores are finite PlanBalance returns them unchanged; a predicted step without vertical
contact force (margin -inf, NaN ZMP) gets the finite flight scores, so the balance critic prices it instead of
discarding the sample.
"""

from __future__ import annotations

import numpy as np
import pytest

from hamwm_ros.bench.wholebody import standing_posture
from hamwm_ros.mpc import BalanceCritic, CriticContext
from hamwm_ros.mpc.rollout import Rollout
from hamwm_ros.sim import robot_urdf_path
from hamwm_ros.wholebody import (
    FLIGHT_CAPTURE,
    FLIGHT_MARGIN,
    BalanceEstimator,
    BatchedBalance,
    BatchResult,
    PlanBalance,
    WholeBodyModel,
)
from hamwm_ros.wholebody.geometry import signed_distance

B, H, DT = 6, 16, 0.02


@pytest.fixture(scope='module')
def wb():
    return WholeBodyModel(robot_urdf_path('humanoid'), floating_base=True, sole_frames=('left_sole', 'right_sole'))


def predictions(wb: WholeBodyModel, q: np.ndarray, knee_speed: float) -> np.ndarray:
    """(B, H, 2n) observations holding ``q``; sample 0 snaps both knees to ``knee_speed`` at step 3 and back."""
    n = wb.n_joints
    obs = np.zeros((B, H, 2 * n))
    obs[..., :n] = q
    rng = np.random.default_rng(0)
    obs[1:, :, :n] += rng.normal(scale=0.01, size=(B - 1, H, n))
    for side in ('left', 'right'):
        obs[0, 3, n + wb.joint_names.index(f'{side}_knee')] = knee_speed
    return obs


def flight_observations(wb: WholeBodyModel, balance: PlanBalance) -> tuple[np.ndarray, BatchResult]:
    """Observations with at least one flight step in sample 0 (whichever knee direction drops the CoM)."""
    n = wb.n_joints
    for speed in (25.0, -25.0):
        obs = predictions(wb, standing_posture(wb), speed)
        raw = balance.batched.evaluate(obs[..., :n], obs[..., n:], DT, balance.v_now)
        if np.any(np.isneginf(raw.margin[0])):
            return obs, raw
    raise AssertionError('no knee speed made a flight step: the fixture no longer tests the flight path')


def linearised(wb: WholeBodyModel) -> PlanBalance:
    balance = PlanBalance(wb, DT)
    q = standing_posture(wb)
    assert balance.update(0.0, q, np.zeros(wb.n_joints), None), balance.reason
    return balance


def test_finite_scores_equal_batched_balance(wb):
    balance = linearised(wb)
    n = wb.n_joints
    obs = predictions(wb, standing_posture(wb), 0.0)
    estimator = BalanceEstimator(wb)
    polygon = estimator.update(0.0, standing_posture(wb), np.zeros(n), None).support_polygon
    reference = BatchedBalance(wb)
    reference.linearise(estimator.last_q, estimator.stance, polygon)
    expected = reference.evaluate(obs[..., :n], obs[..., n:], DT, np.zeros(n))
    result = balance(obs)
    assert np.all(np.isfinite(expected.margin))
    np.testing.assert_allclose(result.margin, expected.margin, atol=1e-12)
    np.testing.assert_allclose(result.capture, expected.capture, atol=1e-12)
    assert balance.flight_states == 0
    assert balance.base_source        # the estimator says where the base pose came from
    assert np.all(result.margin > 0.0)  # standing still: the ZMP is inside the polygon


def test_flight_steps_get_finite_scores_and_are_counted(wb):
    balance = linearised(wb)
    obs, raw = flight_observations(wb, balance)
    raw_margin, raw_capture = raw.margin.copy(), raw.capture.copy()
    result = balance(obs)
    flight = np.isneginf(raw_margin)
    assert np.all(np.isfinite(result.margin)) and np.all(np.isfinite(result.capture))
    assert np.all(result.margin[flight] == FLIGHT_MARGIN)
    np.testing.assert_array_equal(result.margin[~flight], raw_margin[~flight])
    np.testing.assert_array_equal(result.capture, np.nan_to_num(raw_capture, nan=FLIGHT_CAPTURE,
                                                                posinf=FLIGHT_CAPTURE))
    assert balance.flight_states == int(np.count_nonzero(flight))


def test_balance_critic_prices_a_flight_sample_instead_of_discarding_it(wb):
    balance = linearised(wb)
    obs, _ = flight_observations(wb, balance)
    n = wb.n_joints
    ctx = CriticContext(actions=np.zeros((B, H, n), dtype=np.float32),
                        rollout=Rollout(observations=obs, energy=np.zeros((B, H)), latent=np.zeros((B, H, 2))),
                        previous_action=np.zeros(n, dtype=np.float32))
    critic = BalanceCritic(balance, margin_target=0.03, capture_weight=1.0, hard=False)
    cost = critic.score(ctx)
    assert np.all(np.isfinite(cost))
    assert cost[0] > cost[1:].max()       # the flight sample is the worst, not gone
    raw = BalanceCritic(lambda o: balance.batched.evaluate(o[..., :n], o[..., n:], DT, balance.v_now),
                        margin_target=0.03, capture_weight=1.0, hard=False)
    assert not np.isfinite(raw.score(ctx)[0])     # what the node did before: an infinite cost drops the sample


def test_before_linearisation_balance_costs_nothing(wb):
    balance = PlanBalance(wb, DT)
    obs = predictions(wb, standing_posture(wb), 0.0)
    result = balance(obs)
    assert result.margin.shape == (B, H) and np.all(result.margin == np.inf)
    assert np.all(result.capture == 0.0)
    ctx = CriticContext(actions=np.zeros((B, H, wb.n_joints), dtype=np.float32),
                        rollout=Rollout(observations=obs, energy=np.zeros((B, H)), latent=np.zeros((B, H, 2))),
                        previous_action=np.zeros(wb.n_joints, dtype=np.float32))
    np.testing.assert_array_equal(BalanceCritic(balance, hard=False).score(ctx), np.zeros(B))


def test_linearise_from_a_known_configuration_matches_the_estimator(wb):
    estimated = linearised(wb)
    given = PlanBalance(wb, DT)
    polygon = BalanceEstimator(wb).update(0.0, standing_posture(wb), np.zeros(wb.n_joints), None).support_polygon
    assert given.linearise(estimated.estimator.last_q, estimated.estimator.stance, polygon, np.zeros(wb.n_joints))
    assert given.base_source == 'given' and given.ready
    obs = predictions(wb, standing_posture(wb), 0.0)
    np.testing.assert_allclose(given(obs).margin, estimated(obs).margin, atol=1e-12)


def test_no_support_polygon_turns_balance_off_with_a_reason(wb):
    balance = linearised(wb)
    assert not balance.linearise(balance.estimator.last_q, 0, np.zeros((0, 2)), np.zeros(wb.n_joints))
    assert not balance.ready and 'no support polygon' in balance.reason
    assert balance.skipped == 1
    assert np.all(balance(predictions(wb, standing_posture(wb), 0.0)).margin == np.inf)


def test_a_toe_edge_support_keeps_balance_on_and_scores_the_distance_to_it(wb):
    """Soles rolled onto their toes leave a segment of support, and balance stays on (it used to switch off).

    Every predicted ZMP is scored by its signed distance to that segment (never inside it).
    """
    balance = linearised(wb)
    q_full = balance.estimator.last_q
    full = BalanceEstimator(wb).update(0.0, standing_posture(wb), np.zeros(wb.n_joints), None).support_polygon
    toe = full[:, 0].max()
    segment = np.array([[toe, full[:, 1].min()], [toe, full[:, 1].max()]])
    assert balance.linearise(q_full, 0, segment, np.zeros(wb.n_joints)), balance.reason
    result = balance(predictions(wb, standing_posture(wb), 0.0))
    np.testing.assert_allclose(result.margin, signed_distance(segment, result.zmp), atol=1e-12)
    assert np.all(result.margin < 0.0)
    # sample 0 stands still: its ZMP is the CoM's ground projection, behind the toe line
    com = wb.evaluate(q_full, np.zeros(wb.model.nv), np.zeros(wb.model.nv)).com
    assert result.margin[0] == pytest.approx(np.full(H, -(toe - com[0])), abs=1e-6)


def test_reset_turns_balance_off_until_the_next_update(wb):
    balance = linearised(wb)
    balance.reset()
    assert not balance.ready and balance.reason == 'no state yet'
    assert balance.update(1.0, standing_posture(wb), np.zeros(wb.n_joints), None)


@pytest.mark.parametrize('dt', [0.0, -0.02, float('nan'), float('inf')])
def test_bad_dt_is_refused(wb, dt):
    with pytest.raises(ValueError, match='dt must be finite'):
        PlanBalance(wb, dt)
