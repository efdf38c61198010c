"""Adapters between the planner's action space and the world model's effort input.

The shipped models take one effort per joint (passive joints included, always 0 in their training data), while the
planner should only search over the efforts it can apply. :class:`EffortRollout` expands the planner's (B, H, m)
actuated efforts into the model's (B, H, n) input, optionally adding a fixed per-joint effort offset (the humanoid's
PD hold effort at the current state, so the planner searches over a feed-forward correction around it).
"""

from __future__ import annotations

from collections.abc import Sequence
import threading

import numpy as np

from hamwm_ros.mpc.rollout import BatchedRollout, Rollout


class EffortRollout:
    """Planner rollout function over the actuated joints of a :class:`~hamwm_ros.runtime.WorldModelRuntime`.

    Parameters
    ----------
    runtime
        Loaded world model (joint order = simulation order).
    actuated
        Indices (into the model's joints) of the efforts the planner chooses, in planner action order.

    Raises
    ------
    ValueError
        If an index is outside the model's action size or repeated.
    """

    def __init__(self, runtime, actuated: Sequence[int]) -> None:
        self.runtime = runtime
        self.n_actions = int(runtime.metadata.action_dim)
        self.actuated = np.asarray(actuated, dtype=np.intp)
        if self.actuated.size == 0 or len(set(self.actuated.tolist())) != self.actuated.size:
            raise ValueError(f'actuated indices must be non-empty and unique, got {self.actuated.tolist()}')
        if self.actuated.min() < 0 or self.actuated.max() >= self.n_actions:
            raise ValueError(f'actuated indices {self.actuated.tolist()} outside 0..{self.n_actions - 1}')
        self.offset = np.zeros(self.n_actions, dtype=np.float32)
        # Actuated joints as one contiguous block (the humanoid: all of them, the cart-pole: the cart) are written
        # through a slice: one broadcast add, 18x faster than the fancy-indexed add for the humanoid's 128 x 32 x 24.
        first = int(self.actuated[0])
        contiguous = np.array_equal(self.actuated, np.arange(first, first + self.actuated.size))
        self._block = slice(first, first + self.actuated.size) if contiguous else None
        self._scratch = threading.local()    # MPPI workers roll chunks out concurrently: one input buffer per thread
        self._batched = BatchedRollout.from_runtime(runtime)

    def set_offset(self, effort: np.ndarray) -> None:
        """Effort (n,) added to every step of every sample (the model sees offset + planned correction).

        Raises
        ------
        ValueError
            If the effort has the wrong size or is not finite.
        """
        effort = np.asarray(effort, dtype=np.float32).ravel()
        if effort.shape != (self.n_actions,) or not np.all(np.isfinite(effort)):
            raise ValueError(f'offset must be {self.n_actions} finite values')
        self.offset[...] = effort

    def full_actions(self, actions: np.ndarray) -> np.ndarray:
        """Model input (B, H, n) for planner actions (B, H, m); a buffer reused by this thread's next call."""
        batch, horizon, _ = actions.shape
        full = getattr(self._scratch, 'full', None)
        if full is None or full.shape[:2] != (batch, horizon):
            full = self._scratch.full = np.zeros((batch, horizon, self.n_actions), dtype=np.float32)
        block = self._block
        if block is None:
            full[...] = self.offset
            full[..., self.actuated] += actions
        else:       # the same sums (offset + action), without the gather and scatter of fancy indexing
            if block.stop - block.start < self.n_actions:
                full[...] = self.offset
            np.add(actions, self.offset[block], out=full[..., block])
        return full

    def __call__(self, z0: np.ndarray, actions: np.ndarray) -> Rollout:
        """Roll ``z0`` (n,) forward under the planner's action sequences (B, H, m)."""
        return self._batched(z0, self.full_actions(actions))


__all__ = ['EffortRollout']
