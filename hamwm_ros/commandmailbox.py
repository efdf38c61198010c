"""A command mailbox in shared memory: one writer process posts commands, one reader process takes the latest.

mpc_node's control thread shares the interpreter lock with its planner and input threads, so the moment it wakes is
late by however long another thread keeps the lock (p99 0.6-1.0 ms at 500 Hz on 2 cores, against 0.07 ms for a bare
loop). The command relay (``hamwm_ros.nodes.command_relay``) publishes from its own process instead, on its own
clock, whatever command the control thread posted last. Neither side ever waits for the other: the writer bumps a
sequence counter to odd, writes the command, its time and a checksum, and bumps it to even (a seqlock); the reader
copies and retries when the counter moved or the checksum disagrees (the checksum also covers CPUs that reorder
stores). The reader reports its loop statistics back through the same block. Pure numpy, no rclpy.
"""

from __future__ import annotations

import math
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

# header slots (float64)
_SEQ, _WRITTEN, _CHECK, _PERIOD, _STOP, _READY, _HEARTBEAT, _SCHEDULING = range(8)
_TICKS, _MISSED, _PUBLISHED, _STALE, _REPEATS, _REFUSED, _TORN, _RING_COUNT = range(8, 16)
_PHASE, _MATCHED, _STALE_HOLD, _STALE_HOLDS = 16, 17, 18, 19
HEADER = 20
RING = 5000                # period errors and command ages kept for percentiles (10 s at 500 Hz)
READ_RETRIES = 4


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach to block ``name`` without registering it with this process's resource tracker.

    Python before 3.13 (no ``track=False``) registers every attached block, and the tracker unlinks what is still
    registered when the process exits: the reader would remove the writer's block. Registration is switched off for
    the one call (construction time, one thread).
    """
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def _checksum(values: np.ndarray, written: float, weights: np.ndarray) -> float:
    return float(np.dot(values, weights)) + written


class CommandMailbox:
    """Latest command of ``size`` float64 values in a shared-memory block, plus the reader's loop statistics.

    Parameters
    ----------
    size
        Values per command (> 0).
    name
        Name of an existing block to attach to (the reader); None creates a new one (the writer, which owns it and
        unlinks it in :meth:`close`).

    Raises
    ------
    ValueError
        If ``size`` is not positive.
    FileNotFoundError
        If ``name`` names no block.
    """

    def __init__(self, size: int, name: str | None = None) -> None:
        if size < 1:
            raise ValueError(f'a command needs at least one value, got {size}')
        self.size = int(size)
        nbytes = 8 * (HEADER + 2 * RING + self.size)
        self.owner = name is None
        if self.owner:
            self._shm = shared_memory.SharedMemory(create=True, size=nbytes)
        else:
            self._shm = _attach_untracked(name)
            if self._shm.size < nbytes:
                self._shm.close()
                raise ValueError(f'block {name} holds {self._shm.size} bytes, a {size}-value mailbox needs {nbytes}')
        block = np.ndarray((HEADER + 2 * RING + self.size,), dtype=np.float64, buffer=self._shm.buf)
        self._block = block
        self._header = block[:HEADER]
        self._period_errors = block[HEADER:HEADER + RING]
        self._ages = block[HEADER + RING:HEADER + 2 * RING]
        self._values = block[HEADER + 2 * RING:]
        self._weights = 1.0 + np.arange(self.size) * 0.618033988749895
        if self.owner:
            block[:] = 0.0
            self._header[_WRITTEN] = math.nan
            self._header[_CHECK] = math.nan
            self._header[_MATCHED] = -1.0

    @property
    def name(self) -> str:
        """The block's name, for the reader to attach to."""
        return self._shm.name

    # ------------------------------------------------------------------ writer
    def post(self, values: np.ndarray, now: float) -> None:
        """Post ``values`` as the command of time ``now`` (monotonic seconds).

        Raises
        ------
        ValueError
            If ``values`` has the wrong length or a value that is not finite.
        """
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size != self.size:
            raise ValueError(f'expected {self.size} values, got {values.size}')
        if not np.all(np.isfinite(values)):
            raise ValueError(f'a command must be finite, got {values}')
        header = self._header
        header[_SEQ] += 1.0
        self._values[:] = values
        header[_WRITTEN] = now
        header[_CHECK] = _checksum(values, now, self._weights)
        header[_SEQ] += 1.0

    def clear(self) -> None:
        """Withdraw the posted command: the reader publishes nothing until the next :meth:`post`."""
        header = self._header
        header[_SEQ] += 1.0
        header[_WRITTEN] = math.nan
        header[_CHECK] = math.nan
        header[_SEQ] += 1.0

    def set_period(self, period: float) -> None:
        """The reader's loop period, seconds (read by the reader every tick)."""
        self._header[_PERIOD] = float(period)

    def set_phase(self, deadline: float) -> None:
        """The writer's current tick deadline (monotonic seconds), for the reader to tick just after the writer."""
        self._header[_PHASE] = float(deadline)

    def request_stop(self) -> None:
        """Ask the reader to leave its loop."""
        self._header[_STOP] = 1.0

    def set_stale_hold(self, enabled: bool) -> None:
        """Whether the reader publishes zeros in place of a posted command gone stale (see `stale_hold`)."""
        self._header[_STALE_HOLD] = 1.0 if enabled else 0.0

    # ------------------------------------------------------------------ reader
    def take(self) -> tuple[float, np.ndarray] | None:
        """The latest command as (its time, a copy of its values); None if none is posted or every read was torn."""
        header = self._header
        for _ in range(READ_RETRIES):
            before = header[_SEQ]
            if int(before) % 2:
                continue
            written = float(header[_WRITTEN])
            check = float(header[_CHECK])
            values = self._values.copy()
            if header[_SEQ] != before:
                continue
            if math.isnan(written):
                return None
            if _checksum(values, written, self._weights) == check:
                return written, values
        self._header[_TORN] += 1.0
        return None

    @property
    def period(self) -> float:
        """The loop period the writer asked for, seconds (0 before any)."""
        return float(self._header[_PERIOD])

    @property
    def phase(self) -> float:
        """The writer's last tick deadline (0 before any)."""
        return float(self._header[_PHASE])

    @property
    def stop_requested(self) -> bool:
        """Whether the writer asked the reader to stop."""
        return bool(self._header[_STOP])

    def mark_ready(self, pid: int, scheduling: int) -> None:
        """The reader is publishing: its pid, and its SCHED_FIFO priority (0 normal scheduling, -1 refused)."""
        self._header[_SCHEDULING] = float(scheduling)
        self._header[_READY] = float(pid)

    def set_matched(self, count: int) -> None:
        """How many subscriptions the reader's publisher has matched (the writer compares it with its own)."""
        self._header[_MATCHED] = float(count)

    def record_tick(self, now: float, period_error: float | None, missed: int) -> None:
        """One reader tick at ``now``: its period error (None for the first) and the deadlines it missed."""
        header = self._header
        header[_HEARTBEAT] = now
        header[_TICKS] += 1.0
        header[_MISSED] += missed
        if period_error is not None:
            self._period_errors[int(header[_RING_COUNT]) % RING] = period_error

    def record_publish(self, age: float, repeat: bool) -> None:
        """A command went out ``age`` seconds after it was posted; ``repeat``: it had gone out before."""
        header = self._header
        self._ages[int(header[_RING_COUNT]) % RING] = age
        header[_RING_COUNT] += 1.0
        header[_PUBLISHED] += 1.0
        if repeat:
            header[_REPEATS] += 1.0

    @property
    def stale_hold(self) -> bool:
        """Whether a posted command gone stale (the writer stopped posting) is replaced by zeros (off by default).

        A withdrawn command (:meth:`clear`) is not stale: nothing goes out after it either way.
        """
        return bool(self._header[_STALE_HOLD])

    def record_stale_hold(self) -> None:
        """A tick that published zeros in place of a stale command."""
        self._header[_STALE_HOLDS] += 1.0

    def record_skip(self, refused: bool) -> None:
        """A tick that published nothing: no fresh command (stale, or none), or ``refused`` (not finite)."""
        self._header[_REFUSED if refused else _STALE] += 1.0

    # ------------------------------------------------------------------ both
    @property
    def ready_pid(self) -> int:
        """The reader's pid once it publishes, else 0."""
        return int(self._header[_READY])

    @property
    def matched(self) -> int:
        """Subscriptions the reader's publisher matched at its last report (-1 before any)."""
        return int(self._header[_MATCHED])

    @property
    def heartbeat(self) -> float:
        """Monotonic time of the reader's last tick (0 before any)."""
        return float(self._header[_HEARTBEAT])

    def stats(self) -> dict[str, Any]:
        """The reader's loop statistics: counters, and p99 of its period error and of the published commands' age.

        The percentiles cover the last :data:`RING` ticks with a publication (period errors of ticks without one are
        not kept; ``ticks`` counts them all).
        """
        header = self._header.copy()
        count = int(min(header[_RING_COUNT], RING))
        errors = self._period_errors[:count].copy()
        ages = self._ages[:count].copy()
        priority = int(header[_SCHEDULING])
        return {
            'pid': int(header[_READY]), 'ticks': int(header[_TICKS]), 'missed': int(header[_MISSED]),
            'published': int(header[_PUBLISHED]), 'stale': int(header[_STALE]), 'repeats': int(header[_REPEATS]),
            'refused': int(header[_REFUSED]), 'torn': int(header[_TORN]), 'stale_holds': int(header[_STALE_HOLDS]),
            'scheduling': f'SCHED_FIFO {priority}' if priority > 0 else (
                'SCHED_OTHER (SCHED_FIFO refused)' if priority < 0 else 'SCHED_OTHER'),
            'period_error_p99_s': float(np.percentile(errors, 99)) if count else math.nan,
            'command_age_p99_s': float(np.percentile(ages, 99)) if count else math.nan,
            'command_age_p50_s': float(np.median(ages)) if count else math.nan,
        }

    def close(self) -> None:
        """Detach; the owner also removes the block."""
        self._header = self._period_errors = self._ages = self._values = self._block = None
        try:
            self._shm.close()
        except BufferError:     # a view still exported somewhere: the mapping goes with the process
            pass
        if self.owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
