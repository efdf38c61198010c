"""Analytic reference system: a damped, torque-driven pendulum as a batched rollout function.

It has known physics (energy, equilibria, swing-up difficulty), costs nothing to run, and obeys the same rollout
contract as the ONNX predictor, so the optimizer is tested and sanity-checked against real dynamics rather than
canned numbers. ``valid_speed`` emulates a learned model's domain of validity: outside it the prediction is NaN,
as a model extrapolating far beyond its training data may overflow.
"""

from __future__ import annotations

import math

import numpy as np

from hamwm_ros.mpc.rollout import Rollout


class Pendulum:
    """``ml^2 theta'' = -m g l sin(theta) - b theta' + u`` with ``theta = 0`` hanging down.

    The latent state and the observation are both ``(theta, omega)``; the energy is
    ``E = m l^2 omega^2 / 2 - m g l cos(theta)`` (upright at rest: ``+m g l``). Integration is semi-implicit Euler
    (symplectic without damping) with ``substeps`` per control step ``dt``.

    Parameters
    ----------
    mass, length, gravity, damping
        Physical parameters (NaN allowed: a corrupted model whose every prediction is NaN).
    dt
        Control step (s).
    substeps
        Integration substeps per control step.
    valid_speed
        Predictions with ``|omega|`` above this become NaN from that step on.

    Raises
    ------
    ValueError
        If ``dt`` is not positive or ``substeps`` < 1.
    """

    def __init__(self, mass: float = 1.0, length: float = 1.0, gravity: float = 9.81, damping: float = 0.05,
                 dt: float = 0.05, substeps: int = 4, valid_speed: float = math.inf) -> None:
        if not dt > 0 or substeps < 1:
            raise ValueError(f'need dt > 0 and substeps >= 1, got {dt}, {substeps}')
        self.mass, self.length, self.gravity, self.damping = mass, length, gravity, damping
        self.dt, self.substeps, self.valid_speed = dt, substeps, valid_speed
        self.calls = 0

    @property
    def upright_energy(self) -> float:
        """Energy of the upright rest state, ``m g l``."""
        return self.mass * self.gravity * self.length

    def energy(self, observations: np.ndarray) -> np.ndarray:
        """Energy of (..., 2) states ``(theta, omega)``."""
        theta, omega = observations[..., 0], observations[..., 1]
        inertia = self.mass * self.length ** 2
        return 0.5 * inertia * omega ** 2 - self.upright_energy * np.cos(theta)

    def _advance(self, theta: np.ndarray, omega: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = self.dt / self.substeps
        inertia = self.mass * self.length ** 2
        for _ in range(self.substeps):
            acc = (u - self.upright_energy * np.sin(theta) - self.damping * omega) / inertia
            omega = omega + h * acc
            theta = theta + h * omega
        return theta, omega

    def step(self, state: np.ndarray, u: float | np.ndarray) -> np.ndarray:
        """One control step of a single state ``(theta, omega)`` under torque ``u`` (the "real" plant)."""
        u = float(np.asarray(u).ravel()[0])
        theta, omega = self._advance(np.float64(state[0]), np.float64(state[1]), np.float64(u))
        return np.array([theta, omega])

    def __call__(self, z0: np.ndarray, actions: np.ndarray) -> Rollout:
        """Batched rollout: ``z0`` (2,), ``actions`` (B, H, 1) -> latent = observations (B, H, 2), energy (B, H)."""
        self.calls += 1
        batch, horizon = actions.shape[:2]
        out = np.empty((batch, horizon, 2), dtype=np.float32)
        theta = np.full(batch, z0[0], dtype=np.float64)
        omega = np.full(batch, z0[1], dtype=np.float64)
        broken = np.zeros(batch, dtype=bool)
        for t in range(horizon):
            theta, omega = self._advance(theta, omega, actions[:, t, 0].astype(np.float64))
            broken |= ~(np.abs(omega) <= self.valid_speed)
            out[:, t, 0] = np.where(broken, np.nan, theta)
            out[:, t, 1] = np.where(broken, np.nan, omega)
        return Rollout(out, out, self.energy(out).astype(np.float32))
