"""State / posture tracking: weighted squared distance of the predicted observations to a goal.

Angles listed in ``wrap`` are compared on the circle, so a pendulum at +pi and one at -pi are both upright. Setting
a dimension's weight to 0 leaves it untracked (posture tracking = weights on positions only).
"""

from __future__ import annotations

from collections.abc import Sequence
import threading

import numpy as np

from hamwm_ros.mpc.critics.base import CriticContext, CriticError, GoalCritic, check_nonnegative, horizon_weights


class TrackingCritic(GoalCritic):
    """Cost ``sum_t w_t sum_i s_i (o_ti - g_i)^2`` over the predicted observations.

    Parameters
    ----------
    goal
        (k,) goal observation, physical units.
    state_weights
        (k,) non-negative weight per observation dimension (scalar broadcasts).
    weight
        Critic weight.
    terminal_weight
        Extra weight of the last predicted step, on top of the horizon mean.
    wrap
        Observation indices that are angles (differences wrapped to [-pi, pi)).

    Raises
    ------
    CriticError
        If sizes disagree or values are negative or not finite.
    """

    name = 'tracking'

    def __init__(self, goal: Sequence[float], state_weights: Sequence[float] | float = 1.0, weight: float = 1.0,
                 terminal_weight: float = 0.0, wrap: Sequence[int] = ()) -> None:
        super().__init__(goal, weight, wrap)
        sw = np.broadcast_to(np.asarray(state_weights, dtype=np.float32), self._goal.shape).copy()
        if not (np.all(np.isfinite(sw)) and np.all(sw >= 0)):
            raise CriticError(f'{self.name}: state_weights must be finite and >= 0')
        check_nonnegative(self.name, terminal_weight=terminal_weight)
        self.state_weights = sw
        self.terminal_weight = float(terminal_weight)
        self._time_w: np.ndarray | None = None
        self._scratch = threading.local()  # one error buffer per thread: MPPI workers score chunks concurrently

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw tracking cost per sample."""
        obs = ctx.rollout.observations
        if obs.shape[-1] != self._goal.size:
            raise CriticError(f'{self.name}: observations have {obs.shape[-1]} dims, goal has {self._goal.size}')
        horizon = obs.shape[1]
        if self._time_w is None or self._time_w.size != horizon:
            self._time_w = horizon_weights(horizon, self.terminal_weight)
        err = getattr(self._scratch, 'err', None)
        if err is None or err.shape != obs.shape:
            err = self._scratch.err = np.empty(obs.shape, dtype=np.float32)
        batch = obs.shape[0]
        flat = err.reshape(batch, -1)
        # Flattened rows, goal tiled over the horizon and one GEMV with the (time x state) weights: numpy is slow on
        # a trailing axis of a few observations.
        np.subtract(obs.reshape(batch, -1), np.tile(self._goal, horizon), out=flat)
        if self.wrap.size:
            err[..., self.wrap] = (err[..., self.wrap] + np.pi) % (2 * np.pi) - np.pi
        np.square(flat, out=flat)
        return flat @ np.outer(self._time_w, self.state_weights).ravel()
