"""Batched balance scoring of predicted trajectories (B x H states), cheap enough for every MPC tick.

The exact per-state path (`WholeBodyModel.evaluate`) costs one multibody pass per state, ~10-20 us from Python,
i.e. ~0.5 s for 1024 x 32 states. `BatchedBalance` instead linearises around the current state once per tick:

* CoM position ``c(q) ~ c0 + K_c (q_j - q_j0)`` and centroidal momentum ``h = A_g(q0) N qd_j``, where ``K_c`` is
  the CoM Jacobian and ``A_g`` the centroidal momentum matrix at ``q0``, and ``N`` maps joint rates to full rates
  under the stance-foot constraint (the stance sole stays where it is: ``v_b = -J_b^{-1} J_j qd_j``). On a fixed
  base ``N`` is the identity.
* CoM acceleration and angular-momentum rate are backward differences over the horizon, with the current state as
  step 0 (the same convention `BalanceEstimator` uses for joint accelerations).
* ZMP from Newton-Euler about the CoM (the same formula as the exact path, so no pendulum assumption is added);
  margin against the **current** support polygon (contacts are not predicted).

Everything per tick is a few (B*H, n) x (n, 6) products in numpy. Optionally the model is linearised along a
nominal plan (one Jacobian set per horizon step, `linearise` with ``nominal_positions``), so the error depends on
how far samples stray from the plan rather than from ``q0``. The error against the exact per-state computation on
the same inputs is measured by ``hamwm bench wholebody`` and asserted in ``test/test_wholebody_batch.py``; it grows
with the distance from the linearisation point (second-order terms of ``c(q)``) and with joint speed (the
``dA_g/dt qd`` term is only approximated by differences of the per-step maps, and ignored around ``q0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from hamwm_ros.wholebody.geometry import signed_distance
from hamwm_ros.wholebody.model import WholeBodyError, WholeBodyModel


@dataclass
class BatchResult:
    """Balance of B x H predicted states.

    ``com`` (B, H, 3); ``zmp`` (B, H, 2); ``margin`` (B, H), signed distance of the ZMP to the support polygon
    boundary, positive inside; ``capture_point`` (B, H, 2); ``capture`` (B, H), how far the capture point lies
    outside the support polygon (0 inside), the form ``hamwm_ros.mpc.critics.balance`` takes.
    """

    com: np.ndarray
    zmp: np.ndarray
    margin: np.ndarray
    capture_point: np.ndarray | None = None
    capture: np.ndarray | None = None


class BatchedBalance:
    """Linearised CoM / ZMP / margin for predicted joint trajectories.

    Parameters
    ----------
    model
        The whole-body model (its ``data`` is used as scratch space by `linearise`).
    """

    def __init__(self, model: WholeBodyModel) -> None:
        self.wb = model
        self._kt: np.ndarray | None = None
        self._per_step = False

    def _jacobians(self, q: np.ndarray, stance: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(6, n) map from joint rates to (CoM velocity, angular momentum) under the stance constraint; CoM."""
        wb = self.wb
        model, data = wb.model, wb.data
        n = wb.n_joints
        jcom = pin.jacobianCenterOfMass(model, data, q, False)
        ag = pin.computeCentroidalMap(model, data, q)
        com = data.com[0].copy()
        if wb.floating_base:
            null = np.zeros((model.nv, n))
            null[6:] = np.eye(n)
            if stance is not None:
                if not 0 <= stance < len(wb.feet):
                    raise WholeBodyError(f'stance index {stance} is not a sole')
                jac = pin.computeFrameJacobian(model, data, q, wb.feet[stance].frame_id, pin.LOCAL)
                null[:6] = -np.linalg.solve(jac[:, :6], jac[:, 6:])
        else:
            null = np.eye(n)
        return np.vstack([jcom @ null, ag[3:] @ null]), com

    def linearise(self, q: np.ndarray, stance: int | None, polygon: np.ndarray,
                  nominal_positions: np.ndarray | None = None, anchor: pin.SE3 | None = None) -> None:
        """Prepare for the current full configuration ``q`` (once per MPC tick).

        Parameters
        ----------
        q
            Full configuration now (base pose from the estimator).
        stance
            Index of the stance sole held fixed over the horizon (floating base), or None for a fixed base or a
            floating base without support (then the base is assumed not to move).
        polygon
            (m, 2) current support polygon, counter-clockwise (may be empty: margins are then -inf).
        nominal_positions
            Optional (H, n) nominal joint trajectory (an MPPI's previous plan, shifted). Given, the model is
            linearised around each nominal step instead of around ``q`` (H Jacobian evaluations, ~30 us each), so
            the error depends on how far samples stray from the nominal, not on how far the plan moves. Needs
            ``anchor`` for a floating base (base poses by stance-foot kinematics).
        anchor
            World placement of the stance sole (`BalanceEstimator.anchor`).

        Raises
        ------
        WholeBodyError
            If ``stance`` is not a sole index, or a nominal is given for a floating base without stance and anchor.
        """
        wb = self.wb
        self._polygon = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if nominal_positions is None:
            k, com = self._jacobians(q, stance)
            self._kt = np.ascontiguousarray(k.T)               # (n, 6)
            self._kc = np.ascontiguousarray(self._kt[:, :3])   # (n, 3)
            self._q0 = wb.joint_positions(q)
            self._c0 = com
            self._per_step = False
            return
        nominal = np.asarray(nominal_positions, dtype=np.float64)
        if nominal.ndim != 2 or nominal.shape[1] != wb.n_joints:
            raise WholeBodyError(f'nominal_positions must be (H, {wb.n_joints}), got {nominal.shape}')
        if wb.floating_base and (stance is None or anchor is None):
            raise WholeBodyError('a nominal trajectory on a floating base needs the stance sole and its anchor')
        from hamwm_ros.wholebody.estimator import stance_state  # estimator imports model; avoid a cycle at import

        ks, coms = [], []
        zeros = np.zeros(wb.n_joints)
        for step in nominal:
            q_step = stance_state(wb, step, zeros, zeros, stance, anchor)[0] if wb.floating_base \
                else wb.configuration(step)
            k, com = self._jacobians(q_step, stance)
            ks.append(k.T)
            coms.append(com)
        self._kt = np.ascontiguousarray(np.array(ks))           # (H, n, 6)
        self._kc = np.ascontiguousarray(self._kt[..., :3])      # (H, n, 3)
        self._q0 = nominal                                      # (H, n)
        self._c0 = np.array(coms)                               # (H, 3)
        self._kt0, _ = self._jacobians(q, stance)               # for the current velocities (step 0)
        self._kt0 = np.ascontiguousarray(self._kt0.T)
        self._per_step = True

    def evaluate(self, joint_positions: np.ndarray, joint_velocities: np.ndarray, dt: float,
                 current_velocities: np.ndarray) -> BatchResult:
        """Score predicted states.

        Parameters
        ----------
        joint_positions, joint_velocities
            (B, H, n) predicted joint positions and velocities, model joint order; step k is ``(k + 1) * dt``
            after now.
        dt
            Prediction step, seconds.
        current_velocities
            (n,) joint velocities now (step 0 of the differences).

        Returns
        -------
        BatchResult

        Raises
        ------
        WholeBodyError
            If `linearise` was not called or shapes disagree.
        """
        if self._kt is None:
            raise WholeBodyError('call linearise() before evaluate()')
        wb = self.wb
        pos = np.asarray(joint_positions, dtype=np.float64)
        vel = np.asarray(joint_velocities, dtype=np.float64)
        if pos.ndim != 3 or pos.shape != vel.shape or pos.shape[2] != wb.n_joints:
            raise WholeBodyError(f'expected (B, H, {wb.n_joints}) positions and velocities, got {pos.shape} and '
                                 f'{vel.shape}')
        if not dt > 0.0:
            raise WholeBodyError(f'dt must be positive, got {dt}')
        batch, horizon, n = pos.shape
        rows = batch * horizon
        current = np.asarray(current_velocities, dtype=np.float64)
        if self._per_step:
            if horizon != self._q0.shape[0]:
                raise WholeBodyError(f'horizon {horizon} differs from the nominal ({self._q0.shape[0]} steps)')
            # H stacked (B, n) x (n, k) products, one linearisation per step
            com = np.matmul((pos - self._q0).transpose(1, 0, 2), self._kc) + self._c0[:, None, :]
            com = com.transpose(1, 0, 2).reshape(rows, 3)
            rates = np.matmul(vel.transpose(1, 0, 2), self._kt).transpose(1, 0, 2)
            rates0 = current @ self._kt0
        else:
            # one (B*H, n) x (n, 6) product each: 2-D gemm is far faster than numpy's stacked 3-D matmul
            com = pos.reshape(rows, n) @ self._kc
            com += self._c0 - self._q0 @ self._kc
            rates = (vel.reshape(rows, n) @ self._kt).reshape(batch, horizon, 6)
            rates0 = current @ self._kt
        derivative = np.empty_like(rates)                                     # CoM acceleration, dL/dt
        derivative[:, 0] = rates[:, 0] - rates0
        derivative[:, 1:] = rates[:, 1:] - rates[:, :-1]
        derivative *= 1.0 / dt
        derivative = derivative.reshape(rows, 6)
        rates = rates.reshape(rows, 6)
        g, m, h = wb.gravity, wb.mass, wb.ground_height
        fz = m * (derivative[:, 2] + g)
        height = com[:, 2] - h
        lever = height * m
        flight = ~(fz > 1e-6 * m * g)
        fz[flight] = np.nan
        zmp = np.empty((rows, 2))
        zmp[:, 0] = com[:, 0] - (lever * derivative[:, 0] + derivative[:, 4]) / fz
        zmp[:, 1] = com[:, 1] - (lever * derivative[:, 1] - derivative[:, 3]) / fz
        with np.errstate(invalid='ignore', divide='ignore'):
            inv_omega = np.sqrt(np.maximum(height, 0.0) / g)
        capture_point = com[:, :2] + rates[:, :2] * inv_omega[:, None]
        if self._polygon.shape[0] == 0:
            margin = np.full(rows, -np.inf)
            capture = np.full(rows, np.inf)
        else:
            margin = signed_distance(self._polygon, np.nan_to_num(zmp))
            margin[flight] = -np.inf
            capture = np.maximum(-signed_distance(self._polygon, capture_point), 0.0)
        return BatchResult(com=com.reshape(batch, horizon, 3), zmp=zmp.reshape(batch, horizon, 2),
                           margin=margin.reshape(batch, horizon),
                           capture_point=capture_point.reshape(batch, horizon, 2),
                           capture=capture.reshape(batch, horizon))

    def exact(self, joint_positions: np.ndarray, joint_velocities: np.ndarray, dt: float,
              current_velocities: np.ndarray, stance: int | None = None,
              anchor: pin.SE3 | None = None) -> BatchResult:
        """The exact per-state computation on the same inputs (reference for the linearisation error; slow).

        Each state gets joint accelerations from the same backward differences, its base from stance-foot
        kinematics (sole ``stance`` held at ``anchor``; floating base only) and a full multibody evaluation.

        Raises
        ------
        WholeBodyError
            If a floating-base model is given no stance sole and anchor.
        """
        from hamwm_ros.wholebody.estimator import stance_state  # the estimator imports this module's siblings

        wb = self.wb
        pos = np.asarray(joint_positions, dtype=np.float64)
        vel = np.asarray(joint_velocities, dtype=np.float64)
        if wb.floating_base and (stance is None or anchor is None):
            raise WholeBodyError('a floating base needs the stance sole and its anchor')
        batch, horizon, _ = pos.shape
        com = np.zeros((batch, horizon, 3))
        zmp = np.zeros((batch, horizon, 2))
        contacts = tuple(False for _ in wb.feet)  # the polygon is the current one, not recomputed
        for b in range(batch):
            previous = np.asarray(current_velocities, dtype=np.float64)
            for k in range(horizon):
                acc = (vel[b, k] - previous) / dt
                previous = vel[b, k]
                if wb.floating_base:
                    q, v, a = stance_state(wb, pos[b, k], vel[b, k], acc, stance, anchor)
                else:
                    q, v, a = wb.configuration(pos[b, k]), vel[b, k], acc
                c, zx, zy, _ = wb.tick(q, v, a, contacts)
                com[b, k], zmp[b, k] = c, (zx, zy)
        if self._polygon.shape[0] == 0:
            margin = np.full((batch, horizon), -np.inf)
        else:
            margin = signed_distance(self._polygon, np.nan_to_num(zmp))
        return BatchResult(com=com, zmp=zmp, margin=margin)
