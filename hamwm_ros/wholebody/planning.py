"""Whole-body balance for a sampling planner: linearise once per plan, score every predicted state.

:class:`PlanBalance` is the callable behind :class:`hamwm_ros.mpc.BalanceCritic` wherever a planner scores predicted
joint trajectories by balance: ``mpc_node`` (from measured joint states through a :class:`BalanceEstimator`) and the
demo's push stage (:mod:`hamwm_ros.closedloop.push`, from the simulator's base state). It wraps
:class:`BatchedBalance` and turns its non-finite scores into finite ones, so that one predicted step without vertical
contact force costs a lot instead of discarding its sample (or, when every sample has one, the whole plan).

Imports neither rclpy nor torch.
"""

from __future__ import annotations

import math
import time

import numpy as np

from hamwm_ros.wholebody.batch import BatchedBalance, BatchResult
from hamwm_ros.wholebody.estimator import BalanceEstimator, BaseMeasurement
from hamwm_ros.wholebody.model import WholeBodyError, WholeBodyModel

# A predicted step with no vertical contact force (the CoM falling faster than gravity: the ZMP does not exist) is
# scored as a ZMP this far outside the support polygon (m), and its capture point as this far away (m).
FLIGHT_MARGIN = -1.0
FLIGHT_CAPTURE = 1.0


class PlanBalance:
    """Balance of predicted states for one plan at a time.

    Call :meth:`update` (measured joint states, base pose estimated) or :meth:`linearise` (a known full
    configuration) before each plan, then call the object on the plan's predicted observations as often as the
    optimizer scores. Not thread-safe: one planner thread uses it.

    Parameters
    ----------
    wb
        Floating-base whole-body model of the robot, joints in the planner's model order.
    dt
        The predictions' step, seconds (a hot-loaded model may change it: set :attr:`dt`).

    Raises
    ------
    ValueError
        If ``dt`` is not finite and positive.
    """

    def __init__(self, wb: WholeBodyModel, dt: float) -> None:
        if not (math.isfinite(dt) and dt > 0.0):
            raise ValueError(f'dt must be finite and > 0, got {dt}')
        self.wb = wb
        self.estimator = BalanceEstimator(wb)
        self.batched = BatchedBalance(wb)
        self.n = wb.n_joints
        self.dt = float(dt)
        self.v_now = np.zeros(self.n)
        self.ready = False
        self.reason = 'no state yet'
        self.base_source = ''
        self.margin_now = math.nan
        self.linearise_s = math.nan
        self.evaluate_s = math.nan
        self.skipped = 0              # plans without balance (no support polygon, or linearisation failed)
        self.flight_states = 0        # predicted states of the last evaluation scored as FLIGHT_MARGIN

    def reset(self) -> None:
        """Forget the estimator's history (a new activation); balance is off until the next update."""
        self.estimator.reset()
        self.ready, self.reason = False, 'no state yet'

    def update(self, t: float, position: np.ndarray, velocity: np.ndarray, base: BaseMeasurement | None) -> bool:
        """Linearise around measured joint states at monotonic time ``t``.

        Parameters
        ----------
        t
            Monotonic time of the measurement, seconds (the estimator differentiates over it).
        position, velocity
            (n,) joint positions and velocities, model order.
        base
            IMU/odometry base measurement, or None for stance-foot kinematics.

        Returns
        -------
        bool
            False when balance is off for this plan (no sole in contact, or the estimate failed); :attr:`reason`
            says why and calls then cost nothing.
        """
        start = time.perf_counter()
        self.ready = False
        try:
            state = self.estimator.update(t, position, velocity, base=base)
            polygon = state.support_polygon    # a segment or a point when the soles are rolled onto edges
            if polygon.shape[0] == 0:
                return self._off('no sole in contact: no support polygon')
            stance = self.estimator.stance
            if stance is None or not state.contacts[stance]:
                stance = next(k for k, c in enumerate(state.contacts) if c)
            self.batched.linearise(self.estimator.last_q, stance, polygon)
        except (ValueError, WholeBodyError, np.linalg.LinAlgError, StopIteration) as error:
            self.estimator.reset()
            return self._off(f'linearisation failed: {error}')
        self.base_source, self.margin_now = state.base_source, float(state.margin)
        return self._on(velocity, start)

    def linearise(self, configuration: np.ndarray, stance: int, polygon: np.ndarray, velocity: np.ndarray) -> bool:
        """Linearise around a known full configuration (base pose included), e.g. a simulator's.

        Parameters
        ----------
        configuration
            Full Pinocchio configuration (floating base first).
        stance
            Index of the sole held fixed over the horizon.
        polygon
            (m, 2) current support polygon, counter-clockwise; m = 1 or 2 is a sole rolled onto a corner or edge.
        velocity
            (n,) joint velocities now (step 0 of the predicted differences).

        Returns
        -------
        bool
            False (balance off for this plan, :attr:`reason` says why) when the polygon is empty or the
            linearisation fails.
        """
        start = time.perf_counter()
        self.ready = False
        if polygon.shape[0] == 0:
            return self._off('no sole in contact: no support polygon')
        try:
            self.batched.linearise(configuration, stance, polygon)
        except (ValueError, WholeBodyError, np.linalg.LinAlgError) as error:
            return self._off(f'linearisation failed: {error}')
        self.base_source = 'given'
        return self._on(velocity, start)

    def _off(self, reason: str) -> bool:
        self.reason = reason
        self.skipped += 1
        return False

    def _on(self, velocity: np.ndarray, start: float) -> bool:
        self.v_now[:] = velocity
        self.linearise_s = time.perf_counter() - start
        self.ready, self.reason = True, ''
        return True

    def __call__(self, observations: np.ndarray) -> BatchResult:
        """Score (B, H, >= 2n) predicted observations (positions then velocities, model order).

        Returns
        -------
        BatchResult
            ``margin`` and ``capture`` finite everywhere: a step without vertical contact force (margin -inf, NaN
            ZMP) gets :data:`FLIGHT_MARGIN` and :data:`FLIGHT_CAPTURE`. Before a successful linearisation the
            margin is +inf and the capture distance 0 (no cost).
        """
        shape = observations.shape[:2]
        if not self.ready:
            return BatchResult(com=np.full((*shape, 3), np.nan), zmp=np.full((*shape, 2), np.nan),
                               margin=np.full(shape, np.inf), capture=np.zeros(shape))
        start = time.perf_counter()
        n = self.n
        result = self.batched.evaluate(observations[..., :n], observations[..., n:2 * n], self.dt, self.v_now)
        flight = ~np.isfinite(result.margin)
        self.flight_states = int(np.count_nonzero(flight))
        if self.flight_states:
            result.margin[flight] = FLIGHT_MARGIN
        if result.capture is not None:
            np.nan_to_num(result.capture, copy=False, nan=FLIGHT_CAPTURE, posinf=FLIGHT_CAPTURE)
        self.evaluate_s = time.perf_counter() - start
        return result


__all__ = ['FLIGHT_CAPTURE', 'FLIGHT_MARGIN', 'PlanBalance']
