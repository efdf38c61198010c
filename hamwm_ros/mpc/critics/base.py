"""The critic interface: one cost term of the MPPI objective.

A critic turns a batch of predicted futures into one cost per sample (B,). The optimizer multiplies that raw cost by
the critic's ``weight`` and sums the critics, so weights can be changed at run time (between or during plans, from a
ROS parameter callback) without touching the optimizer's warm start. A critic with weight 0 is skipped entirely.

Critics must be vectorised over samples and must not keep references to the context's arrays (they are buffers the
optimizer reuses). ``score`` must be thread-safe: with ``MPPISettings.workers > 1`` it is called concurrently on
disjoint sample chunks, so scratch buffers are per thread. Non-finite costs are allowed; the optimizer gives such
samples zero weight.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np

from hamwm_ros.mpc.rollout import Rollout

# Cost added per predicted step that violates a hard constraint. Large enough that exp(-cost / temperature) is 0
# for any sensible temperature, yet finite so that if every sample violates, the least-violating one still wins.
INFEASIBLE_COST = 1.0e6


class CriticError(ValueError):
    """A critic was given invalid parameters."""


@dataclass
class CriticContext:
    """What a critic sees in one iteration.

    Attributes
    ----------
    actions
        (B, H, m) sampled action sequences (after bounds), float32.
    rollout
        The predicted futures of ``actions``.
    previous_action
        (m,) the command applied before this plan (for rate terms).
    """

    actions: np.ndarray
    rollout: Rollout
    previous_action: np.ndarray

    @classmethod
    def from_arrays(cls, observations: np.ndarray | None = None, actions: np.ndarray | None = None,
                    energy: np.ndarray | None = None, previous_action: np.ndarray | None = None,
                    latent: np.ndarray | None = None) -> CriticContext:
        """A context from plain arrays (for scoring recorded or hand-made trajectories); missing parts are zeros.

        Observations default to (B, H, 2) and actions to (B, H, 1); B and H come from the first array given.

        Raises
        ------
        ValueError
            If none of observations, actions, energy is given.
        """
        given = [a for a in (observations, actions, energy) if a is not None]
        if not given:
            raise ValueError('give at least one of observations, actions, energy')
        batch, horizon = np.shape(given[0])[:2]
        f32 = np.float32
        obs = np.zeros((batch, horizon, 2), f32) if observations is None else np.asarray(observations, f32)
        act = np.zeros((batch, horizon, 1), f32) if actions is None else np.asarray(actions, f32)
        en = np.zeros((batch, horizon), f32) if energy is None else np.asarray(energy, f32)
        prev = np.zeros(act.shape[-1], f32) if previous_action is None else np.asarray(previous_action, f32)
        return cls(act, Rollout(obs if latent is None else latent, obs, en), prev)


class Critic(ABC):
    """Base class of the MPPI cost terms.

    Parameters
    ----------
    weight
        Non-negative finite multiplier of this critic's cost.

    Raises
    ------
    CriticError
        If ``weight`` is negative or not finite.
    """

    #: Name used for parameters (``critics.<name>.weight``) and per-critic cost reports.
    name: str = 'critic'

    def __init__(self, weight: float = 1.0) -> None:
        self._weight = 0.0
        self.weight = weight

    @property
    def weight(self) -> float:
        """The critic's multiplier; setting it validates the value and takes effect at the next iteration."""
        return self._weight

    @weight.setter
    def weight(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0.0:
            raise CriticError(f'{self.name}: weight must be finite and >= 0, got {value}')
        self._weight = value

    @abstractmethod
    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw (unweighted) cost per sample, shape (B,)."""

    def __repr__(self) -> str:
        return f'{type(self).__name__}(weight={self._weight:g})'


class GoalCritic(Critic):
    """Base of the critics that compare predicted observations with a goal, angles in ``wrap`` on the circle.

    Parameters
    ----------
    goal
        (k,) goal observation, physical units.
    weight
        Critic weight.
    wrap
        Observation indices that are angles (differences wrapped to [-pi, pi)).

    Raises
    ------
    CriticError
        If the goal is not a finite 1-D array, the weight is invalid or a wrap index is out of range.
    """

    def __init__(self, goal: Sequence[float], weight: float = 1.0, wrap: Sequence[int] = ()) -> None:
        super().__init__(weight)
        self.goal = goal
        self.wrap = wrap_indices(self.name, wrap, self._goal.size)

    @property
    def goal(self) -> np.ndarray:
        """(k,) goal observation; assign to retarget at run time (same size)."""
        return self._goal

    @goal.setter
    def goal(self, value: Sequence[float]) -> None:
        g = np.atleast_1d(np.asarray(value, dtype=np.float32))
        if g.ndim != 1 or not np.all(np.isfinite(g)):
            raise CriticError(f'{self.name}: goal must be a finite 1-D array')
        if hasattr(self, '_goal') and g.shape != self._goal.shape:
            raise CriticError(f'{self.name}: goal size {g.size} differs from {self._goal.size}')
        self._goal = g


def horizon_weights(horizon: int, terminal_weight: float, dtype: type = np.float32) -> np.ndarray:
    """(H,) per-step weights: mean over the horizon plus ``terminal_weight`` on the last step."""
    w = np.full(horizon, 1.0 / horizon, dtype=dtype)
    w[-1] += terminal_weight
    return w


def wrap_indices(name: str, wrap: Sequence[int], size: int) -> np.ndarray:
    """Sorted unique observation indices of angles (compared on the circle); CriticError if one is out of range."""
    indices = np.asarray(sorted(set(int(i) for i in wrap)), dtype=np.intp)
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        raise CriticError(f'{name}: wrap indices {indices.tolist()} outside 0..{size - 1}')
    return indices


def check_nonnegative(name: str, **values: float) -> None:
    """Raise :class:`CriticError` unless every value is finite and >= 0."""
    for key, value in values.items():
        if not math.isfinite(float(value)) or float(value) < 0.0:
            raise CriticError(f'{name}: {key} must be finite and >= 0, got {value}')
