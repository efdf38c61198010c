"""Terminal cost: a quadratic value ``e^T P e`` of the last predicted observation's error to a goal.

With P the infinite-horizon LQR value matrix of the robot linearised at the goal (:mod:`hamwm_ros.mpc.lqr`) it stands
in for the cost beyond the horizon, which a short plan otherwise ignores. Angles listed in ``wrap`` are compared on
the circle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hamwm_ros.mpc.critics.base import Critic, CriticContext, CriticError


class TerminalCostCritic(Critic):
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
        super().__init__(weight)
        g = np.atleast_1d(np.asarray(goal, dtype=np.float64))
        p = np.atleast_2d(np.asarray(value_matrix, dtype=np.float64))
        if g.ndim != 1 or not np.all(np.isfinite(g)):
            raise CriticError(f'{self.name}: goal must be a finite 1-D array')
        if p.shape != (g.size, g.size) or not np.all(np.isfinite(p)):
            raise CriticError(f'{self.name}: value_matrix must be a finite {g.size} x {g.size} matrix, got {p.shape}')
        if not np.allclose(p, p.T, rtol=1e-6, atol=1e-9 * max(1.0, float(np.max(np.abs(p))))):
            raise CriticError(f'{self.name}: value_matrix must be symmetric')
        if np.min(np.linalg.eigvalsh(p)) < -1e-9 * max(1.0, float(np.max(np.abs(p)))):
            raise CriticError(f'{self.name}: value_matrix must be positive semi-definite')
        self.wrap = np.asarray(sorted(set(int(i) for i in wrap)), dtype=np.intp)
        if self.wrap.size and (self.wrap.min() < 0 or self.wrap.max() >= g.size):
            raise CriticError(f'{self.name}: wrap indices {self.wrap.tolist()} outside 0..{g.size - 1}')
        self._goal = g.astype(np.float32)
        self.value_matrix = (0.5 * (p + p.T)).astype(np.float32)

    @property
    def goal(self) -> np.ndarray:
        """(k,) goal observation; assign to retarget at run time (the value matrix stays)."""
        return self._goal

    @goal.setter
    def goal(self, value: Sequence[float]) -> None:
        g = np.atleast_1d(np.asarray(value, dtype=np.float32))
        if g.shape != self._goal.shape or not np.all(np.isfinite(g)):
            raise CriticError(f'{self.name}: goal must be {self._goal.size} finite values')
        self._goal = g

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw terminal cost per sample."""
        last = ctx.rollout.observations[:, -1, :]
        goal = self._goal
        if last.shape[-1] != goal.size:
            raise CriticError(f'{self.name}: observations have {last.shape[-1]} dims, goal has {goal.size}')
        err = last - goal      # a new (B, k) array: the rollout's buffer is not touched
        if self.wrap.size:
            err[:, self.wrap] = (err[:, self.wrap] + np.pi) % (2 * np.pi) - np.pi
        return np.einsum('bi,bi->b', err @ self.value_matrix, err)
