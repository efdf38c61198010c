"""Per-kind warning throttle that counts what it swallowed.

rclpy's ``throttle_duration_sec`` drops repeated log lines silently; nodes here want "dropped 37 NaN messages in the
last second" instead, so each kind of bad input gets its own throttle window and counter. Pure Python, no rclpy.
"""

from __future__ import annotations

import math
import threading
import time


class EventThrottle:
    """Counts events per kind and says when a warning about them is due (at most one per ``period`` per kind).

    Parameters
    ----------
    period
        Minimum seconds (monotonic clock) between two warnings of the same kind.

    Notes
    -----
    Thread-safe: nodes call it from their executor, input and control threads.
    """

    def __init__(self, period: float) -> None:
        self.period = period
        self.last: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, kind: str) -> int:
        """Record one event of ``kind``; return the events since the last warning if one is due now, else 0."""
        now = time.monotonic()
        with self._lock:
            self.count[kind] = self.count.get(kind, 0) + 1
            if now - self.last.get(kind, -math.inf) < self.period:
                return 0
            self.last[kind] = now
            count, self.count[kind] = self.count[kind], 0
            return count
