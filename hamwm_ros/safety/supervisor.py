"""The supervisor: decides, on every control tick, which law drives the robot and makes its output safe.

Inputs arrive from several threads (joint states from the executor, plans and timings from the planner thread, the
e-stop from a service, ticks from the control thread); every public method takes the supervisor's lock, so they may
be called from any thread. Times: ``now``/``receipt`` arguments are a monotonic clock (seconds); message stamps are
compared with the ROS clock (``ros_now``).

Decision on each :meth:`Supervisor.tick`, first match wins (see :mod:`hamwm_ros.safety.modes`)::

    not active                              -> INACTIVE           zero effort (the node publishes nothing)
    e-stop latched                          -> ESTOP              zero effort
    watchdog never healthy since activation -> WAITING_FOR_STATE  zero effort
    watchdog unhealthy or input fault       -> SAFE_HOLD          zero effort
    world model reported invalid            -> FALLBACK           PD hold (reason: the monitor's level and message)
    usable plan                             -> PLANNING           plan, linearly interpolated at ``now`` (with
                                                                  ``plan_on_fallback``: plus the PD hold; else
                                                                  plus the plan feedback, when one is set)
    otherwise                               -> FALLBACK           PD hold of the nominal posture

A switch between PLANNING and FALLBACK (either way) is handed over across ``handover_time`` seconds
(:class:`~hamwm_ros.safety.handover.Handover`): the step between the last output and the new law's command decays
linearly to zero instead of reaching the robot at once. The zero-effort modes never blend.

A plan is usable when it is finite, was made from a state received at most ``max_plan_age`` ago, still covers
``now``, and the planner has not overrun ``overrun_limit`` times in a row. Every output then goes through the
:class:`~hamwm_ros.safety.guards.CommandGuard`: zero-effort modes go to zero at once; the others are clamped to the
URDF effort limits and rate bounded, and efforts pushing a joint further past a position limit (or its velocity
limit) are cut to zero (:func:`~hamwm_ros.safety.limits.outward_effort_mask`). The world model's validity comes
from :meth:`Supervisor.on_model_validity` (:class:`~hamwm_ros.safety.validity.ModelValidity`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
import math
import threading

import numpy as np

from hamwm_ros.mpc.fallback import PDHoldFallback
from hamwm_ros.safety.estop import EStop
from hamwm_ros.safety.feedback import PlanFeedback
from hamwm_ros.safety.guards import CommandGuard, InputGuard, InputVerdict
from hamwm_ros.safety.handover import Handover
from hamwm_ros.safety.limits import JointLimits
from hamwm_ros.safety.modes import Mode, ModeMachine, Transition
from hamwm_ros.safety.overrun import OverrunCounter
from hamwm_ros.safety.validity import ModelValidity
from hamwm_ros.safety.watchdog import Watchdog


@dataclass(frozen=True)
class SupervisorConfig:
    """Supervisor settings (seconds unless stated); see the watchdog and guards for their meaning.

    Attributes
    ----------
    joint_state_timeout
        Receipt-time gap after which joint states are stale.
    recovery_time
        Fresh, valid data needed after a stale period or fault (and after activation) before control resumes.
    max_stamp_age, max_future_stamp, zero_stamp
        Stamp checks on arrival (:class:`~hamwm_ros.safety.watchdog.Watchdog`).
    position_tolerance
        Measured positions may exceed the URDF range by this much before it is a fault (rad or m).
    max_consecutive_rejections
        Rejected messages in a row that make a fault.
    max_plan_age
        A plan made from a state received longer ago than this is late: fallback.
    overrun_limit
        Planner overruns in a row that trip the fallback.
    max_effort_delta
        Largest change of any effort between two ticks (N m or N); ``inf`` disables it.
    limit_margin
        A joint this close to a position limit counts as at it: efforts pushing it further out are cut (rad or m).
    model_invalid_time
        Seconds a world-model ERROR/STALE report must persist before the fallback takes over.
    model_validity_timeout
        Seconds without a validity report, once one was heard, that count as STALE (``inf``: never).
    plan_on_fallback
        True: a plan is a correction to the fallback's PD hold, and PLANNING commands the PD hold evaluated at the
        tick from the latest state plus the plan's effort (a floating-base robot keeps its posture feedback at the
        control rate, and the planner only adds what the model says improves on it). False: the plan's effort alone.
    handover_time
        Seconds over which a switch between the plan and the fallback blends from the last output to the new law
        (:class:`~hamwm_ros.safety.handover.Handover`); 0: the new law at once.
    """

    joint_state_timeout: float = 0.02
    recovery_time: float = 0.2
    max_stamp_age: float = 0.5
    max_future_stamp: float = 0.05
    zero_stamp: str = 'reject'
    position_tolerance: float = 0.05
    max_consecutive_rejections: int = 10
    max_plan_age: float = 0.1
    overrun_limit: int = 5
    max_effort_delta: float = math.inf
    limit_margin: float = 0.0
    model_invalid_time: float = 0.5
    model_validity_timeout: float = math.inf
    plan_on_fallback: bool = False
    handover_time: float = 0.0

    def __post_init__(self) -> None:
        # Build throwaway parts so every value is validated by the class that uses it.
        Watchdog(self.joint_state_timeout, self.recovery_time, self.max_stamp_age, self.max_future_stamp,
                 self.zero_stamp)
        OverrunCounter(self.overrun_limit)
        CommandGuard([1.0], self.max_effort_delta, limit_margin=self.limit_margin)
        ModelValidity(self.model_invalid_time, self.model_validity_timeout)
        Handover(self.handover_time)
        if not math.isfinite(self.position_tolerance) or self.position_tolerance < 0:
            raise ValueError(f'position_tolerance must be finite and >= 0, got {self.position_tolerance}')
        if isinstance(self.max_consecutive_rejections, bool) or not isinstance(self.max_consecutive_rejections,
                                                                               int) \
                or self.max_consecutive_rejections < 1:
            raise ValueError(f'max_consecutive_rejections must be an int >= 1, got {self.max_consecutive_rejections}')
        if not math.isfinite(self.max_plan_age) or self.max_plan_age <= 0:
            raise ValueError(f'max_plan_age must be finite and > 0, got {self.max_plan_age}')
        if not isinstance(self.plan_on_fallback, bool):
            raise ValueError(f'plan_on_fallback must be a bool, got {self.plan_on_fallback!r}')


@dataclass(frozen=True)
class Plan:
    """An effort sequence to play back: ``sequence[k]`` is the effort at ``start + k * dt``.

    Attributes
    ----------
    sequence
        (H, n) efforts in the supervisor's joint order.
    start
        Monotonic time of step 0 (receipt time of the state it was planned from).
    dt
        Seconds between steps (> 0).
    hold
        True: ``sequence[k]`` holds over the whole step ``[start + k dt, start + (k + 1) dt)`` (zero-order hold, the
        effort input a world model is trained and rolled out with); False: linear between steps.
    states
        (H + 1, 2n) or None: the joint positions then velocities the plan predicts at ``start + k dt`` (row 0 the
        state it was planned from), for :class:`~hamwm_ros.safety.feedback.PlanFeedback`.
    """

    sequence: np.ndarray
    start: float
    dt: float
    hold: bool = False
    states: np.ndarray | None = None

    def sample(self, now: float) -> np.ndarray | None:
        """Effort at ``now`` (held or linear between steps); None once the plan no longer covers ``now``."""
        s = max(0.0, (now - self.start) / self.dt)
        k = int(s)
        steps = self.sequence.shape[0]
        if k >= steps:
            return None
        if k == steps - 1 or self.hold:
            return self.sequence[k].copy()
        a = s - k
        return (1.0 - a) * self.sequence[k] + a * self.sequence[k + 1]

    def state_at(self, now: float) -> np.ndarray | None:
        """Predicted joint state at ``now``, linear between the rows of ``states``; None without one there."""
        states = self.states
        if states is None:
            return None
        s = max(0.0, (now - self.start) / self.dt)
        k = int(s)
        if k >= states.shape[0] - 1:
            return None
        a = s - k
        return (1.0 - a) * states[k] + a * states[k + 1]


@dataclass
class TickResult:
    """What one control tick decided.

    Attributes
    ----------
    command
        The effort to publish.
    mode, reason
        The mode in force and why.
    transition
        The mode change this tick made, if any.
    handover
        Effort a hand-over between the plan and the fallback added this tick (before the command guard); None when
        no hand-over is in progress.
    correction
        With ``plan_on_fallback`` in PLANNING or FALLBACK: the effort added to the PD hold this tick (the plan's
        and any hand-over's, before the command guard); None otherwise.
    """

    command: np.ndarray
    mode: Mode
    reason: str
    transition: Transition | None = None
    handover: np.ndarray | None = None
    correction: np.ndarray | None = None


@dataclass
class _State:
    position: np.ndarray
    velocity: np.ndarray
    receipt: float
    stamp: float


@dataclass
class SupervisorStats:
    """Counters for diagnostics."""

    ticks: int = 0
    planned_ticks: int = 0
    fallback_ticks: int = 0
    hold_ticks: int = 0
    handover_ticks: int = 0             # PLANNING or FALLBACK ticks that blended a switch's step
    feedback_ticks: int = 0             # PLANNING ticks whose command includes the plan feedback
    feedback_effort_max: float = 0.0    # largest |effort| the plan feedback added in one of them
    plans: int = 0
    invalid_plans: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    stale_holds: int = 0
    stale_to_hold_last: float = 0.0     # s from the watchdog deadline (last receipt + timeout) to the hold tick
    stale_to_hold_max: float = 0.0
    # s from the receipt of the state a plan was made from to the first tick that commands from that plan
    state_to_command: deque = field(default_factory=lambda: deque(maxlen=2000))


class Supervisor:
    """Watchdog, guards, e-stop, overrun counter and mode machine around one planner and one fallback law.

    Parameters
    ----------
    limits
        URDF limits; their ``names`` are the joint order of every array here.
    fallback
        PD hold of the nominal posture (same joint order).
    config
        Settings.
    estop
        An e-stop to share (so one latched before the supervisor existed stays latched); default: a new one.
    free_turning
        Indices of joints that may turn over (a swing-up's pole): the input guard does not check their positions
        against the URDF range (:class:`~hamwm_ros.safety.guards.InputGuard`).

    Raises
    ------
    ValueError
        If the fallback's size differs from the limits', or a ``free_turning`` index names no joint.
    """

    def __init__(self, limits: JointLimits, fallback: PDHoldFallback,
                 config: SupervisorConfig | None = None, estop: EStop | None = None,
                 free_turning: Sequence[int] = ()) -> None:
        if fallback.nominal.size != len(limits.names):
            raise ValueError(f'fallback holds {fallback.nominal.size} joints, limits name {len(limits.names)}')
        self.limits = limits
        self.free_turning = tuple(free_turning)
        self.fallback = fallback
        self._lock = threading.Lock()
        self.modes = ModeMachine()
        self.estop = estop if estop is not None else EStop()
        self.stats = SupervisorStats()
        self.config = config or SupervisorConfig()
        self._apply_config(self.config)
        self.command_guard = CommandGuard(limits.effort, self.config.max_effort_delta, limits,
                                          self.config.limit_margin)
        self.validity = ModelValidity(self.config.model_invalid_time, self.config.model_validity_timeout)
        self.handover = Handover(self.config.handover_time)
        self._plan_effort: np.ndarray | None = None     # the plan's sample in force this tick (PLANNING)
        self._feedback: PlanFeedback | None = None
        self.active = False
        self._state: _State | None = None
        self._plan: Plan | None = None
        self._commanded_plan: Plan | None = None
        self._plan_problem = 'no plan yet'
        self._fault: str | None = None
        self._ever_healthy = False
        self._reset_requested = False
        self._health = None

    def set_plan_feedback(self, feedback: PlanFeedback | None) -> None:
        """Feedback around the plan from the next tick on (None or all gains zero: the plan goes out alone).

        Not applied with ``plan_on_fallback``: there the PD hold already feeds the measured state back.

        Raises
        ------
        ValueError
            If its gains name another number of joints than the limits.
        """
        if feedback is not None and feedback.kp.size != len(self.limits.names):
            raise ValueError(f'plan feedback has gains for {feedback.kp.size} joints, limits name '
                             f'{len(self.limits.names)}')
        with self._lock:
            self._feedback = feedback if feedback is not None and feedback.active else None

    @property
    def plan_feedback(self) -> PlanFeedback | None:
        """The feedback around the plan in force (None: off), so a planner knows to hand on predicted states."""
        return self._feedback

    def _apply_config(self, config: SupervisorConfig) -> None:
        self.watchdog = Watchdog(config.joint_state_timeout, config.recovery_time, config.max_stamp_age,
                                 config.max_future_stamp, config.zero_stamp)
        self.input_guard = InputGuard(self.limits, config.position_tolerance, config.max_consecutive_rejections,
                                      self.free_turning)
        self.overruns = OverrunCounter(config.overrun_limit)

    def update_config(self, config: SupervisorConfig) -> None:
        """Change settings at run time without losing the watchdog's history or counters."""
        with self._lock:
            self.config = config
            w = self.watchdog
            w.timeout, w.recovery_time = config.joint_state_timeout, config.recovery_time
            w.max_stamp_age, w.max_future_stamp = config.max_stamp_age, config.max_future_stamp
            w.zero_stamp = type(w.zero_stamp)(config.zero_stamp)
            self.input_guard.position_tolerance = config.position_tolerance
            self.input_guard.max_consecutive_rejections = config.max_consecutive_rejections
            self.overruns.limit = config.overrun_limit
            self.command_guard.max_delta = config.max_effort_delta
            self.command_guard.limit_margin = config.limit_margin
            self.validity.invalid_time = config.model_invalid_time
            self.validity.report_timeout = config.model_validity_timeout
            self.handover.duration = config.handover_time

    def replace_config(self, **changes: float | int | str) -> SupervisorConfig:
        """A validated copy of the settings with ``changes`` (does not apply it).

        Raises
        ------
        ValueError, TypeError
            If a value is invalid or a name unknown.
        """
        return replace(self.config, **changes)

    # ------------------------------------------------------------------ lifecycle
    def activate(self, now: float) -> None:
        """Start supervising: history of states and plans is forgotten; control waits for fresh state."""
        with self._lock:
            self.active = True
            self.watchdog.reset()
            self.overruns.reset()
            self._state, self._plan, self._plan_problem = None, None, 'no plan yet'
            self._fault, self._ever_healthy = None, False
            self._reset_requested = True
            self.command_guard.hold()
            self.handover.reset()
            self.modes.set(Mode.WAITING_FOR_STATE, 'activated', now)

    def deactivate(self, now: float, reason: str = 'deactivated') -> np.ndarray:
        """Stop supervising; return the safe hold (zero effort) to publish once."""
        with self._lock:
            self.active = False
            self._plan = None
            self.handover.reset()
            self.modes.set(Mode.INACTIVE, reason, now)
            return self.command_guard.hold()

    # ------------------------------------------------------------------ inputs
    def on_joint_state(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
                       effort: Sequence[float], stamp: float, ros_now: float, receipt: float) -> InputVerdict:
        """Validate and, if usable, store one joint-state message.

        Returns the verdict: ``ok`` False means the message was ignored (``kind`` says why and is counted); ``ok``
        True with a ``kind`` (``zero_stamp`` under the accept policy) means used with a warning.
        """
        with self._lock:
            verdict = self.input_guard.check(names, position, velocity, effort)
            if not verdict.ok:
                self._count(verdict.kind)
                if verdict.fault:
                    self._fault = verdict.reason
                    self.watchdog.invalidate()
                return verdict
            stamp_verdict = self.watchdog.check_stamp(stamp, ros_now)
            if not stamp_verdict.accepted:
                self._count(stamp_verdict.kind)
                return InputVerdict(False, kind=stamp_verdict.kind, reason=stamp_verdict.reason)
            if stamp_verdict.kind:
                self._count(stamp_verdict.kind + '_accepted')
            self.watchdog.feed(receipt)
            self._state = _State(verdict.position, verdict.velocity, receipt, stamp)
            return InputVerdict(True, verdict.position, verdict.velocity, stamp_verdict.kind, stamp_verdict.reason)

    def _count(self, kind: str) -> None:
        self.stats.rejected[kind] = self.stats.rejected.get(kind, 0) + 1

    def latest_state(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(position, velocity, receipt time) of the last accepted state, or None (for the planner)."""
        with self._lock:
            state = self._state
            return None if state is None else (state.position.copy(), state.velocity.copy(), state.receipt)

    def on_plan(self, plan: Plan | None, reason: str = '') -> bool:
        """Offer a new plan (None: the planner failed, ``reason`` says why); return True if it was taken.

        A plan with a non-finite entry or a wrong shape is refused and counted: non-finite model output never
        reaches a command.
        """
        with self._lock:
            self.stats.plans += 1
            if plan is not None:
                seq = np.asarray(plan.sequence)
                if seq.ndim != 2 or seq.shape[1] != len(self.limits.names) or seq.shape[0] == 0:
                    plan, reason = None, f'plan has shape {seq.shape}, expected (H, {len(self.limits.names)})'
                elif not np.all(np.isfinite(seq)) or not math.isfinite(plan.start) or not plan.dt > 0:
                    plan, reason = None, 'plan is not finite'
            if plan is None:
                self.stats.invalid_plans += 1
                self._plan, self._plan_problem = None, reason or 'planner gave no plan'
                return False
            if not self.active or self.estop.latched:
                return False
            self._plan, self._plan_problem = plan, ''
            return True

    def on_model_validity(self, level: int, message: str, now: float) -> None:
        """One world-model validity report (diagnostic level 0 OK .. 3 STALE) at monotonic time ``now``."""
        with self._lock:
            self.validity.report(level, message, now)

    def trajectory_allowed(self, now: float, plan_start: float | None = None) -> bool:
        """True when a fresh plan may go out as a trajectory (or a correction) now.

        That is: active, no e-stop, the last tick was PLANNING or a FALLBACK that a new plan ends (none yet, late,
        expired; not planner overruns), the world model is trusted, and (given the plan's ``plan_start``) the plan
        is not already older than ``max_plan_age``, which the next tick would refuse. The state's health is the last
        tick's (at most one control period old); nothing here changes the watchdog.
        """
        with self._lock:
            mode = self.modes.mode
            usable = mode is Mode.PLANNING or (mode is Mode.FALLBACK and not self.overruns.tripped)
            late = plan_start is not None and now - plan_start > self.config.max_plan_age
            return (self.active and usable and not late and not self.estop.latched
                    and self.validity.problem(now) is None)

    def on_planner_iteration(self, duration: float, period: float) -> bool:
        """Record one planner iteration's duration against its period; return True if it overran."""
        with self._lock:
            return self.overruns.record(duration, period)

    def trigger_estop(self, reason: str, now: float) -> bool:
        """Latch the e-stop (any state, active or not); return True if newly latched.

        The plan is dropped at once; the next :meth:`tick` (at most one control period later) outputs zero effort
        and reports the transition to ESTOP.
        """
        with self._lock:
            new = self.estop.trigger(reason)
            self._plan, self._plan_problem = None, 'no plan since the e-stop'
            return new

    def reset_estop(self, now: float) -> tuple[bool, str]:
        """Release the e-stop if it is safe: inactive, or active with healthy joint states and no fault."""
        with self._lock:
            blockers = []
            if self.active:
                health = self.watchdog.update(now)
                if not health.healthy:
                    blockers.append(health.reason)
                if self._fault is not None and not health.healthy:
                    blockers.append(self._fault)
            released, message = self.estop.reset(blockers)
            if released:
                self._plan, self._plan_problem = None, 'no plan since the e-stop'
                self._reset_requested = True   # the planner's warm start is from before the stop
            return released, message

    def take_reset_request(self) -> bool:
        """True once after activation or an e-stop reset: the planner must drop its warm start."""
        with self._lock:
            requested, self._reset_requested = self._reset_requested, False
            return requested

    # ------------------------------------------------------------------ control tick
    def tick(self, now: float) -> TickResult:
        """Decide the mode and the command for monotonic time ``now`` (see the module docstring)."""
        with self._lock:
            self.stats.ticks += 1
            self._health = None
            mode, reason, command = self._decide(now)
            transition = self.modes.set(mode, reason, now)
            health = self._health
            if transition is not None and mode is Mode.SAFE_HOLD and health is not None and health.stale:
                # How late after the data went stale the hold came out: at most one period if ticks are on time.
                latency = max(0.0, health.age - self.watchdog.timeout)
                self.stats.stale_holds += 1
                self.stats.stale_to_hold_last = latency
                self.stats.stale_to_hold_max = max(self.stats.stale_to_hold_max, latency)
            if mode.commands_zero:
                self.stats.hold_ticks += 1
                self.handover.reset()
                return TickResult(self.command_guard.hold(), mode, reason, transition)
            if mode is Mode.PLANNING:
                self.stats.planned_ticks += 1
            else:
                self.stats.fallback_ticks += 1
            if transition is not None and transition.previous in (Mode.PLANNING, Mode.FALLBACK):
                self.handover.start(now, self.command_guard.previous, command)
            command, added = self.handover.apply(now, command)
            if added is not None:
                self.stats.handover_ticks += 1
            correction = None
            if self.config.plan_on_fallback:     # the plan's sample is a fresh array: no copy needed
                correction = self._plan_effort if mode is Mode.PLANNING else np.zeros_like(command)
                if added is not None:
                    correction = correction + added
            state = self._state
            out = self.command_guard.apply(command, *((state.position, state.velocity) if state is not None
                                                      else (None, None)))
            return TickResult(out, mode, reason, transition, added, correction)

    @property
    def handing_over(self) -> bool:
        """True while a switch between the plan and the fallback is being blended."""
        return self.handover.active

    @property
    def plan_fades_in(self) -> bool:
        """True when a plan taken now would start a hand-over at the next tick (FALLBACK with a ``handover_time``).

        What that plan commands then starts from the output in force, so a trajectory target or a published
        correction must not jump to the plan's value yet.
        """
        return self.modes.mode is Mode.FALLBACK and self.config.handover_time > 0.0

    def handover_added(self, now: float) -> np.ndarray | None:
        """Effort a hand-over in progress adds at ``now`` (None: none), for the trajectory interface's targets."""
        with self._lock:
            return self.handover.added(now)

    def _decide(self, now: float) -> tuple[Mode, str, np.ndarray | None]:
        if not self.active:
            return Mode.INACTIVE, self.modes.reason if self.modes.mode is Mode.INACTIVE else 'inactive', None
        health = self._health = self.watchdog.update(now)
        if self.estop.latched:
            return Mode.ESTOP, f'e-stop: {self.estop.reason}', None
        if not health.healthy:
            reason = health.reason
            if self._fault is not None:     # named even once stale: rejected input leaves no fresh state behind
                reason = f'input fault: {self._fault}; {health.reason}'
            return (Mode.SAFE_HOLD if self._ever_healthy else Mode.WAITING_FOR_STATE), reason, None
        self._ever_healthy = True
        self._fault = None
        state = self._state
        invalid = self.validity.problem(now)
        if invalid is not None:
            return Mode.FALLBACK, f'PD hold of the nominal posture: {invalid}', \
                self.fallback.command(state.position, state.velocity)
        problem = self._plan_problem
        plan = self._plan
        command = None
        if plan is not None:
            if self.overruns.tripped:
                problem = f'planner overran its period {self.overruns.consecutive} times in a row'
            elif now - plan.start > self.config.max_plan_age:
                problem = (f'planner late: plan is {1e3 * (now - plan.start):.0f} ms old '
                           f'(max_plan_age {1e3 * self.config.max_plan_age:.0f} ms)')
            else:
                command = plan.sample(now)
                if command is None:
                    problem = 'plan expired'
                elif plan is not self._commanded_plan:
                    self._commanded_plan = plan
                    self.stats.state_to_command.append(now - plan.start)
        self._plan_effort = command
        if command is not None:
            if self.config.plan_on_fallback:
                return Mode.PLANNING, 'following the MPPI plan on the PD hold', \
                    command + self.fallback.command(state.position, state.velocity)
            feedback = self._feedback
            predicted = plan.state_at(now) if feedback is not None else None
            if predicted is not None:
                added = feedback.effort(predicted, state.position, state.velocity)
                if added is not None:
                    self.stats.feedback_ticks += 1
                    self.stats.feedback_effort_max = max(self.stats.feedback_effort_max, float(np.abs(added).max()))
                    return Mode.PLANNING, 'following the MPPI plan with feedback', command + added
            return Mode.PLANNING, 'following the MPPI plan', command
        return Mode.FALLBACK, f'PD hold of the nominal posture: {problem}', \
            self.fallback.command(state.position, state.velocity)
