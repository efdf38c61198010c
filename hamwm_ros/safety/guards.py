"""Input and command guards: what may enter the controller and what may leave it.

:class:`InputGuard` maps a JointState's arrays onto the controller's joint order **by name** (reordered, extra or
missing joints, unequal array lengths) and rejects, with a per-kind counter, anything that cannot be used: non-finite
values, unmappable names, missing velocities. A measured position outside its URDF limits by more than a tolerance
is a *fault* (the sensor or the robot is not where any plan assumes). Many rejections in a row are *persistent*.

:class:`CommandGuard` is the last step before publication: a non-finite entry never passes (the whole command is
replaced by a step toward zero), every entry is clamped to its URDF effort limit, and the change from the previous
output is bounded per tick. Given the measured state and the URDF limits, it finally cuts to zero every effort
that would push a joint further out of its position range or beyond its velocity limit
(:func:`~hamwm_ros.safety.limits.outward_effort_mask`). Going to zero effort at once (safe hold, e-stop) bypasses the
rate bound: zero is always within limits and is the safe action.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np

from hamwm_ros.jointmap import JointMap, JointMapError
from hamwm_ros.safety.limits import JointLimits, outward_effort_mask


@dataclass(frozen=True)
class InputVerdict:
    """Outcome of :meth:`InputGuard.check`.

    Attributes
    ----------
    ok
        The state may be used (positions and velocities in controller order are set).
    position, velocity
        (n,) float64 in controller joint order when ``ok``, else None.
    kind
        '' when ok; else the counter key: ``joint_names``, ``length``, ``no_velocity``, ``non_finite``,
        ``position_limit``.
    reason
        Human-readable explanation.
    fault
        True for a fault that must stop the robot (position beyond limits, or rejections that have persisted).
    """

    ok: bool
    position: np.ndarray | None = None
    velocity: np.ndarray | None = None
    kind: str = ''
    reason: str = ''
    fault: bool = False


class InputGuard:
    """Validate joint-state messages against names, finiteness and URDF position limits.

    Parameters
    ----------
    limits
        Limits in controller joint order (its ``names`` are the joints the controller needs).
    position_tolerance
        How far (rad or m) a measured position may lie outside its URDF range before it is a fault.
    max_consecutive_rejections
        Rejections in a row after which they count as a persistent fault.
    free_turning
        Indices of joints that may turn over (a swing-up's pole): their positions are angles whose URDF range is not
        checked. A pole with no damping that falls from upright turns for ever, so its angle leaves any finite range.

    Raises
    ------
    ValueError
        If the tolerance is negative or not finite, ``max_consecutive_rejections`` < 1 or an index names no joint.
    """

    KINDS = ('joint_names', 'length', 'no_velocity', 'non_finite', 'position_limit')

    def __init__(self, limits: JointLimits, position_tolerance: float = 0.05,
                 max_consecutive_rejections: int = 10, free_turning: Sequence[int] = ()) -> None:
        if not math.isfinite(position_tolerance) or position_tolerance < 0:
            raise ValueError(f'position_tolerance must be finite and >= 0, got {position_tolerance}')
        if max_consecutive_rejections < 1:
            raise ValueError(f'max_consecutive_rejections must be >= 1, got {max_consecutive_rejections}')
        self.free_turning = tuple(int(i) for i in free_turning)
        if any(not 0 <= i < len(limits.names) for i in self.free_turning):
            raise ValueError(f'free_turning {list(self.free_turning)} names no joint of {len(limits.names)}')
        self.limits = limits
        self.position_tolerance = float(position_tolerance)
        self.max_consecutive_rejections = int(max_consecutive_rejections)
        self._map = JointMap(limits.names)
        self._bounds_tolerance = math.nan   # position bounds + tolerance, recomputed when the tolerance changes
        self._low = self._high = limits.position[:, 0]
        self.rejected = {kind: 0 for kind in self.KINDS}
        self.accepted = 0
        self.consecutive_rejections = 0

    def _reject(self, kind: str, reason: str, fault: bool = False) -> InputVerdict:
        self.rejected[kind] += 1
        self.consecutive_rejections += 1
        persistent = self.consecutive_rejections >= self.max_consecutive_rejections
        if persistent and not fault:
            reason = f'{reason} ({self.consecutive_rejections} rejected in a row)'
        return InputVerdict(False, kind=kind, reason=reason, fault=fault or persistent)

    def check(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
              effort: Sequence[float] = ()) -> InputVerdict:
        """Map and validate one joint-state message (fields as they come, JointState conventions).

        ``effort`` may be empty; ``position`` and ``velocity`` must have one entry per name. Only the controller's
        joints are checked for finiteness; extra joints are ignored.
        """
        names = list(names)
        arrays = {}
        for field, values, optional in (('position', position, False), ('velocity', velocity, False),
                                        ('effort', effort, True)):
            array = np.asarray(values, dtype=np.float64).ravel()
            if array.size == 0 and optional:
                continue
            if array.size == 0 and field == 'velocity':
                return self._reject('no_velocity', 'velocity field is empty (the world model needs velocities)')
            if array.size != len(names):
                return self._reject('length', f'{field} has {array.size} entries for {len(names)} joint names')
            arrays[field] = array
        try:
            index = self._map.indices(names)
        except JointMapError as error:
            return self._reject('joint_names', str(error))
        picked = {field: array[index] for field, array in arrays.items()}
        # Runs at the joint-state rate on the input thread, holding the interpreter lock: a sum is finite exactly when
        # no entry is inf or NaN (barring overflow, which then takes the detailed path and passes), one call per field.
        for field, array in picked.items():
            if not math.isfinite(float(array.sum())) and not np.all(np.isfinite(array)):
                bad = [self.limits.names[i] for i in np.flatnonzero(~np.isfinite(array))]
                return self._reject('non_finite', f'{field} is not finite for joints {bad}')
        q = picked['position']
        if self._bounds_tolerance != self.position_tolerance:
            self._low = self.limits.position[:, 0] - self.position_tolerance
            self._high = self.limits.position[:, 1] + self.position_tolerance
            self._low[list(self.free_turning)], self._high[list(self.free_turning)] = -math.inf, math.inf
            self._bounds_tolerance = self.position_tolerance
        low, high = self._low, self._high
        if (q < low).any() or (q > high).any():
            outside = np.flatnonzero((q < low) | (q > high))
            detail = ', '.join(f'{self.limits.names[i]}={q[i]:.4f} not in [{self.limits.position[i, 0]:.4f}, '
                               f'{self.limits.position[i, 1]:.4f}]' for i in outside)
            return self._reject('position_limit', f'measured position beyond the URDF limits by more than '
                                                  f'{self.position_tolerance:g}: {detail}', fault=True)
        self.accepted += 1
        self.consecutive_rejections = 0
        return InputVerdict(True, q, picked['velocity'])


class CommandGuard:
    """Make any proposed effort command safe to publish.

    Parameters
    ----------
    effort_limits
        (n,) non-negative limits; a limit of 0 (passive joint) forces that entry to 0.
    max_delta
        Largest change of any entry between consecutive outputs; ``inf`` disables the bound.
    joint_limits
        URDF position and velocity limits (same joint order) for the outward-effort rule; None disables the rule.
    limit_margin
        A joint this close to a position limit (rad or m) counts as at it for the rule.

    Raises
    ------
    ValueError
        If the limits are not finite and >= 0, ``max_delta`` is not > 0 or ``limit_margin`` is negative.
    """

    def __init__(self, effort_limits: Sequence[float], max_delta: float = math.inf,
                 joint_limits: JointLimits | None = None, limit_margin: float = 0.0) -> None:
        limits = np.asarray(effort_limits, dtype=np.float64).ravel()
        if limits.size == 0 or not (np.all(np.isfinite(limits)) and np.all(limits >= 0)):
            raise ValueError('effort_limits must be a non-empty array of finite values >= 0')
        if joint_limits is not None and len(joint_limits.names) != limits.size:
            raise ValueError(f'joint_limits name {len(joint_limits.names)} joints, effort limits {limits.size}')
        self.effort_limits = limits
        self.max_delta = max_delta
        self.joint_limits = joint_limits
        self.limit_margin = limit_margin
        self.limit_cut = 0
        self.previous = np.zeros(limits.size)
        self.non_finite = 0
        self.clamped = 0
        self.rate_limited = 0

    @property
    def max_delta(self) -> float:
        """Largest change per output."""
        return self._max_delta

    @max_delta.setter
    def max_delta(self, value: float) -> None:
        value = float(value)
        if math.isnan(value) or value <= 0:
            raise ValueError(f'max_delta must be > 0 (or inf), got {value}')
        self._max_delta = value

    @property
    def limit_margin(self) -> float:
        """Distance to a position limit that counts as at it (outward-effort rule)."""
        return self._limit_margin

    @limit_margin.setter
    def limit_margin(self, value: float) -> None:
        value = float(value)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f'limit_margin must be finite and >= 0, got {value}')
        self._limit_margin = value

    def apply(self, command: Sequence[float], position: np.ndarray | None = None,
              velocity: np.ndarray | None = None) -> np.ndarray:
        """The command to publish: finite, within the effort limits, within ``max_delta`` of the previous output.

        A command of the wrong size or with any non-finite entry is refused as a whole (a partly corrupt command
        is not trusted): the output then steps from the previous one toward zero. With the measured ``position``
        and ``velocity`` (and ``joint_limits``), efforts pushing a joint further out of its position range or past
        its velocity limit are then cut to zero (last, so the rate bound cannot delay the cut).
        """
        proposal = np.asarray(command, dtype=np.float64).ravel()
        if proposal.shape != self.previous.shape or not np.all(np.isfinite(proposal)):
            self.non_finite += 1
            proposal = np.zeros_like(self.previous)
        clipped = np.clip(proposal, -self.effort_limits, self.effort_limits)
        if np.any(clipped != proposal):
            self.clamped += 1
        if math.isfinite(self._max_delta):
            # previous and clipped are both within the limits, so anything between them is too.
            limited = np.clip(clipped, self.previous - self._max_delta, self.previous + self._max_delta)
            if np.any(limited != clipped):
                self.rate_limited += 1
            clipped = np.clip(limited, -self.effort_limits, self.effort_limits)
        if self.joint_limits is not None and position is not None and velocity is not None:
            cut = outward_effort_mask(clipped, position, velocity, self.joint_limits, self._limit_margin)
            if np.any(cut):
                self.limit_cut += 1
                clipped = np.where(cut, 0.0, clipped)
        self.previous = clipped
        return clipped.copy()

    def hold(self) -> np.ndarray:
        """Zero effort now (safe hold, e-stop): bypasses the rate bound; the next :meth:`apply` starts from zero."""
        self.previous = np.zeros_like(self.previous)
        return self.previous.copy()
