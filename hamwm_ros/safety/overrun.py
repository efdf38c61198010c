"""Planner overrun accounting: an iteration longer than the planner period is an overrun; K in a row trips."""

from __future__ import annotations

import math


class OverrunCounter:
    """Counts planner iterations that took longer than their period.

    Parameters
    ----------
    limit
        Consecutive overruns that trip the counter (the supervisor then uses the fallback until an iteration is on
        time again).

    Raises
    ------
    ValueError
        If ``limit`` is not a positive int.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reset()

    @property
    def limit(self) -> int:
        """Consecutive overruns that trip the counter."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'overrun limit must be an int >= 1, got {value!r}')
        self._limit = value

    def reset(self) -> None:
        """Zero every count."""
        self.iterations = 0
        self.total = 0
        self.consecutive = 0
        self.worst = 0.0

    def record(self, duration: float, period: float) -> bool:
        """Record one iteration of ``duration`` s against ``period`` s; return True if it overran.

        A non-finite duration counts as an overrun.
        """
        self.iterations += 1
        overran = not math.isfinite(duration) or duration > period
        if math.isfinite(duration):
            self.worst = max(self.worst, duration)
        if overran:
            self.total += 1
            self.consecutive += 1
        else:
            self.consecutive = 0
        return overran

    @property
    def tripped(self) -> bool:
        """True while the last ``limit`` or more iterations all overran."""
        return self.consecutive >= self._limit
