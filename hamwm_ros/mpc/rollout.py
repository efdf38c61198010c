"""The dynamics the optimizer plans over: a rollout function and what it returns.

A rollout function maps an initial latent state and a batch of action sequences to predicted futures::

    rollout(z0 (n,), actions (B, H, m)) -> Rollout(latent (B, H, n), observations (B, H, k), energy (B, H))

Step ``t`` of every output is the state after applying ``actions[:, t]`` (the predictor graph contract in
``hamwm_ros/runtime/metadata.py``). In production it is the onnxruntime predictor; in tests an analytic system. Any
object with ``latent``, ``observations`` and ``energy`` attributes is accepted, so the runtime's own result type
works without conversion. Observations are in physical units, positions then velocities.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
from typing import Any, NamedTuple

import numpy as np


class Rollout(NamedTuple):
    """Predicted futures of a batch of action sequences."""

    latent: np.ndarray
    observations: np.ndarray
    energy: np.ndarray


RolloutFunction = Callable[[np.ndarray, np.ndarray], Any]


class RolloutShapeError(ValueError):
    """A rollout function returned arrays of the wrong shape."""


def check_rollout(result: Any, batch: int, horizon: int) -> Rollout:
    """Validate a rollout function's result and return it as a :class:`Rollout`.

    Values are not checked here (non-finite samples are handled per sample by the optimizer); shapes are, because a
    wrong shape is a wiring error, not a model failure.

    Raises
    ------
    RolloutShapeError
        If an attribute is missing or an array does not start with (batch, horizon).
    """
    try:
        latent, obs, energy = result.latent, result.observations, result.energy
    except AttributeError as exc:
        raise RolloutShapeError(f'rollout result lacks latent/observations/energy: {exc}') from None
    for name, arr, ndim in (('latent', latent, 3), ('observations', obs, 3), ('energy', energy, 2)):
        shape = getattr(arr, 'shape', None)
        if shape is None or len(shape) != ndim or tuple(shape[:2]) != (batch, horizon):
            raise RolloutShapeError(f'rollout {name}: expected ({batch}, {horizon}{", ..." * (ndim - 2)}), got {shape}')
    return result if isinstance(result, Rollout) else Rollout(latent, obs, energy)


class BatchedRollout:
    """Adapt a batched predictor to the planner's rollout contract.

    The predictor takes one latent state per sample, ``predict(z (B, n), actions (B, H, m))``, or per member and
    sample for ensembles, ``z (E, B, n)``; :meth:`hamwm_ros.runtime.WorldModelRuntime.rollout` is one (see
    :meth:`from_runtime`). The planner has one state, ``z0`` (n,) or (E, n): it is broadcast into a preallocated
    buffer, so one planning iteration is exactly one predictor call with no allocation here. Ensemble outputs
    (a leading member axis) are reduced with ``member_reduce``.

    Parameters
    ----------
    predict
        ``(z, actions) -> object with latent, observations, energy``.
    member_reduce
        ``'mean'``: average the ensemble members' predictions.

    Raises
    ------
    ValueError
        If ``member_reduce`` is unknown.
    """

    def __init__(self, predict: Callable[[np.ndarray, np.ndarray], Any], member_reduce: str = 'mean') -> None:
        if member_reduce != 'mean':
            raise ValueError(f"member_reduce must be 'mean', got {member_reduce!r}")
        self._predict = predict
        self._local = threading.local()  # one broadcast buffer per thread (MPPI workers roll out chunks at once)

    @classmethod
    def from_runtime(cls, runtime: Any, member_reduce: str = 'mean') -> BatchedRollout:
        """Wrap a ``WorldModelRuntime`` on its zero-copy path (its buffers are reused by the next call)."""
        return cls(lambda z, actions: runtime.rollout(z, actions, copy=False), member_reduce)

    def __call__(self, z0: np.ndarray, actions: np.ndarray) -> Rollout:
        """Roll ``z0`` (n,) or (E, n) forward under every action sequence in ``actions`` (B, H, m)."""
        shape = z0.shape[:-1] + (actions.shape[0], z0.shape[-1])
        z = getattr(self._local, 'z', None)
        if z is None or z.shape != shape:
            z = self._local.z = np.empty(shape, dtype=np.float32)
        z[...] = np.expand_dims(z0, -2)
        out = self._predict(z, actions)
        latent, obs, energy = out.latent, out.observations, out.energy
        if z0.ndim == 2:  # ensemble: members first
            latent, obs, energy = latent.mean(0), obs.mean(0), energy.mean(0)
        return Rollout(latent, obs, energy)
