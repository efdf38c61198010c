"""Energy shaping: drive the total energy to a target (swing-up: the energy of the upright rest state).

The energy is the world model's own Hamiltonian (``rollout.energy``, default) or a physical energy computed from the
predicted observations by ``energy_fn``. Shaping energy rather than pose makes the planner pump energy in even when
the goal pose is beyond its horizon, which is what lets a short-horizon MPPI swing a pendulum up.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hamwm_ros.mpc.critics.base import Critic, CriticContext, CriticError, check_nonnegative, horizon_weights


class EnergyCritic(Critic):
    """Cost ``sum_t w_t ((E_t - E*) / scale)^2``.

    Parameters
    ----------
    target
        Target energy ``E*`` (same units as the energy source).
    weight
        Critic weight.
    scale
        Positive energy scale that makes the cost dimensionless.
    terminal_weight
        Extra weight of the last predicted step.
    energy_fn
        Optional ``observations (B, H, k) -> energy (B, H)``; ``None`` uses the model's energy.

    Raises
    ------
    CriticError
        If ``target`` is not finite or ``scale`` is not positive.
    """

    name = 'energy'

    def __init__(self, target: float, weight: float = 1.0, scale: float = 1.0, terminal_weight: float = 0.0,
                 energy_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        super().__init__(weight)
        self.target = target
        if not np.isfinite(scale) or scale <= 0:
            raise CriticError(f'{self.name}: scale must be finite and > 0, got {scale}')
        check_nonnegative(self.name, terminal_weight=terminal_weight)
        self.scale = float(scale)
        self.terminal_weight = float(terminal_weight)
        self.energy_fn = energy_fn
        self._time_w: np.ndarray | None = None

    @property
    def target(self) -> float:
        """Target energy; assign to retarget at run time."""
        return self._target

    @target.setter
    def target(self, value: float) -> None:
        if not np.isfinite(value):
            raise CriticError(f'{self.name}: target must be finite, got {value}')
        self._target = float(value)

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw energy-shaping cost per sample."""
        if self.energy_fn is None:
            energy = ctx.rollout.energy
        else:
            energy = np.asarray(self.energy_fn(ctx.rollout.observations))
        if energy.shape != ctx.actions.shape[:2]:
            raise CriticError(f'{self.name}: energy shape {energy.shape} != (B, H) {ctx.actions.shape[:2]}')
        horizon = energy.shape[1]
        if self._time_w is None or self._time_w.size != horizon:
            self._time_w = horizon_weights(horizon, self.terminal_weight)
        return np.square((energy - self._target) * (1.0 / self.scale)) @ self._time_w
