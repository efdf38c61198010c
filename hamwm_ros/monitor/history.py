"""Short histories of what the robot did, for judging a world model after the fact.

:class:`StateHistory` keeps stamped joint states and interpolates them at any time inside its span;
:class:`InputHistory` keeps stamped control inputs as a zero-order hold and resamples them on the model's step grid;
:class:`ForecastLog` keeps forecasts until the observation they predicted has arrived.

All three use preallocated ring buffers (a 500 Hz ``/joint_states`` stream must not allocate per message) and one
time base: the stamps of the joint states. Pure numpy; no rclpy, no torch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


class _Ring:
    """Fixed-capacity ring of (time, row) with strictly increasing times."""

    def __init__(self, width: int, capacity: int) -> None:
        if width < 1 or capacity < 2:
            raise ValueError(f'width must be >= 1 and capacity >= 2, got {width} and {capacity}')
        self.times = np.empty(capacity)
        self.rows = np.empty((capacity, width))
        self.capacity = capacity
        self.count = 0
        self.head = 0          # index the next sample goes to

    def push(self, t: float, row: np.ndarray) -> bool:
        if not np.isfinite(t) or (self.count and t <= self.times[(self.head - 1) % self.capacity]):
            return False       # out-of-order or repeated stamps would break interpolation
        self.times[self.head] = t
        self.rows[self.head] = row
        self.head = (self.head + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        return True

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, rows) oldest first (copies)."""
        index = (self.head - self.count + np.arange(self.count)) % self.capacity
        return self.times[index], self.rows[index]

    def latest(self) -> tuple[float, np.ndarray] | None:
        if not self.count:
            return None
        i = (self.head - 1) % self.capacity
        return float(self.times[i]), self.rows[i].copy()

    def oldest_time(self) -> float | None:
        return None if not self.count else float(self.times[(self.head - self.count) % self.capacity])

    def clear(self) -> None:
        self.count = 0
        self.head = 0


class StateHistory:
    """Stamped joint states (position and velocity, model joint order), linearly interpolated in time.

    Parameters
    ----------
    n_joints
        Joints per sample.
    capacity
        Samples kept; at 500 Hz the default covers about 8 s.

    Raises
    ------
    ValueError
        If ``n_joints`` < 1 or ``capacity`` < 2.
    """

    def __init__(self, n_joints: int, capacity: int = 4096) -> None:
        self.n_joints = n_joints
        self._ring = _Ring(2 * n_joints, capacity)

    def __len__(self) -> int:
        return self._ring.count

    def add(self, t: float, position: np.ndarray, velocity: np.ndarray) -> bool:
        """Append a sample stamped ``t`` (seconds).

        Returns False (and keeps nothing) when ``t`` is not after the last stamp or a value is not finite.
        """
        row = np.concatenate([np.asarray(position, np.float64), np.asarray(velocity, np.float64)])
        if row.shape != (2 * self.n_joints,) or not np.all(np.isfinite(row)):
            return False
        return self._ring.push(float(t), row)

    def latest(self) -> tuple[float, np.ndarray] | None:
        """(stamp, state (2 n,)) of the newest sample, or None."""
        return self._ring.latest()

    def span(self) -> tuple[float, float] | None:
        """(oldest, newest) stamp, or None when empty."""
        latest = self._ring.latest()
        return None if latest is None else (self._ring.oldest_time(), latest[0])

    def at(self, t: float) -> np.ndarray | None:
        """State (2 n,) at time ``t``, interpolated between the samples around it; None outside the kept span."""
        span = self.span()
        if span is None or not span[0] <= t <= span[1]:
            return None
        times, rows = self._ring.ordered()
        i = int(np.searchsorted(times, t, side='right'))
        if i >= len(times):
            return rows[-1].copy()
        if i == 0:
            return rows[0].copy()
        t0, t1 = times[i - 1], times[i]
        w = (t - t0) / (t1 - t0)
        return (1.0 - w) * rows[i - 1] + w * rows[i]

    def clear(self) -> None:
        """Forget every sample."""
        self._ring.clear()


class InputHistory:
    """Stamped control inputs, read back as a zero-order hold (each input holds until the next one).

    Parameters
    ----------
    action_dim
        Entries per input.
    timeout
        An input older than this (seconds) no longer holds; zero input is assumed after it (what ros2_control's
        command timeouts and the simulator do).
    capacity
        Inputs kept.

    Raises
    ------
    ValueError
        If ``action_dim`` < 1, ``timeout`` <= 0 or ``capacity`` < 2.
    """

    def __init__(self, action_dim: int, timeout: float, capacity: int = 2048) -> None:
        if not timeout > 0:
            raise ValueError(f'timeout must be > 0, got {timeout}')
        self.action_dim = action_dim
        self.timeout = float(timeout)
        self._ring = _Ring(action_dim, capacity)

    def add(self, t: float, u: np.ndarray) -> bool:
        """Append input ``u`` (action_dim,) applied from time ``t``; False when out of order or not finite."""
        u = np.asarray(u, np.float64)
        if u.shape != (self.action_dim,) or not np.all(np.isfinite(u)):
            return False
        return self._ring.push(float(t), u)

    def at(self, t: float) -> np.ndarray:
        """The input in force at time ``t`` (zeros before the first input or once the last one timed out)."""
        return self.sample(t, 1.0, 1)[0]

    def current(self, t: float) -> np.ndarray:
        """The newest input (even one stamped after ``t``), or zeros when none is known or it is stale at ``t``."""
        latest = self._ring.latest()
        if latest is None or t - latest[0] > self.timeout:
            return np.zeros(self.action_dim)
        return latest[1]

    def sample(self, t0: float, dt: float, steps: int) -> np.ndarray:
        """Inputs in force at ``t0 + i dt`` for i in 0..steps-1, (steps, action_dim)."""
        out = np.zeros((steps, self.action_dim))
        if not self._ring.count or steps < 1:
            return out
        times, rows = self._ring.ordered()
        grid = t0 + dt * np.arange(steps)
        index = np.searchsorted(times, grid, side='right') - 1
        valid = index >= 0
        valid[valid] &= grid[valid] - times[index[valid]] <= self.timeout
        out[valid] = rows[index[valid]]
        return out

    def clear(self) -> None:
        """Forget every input."""
        self._ring.clear()


@dataclass(frozen=True)
class Forecast:
    """One forecast waiting for the observation it predicted."""

    t0: float                 # stamp of the state it started from
    target_time: float        # t0 + k dt
    predicted: np.ndarray     # (2 n,) predicted state at target_time
    start: np.ndarray         # (2 n,) state at t0 (for the hold-still baseline)


class ForecastLog:
    """Forecasts made at each tick, released once observations have reached the time they predicted.

    Used for models whose past cannot be re-encoded (camera encoders): the forecast made k steps ago under the
    input then in force is compared with what happened.

    Parameters
    ----------
    capacity
        Forecasts kept; the oldest are dropped beyond it.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._pending: deque[Forecast] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, forecast: Forecast) -> None:
        """Keep ``forecast`` until :meth:`due` releases it."""
        if self._pending and forecast.target_time <= self._pending[-1].target_time:
            return    # keep target times increasing (a repeated tick on the same joint state adds nothing)
        self._pending.append(forecast)

    def due(self, newest_observation: float) -> list[Forecast]:
        """Remove and return the forecasts whose target time is at or before ``newest_observation``."""
        out = []
        while self._pending and self._pending[0].target_time <= newest_observation:
            out.append(self._pending.popleft())
        return out

    def clear(self) -> None:
        """Drop every pending forecast."""
        self._pending.clear()
