"""Joint limits: a soft quadratic barrier near position/velocity limits and a hard infeasibility beyond them.

The soft band is the outer ``band`` fraction of each range; inside it the cost rises from 0 to 1 (quadratically) as
the joint approaches the limit. Every predicted step beyond a limit adds ``INFEASIBLE_COST``, which gives such
samples zero MPPI weight unless every sample violates (then the least-violating plan still wins).
"""

from __future__ import annotations

from collections.abc import Sequence
import threading

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
        self._column_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._scratch = threading.local()   # MPPI workers score chunks concurrently
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

    def _columns(self, k: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per flattened (step, observation) column: soft-band edges and inverse band width, cached per shape.

        Both limits take one form, depth = max(low - x, x - high, 0) / width: a velocity limit v_max has
        low = -(1 - band) v_max and high = +(1 - band) v_max. Columns without a limit get (-inf, inf, 0): depth 0.
        """
        key = (k, horizon)
        cached = self._column_cache.get(key)
        if cached is not None:
            return cached
        low = np.full(k, -np.inf, dtype=np.float32)
        high = np.full(k, np.inf, dtype=np.float32)
        scale = np.zeros(k, dtype=np.float32)
        used: set[int] = set()
        parts = []
        if self._pos is not None:
            _, _, soft_low, soft_high, inv_width = self._pos
            parts.append((self.position_index, soft_low, soft_high, inv_width))
        if self._vel is not None:
            _, soft_lim, inv_width = self._vel
            parts.append((self.velocity_index, -soft_lim, soft_lim, inv_width))
        for index, lo, hi, inv in parts:
            for i, column in enumerate(index):
                if not 0 <= column < k:
                    raise CriticError(f'{self.name}: observation index {column} outside 0..{k - 1}')
                if column in used:
                    raise CriticError(f'{self.name}: observation {column} is both a position and a velocity')
                used.add(int(column))
                low[column], high[column], scale[column] = lo[i], hi[i], inv[i]
        cached = tuple(np.tile(v, horizon) for v in (low, high, scale))
        self._column_cache = {key: cached}   # one shape in use at a time; replace, never grow
        return cached

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw limits cost per sample (soft barrier mean over the horizon + hard violations)."""
        obs = ctx.rollout.observations
        batch, horizon, k = obs.shape
        low, high, scale = self._columns(k, horizon)
        rows = obs.reshape(batch, -1)
        # Each sample's (step, observation) block as one flat row in per-thread scratch buffers: numpy is slow on a
        # trailing axis of a few joints, and fresh 100s-of-KiB temporaries page-fault on every call.
        depth, other = self._buffers(rows.shape)
        np.subtract(low, rows, out=depth)            # depth into the band in band widths: 0 inside, 1 at the limit
        np.subtract(rows, high, out=other)
        np.maximum(depth, other, out=depth)
        np.maximum(depth, 0.0, out=depth)
        depth *= scale
        violations = np.zeros(batch, dtype=np.int64)
        _count_beyond(depth, violations)
        depth *= depth
        return depth.sum(axis=1) / horizon + INFEASIBLE_COST * violations

    def _buffers(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        buffers = getattr(self._scratch, 'buffers', None)
        if buffers is None or buffers[0].shape != shape:
            buffers = self._scratch.buffers = (np.empty(shape, np.float32), np.empty(shape, np.float32))
        return buffers


def _count_beyond(depth: np.ndarray, violations: np.ndarray) -> None:
    """Add to ``violations`` the steps x joints with depth > 1 (beyond the limit), per sample.

    Violations are rare, so the per-sample maximum (cheap) selects the few rows that need counting.
    """
    flat = depth.reshape(depth.shape[0], -1)
    over = flat.max(axis=1) > 1.0
    if over.any():
        violations[over] += np.count_nonzero(flat[over] > 1.0, axis=1)
