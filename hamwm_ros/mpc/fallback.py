"""Fallback control law: PD hold of a nominal posture, clamped to the effort limits, always finite.

Used when there is no valid plan (the optimizer returned ``valid=False``), when the planner is late, or when the
model monitor says the model is wrong. It must work when everything else has failed, so it depends on nothing but
the joint state and treats non-finite inputs joint by joint (a joint with a non-finite reading gets damping-free zero
feedback rather than poisoning the others). A feedforward callable (e.g. gravity compensation at the nominal posture
from Pinocchio, or a balance-only law for a humanoid) can be added; if it fails or returns non-finite values it is
ignored for that tick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Feedforward = Callable[[np.ndarray, np.ndarray], np.ndarray]


class PDHoldFallback:
    """``tau = clip(kp (q* - q) - kd v + ff(q, v), -effort_limits, effort_limits)``.

    Parameters
    ----------
    nominal_posture
        (n,) posture to hold.
    kp, kd
        Non-negative gains, scalar or (n,).
    effort_limits
        (n,) positive effort limits.
    feedforward
        Optional ``(q, v) -> (n,)`` effort added to the PD term.

    Raises
    ------
    ValueError
        If sizes disagree or a value is negative or not finite.
    """

    def __init__(self, nominal_posture: Sequence[float], kp: Sequence[float] | float, kd: Sequence[float] | float,
                 effort_limits: Sequence[float], feedforward: Feedforward | None = None) -> None:
        self.nominal = np.asarray(nominal_posture, dtype=np.float64).ravel()
        n = self.nominal.size
        if n == 0 or not np.all(np.isfinite(self.nominal)):
            raise ValueError('nominal_posture must be a non-empty finite array')
        self.kp = self._gain(kp, n, 'kp')
        self.kd = self._gain(kd, n, 'kd')
        self.effort_limits = np.asarray(effort_limits, dtype=np.float64).ravel()
        if self.effort_limits.shape != (n,) or not np.all(np.isfinite(self.effort_limits)) or np.any(
                self.effort_limits <= 0):
            raise ValueError(f'effort_limits must be {n} finite positive values')
        self.feedforward = feedforward

    @staticmethod
    def _gain(value: Sequence[float] | float, n: int, name: str) -> np.ndarray:
        gain = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if gain.size not in (1, n) or gain.ndim != 1:
            raise ValueError(f'{name}: need 1 or {n} values, got {gain.size}')
        if not np.all(np.isfinite(gain)) or np.any(gain < 0):
            raise ValueError(f'{name}: gains must be finite and >= 0')
        return np.broadcast_to(gain, (n,)).copy()

    def command(self, position: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """Effort (n,) holding the nominal posture; finite and within the effort limits for any input.

        Raises
        ------
        ValueError
            If ``position`` or ``velocity`` has the wrong size.
        """
        q = np.asarray(position, dtype=np.float64).ravel()
        v = np.asarray(velocity, dtype=np.float64).ravel()
        n = self.nominal.size
        if q.shape != (n,) or v.shape != (n,):
            raise ValueError(f'expected {n} positions and velocities, got {q.size} and {v.size}')
        error = np.where(np.isfinite(q), self.nominal - q, 0.0)
        tau = self.kp * error - self.kd * np.where(np.isfinite(v), v, 0.0)
        if self.feedforward is not None:
            try:
                ff = np.asarray(self.feedforward(q, v), dtype=np.float64).ravel()
            except Exception:  # noqa: BLE001 - a failing feedforward must not take the safe hold down with it
                ff = None
            if ff is not None and ff.shape == (n,):
                tau = tau + np.where(np.isfinite(ff), ff, 0.0)
        return np.clip(tau, -self.effort_limits, self.effort_limits)
