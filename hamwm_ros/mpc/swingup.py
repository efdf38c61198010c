"""The swing-up schedule: the critics of a pole swing-up and how they change with the pole's angle before each plan.

One implementation serves the in-process demo controller (:class:`hamwm_ros.closedloop.swingup.SwingUpController`)
and the product node (``mpc_node`` with ``task: swingup``):

- **energy shaping** (:class:`~hamwm_ros.mpc.EnergyCritic`) far from upright, switched off within ``energy_gate``
  rad of it, where tracking alone stabilises the pole (tracking is weak, ``far_tracking_fraction``, while energy
  leads);
- **one energy target per side of upright**: a learned Hamiltonian need not be periodic in the angle, so upright
  reached through +pi and through -pi can have different model energies (``energy_source: model``); or the pole's
  own energy computed from the decoded predictions and the URDF's pole inertia (``energy_source: pole``: the
  cart-pole, whose model Hamiltonian also counts the cart's kinetic energy);
- **wrapped-angle tracking** of upright (:class:`~hamwm_ros.mpc.TrackingCritic` with the pole angle on the circle),
  and the pole angle wrapped to [-pi, pi) before encoding (keeps the encoder in its training range after the pole
  turned over);
- **rail limits**: a :class:`~hamwm_ros.mpc.JointLimitsCritic` on the bounded joints (a cart's rail) shrunk to an
  envelope about the range's centre, and on every joint's velocity, shrunk the same way; the pole's +-4 pi stops
  are irrelevant and left out.
- **terminal value** near upright (optional, ``terminal_value_weight``): the infinite-horizon LQR cost-to-go of the
  URDF robot linearised upright (:func:`terminal_value_matrix`, :class:`~hamwm_ros.mpc.TerminalCostCritic`) on the
  last predicted step. A cart-pole's drift while balancing takes longer to correct than the horizon lasts; the value
  prices what lies beyond it.

Imports neither rclpy nor torch (Pinocchio only for :func:`pole_inertia`, lazily).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hamwm_ros.mpc.critics import EnergyCritic, JointLimitsCritic, TerminalCostCritic, TrackingCritic
from hamwm_ros.mpc.lqr import discrete_lqr, linearise
from hamwm_ros.mpc.settings import UPDATE_PERTURBATIONS

ENERGY_SOURCES = ('model', 'pole')
GRAVITY = 9.81
UNBOUNDED_RANGE = 4.0 * math.pi     # a joint with a wider position range (a pole) gets no position limit critic


def wrap_angle(x: np.ndarray | float) -> np.ndarray | float:
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(x) + np.pi) % (2.0 * np.pi) - np.pi


class _Runtime(Protocol):
    """What the schedule needs of a world model (:class:`hamwm_ros.runtime.WorldModelRuntime`)."""

    metadata: Any     # its ``action_dim``

    def encode(self, position: np.ndarray, velocity: np.ndarray) -> np.ndarray: ...

    def rollout(self, z: np.ndarray, actions: np.ndarray) -> Any: ...


@dataclass(frozen=True)
class SwingUpTask:
    """Settings of the swing-up schedule (validated on construction; :meth:`replace` for changes).

    Attributes
    ----------
    angle_joint
        Index of the pole angle in the model's joint order (0 hangs down, +-pi is upright).
    energy_gate
        Rad from upright within which energy shaping is off (weight 0) and tracking has its full weight.
    far_tracking_fraction
        Tracking weight, as a fraction of the tracking weight, while the pole is farther than ``energy_gate`` from
        upright.
    energy_margin
        Energy target below the upright energy, as a fraction of the energy scale; negative: above it (compensates
        a model whose predicted energy sags over the horizon).
    energy_source
        ``'model'``: the world model's Hamiltonian, one target per side of upright; ``'pole'``: the pole's own
        energy from the decoded predictions and the pole's inertia.
    wrap_encode
        Wrap the pole angle to [-pi, pi) before encoding.
    position_weights, velocity_weights
        Tracking weights per joint (1 value broadcasts to every joint).
    terminal_weight
        Extra tracking weight on the last predicted step.
    position_envelope, velocity_envelope
        The limits critic's position range (fraction of each bounded joint's range, about its centre) and velocity
        limits (fraction of the URDF's), in (0, 1].
    terminal_value_weight
        Weight of the terminal value near upright, as a multiple of the tracking weight (0: off); far from upright
        it is off.
    far_update_perturbation
        MPPI's ``update_perturbation`` while energy shaping leads (farther than ``energy_gate`` from upright):
        ``'sampled'`` lets the plan sit on the effort bound and pump at full effort; near upright the planner's own
        setting applies (``'applied'`` there keeps the balance tolerant of latency).

    Raises
    ------
    ValueError
        If a value is out of range; the message lists every reason.
    """

    angle_joint: int
    energy_gate: float = 1.0
    far_tracking_fraction: float = 0.05
    energy_margin: float = 0.0
    energy_source: str = 'model'
    wrap_encode: bool = True
    position_weights: tuple[float, ...] = (1.0,)
    velocity_weights: tuple[float, ...] = (0.05,)
    terminal_weight: float = 1.0
    position_envelope: float = 1.0
    velocity_envelope: float = 1.0
    terminal_value_weight: float = 0.0
    far_update_perturbation: str = 'applied'

    def __post_init__(self) -> None:
        for name in ('position_weights', 'velocity_weights'):
            object.__setattr__(self, name, tuple(float(v) for v in np.atleast_1d(getattr(self, name))))
        problems = []
        if int(self.angle_joint) != self.angle_joint or self.angle_joint < 0:
            problems.append(f'angle_joint must be a joint index >= 0, got {self.angle_joint}')
        if not 0.0 <= self.energy_gate <= math.pi:
            problems.append(f'energy_gate must be in [0, pi] rad, got {self.energy_gate}')
        if not 0.0 <= self.far_tracking_fraction <= 1.0:
            problems.append(f'far_tracking_fraction must be in [0, 1], got {self.far_tracking_fraction}')
        if not -1.0 <= self.energy_margin <= 1.0:
            problems.append(f'energy_margin must be in [-1, 1], got {self.energy_margin}')
        if self.energy_source not in ENERGY_SOURCES:
            problems.append(f'energy_source must be one of {list(ENERGY_SOURCES)}, got {self.energy_source!r}')
        for name in ('position_weights', 'velocity_weights'):
            values = getattr(self, name)
            if not values or not all(math.isfinite(v) and v >= 0 for v in values):
                problems.append(f'{name} must be finite and >= 0 (1 value or one per joint), got {list(values)}')
        for name in ('terminal_weight', 'terminal_value_weight'):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                problems.append(f'{name} must be finite and >= 0, got {getattr(self, name)}')
        for name in ('position_envelope', 'velocity_envelope'):
            if not 0.0 < getattr(self, name) <= 1.0:
                problems.append(f'{name} must be in (0, 1], got {getattr(self, name)}')
        if self.far_update_perturbation not in UPDATE_PERTURBATIONS:
            problems.append(f'far_update_perturbation must be one of {list(UPDATE_PERTURBATIONS)}, got '
                            f'{self.far_update_perturbation!r}')
        if problems:
            raise ValueError('; '.join(problems))

    def replace(self, **changes: Any) -> SwingUpTask:
        """A validated copy with ``changes`` applied."""
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the settings."""
        return tuple(f.name for f in fields(cls))


def pole_inertia(urdf: str | Path, joint: str, axis: tuple[float, float, float] = (0.0, 1.0, 0.0)
                 ) -> tuple[float, float, float]:
    """Mass (kg), axis-to-CoM distance (m) and inertia about the axis (kg m^2) of the body below ``joint``.

    Parameters
    ----------
    urdf
        Path of a URDF file, or URDF XML text (first non-blank character ``<``).
    joint
        The pole's joint.
    axis
        The joint's rotation axis in the body frame (the shipped poles swing about y).

    Raises
    ------
    ValueError
        If the URDF cannot be read or has no such joint.
    """
    import pinocchio as pin

    text = str(urdf)
    try:
        if text.lstrip().startswith('<'):
            model = pin.buildModelFromXML(text)
        else:
            model = pin.buildModelFromUrdf(text)
    except (RuntimeError, ValueError, OSError) as error:
        raise ValueError(f'cannot read the URDF for the pole inertia: {error}') from None
    if not model.existJointName(joint):
        raise ValueError(f'the URDF has no joint {joint!r}')
    body = model.inertias[model.getJointId(joint)]
    unit = np.asarray(axis, dtype=np.float64)
    unit = unit / np.linalg.norm(unit)
    lever_vec = np.asarray(body.lever)
    lever = float(np.linalg.norm(lever_vec - unit * (lever_vec @ unit)))
    inertia = float(unit @ np.asarray(body.inertia) @ unit) + body.mass * lever ** 2
    return float(body.mass), lever, inertia


def terminal_value_matrix(task: SwingUpTask, urdf: str | Path, joint_names: tuple[str, ...] | list[str],
                          actuated: np.ndarray | list[int], dt: float, horizon: int, effort_ratio: float,
                          effort_scale: np.ndarray | float, goal: np.ndarray | None = None) -> np.ndarray:
    """The terminal value matrix P of a swing-up: LQR cost-to-go at upright, in the tracking critic's cost units.

    The URDF robot is linearised at rest with the pole upright and the other joints at ``goal``
    (:func:`hamwm_ros.mpc.lqr.linearise`). The LQR stage cost is the planner's own per step: the tracking critic's
    state weights and the effort critic's ``(u / effort_scale)^2`` times ``effort_ratio`` (effort weight over
    tracking weight), both averaged over the ``horizon`` as the critics do. Used with weight
    ``terminal_value_weight x tracking weight``, ``e^T P e`` then estimates the tracking and effort cost of bringing
    the last predicted state to rest at the goal.

    Raises
    ------
    ValueError
        If the URDF cannot be linearised (see :func:`~hamwm_ros.mpc.lqr.linearise`), a value is out of range, or
        the upright is not stabilisable from the actuated joints.
    """
    names = list(joint_names)
    n = len(names)
    if horizon < 1:
        raise ValueError(f'horizon must be >= 1, got {horizon}')
    if not (math.isfinite(effort_ratio) and effort_ratio > 0):
        raise ValueError(f'effort_ratio must be finite and > 0, got {effort_ratio}')
    inputs = np.asarray(actuated, dtype=np.intp).ravel()
    scale = np.broadcast_to(np.asarray(effort_scale, dtype=np.float64), inputs.shape)
    if not np.all(scale > 0):
        raise ValueError('effort_scale must be > 0')
    position = np.zeros(n) if goal is None else np.array(goal, dtype=np.float64).ravel()
    if position.shape != (n,):
        raise ValueError(f'goal needs {n} positions, got {position.size}')
    position[int(task.angle_joint)] = math.pi
    a, b = linearise(urdf, names, position, inputs, dt)
    state_weights = np.concatenate([np.broadcast_to(task.position_weights, (n,)),
                                    np.broadcast_to(task.velocity_weights, (n,))])
    value, _ = discrete_lqr(a, b, np.diag(state_weights), effort_ratio * np.diag(1.0 / scale ** 2))
    return value / horizon


class SwingUpSchedule:
    """The swing-up critics of one robot and the schedule that sets their weights and targets before each plan.

    Build the optimizer with :attr:`energy`, :attr:`tracking` and (when not None) :attr:`limits`; call
    :meth:`prepare` with the measured state before every plan and encode what it returns.

    Parameters
    ----------
    task
        Schedule settings.
    runtime
        The world model (its ``encode`` and ``rollout``: the model energy targets are the Hamiltonian of upright at
        rest one step ahead, from both sides).
    position_limits
        (n, 2) URDF position limits, model joint order.
    velocity_limits
        (n,) URDF velocity limits.
    energy_weight, tracking_weight, limits_weight
        Critic weights (the energy and tracking weights are then scheduled around these; assign
        :attr:`energy_weight` / :attr:`tracking_weight` to change them at run time).
    pole
        (mass, lever, inertia) of the pole (:func:`pole_inertia`); needed for ``energy_source='pole'``.
    goal
        (n,) goal positions of the other joints (e.g. the cart); the pole's entry is replaced by upright (pi).
        Default: zeros.
    terminal_value
        (2 n, 2 n) value matrix of the terminal cost (:func:`terminal_value_matrix`); None: no terminal critic
        (:attr:`terminal` None).

    Raises
    ------
    ValueError
        If sizes disagree, ``angle_joint`` is outside the joints, or the pole's inertia is missing.
    """

    def __init__(self, task: SwingUpTask, runtime: _Runtime, position_limits: np.ndarray,
                 velocity_limits: np.ndarray, energy_weight: float = 1.0, tracking_weight: float = 1.0,
                 limits_weight: float = 1.0, pole: tuple[float, float, float] | None = None,
                 goal: np.ndarray | None = None, terminal_value: np.ndarray | None = None) -> None:
        lim = np.asarray(position_limits, dtype=np.float64).reshape(-1, 2)
        n = lim.shape[0]
        velocity_limits = np.asarray(velocity_limits, dtype=np.float64).ravel()
        if velocity_limits.shape != (n,):
            raise ValueError(f'{velocity_limits.size} velocity limits for {n} joints')
        a = int(task.angle_joint)
        if a >= n:
            raise ValueError(f'angle_joint {a} is outside the {n} joints')
        for name in ('position_weights', 'velocity_weights'):
            if len(getattr(task, name)) not in (1, n):
                raise ValueError(f'{name} needs 1 or {n} values, got {len(getattr(task, name))}')
        self.task = task
        self.n_joints = n
        self.angle_joint = a
        self.energy_weight = float(energy_weight)
        self.tracking_weight = float(tracking_weight)
        self.near: bool | None = None       # whether the last prepared plan was near upright (None: none yet)
        self.plan_update: str | None = None  # update_perturbation for the prepared plan (None: the planner's own)
        self.runtime = runtime
        self.energy = self._energy_critic(task, runtime, pole)
        self.tracking = TrackingCritic(self.goal_observation(goal), self._state_weights(task), weight=tracking_weight,
                                       terminal_weight=task.terminal_weight, wrap=(a,))
        self.terminal: TerminalCostCritic | None = None
        if terminal_value is not None:   # weighted near upright only, by prepare
            self.terminal = TerminalCostCritic(self.tracking.goal, terminal_value, weight=0.0, wrap=(a,))
        bounded = [j for j in range(n) if lim[j, 1] - lim[j, 0] < UNBOUNDED_RANGE]
        self.limits: JointLimitsCritic | None = None
        if bounded:   # the pole may turn over (its +-4 pi stops are irrelevant); a cart has a rail
            centre = lim[bounded].mean(axis=1, keepdims=True)
            envelope = centre + task.position_envelope * (lim[bounded] - centre)
            self.limits = JointLimitsCritic(bounded, list(range(n, 2 * n)), envelope,
                                            task.velocity_envelope * velocity_limits, weight=limits_weight)

    # ------------------------------------------------------------------ construction
    def _state_weights(self, task: SwingUpTask) -> np.ndarray:
        n = self.n_joints
        return np.concatenate([np.broadcast_to(task.position_weights, (n,)),
                               np.broadcast_to(task.velocity_weights, (n,))])

    def goal_observation(self, goal: np.ndarray | None = None) -> np.ndarray:
        """(2n,) tracking goal: ``goal`` positions (default 0) with the pole upright, at rest.

        Raises
        ------
        ValueError
            If ``goal`` has the wrong size or is not finite.
        """
        n = self.n_joints
        positions = np.zeros(n) if goal is None else np.asarray(goal, dtype=np.float64).ravel()
        if positions.shape != (n,) or not np.all(np.isfinite(positions)):
            raise ValueError(f'goal needs {n} finite positions')
        observation = np.concatenate([positions, np.zeros(n)])
        observation[self.angle_joint] = math.pi
        return observation

    def _model_energy(self, runtime: _Runtime, position: np.ndarray, velocity: np.ndarray) -> float:
        """The model's Hamiltonian one step after the state, with zero effort (its energy output is per step)."""
        z = runtime.encode(position, velocity)[0]
        action_dim = int(runtime.metadata.action_dim)
        out = runtime.rollout(z[None], np.zeros((1, 1, action_dim), np.float32))
        return float(out.energy[0, 0])

    def model_energy_targets(self, runtime: _Runtime) -> tuple[tuple[float, float], float]:
        """The model's upright energies (reached through -pi, through +pi) and the energy scale (upright - hanging)."""
        n = self.n_joints
        upright = np.zeros(n)
        upright[self.angle_joint] = math.pi
        below = upright.copy()
        below[self.angle_joint] = -math.pi
        targets = (self._model_energy(runtime, below, np.zeros(n)), self._model_energy(runtime, upright, np.zeros(n)))
        hanging = self._model_energy(runtime, np.zeros(n), np.zeros(n))
        scale = abs(float(np.mean(targets)) - hanging) or 1.0
        return targets, scale

    def _energy_critic(self, task: SwingUpTask, runtime: _Runtime,
                       pole: tuple[float, float, float] | None) -> EnergyCritic:
        if task.energy_source == 'model':
            self.energy_targets, scale = self.model_energy_targets(runtime)
            return EnergyCritic(self.energy_targets[1], weight=self.energy_weight, scale=scale)
        if pole is None:
            raise ValueError("energy_source 'pole' needs the pole's (mass, lever, inertia)")
        mass, lever, inertia = (float(v) for v in pole)
        if not (mass > 0 and lever > 0 and inertia > 0):
            raise ValueError(f'pole mass, lever and inertia must be > 0, got {pole}')
        n, a = self.n_joints, self.angle_joint
        upright = 2.0 * mass * GRAVITY * lever
        self.energy_targets = (upright, upright)

        def pole_energy(obs: np.ndarray) -> np.ndarray:
            return mass * GRAVITY * lever * (1.0 - np.cos(obs[..., a])) + 0.5 * inertia * np.square(obs[..., n + a])

        return EnergyCritic(upright, weight=self.energy_weight, scale=upright, energy_fn=pole_energy)

    def retarget(self, runtime: _Runtime) -> None:
        """Recompute the model energy targets for another world model (a hot-loaded one); no-op for ``'pole'``."""
        self.runtime = runtime
        if self.task.energy_source == 'model':
            self.energy_targets, self.energy.scale = self.model_energy_targets(runtime)

    @property
    def critics(self) -> list:
        """The schedule's critics: energy, tracking, then limits and terminal when the schedule has them."""
        return [self.energy, self.tracking] + [c for c in (self.limits, self.terminal) if c is not None]

    # ------------------------------------------------------------------ per plan
    def prepare(self, position: np.ndarray) -> np.ndarray:
        """Set the critics for a plan from the measured ``position`` (n,); return the positions to encode.

        Far from upright energy shaping leads (tracking only as a weak guide, so the pole does not arrive with
        excess speed; the plan updated as ``far_update_perturbation`` says, :attr:`plan_update`); near upright
        tracking (and the terminal value, when there is one) stabilises it. The energy
        target is that of the side of upright the pole is on, less ``energy_margin`` x the energy scale.
        """
        task = self.task          # read once: a concurrent settings change applies from the next plan
        a = self.angle_joint
        q = np.array(position, dtype=np.float64)
        near = self.near = abs(float(wrap_angle(q[a] - math.pi))) < task.energy_gate
        self.plan_update = None if near else task.far_update_perturbation
        self.energy.weight = 0.0 if near else self.energy_weight
        self.tracking.weight = self.tracking_weight if near else self.tracking_weight * task.far_tracking_fraction
        if self.terminal is not None:
            self.terminal.weight = task.terminal_value_weight * self.tracking_weight if near else 0.0
        q_in = q.copy()
        if task.wrap_encode:
            q_in[a] = wrap_angle(q_in[a])
        self.energy.target = self.energy_targets[1 if wrap_angle(q[a]) >= 0 else 0] \
            - task.energy_margin * self.energy.scale
        return q_in

    def update_task(self, task: SwingUpTask) -> None:
        """Apply changed run-time settings (gate, tracking fraction, margin, wrapping, terminal value) next plan.

        Raises
        ------
        ValueError
            If a setting fixed at construction (angle joint, energy source, weights, envelopes) differs.
        """
        fixed = ('angle_joint', 'energy_source', 'position_weights', 'velocity_weights', 'terminal_weight',
                 'position_envelope', 'velocity_envelope')
        changed = [name for name in fixed if getattr(task, name) != getattr(self.task, name)]
        if changed:
            raise ValueError(f'{changed} are fixed when the schedule is built')
        self.task = task


__all__ = ['ENERGY_SOURCES', 'SwingUpSchedule', 'SwingUpTask', 'pole_inertia', 'terminal_value_matrix', 'wrap_angle']
