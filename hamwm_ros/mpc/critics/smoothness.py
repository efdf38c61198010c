"""Smoothness: squared action rate, including the step from the last applied command to the first planned one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hamwm_ros.mpc.critics.base import Critic, CriticContext, CriticError


class SmoothnessCritic(Critic):
    """Cost ``mean_t sum_j ((u_tj - u_(t-1)j) / scale_j)^2`` with ``u_-1`` the previous command.

    Parameters
    ----------
    weight
        Critic weight.
    scale
        (m,) positive scale per action dimension (scalar broadcasts).

    Raises
    ------
    CriticError
        If a scale is not positive and finite.
    """

    name = 'smoothness'

    def __init__(self, weight: float = 1.0, scale: Sequence[float] | float = 1.0) -> None:
        super().__init__(weight)
        s = np.atleast_1d(np.asarray(scale, dtype=np.float32))
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise CriticError(f'{self.name}: scale must be finite and > 0, got {s}')
        self._inv_sq = (1.0 / s) ** 2

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw smoothness cost per sample."""
        u = ctx.actions
        batch, horizon, m = u.shape
        inv_sq = np.broadcast_to(self._inv_sq, (m,))
        first = np.square(u[:, 0, :] - ctx.previous_action) @ inv_sq
        if horizon == 1:
            return first
        # Steps as one flattened row per sample and a single GEMV: a sum over the middle (time) axis of (B, H, m)
        # with m = 1-2 was 17x slower here.
        step = u[:, 1:, :] - u[:, :-1, :]
        step *= step
        rest = step.reshape(batch, -1) @ np.tile(inv_sq, horizon - 1)
        return (first + rest) / horizon
