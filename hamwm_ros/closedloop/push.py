"""The humanoid standing under pushes: MPPI + world model + balance critics against a PD-only baseline.

Both controllers keep the simulation's joint PD hold of the standing posture (the ``PD-only`` baseline is exactly
that hold). The ``mppi`` controller adds a planned feed-forward effort: every model step it encodes the joint state
with the shipped humanoid world model, and MPPI searches effort corrections to the PD hold, scored on
the model's predicted joint trajectories by the whole-body balance critic (``PlanBalance`` over Pinocchio, the term
mpc_node uses: ZMP margin in the current support polygon, capture point), posture tracking, effort, smoothness and
joint limits. When the plan is invalid the correction is zero (the PD hold, i.e. the baseline, is the fallback).

The model sees joints only (the floating base is not observed). A model whose metadata ``action_source`` is
``feedforward`` (the shipped one since session 18) has the PD hold inside its learned plant and is given the
correction alone; any other model is given the PD effort of the current state, frozen over the predicted horizon,
plus the correction. The report states which.

A trial: reset (seeded posture noise), settle, push the pelvis with a horizontal force for ``push_duration_s``,
then run on; it fails if the pelvis drops below ``fall_height`` or tilts beyond ``fall_tilt_deg``. The largest
surviving impulse (N s) per push direction is found by bisection on the force, for each seed of
``PushConfig.seeds`` (the seed draws the standing posture's noise and MPPI's samples); :func:`compare` reports the
mean over seeds per direction and the paired differences, because one seed flatters either controller by a few
bisection steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
import math
from pathlib import Path
import time
from typing import Any

import numpy as np

from hamwm_ros.closedloop.rollout import EffortRollout
from hamwm_ros.mpc import (
    BalanceCritic,
    EffortCritic,
    JointLimitsCritic,
    MPPIOptimizer,
    MPPISettings,
    SmoothnessCritic,
    TrackingCritic,
)
from hamwm_ros.runtime import SessionConfig, WorldModelRuntime
from hamwm_ros.sim import Simulation, robot_urdf_path
from hamwm_ros.wholebody import PlanBalance, WholeBodyModel

CONTROLLERS = ('pd', 'mppi')


@dataclass(frozen=True)
class PushConfig:
    """Trial, bisection and planner settings.

    Attributes
    ----------
    settle_s, push_duration_s, after_s
        Standing time before the push, push length, time run after the push starts (seconds).
    fall_height, fall_tilt_deg
        Fall criteria on the pelvis height (m) and tilt from vertical (degrees).
    directions_deg
        Push directions in the horizontal plane (0 = +x forward, 90 = +y left).
    force_high, bisection_steps
        Bisection bracket [0, force_high] N and the number of halvings.
    num_samples, temperature, normalise_costs, noise_fraction, correction_fraction
        MPPI samples, temperature (relative to the cost spread with ``normalise_costs``), and noise / correction
        bounds as fractions of the effort limits.
    noise_correlation, smoothing_window
        Lag-one correlation of the exploration noise; the Savitzky-Golay window (order 2) of the plan, 0 for none.
    update_perturbation
        ``MPPISettings.update_perturbation``: ``'applied'`` or ``'sampled'``.
    balance_weight, tracking_weight, effort_weight, smoothness_weight, limits_weight
        Critic weights.
    seed
        The optimizer's initial noise seed (every trial reseeds it with the trial's seed).
    seeds
        Trial seeds :func:`compare` runs for every controller and direction.
    """

    settle_s: float = 0.3
    push_duration_s: float = 0.1
    after_s: float = 1.5
    fall_height: float = 0.4
    fall_tilt_deg: float = 40.0
    directions_deg: tuple[float, ...] = (0.0, 180.0, 90.0)
    force_high: float = 800.0
    bisection_steps: int = 6
    num_samples: int = 128
    # Relative to the cost spread, averaging over many samples: a greedy weighting (raw costs, 0.1) on this model's
    # errors walked the corrections to their bounds, shook the standing robot (0.50 rad/s joint speed RMS against
    # 0.007 under PD) and lost up to 7.5 N s to PD; this is 0.107 rad/s and within one bisection step of PD.
    temperature: float = 1.0
    normalise_costs: bool = True
    # Corrections within the feed-forward efforts the shipped model was trained on (up to 0.1 of the limits): at 0.2
    # held corrections bent the arms where the model's energy books fail (over ROS the monitor then flapped the
    # fallback within a minute); push figures within a bisection step either way (session 22).
    noise_fraction: float = 0.025
    correction_fraction: float = 0.1
    noise_correlation: float = 0.6
    # A Savitzky-Golay filter of the plan (0: none): a third of the standing robot's joint speed at window 15 (0.030
    # against 0.093 rad/s, seeds 0-5) and the same push figures (window 21: +0.14 N s, 31: +0.00; session 21).
    smoothing_window: int = 15
    update_perturbation: str = 'applied'
    balance_weight: float = 1.0
    tracking_weight: float = 1.0
    effort_weight: float = 0.05
    smoothness_weight: float = 0.05
    limits_weight: float = 1.0
    seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)

    def replace(self, **changes: Any) -> PushConfig:
        """A copy with ``changes`` applied."""
        return PushConfig(**{**asdict(self), **changes})


@dataclass
class TrialResult:
    """One push trial."""

    controller: str
    force: float
    direction_deg: float
    survived: bool
    min_height: float
    max_tilt_deg: float
    fallback_ticks: int
    ticks: int
    plan_ms: list[float]
    trace: dict[str, np.ndarray] | None = None


def _tilt_deg(orientation_xyzw: np.ndarray) -> float:
    x, y = orientation_xyzw[0], orientation_xyzw[1]
    return math.degrees(math.acos(max(-1.0, min(1.0, 1.0 - 2.0 * (x * x + y * y)))))


class PushLoop:
    """The humanoid simulation with both controllers, reusable across trials.

    Parameters
    ----------
    config
        Trial and planner settings.
    model_dir
        The humanoid model directory (``models/humanoid``); None runs the PD baseline only.
    threads
        onnxruntime intra-op threads.

    Raises
    ------
    hamwm_ros.runtime.MetadataError
        If the model is invalid or its joint order differs from the simulation's.
    """

    def __init__(self, config: PushConfig, model_dir: str | Path | None, threads: int = 1) -> None:
        self.config = config
        self.sim = Simulation('humanoid', timestep=0.001)
        sim = self.sim
        self.wb = WholeBodyModel(robot_urdf_path('humanoid'), floating_base=True,
                                 sole_frames=('left_sole', 'right_sole'))
        if tuple(self.wb.joint_names) != tuple(sim.joint_names):
            raise ValueError('Pinocchio and MuJoCo joint orders differ')
        self.runtime = None
        self.optimizer = None
        self.dt = 0.02
        self.balance = PlanBalance(self.wb, self.dt)
        if model_dir is not None:
            self._build_planner(model_dir, threads)
        self.substeps = max(1, int(round(self.dt / sim.timestep)))

    def _build_planner(self, model_dir: str | Path, threads: int) -> None:
        cfg, sim = self.config, self.sim
        self.runtime = WorldModelRuntime.load(
            model_dir, joint_names=sim.joint_names,
            config=SessionConfig(providers=('cpu',), intra_op_threads=threads, warmup_batch=(1, cfg.num_samples)))
        self.dt = self.balance.dt = self.runtime.dt
        n = sim.n_joints
        limits = sim.effort_limits
        self.rollout = EffortRollout(self.runtime, np.arange(n))
        bound = cfg.correction_fraction * limits
        self.settings = MPPISettings(action_low=tuple(-bound), action_high=tuple(bound),
                                     num_samples=cfg.num_samples, horizon=self.runtime.horizon, iterations=1,
                                     temperature=cfg.temperature, normalise_costs=cfg.normalise_costs,
                                     noise_std=tuple(cfg.noise_fraction * limits),
                                     noise_correlation=cfg.noise_correlation, seed=cfg.seed,
                                     update_perturbation=cfg.update_perturbation,
                                     **({'smoothing': 'savgol', 'smoothing_window': cfg.smoothing_window}
                                        if cfg.smoothing_window else {}))
        goal = np.concatenate([sim.nominal_posture, np.zeros(n)])
        weights = np.concatenate([np.ones(n), np.full(n, 0.01)])
        critics = [
            BalanceCritic(self.balance, weight=cfg.balance_weight, margin_target=0.03, capture_weight=1.0,
                          hard=False),
            TrackingCritic(goal, weights, weight=cfg.tracking_weight),
            EffortCritic(cfg.effort_weight, scale=bound),
            SmoothnessCritic(cfg.smoothness_weight, scale=bound),
            JointLimitsCritic(np.arange(n), np.arange(n, 2 * n), sim.position_limits, sim.velocity_limits,
                              weight=cfg.limits_weight),
        ]
        self.optimizer = MPPIOptimizer(self.settings, self.rollout, critics)

    @property
    def model_feedforward(self) -> bool:
        """Whether the model has the PD hold inside its plant (metadata ``action_source`` feedforward).

        Such a model's input is the correction alone (offset 0); any other sees the PD effort at the current state
        plus the correction.
        """
        return self.runtime is not None and self.runtime.metadata.feedforward

    def _pd_effort(self, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        sim = self.sim
        tau = sim.default_kp * (sim.nominal_posture - q) - sim.default_kd * v
        return np.clip(tau, -sim.effort_limits, sim.effort_limits)

    def trial(self, controller: str, force: float, direction_deg: float, seed: int = 0,
              record: bool = False) -> TrialResult:
        """One push trial with ``controller`` (``'pd'`` or ``'mppi'``).

        Raises
        ------
        ValueError
            If the controller is unknown or ``mppi`` was asked for without a model.
        """
        if controller not in CONTROLLERS:
            raise ValueError(f'controller must be one of {CONTROLLERS}, got {controller!r}')
        if controller == 'mppi' and self.optimizer is None:
            raise ValueError('the mppi controller needs a model directory')
        cfg, sim, wb = self.config, self.sim, self.wb
        n = sim.n_joints
        sim.reset(seed=int(seed))  # arms the PD hold of the standing posture (the baseline controller)
        if self.optimizer is not None:     # a trial is reproducible from its seed, whatever ran before it
            self.optimizer.reseed(int(seed))
            self.optimizer.reset()
        ticks = int(round((cfg.settle_s + cfg.after_s) / self.dt))
        push_tick = int(round(cfg.settle_s / self.dt))
        angle = math.radians(direction_deg)
        force_xyz = (force * math.cos(angle), force * math.sin(angle), 0.0)
        min_height, max_tilt, fallbacks = math.inf, 0.0, 0
        plan_ms: list[float] = []
        applied = np.zeros(n, dtype=np.float32)
        keys = ('time', 'position', 'velocity', 'com', 'zmp', 'margin', 'cop', 'predicted', 'correction',
                'polygon')
        trace: dict[str, list] = {k: [] for k in keys}
        survived = True
        v_prev = None
        for tick in range(ticks):
            if tick == push_tick and force > 0.0:
                sim.apply_push(force_xyz, cfg.push_duration_s)
            js, base = sim.joint_state(), sim.base_state()
            q, v = js.position.copy(), js.velocity.copy()
            correction = np.zeros(n)
            predicted = None
            if controller == 'mppi' or record:
                q_full = wb.configuration(q, base.position, base.orientation_xyzw)
                v_full = wb.velocity(v, np.concatenate([_rotate_inv(base.orientation_xyzw, base.linear_velocity),
                                                        base.angular_velocity]))
                # accelerations by backward difference over one model step (a = 0 would give the CoM projection)
                a_full = (v_full - v_prev) / self.dt if v_prev is not None else np.zeros_like(v_full)
                v_prev = v_full
                external = None
                push_ticks = max(1, int(round(cfg.push_duration_s / self.dt)))
                if force > 0.0 and push_tick < tick <= push_tick + push_ticks:
                    # The known push is not a ground contact: remove it (force on the pelvis, moment about the
                    # origin). Accelerations are backward differences, so the push shows one tick after it starts.
                    external = (*force_xyz, *np.cross(base.position, force_xyz))
                com, zx, zy, margin = wb.tick(q_full, v_full, a_full, external=external)
                polygon = wb.edges.polygon if wb.edges is not None else np.zeros((0, 2))
            if controller == 'mppi':
                ok = polygon.shape[0] > 0      # a segment or point while the feet roll onto their toes or edges
                if ok:
                    stance = 0 if wb.contacts and wb.contacts[0] else 1
                    started = time.perf_counter()
                    ok = self.balance.linearise(q_full, stance, polygon, v)    # False: it failed (balance.reason)
                    if ok:
                        try:
                            if not self.model_feedforward:
                                self.rollout.set_offset(self._pd_effort(q, v))
                            z = self.runtime.encode(q, v)[0]
                            result = self.optimizer.plan(z, applied, shift=1)
                            ok = result.valid and bool(np.all(np.isfinite(result.command)))
                        except (ValueError, np.linalg.LinAlgError):
                            ok = False
                    if ok:
                        correction = result.command.astype(np.float64)
                        if result.predicted_observations is not None:
                            predicted = result.predicted_observations[:, :n].copy()
                    plan_ms.append((time.perf_counter() - started) * 1e3)
                if not ok:
                    fallbacks += 1
                    correction = np.zeros(n)
                sim.set_effort(correction)
                applied = correction.astype(np.float32)
            if record:
                trace['time'].append(sim.time)
                trace['position'].append(q)
                trace['velocity'].append(v)
                trace['com'].append(np.asarray(com))
                trace['zmp'].append((zx, zy))
                trace['margin'].append(margin)
                cop = sim.center_of_pressure()
                trace['cop'].append(cop[0][:2] if cop is not None else (math.nan, math.nan))
                trace['predicted'].append(predicted if predicted is not None
                                          else np.full((self.settings.horizon if self.optimizer else 1, n), np.nan))
                trace['correction'].append(correction)
                trace['polygon'].append(polygon)
            sim.step(self.substeps)
            base = sim.base_state()
            min_height = min(min_height, float(base.position[2]))
            max_tilt = max(max_tilt, _tilt_deg(base.orientation_xyzw))
            if min_height < cfg.fall_height or max_tilt > cfg.fall_tilt_deg:
                survived = False
                if not record:
                    break
        out_trace = None
        if record:
            out_trace = {k: np.asarray(v) for k, v in trace.items() if k != 'polygon'}
            out_trace['polygon'] = trace['polygon']
        return TrialResult(controller, float(force), float(direction_deg), survived, min_height, max_tilt,
                           fallbacks, tick + 1, plan_ms, out_trace)

    def standing_joint_speed(self, controller: str, seed: int = 0) -> float:
        """RMS of every joint velocity (rad/s) while ``controller`` holds the robot unpushed, after ``settle_s``.

        How much a controller moves a robot that should stand still: the PD hold reads below 0.01 rad/s; a planner
        whose corrections wander reads tenths (see the README's "Humanoid MPPI brings no gain").

        Raises
        ------
        ValueError
            As :meth:`trial`.
        """
        result = self.trial(controller, 0.0, 0.0, seed=seed, record=True)
        settled = np.asarray(result.trace['time']) >= result.trace['time'][0] + self.config.settle_s
        return float(np.sqrt(np.mean(np.square(result.trace['velocity'][settled]))))

    def largest_push(self, controller: str, direction_deg: float, seed: int = 0) -> dict[str, Any]:
        """Bisection on the push force: the largest force (and impulse) survived in this direction.

        Returns
        -------
        dict
            ``force_n``, ``impulse_ns`` (largest survived), ``failed_force_n`` (smallest failed, or None), the trials.
        """
        cfg = self.config
        low, high = 0.0, cfg.force_high
        trials = []
        top = self.trial(controller, high, direction_deg, seed)
        trials.append(top)
        if top.survived:
            return {'force_n': high, 'impulse_ns': high * cfg.push_duration_s, 'failed_force_n': None,
                    'bracket_top_survived': True, 'trials': trials}
        for _ in range(cfg.bisection_steps):
            mid = 0.5 * (low + high)
            result = self.trial(controller, mid, direction_deg, seed)
            trials.append(result)
            if result.survived:
                low = mid
            else:
                high = mid
        return {'force_n': low, 'impulse_ns': low * cfg.push_duration_s, 'failed_force_n': high,
                'bracket_top_survived': False, 'trials': trials}


def _rotate_inv(orientation_xyzw: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """World-frame vector expressed in the body frame of the given orientation."""
    x, y, z, w = orientation_xyzw
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return r.T @ np.asarray(vector)


def compare(loop: PushLoop, controllers: tuple[str, ...] = CONTROLLERS, seeds: Sequence[int] | None = None,
            log: Any = None) -> dict[str, Any]:
    """Largest survived push per controller, direction and seed (``seeds`` None: the config's).

    Per controller, ``per_direction`` holds the mean impulse over the seeds (``impulse_ns``) and each seed's
    (``per_seed_ns``); ``min_impulse_ns`` is the smallest of those means. With more than one controller,
    ``paired`` compares each to the first on the same (direction, seed) trials: the mean difference and how many
    pairs it won, tied and lost (one bisection step, ``resolution_ns``, apart is already a win or a loss).

    Raises
    ------
    ValueError
        If ``seeds`` is empty.
    """
    cfg = loop.config
    seeds = tuple(int(s) for s in (cfg.seeds if seeds is None else seeds))
    if not seeds:
        raise ValueError('compare needs at least one seed')
    out: dict[str, Any] = {'push_duration_s': cfg.push_duration_s, 'directions_deg': list(cfg.directions_deg),
                           'seeds': list(seeds),
                           'resolution_ns': cfg.force_high * cfg.push_duration_s / 2 ** cfg.bisection_steps,
                           'fall_criteria': f'pelvis below {cfg.fall_height} m or tilted beyond '
                                            f'{cfg.fall_tilt_deg} deg within {cfg.after_s} s of the push',
                           'settings': asdict(cfg), 'controllers': {}}
    for controller in controllers:
        started = time.perf_counter()
        per_direction, plan_ms, fallbacks, ticks = {}, [], 0, 0
        for direction in cfg.directions_deg:
            found = [loop.largest_push(controller, direction, seed) for seed in seeds]
            impulses = [f['impulse_ns'] for f in found]
            per_direction[f'{direction:g}'] = {'impulse_ns': round(float(np.mean(impulses)), 3),
                                               'per_seed_ns': [round(i, 3) for i in impulses],
                                               'force_n': round(float(np.mean([f['force_n'] for f in found])), 2),
                                               'trials': sum(len(f['trials']) for f in found)}
            for f in found:
                for t in f['trials']:
                    plan_ms += t.plan_ms
                    fallbacks += t.fallback_ticks
                    ticks += t.ticks
            if log:
                log(f'  {controller}: {direction:g} deg -> {np.mean(impulses):.2f} N s (seeds {list(seeds)}: '
                    + ', '.join(f'{i:.2f}' for i in impulses) + ')')
        means = [d['impulse_ns'] for d in per_direction.values()]
        out['controllers'][controller] = {
            'per_direction': per_direction,
            'min_impulse_ns': float(min(means)),
            'mean_impulse_ns': float(np.mean(means)),
            'plan_ms_p50': float(np.percentile(plan_ms, 50)) if plan_ms else None,
            'plan_ms_p99': float(np.percentile(plan_ms, 99)) if plan_ms else None,
            'fallback_fraction': fallbacks / ticks if ticks and controller == 'mppi' else 0.0,
            'wall_s': round(time.perf_counter() - started, 1),
        }
    out['paired'] = paired_differences(out['controllers'], out['resolution_ns'])
    return out


def paired_differences(controllers: dict[str, Any], resolution_ns: float) -> dict[str, Any]:
    """Each controller after the first against the first, trial for trial (same direction and seed).

    Returns
    -------
    dict
        Per compared controller: ``mean_difference_ns`` (it minus the first), and the counts of pairs it
        ``won`` / ``tied`` / ``lost`` (a difference under half of ``resolution_ns`` is a tie).
    """
    names = list(controllers)
    if len(names) < 2:
        return {}
    reference = controllers[names[0]]['per_direction']
    out = {}
    for name in names[1:]:
        differences = [a - b for direction, entry in controllers[name]['per_direction'].items()
                       for a, b in zip(entry['per_seed_ns'], reference[direction]['per_seed_ns'])]
        tie = 0.5 * resolution_ns
        out[f'{name} - {names[0]}'] = {
            'mean_difference_ns': round(float(np.mean(differences)), 3),
            'won': sum(d > tie for d in differences), 'tied': sum(abs(d) <= tie for d in differences),
            'lost': sum(d < -tie for d in differences), 'pairs': len(differences)}
    return out


__all__ = ['CONTROLLERS', 'PushConfig', 'PushLoop', 'TrialResult', 'compare', 'paired_differences']
