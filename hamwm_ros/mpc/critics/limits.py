"""Joint limits: a soft quadratic barrier near position/velocity limits and a hard infeasibility beyond them.

The soft band is the outer ``band`` fraction of each range; inside it the cost rises from 0 to 1 (quadratically) as
the joint approaches the limit. Every predicted step beyond a limit adds ``INFEASIBLE_COST``, which gives such
samples zero MPPI weight unless every sample violates (then the least-violating plan still wins).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hamwm_ros.mpc.critics.base import INFEASIBLE_COST, Critic, CriticContext, CriticError


class JointLimitsCritic(Critic):
    """Soft barrier + hard infeasibility on the positions and velocities in the predicted observations.

    Parameters
    ----------
    position_index, velocity_index
        Observation indices of the limited joints' positions and velocities (same joint order).
    position_limits
        (n, 2) lower/upper position limits; ``None`` skips positions.
    velocity_limits
        (n,) symmetric velocity limits; ``None`` skips velocities.
    weight
        Critic weight; it scales both terms (the hard one stays dominant for any sensible weight).
    band
        Fraction of each range (position) or limit (velocity) at the edge where the soft barrier acts, in (0, 0.5].

    Raises
    ------
    CriticError
        If sizes disagree, limits are not ordered/finite, or ``band`` is outside (0, 0.5].

    Notes
    -----
    A critic with weight 0 is skipped by the optimizer, hard term included: weight 0 means "ignore limits".
    """

    name = 'limits'

    def __init__(self, position_index: Sequence[int], velocity_index: Sequence[int],
                 position_limits: np.ndarray | None = None, velocity_limits: np.ndarray | None = None,
                 weight: float = 1.0, band: float = 0.1) -> None:
        super().__init__(weight)
        self.position_index = np.asarray(position_index, dtype=np.intp)
        self.velocity_index = np.asarray(velocity_index, dtype=np.intp)
        if not 0.0 < band <= 0.5:
            raise CriticError(f'{self.name}: band must be in (0, 0.5], got {band}')
        self.band = float(band)
        self._pos = None
        self._vel = None
        if position_limits is not None:
            lim = np.asarray(position_limits, dtype=np.float32).reshape(-1, 2)
            if lim.shape[0] != self.position_index.size:
                raise CriticError(f'{self.name}: {lim.shape[0]} position limits for {self.position_index.size} joints')
            if not (np.all(np.isfinite(lim)) and np.all(lim[:, 0] < lim[:, 1])):
                raise CriticError(f'{self.name}: position limits must be finite with lower < upper')
            width = (lim[:, 1] - lim[:, 0]) * self.band
            self._pos = (lim[:, 0], lim[:, 1], lim[:, 0] + width, lim[:, 1] - width, 1.0 / width)
        if velocity_limits is not None:
            vlim = np.atleast_1d(np.asarray(velocity_limits, dtype=np.float32))
            if vlim.shape != (self.velocity_index.size,):
                raise CriticError(f'{self.name}: {vlim.size} velocity limits for {self.velocity_index.size} joints')
            if not (np.all(np.isfinite(vlim)) and np.all(vlim > 0)):
                raise CriticError(f'{self.name}: velocity limits must be finite and > 0')
            self._vel = (vlim, vlim * (1.0 - self.band), 1.0 / (vlim * self.band))
        if self._pos is None and self._vel is None:
            raise CriticError(f'{self.name}: give position_limits and/or velocity_limits')

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw limits cost per sample (soft barrier mean over the horizon + hard violations)."""
        obs = ctx.rollout.observations
        batch, horizon = obs.shape[:2]
        soft = np.zeros((batch, horizon), dtype=np.float32)
        violations = np.zeros(batch, dtype=np.int64)
        if self._pos is not None:
            _, _, soft_low, soft_high, inv_width = self._pos
            q = obs[..., self.position_index]  # fancy index: a contiguous copy, much faster downstream than a view
            # Depth into the band in band widths: 0 inside, 1 at the limit, > 1 beyond it (one pass for both ends).
            depth = np.maximum(soft_low - q, q - soft_high)
            np.maximum(depth, 0.0, out=depth)
            depth *= inv_width
            _count_beyond(depth, violations)
            soft += np.square(depth, out=depth).sum(axis=-1)
        if self._vel is not None:
            _, soft_lim, inv_width = self._vel
            depth = np.abs(obs[..., self.velocity_index])
            depth -= soft_lim
            np.maximum(depth, 0.0, out=depth)
            depth *= inv_width
            _count_beyond(depth, violations)
            soft += np.square(depth, out=depth).sum(axis=-1)
        return soft.mean(axis=1) + INFEASIBLE_COST * violations



def _count_beyond(depth: np.ndarray, violations: np.ndarray) -> None:
    """Add to ``violations`` the steps x joints with depth > 1 (beyond the limit), per sample.

    Violations are rare, so the per-sample maximum (cheap) selects the few rows that need counting.
    """
    flat = depth.reshape(depth.shape[0], -1)
    over = flat.max(axis=1) > 1.0
    if over.any():
        violations[over] += np.count_nonzero(flat[over] > 1.0, axis=1)
