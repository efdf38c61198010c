"""Joint-state watchdog: is the latest joint state fresh enough to control with?

Two clocks, because either alone can be fooled:

* **Message stamp** against the node's ROS clock (simulated time under ``use_sim_time``), checked on arrival by
  :meth:`Watchdog.check_stamp`. A stamp older than ``max_stamp_age``, further in the future than
  ``max_future_stamp``, or not newer than the last accepted stamp is **ignored** (the message is not used and does
  not count as fresh). A zero stamp (a driver that never sets it) follows ``zero_stamp``: ``'reject'`` ignores it,
  ``'accept'`` uses it and lets receipt time alone judge freshness (the caller should warn). While the ROS clock
  reads zero (``use_sim_time`` before the first ``/clock`` message) a stamped message cannot be judged and is
  ignored as ``clock_not_started``: an expected start-up condition, not a stamp fault.
* **Receipt time** on a monotonic clock, checked on every control tick by :meth:`Watchdog.update`: when no accepted
  message arrived for ``timeout`` seconds the state is stale. This catches a dead publisher even when ROS time
  stands still (a simulator that stopped publishing ``/clock``).

Staleness latches: after any stale period (and at start) the state counts as healthy again only once accepted
messages have kept arriving, with no gap longer than ``timeout``, for ``recovery_time`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
import enum
import math


class StampPolicy(enum.Enum):
    """What to do with a zero stamp."""

    REJECT = 'reject'
    ACCEPT = 'accept'


@dataclass(frozen=True)
class StampVerdict:
    """Outcome of :meth:`Watchdog.check_stamp`.

    Attributes
    ----------
    accepted
        Whether the message may be used.
    kind
        '' when accepted cleanly; otherwise a short counter key: ``zero_stamp``, ``old_stamp``, ``future_stamp``,
        ``stamp_not_newer`` (a zero stamp accepted under ``'accept'`` also reports ``zero_stamp``).
    reason
        Human-readable explanation for logs.
    """

    accepted: bool
    kind: str = ''
    reason: str = ''


@dataclass(frozen=True)
class WatchdogState:
    """Outcome of :meth:`Watchdog.update`: healthy or not, and why."""

    healthy: bool
    stale: bool
    reason: str
    age: float


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f'{name} must be finite and {">=" if allow_zero else ">"} 0, got {value}')
    return value


class Watchdog:
    """Freshness of joint states by stamp and by receipt time, latched until recovered.

    Parameters
    ----------
    timeout
        Seconds without an accepted message (receipt time) after which the state is stale.
    recovery_time
        Seconds of uninterrupted fresh data needed after a stale period (and at start) before the state is healthy.
    max_stamp_age
        Largest accepted ``now - stamp`` on arrival, seconds.
    max_future_stamp
        Largest accepted ``stamp - now`` on arrival, seconds (clock offsets between machines).
    zero_stamp
        :class:`StampPolicy` or its value for zero stamps.

    Raises
    ------
    ValueError
        If a duration is negative or not finite (``timeout`` must be > 0) or the policy is unknown.
    """

    def __init__(self, timeout: float, recovery_time: float = 0.0, max_stamp_age: float = 0.5,
                 max_future_stamp: float = 0.05, zero_stamp: StampPolicy | str = StampPolicy.REJECT) -> None:
        self.timeout = _check_positive('timeout', timeout)
        self.recovery_time = _check_positive('recovery_time', recovery_time, allow_zero=True)
        self.max_stamp_age = _check_positive('max_stamp_age', max_stamp_age)
        self.max_future_stamp = _check_positive('max_future_stamp', max_future_stamp, allow_zero=True)
        try:
            self.zero_stamp = StampPolicy(zero_stamp)
        except ValueError:
            raise ValueError(f"zero_stamp must be 'reject' or 'accept', got {zero_stamp!r}") from None
        self.reset()

    def reset(self) -> None:
        """Forget all history: the next state is 'no joint states yet'."""
        self._last_receipt: float | None = None
        self._last_stamp = -math.inf
        self._fresh_since: float | None = None
        self.stale_events = 0
        self.gaps = 0
        self._last_gap = 0.0
        self._was_stale = False

    # ------------------------------------------------------------------ arrival
    def check_stamp(self, stamp: float, now: float) -> StampVerdict:
        """Judge a message stamp (seconds) against the ROS clock ``now`` (seconds) on arrival.

        An accepted verdict records the stamp, so a later message must be newer.
        """
        if stamp == 0.0:
            if self.zero_stamp is StampPolicy.REJECT:
                return StampVerdict(False, 'zero_stamp', 'zero stamp ignored (parameter zero_stamp is reject)')
            return StampVerdict(True, 'zero_stamp', 'zero stamp accepted; freshness judged by receipt time only')
        if not math.isfinite(stamp) or not math.isfinite(now):
            return StampVerdict(False, 'old_stamp', f'stamp {stamp} or clock {now} is not finite')
        if now == 0.0 < stamp:
            return StampVerdict(False, 'clock_not_started', 'the ROS clock reads 0 (use_sim_time and no /clock '
                                                            'message yet): ignored until it starts')
        if now - stamp > self.max_stamp_age:
            return StampVerdict(False, 'old_stamp', f'stamp {now - stamp:.3f} s old (max_stamp_age '
                                                    f'{self.max_stamp_age:g} s): ignored')
        if stamp - now > self.max_future_stamp:
            return StampVerdict(False, 'future_stamp', f'stamp {stamp - now:.3f} s in the future (max_future_stamp '
                                                       f'{self.max_future_stamp:g} s): ignored')
        if stamp <= self._last_stamp:
            if self._last_stamp - now <= self.max_future_stamp:
                return StampVerdict(False, 'stamp_not_newer', f'stamp {stamp:.6f} not newer than the last accepted '
                                                              f'{self._last_stamp:.6f}: ignored')
            # The clock itself went back past the last accepted stamp (a restarted simulation or bag under sim
            # time): a new time line, not an old message. The stamp passed the age checks against the new clock.
            last, self._last_stamp = self._last_stamp, stamp
            return StampVerdict(True, 'clock_jumped_back', f'clock went back ({now:.6f} s, last accepted stamp '
                                                           f'{last:.6f} s): stamps restart from {stamp:.6f} s')
        self._last_stamp = stamp
        return StampVerdict(True)

    def feed(self, receipt: float) -> None:
        """Record an accepted, valid message received at monotonic time ``receipt``."""
        if self._last_receipt is not None and receipt - self._last_receipt > self.timeout:
            # A gap the control ticks did not see (they were late too): it latches all the same.
            self.gaps += 1
            self._last_gap = receipt - self._last_receipt
            self._fresh_since = receipt
        elif self._fresh_since is None:
            self._fresh_since = receipt
        self._last_receipt = receipt

    def invalidate(self) -> None:
        """Restart the recovery period (an input fault: data arrives but cannot be trusted)."""
        self._fresh_since = None

    # ------------------------------------------------------------------ control tick
    def update(self, now: float) -> WatchdogState:
        """State at monotonic time ``now``; call on every control tick (staleness latches here)."""
        if self._last_receipt is None:
            return WatchdogState(False, True, 'no joint states received yet', math.inf)
        age = now - self._last_receipt
        if age > self.timeout:
            self._fresh_since = None
            self._last_gap = age
            if not self._was_stale:
                self.stale_events += 1
                self._was_stale = True
            return WatchdogState(False, True, f'joint states stale: last accepted {1e3 * age:.1f} ms ago '
                                              f'(timeout {1e3 * self.timeout:.1f} ms)', age)
        self._was_stale = False
        if self._fresh_since is None:
            return WatchdogState(False, False, 'joint states not trusted yet (waiting for valid data)', age)
        fresh_for = now - self._fresh_since
        if fresh_for < self.recovery_time:
            after = f' after a {1e3 * self._last_gap:.1f} ms gap' if self._last_gap > self.timeout else ''
            return WatchdogState(False, False, f'recovering{after}: joint states fresh for {fresh_for:.3f} s of the '
                                               f'{self.recovery_time:g} s recovery time', age)
        return WatchdogState(True, False, 'joint states fresh', age)

    @property
    def last_receipt(self) -> float | None:
        """Monotonic receipt time of the last accepted message, or None."""
        return self._last_receipt
