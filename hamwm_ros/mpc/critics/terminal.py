"""Terminal cost: a quadratic value ``e^T P e`` of the last predicted observation's error to a goal.

With P the infinite-horizon LQR value matrix of the robot linearised at the goal (:mod:`hamwm_ros.mpc.lqr`) it stands
in for the cost beyond the horizon, which a short plan otherwise ignores. Angles listed in ``wrap`` are compared on
the circle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hamwm_ros.mpc.critics.base import CriticContext, CriticError, GoalCritic


class TerminalCostCritic(GoalCritic):
    """Cost ``e^T P e`` with ``e`` the last predicted observation minus the goal.

    Parameters
    ----------
    goal
        (k,) goal observation, physical units.
    value_matrix
        (k, k) symmetric positive semi-definite P.
    weight
        Critic weight.
    wrap
        Observation indices that are angles (differences wrapped to [-pi, pi)).

    Raises
    ------
    CriticError
        If sizes disagree, P is not finite, symmetric and positive semi-definite, or a wrap index is out of range.
    """

    name = 'terminal'

    def __init__(self, goal: Sequence[float], value_matrix: np.ndarray, weight: float = 1.0,
                 wrap: Sequence[int] = ()) -> None:
        super().__init__(goal, weight, wrap)
        self.value_matrix = value_matrix

    @property
    def value_matrix(self) -> np.ndarray:
        """(k, k) P in use (float32)."""
        return self._value_matrix

    @value_matrix.setter
    def value_matrix(self, value: np.ndarray) -> None:
        """Replace P (validated; a new array, so a scoring thread sees the old or the new P, never a mix).

        Raises
        ------
        CriticError
            If P is not a finite, symmetric, positive semi-definite k x k matrix (the old P is kept).
        """
        k = self.goal.size
        p = np.atleast_2d(np.asarray(value, dtype=np.float64))
        if p.shape != (k, k) or not np.all(np.isfinite(p)):
            raise CriticError(f'{self.name}: value_matrix must be a finite {k} x {k} matrix, got {p.shape}')
        if not np.allclose(p, p.T, rtol=1e-6, atol=1e-9 * max(1.0, float(np.max(np.abs(p))))):
            raise CriticError(f'{self.name}: value_matrix must be symmetric')
        if np.min(np.linalg.eigvalsh(p)) < -1e-9 * max(1.0, float(np.max(np.abs(p)))):
            raise CriticError(f'{self.name}: value_matrix must be positive semi-definite')
        self._value_matrix = (0.5 * (p + p.T)).astype(np.float32)

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw terminal cost per sample."""
        last = ctx.rollout.observations[:, -1, :]
        goal = self.goal
        if last.shape[-1] != goal.size:
            raise CriticError(f'{self.name}: observations have {last.shape[-1]} dims, goal has {goal.size}')
        err = last - goal      # a new (B, k) array: the rollout's buffer is not touched
        if self.wrap.size:
            err[:, self.wrap] = (err[:, self.wrap] + np.pi) % (2 * np.pi) - np.pi
        return np.einsum('bi,bi->b', err @ self._value_matrix, err)
