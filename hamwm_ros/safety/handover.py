"""Bumpless hand-over between two control laws: the step at a switch decays linearly to zero.

When the supervisor switches between the plan and the fallback (either way), the two laws' commands differ by the
plan's correction; applied at once, that step kicks the robot. A :class:`Handover` remembers the difference between
the last output and the new law's command at the switch and adds a share of it that falls linearly from 1 to 0 over
``duration`` seconds, so the output is continuous at the switch and the new law alone from ``duration`` on. A switch
in the middle of a hand-over starts a new one from the output then in force. Zero-effort modes (e-stop, safe hold)
never blend: the supervisor resets the hand-over there.
"""

from __future__ import annotations

import math

import numpy as np


class Handover:
    """Linear blend from the previous output to a new law's command.

    Parameters
    ----------
    duration
        Seconds the blend lasts; 0 switches at once (no blend).

    Raises
    ------
    ValueError
        If ``duration`` is negative or not finite.
    """

    def __init__(self, duration: float = 0.0) -> None:
        self.duration = duration
        self._start: float | None = None
        self._offset: np.ndarray | None = None

    @property
    def duration(self) -> float:
        """Seconds a blend lasts (0: none)."""
        return self._duration

    @duration.setter
    def duration(self, value: float) -> None:
        value = float(value)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f'hand-over duration must be finite and >= 0, got {value}')
        self._duration = value
        if value == 0.0:
            self.reset()

    @property
    def active(self) -> bool:
        """True while a blend is in progress (it ends at the first :meth:`apply` past its duration)."""
        return self._offset is not None

    def reset(self) -> None:
        """Forget any blend in progress (the next output is the law's command alone)."""
        self._start, self._offset = None, None

    def start(self, now: float, previous_output: np.ndarray, command: np.ndarray) -> bool:
        """Begin a blend at ``now`` from ``previous_output`` to the new law's ``command``; True if one began.

        Nothing begins when the duration is 0 or either array is not finite (a blend must never carry a bad value
        forward); a blend in progress is then dropped.

        Raises
        ------
        ValueError
            If the arrays differ in shape.
        """
        previous = np.asarray(previous_output, dtype=np.float64)
        target = np.asarray(command, dtype=np.float64)
        if previous.shape != target.shape:
            raise ValueError(f'previous output {previous.shape} and command {target.shape} differ in shape')
        if self._duration == 0.0 or not (np.all(np.isfinite(previous)) and np.all(np.isfinite(target))):
            self.reset()
            return False
        self._start, self._offset = now, previous - target
        return True

    def weight(self, now: float) -> float:
        """Share of the switch's step still added at ``now``: 1 at the switch, 0 from ``duration`` after it on."""
        if self._offset is None or self._duration == 0.0:
            return 0.0
        return min(1.0, max(0.0, 1.0 - (now - self._start) / self._duration))

    def added(self, now: float) -> np.ndarray | None:
        """The share of the switch's step added at ``now`` (None when no blend is in progress or it is over)."""
        share = self.weight(now)
        return None if share <= 0.0 else share * self._offset

    def apply(self, now: float, command: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The blended command at ``now`` and the share of the step added to it (None once the blend is over).

        Raises
        ------
        ValueError
            If ``command`` differs in shape from the blend's arrays.
        """
        target = np.asarray(command, dtype=np.float64)
        if self._offset is None:
            return target, None
        if target.shape != self._offset.shape:
            raise ValueError(f'command {target.shape} and blend {self._offset.shape} differ in shape')
        added = self.added(now)
        if added is None:
            self.reset()
            return target, None
        return target + added, added
