"""Effort: squared actions, scaled per dimension (typically by the effort limits) so dimensions are comparable."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hamwm_ros.mpc.critics.base import Critic, CriticContext, CriticError


class EffortCritic(Critic):
    """Cost ``mean_t sum_j (u_tj / scale_j)^2``.

    Parameters
    ----------
    weight
        Critic weight.
    scale
        (m,) positive scale per action dimension (scalar broadcasts), e.g. the effort limits.

    Raises
    ------
    CriticError
        If a scale is not positive and finite.
    """

    name = 'effort'

    def __init__(self, weight: float = 1.0, scale: Sequence[float] | float = 1.0) -> None:
        super().__init__(weight)
        s = np.atleast_1d(np.asarray(scale, dtype=np.float32))
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise CriticError(f'{self.name}: scale must be finite and > 0, got {s}')
        self._inv_sq = (1.0 / s) ** 2

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw effort cost per sample."""
        u = ctx.actions
        batch, horizon, m = u.shape
        # One GEMV over each sample's flattened sequence: numpy is slow on a trailing axis of 1-2 actions.
        row = np.tile(np.broadcast_to(self._inv_sq, (m,)), horizon) / horizon
        return np.square(u).reshape(batch, -1) @ row
