"""Controller modes and the machine that moves between them, with a reason on every transition.

Modes, from most to least restrictive (the supervisor picks the first that applies on every control tick):

``INACTIVE``
    The node is not active (lifecycle unconfigured/inactive): nothing is published.
``ESTOP``
    The latched emergency stop: zero effort until an explicit reset.
``WAITING_FOR_STATE``
    Active, but the joint states have not yet been fresh for the recovery time since activation: zero effort.
``SAFE_HOLD``
    Joint states went stale, or the input guard reported a fault: zero effort, latched until fresh, valid data has
    arrived for the recovery time.
``FALLBACK``
    Fresh state but no usable plan (none yet, invalid, late, non-finite, or too many planner overruns): the PD hold
    of the nominal posture.
``PLANNING``
    The MPPI plan drives the robot.

Every mode can be entered from every other one (faults come at any time), so the machine does not restrict
transitions; what it guarantees is that each transition carries a reason, is counted, and is kept in a bounded
history for diagnostics.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import enum


class Mode(enum.Enum):
    """Controller mode; ``value`` is the name published on ``/hamwm/mpc/mode``."""

    INACTIVE = 'INACTIVE'
    ESTOP = 'ESTOP'
    WAITING_FOR_STATE = 'WAITING_FOR_STATE'
    SAFE_HOLD = 'SAFE_HOLD'
    FALLBACK = 'FALLBACK'
    PLANNING = 'PLANNING'

    @property
    def commands_zero(self) -> bool:
        """True for the modes whose command is zero effort (no state-dependent law is trusted)."""
        return self in (Mode.INACTIVE, Mode.ESTOP, Mode.WAITING_FOR_STATE, Mode.SAFE_HOLD)


@dataclass(frozen=True)
class Transition:
    """One mode change: when (the caller's clock), from, to, and why."""

    time: float
    previous: Mode
    mode: Mode
    reason: str

    def __str__(self) -> str:
        return f'{self.previous.value} -> {self.mode.value}: {self.reason}'


class ModeMachine:
    """Current mode, its reason, transition counts and a bounded history.

    Parameters
    ----------
    history
        How many transitions to keep.

    Raises
    ------
    ValueError
        If ``history`` is not positive.
    """

    def __init__(self, history: int = 32) -> None:
        if history <= 0:
            raise ValueError(f'history must be positive, got {history}')
        self.mode = Mode.INACTIVE
        self.reason = 'not activated'
        self.since = 0.0
        self.history: deque[Transition] = deque(maxlen=history)
        self.entered: dict[Mode, int] = {mode: 0 for mode in Mode}

    def set(self, mode: Mode, reason: str, now: float) -> Transition | None:
        """Go to ``mode`` because of ``reason``; return the transition, or None if already in ``mode``.

        The reason of the current mode is updated even without a transition (the cause may change, e.g. from
        "stale" to "recovering"), but only a change of mode is recorded.

        Raises
        ------
        ValueError
            If ``reason`` is empty: every transition must say why.
        """
        if not isinstance(mode, Mode):
            raise ValueError(f'not a Mode: {mode!r}')
        if not reason:
            raise ValueError('a mode change needs a reason')
        if mode is self.mode:
            self.reason = reason
            return None
        transition = Transition(now, self.mode, mode, reason)
        self.mode, self.reason, self.since = mode, reason, now
        self.entered[mode] += 1
        self.history.append(transition)
        return transition

    def status(self) -> str:
        """``'<MODE>: <reason>'``, the text published on the mode topic."""
        return f'{self.mode.value}: {self.reason}'
