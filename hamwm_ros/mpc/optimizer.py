"""Model Predictive Path Integral (MPPI) optimizer over a batched rollout function.

One :meth:`MPPIOptimizer.plan` call, per control tick:

1. shift the previous nominal sequence by the ticks elapsed (warm start), repeating its last action;
2. ``iterations`` times: perturb the nominal with Gaussian (optionally time-correlated) noise, clip to the action
   bounds and the action-rate limit, roll every sample out in one batched call, score it with the critics plus the
   information-theoretic control cost, and move the nominal by the softmin-weighted perturbations
   (``w_k ~ exp(-(S_k - min S) / temperature)``; the perturbations as applied or as sampled,
   ``settings.update_perturbation``; with ``normalise_costs`` the temperature is scaled by the median
   of ``S_k - min S``); optionally Savitzky-Golay smooth it;
3. return the first action as the command.

Delay compensation: ``plan(..., committed=k)`` keeps the first ``k`` steps of the warm start as they are (no noise, no
update): they are what the robot executes while this plan is being computed and delivered, so every sample is scored
on what will really happen during that time, and only the steps after it are optimised.

Robustness: a sample whose rollout or cost is not finite gets zero weight. An iteration in which no sample is finite
resets the nominal and is retried, at most ``max_retries`` times per call; after that the result is ``valid=False``
and the caller switches to its fallback. The returned command is always finite, within the bounds and within the rate
limit of the previous command, valid or not.

Hot path: float32 buffers allocated once per shape, one rollout call per iteration (per worker), no Python loop
over samples (the only loop over time is the optional rate limit). With ``settings.workers > 1`` the samples are
split into contiguous chunks that are sampled, rolled out and scored on a small thread pool (onnxruntime and large
numpy operations release the GIL); only the softmin weighting and the update run on the calling thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np

from hamwm_ros.mpc.critics.base import Critic, CriticContext, CriticError
from hamwm_ros.mpc.noise import NoiseGenerator
from hamwm_ros.mpc.rollout import Rollout, RolloutFunction, check_rollout
from hamwm_ros.mpc.settings import UPDATE_PERTURBATIONS, MPPISettings, SettingsError
from hamwm_ros.mpc.smoothing import SequenceSmoother


@dataclass
class PlanResult:
    """Outcome of one :meth:`MPPIOptimizer.plan` call.

    Attributes
    ----------
    command
        (m,) action to apply now: finite, within bounds and rate limit, also when ``valid`` is False.
    sequence
        (H, m) the nominal plan (a copy) after this call.
    valid
        False when no finite plan was found within the retries (or the state was not finite): use the fallback.
    reason
        Why the result is invalid, or '' when valid.
    iterations
        Iterations that produced an update.
    retries
        Resets after an all-non-finite iteration during this call.
    finite_fraction
        Fraction of samples with finite rollouts and costs in the last iteration.
    min_cost
        Lowest total sample cost in the last iteration.
    weighted_cost
        Softmin-weighted mean total cost in the last iteration (the expected cost of the update).
    effective_samples
        ``1 / sum w^2`` of the last iteration: near 1 means one sample dominates (temperature too low).
    critic_costs
        Per critic, the weighted mean of its weighted cost in the last iteration.
    predicted_observations
        (H, k) softmin-weighted mean predicted observations of the last iteration (for display), or None.
    """

    command: np.ndarray
    sequence: np.ndarray
    valid: bool
    reason: str = ''
    iterations: int = 0
    retries: int = 0
    finite_fraction: float = 0.0
    min_cost: float = math.inf
    weighted_cost: float = math.inf
    effective_samples: float = 0.0
    critic_costs: dict[str, float] = field(default_factory=dict)
    predicted_observations: np.ndarray | None = None


class MPPIOptimizer:
    """Sampling MPC with warm start, bounds, rate limit, smoothing and bounded retries.

    Parameters
    ----------
    settings
        Validated settings.
    rollout_fn
        ``(z0 (n,), actions (B, H, m)) -> Rollout``; see :mod:`hamwm_ros.mpc.rollout`.
    critics
        Cost terms; names must be unique.

    Raises
    ------
    SettingsError
        If ``settings`` is not an :class:`MPPISettings`.
    CriticError
        If two critics share a name or an entry is not a :class:`Critic`.

    Notes
    -----
    Not thread-safe as a whole: call :meth:`plan`, :meth:`update_settings` and :meth:`reset` from one thread (the
    planner's). Critic weights and goals may be changed from another thread; each iteration reads the weights once.
    With ``settings.workers > 1``, ``rollout_fn`` and the critics' ``score`` are called concurrently from that many
    threads on disjoint sample chunks; :meth:`close` stops the pool.
    """

    def __init__(self, settings: MPPISettings, rollout_fn: RolloutFunction, critics: Sequence[Critic]) -> None:
        if not isinstance(settings, MPPISettings):
            raise SettingsError(f'settings must be MPPISettings, got {type(settings).__name__}')
        self._critics: dict[str, Critic] = {}
        for critic in critics:
            if not isinstance(critic, Critic):
                raise CriticError(f'not a Critic: {critic!r}')
            if critic.name in self._critics:
                raise CriticError(f'two critics named {critic.name!r}')
            self._critics[critic.name] = critic
        self.rollout_fn = rollout_fn
        self._settings = settings
        self._pool: ThreadPoolExecutor | None = None   # made on first use by _worker_pool (workers > 1)
        self._pool_helpers = 0
        self._committed = 0            # leading steps the current plan call keeps (see plan's ``committed``)
        self._update_sampled = False   # the current plan call's update_perturbation is 'sampled'
        self._noises = self._noise_streams(settings, settings.seed)
        self._allocate(settings)
        self._nominal = np.empty((settings.horizon, settings.action_dim), dtype=np.float32)
        self._last_command = np.empty(settings.action_dim, dtype=np.float32)
        self.reset()

    # ------------------------------------------------------------------ configuration
    @staticmethod
    def _noise_streams(s: MPPISettings, seed: Any) -> list[NoiseGenerator]:
        """One noise generator per worker chunk; a single worker keeps the single stream of ``seed``."""
        bounds = MPPIOptimizer._chunk_bounds(s)
        if s.workers == 1:
            seeds = [seed]
        else:
            seeds = np.random.SeedSequence(seed).spawn(s.workers)
        return [NoiseGenerator(hi - lo, s.horizon, s.action_dim, s.std, s.noise_correlation, chunk_seed)
                for (lo, hi), chunk_seed in zip(bounds, seeds)]

    @staticmethod
    def _chunk_bounds(s: MPPISettings) -> list[tuple[int, int]]:
        edges = np.linspace(0, s.num_samples, s.workers + 1).astype(int)
        return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]

    def _allocate(self, s: MPPISettings) -> None:
        shape = (s.num_samples, s.horizon, s.action_dim)
        self._bounds = self._chunk_bounds(s)
        self._actions = np.empty(shape, dtype=np.float32)
        self._eps = np.empty(shape, dtype=np.float32)
        self._costs = np.empty(s.num_samples, dtype=np.float64)
        self._finite = np.empty(s.num_samples, dtype=bool)
        self._weights = np.empty(s.num_samples, dtype=np.float64)
        self._low, self._high = s.low, s.high
        self._low_row, self._high_row = np.tile(s.low, s.horizon), np.tile(s.high, s.horizon)
        self._inv_var = (1.0 / np.square(s.std)).astype(np.float32)
        self._safe = np.clip(np.zeros(s.action_dim, dtype=np.float32), self._low, self._high)
        self._smoother = SequenceSmoother(s.horizon, s.smoothing_window, s.smoothing_order) \
            if s.smoothing == 'savgol' else None
        self._smoothed = np.empty((s.horizon, s.action_dim), dtype=np.float32)

    @property
    def settings(self) -> MPPISettings:
        """The settings in force."""
        return self._settings

    def update_settings(self, settings: MPPISettings) -> None:
        """Switch to new settings at run time, keeping the warm start where shapes allow.

        The nominal sequence is truncated or extended (repeating its last action) to a new horizon and clipped to
        new bounds; it is reset only if the action size changes. The noise stream continues deterministically.

        Raises
        ------
        SettingsError
            If ``settings`` is not an :class:`MPPISettings`.
        """
        if not isinstance(settings, MPPISettings):
            raise SettingsError(f'settings must be MPPISettings, got {type(settings).__name__}')
        old = self._settings
        noise_changed = (settings.num_samples, settings.horizon, settings.action_dim, settings.noise_std,
                         settings.noise_correlation, settings.workers) != (
            old.num_samples, old.horizon, old.action_dim, old.noise_std, old.noise_correlation, old.workers)
        if settings.seed != old.seed:
            seed = settings.seed
        elif noise_changed:
            seed = int(self._noises[0]._rng.integers(2**63))  # continue the stream deterministically
        else:
            seed = None
        if noise_changed or seed is not None:
            self._noises = self._noise_streams(settings, seed)
        self._settings = settings
        self._allocate(settings)
        if settings.action_dim != old.action_dim:
            self._nominal = np.empty((settings.horizon, settings.action_dim), dtype=np.float32)
            self._last_command = np.empty(settings.action_dim, dtype=np.float32)
            self.reset()
            return
        nominal = self._nominal[:settings.horizon]
        if settings.horizon > nominal.shape[0]:
            pad = np.repeat(nominal[-1:], settings.horizon - nominal.shape[0], axis=0)
            nominal = np.concatenate([nominal, pad])
        self._nominal = np.clip(nominal, self._low, self._high).astype(np.float32)
        self._last_command = np.clip(self._last_command, self._low, self._high)

    @property
    def critics(self) -> dict[str, Critic]:
        """Critics by name (the objects themselves: changing one takes effect at the next iteration)."""
        return dict(self._critics)

    def set_weight(self, name: str, weight: float) -> None:
        """Change one critic's weight without touching the warm start.

        Raises
        ------
        KeyError
            If no critic has that name.
        CriticError
            If the weight is negative or not finite (the old weight is kept).
        """
        if name not in self._critics:
            raise KeyError(f'no critic named {name!r} (have {sorted(self._critics)})')
        self._critics[name].weight = weight

    def weights(self) -> dict[str, float]:
        """Current critic weights by name."""
        return {name: c.weight for name, c in self._critics.items()}

    @property
    def nominal(self) -> np.ndarray:
        """(H, m) copy of the current nominal (warm-start) sequence."""
        return self._nominal.copy()

    @property
    def last_command(self) -> np.ndarray:
        """(m,) copy of the last command returned."""
        return self._last_command.copy()

    def reset(self) -> None:
        """Forget the warm start: nominal sequence and last command go to the safe action (0 clipped to bounds)."""
        self._nominal[...] = self._safe
        self._last_command[...] = self._safe
        self._planned = False

    def reseed(self, seed: int | None) -> None:
        """Restart the sample noise from ``seed``, so the same seed draws the same samples again.

        :meth:`update_settings` with an unchanged seed continues the stream instead (a run-time change of another
        setting must not replay old draws); episodes that must be reproducible from their seed call this.
        """
        self._noises = self._noise_streams(self._settings, seed)

    def close(self) -> None:
        """Stop the worker threads (``workers > 1``); a later :meth:`plan` starts them again."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------------ planning
    def plan(self, z0: np.ndarray, previous_action: np.ndarray | None = None, shift: int = 1,
             committed: int = 0, update_perturbation: str | None = None) -> PlanResult:
        """Optimise the action sequence from latent state ``z0`` and return the command to apply.

        Parameters
        ----------
        z0
            (n,) current latent state (the encoder's output).
        previous_action
            (m,) the command actually applied since the last plan (it may have come from a fallback); defaults to
            this optimizer's last command. Rate limit and smoothness are measured from it.
        shift
            Model steps elapsed since the last plan; the warm start is shifted by this much (ignored on the first
            plan after a reset).
        committed
            Leading steps of the sequence that are already committed (executed while this plan is computed and
            delivered: the latency in model steps). They keep their warm-start values (``previous_action`` on the
            first plan after a reset) and are not optimised; at most ``horizon - 1`` of them are kept.
        update_perturbation
            ``'applied'`` or ``'sampled'`` for this call only (a swing-up pumps with one and balances with the
            other); None: the settings'.

        Raises
        ------
        ValueError
            If ``shift`` or ``committed`` is negative, ``update_perturbation`` unknown or ``previous_action`` has the
            wrong size.
        RolloutShapeError
            If the rollout function returns arrays of the wrong shape (a wiring error, not a model failure).
        Exception
            Whatever the rollout function or a critic raises propagates: the caller (the planner thread) treats it
            like ``valid=False`` and uses the fallback.
        """
        s = self._settings
        if shift < 0:
            raise ValueError(f'shift must be >= 0, got {shift}')
        if committed < 0:
            raise ValueError(f'committed must be >= 0, got {committed}')
        if update_perturbation is not None and update_perturbation not in UPDATE_PERTURBATIONS:
            raise ValueError(f'update_perturbation must be one of {UPDATE_PERTURBATIONS} or None, got '
                             f'{update_perturbation!r}')
        self._update_sampled = (update_perturbation or s.update_perturbation) == 'sampled'
        prev = self._previous(previous_action)
        z0 = np.asarray(z0, dtype=np.float32)
        if not np.all(np.isfinite(z0)):
            return self._invalid('non-finite state', prev, iterations=0, retries=0)
        if self._planned and shift:
            self._shift(shift)
        self._committed = min(int(committed), s.horizon - 1)
        if self._committed and not self._planned:
            self._nominal[:self._committed] = prev     # no plan yet: what runs meanwhile is the command in force
        retries = done = 0
        stats = None
        while done < s.iterations:
            stats = self._iterate(z0, prev)
            if stats is not None:
                done += 1
                continue
            retries += 1
            self._nominal[...] = self._safe  # the warm start may be what drove the model out of range
            if retries > s.max_retries:
                self._planned = False
                return self._invalid(f'no finite rollout after {retries} attempt(s)', prev, done, retries - 1)
        self._planned = True
        command = self._nominal[0].copy()
        self._last_command[...] = command
        return PlanResult(command=command, sequence=self._nominal.copy(), valid=True, iterations=done,
                          retries=retries, **stats)

    def evaluate(self, z0: np.ndarray, actions: np.ndarray, previous_action: np.ndarray | None = None) -> np.ndarray:
        """Total cost (B,) of given action sequences (B, H, m) from ``z0``, control cost excluded.

        Not on the hot path: for diagnostics, tuning and tests.

        Raises
        ------
        RolloutShapeError
            If the rollout function returns arrays of the wrong shape.
        """
        actions = np.ascontiguousarray(actions, dtype=np.float32)
        prev = self._previous(previous_action)
        rollout = check_rollout(self.rollout_fn(np.asarray(z0, dtype=np.float32), actions), *actions.shape[:2])
        costs, _ = self._score(CriticContext(actions, rollout, prev), np.zeros(actions.shape[0]), self.weights())
        return costs

    # ------------------------------------------------------------------ internals
    def _previous(self, previous_action: np.ndarray | None) -> np.ndarray:
        if previous_action is None:
            return self._last_command.copy()
        prev = np.asarray(previous_action, dtype=np.float32).ravel()
        if prev.shape != (self._settings.action_dim,):
            raise ValueError(f'previous_action: expected {self._settings.action_dim} values, got {prev.size}')
        prev = np.where(np.isfinite(prev), prev, self._safe)
        return np.clip(prev, self._low, self._high)

    def _shift(self, steps: int) -> None:
        horizon = self._nominal.shape[0]
        steps = min(steps, horizon)
        self._nominal[:horizon - steps] = self._nominal[steps:].copy()
        self._nominal[horizon - steps:] = self._nominal[horizon - steps - 1] if steps < horizon else self._nominal[-1]

    def _rate_limit(self, seqs: np.ndarray, prev: np.ndarray) -> None:
        """Clip (..., H, m) sequences in place so each step moves at most ``max_action_rate`` (bounds kept)."""
        rate = np.float32(self._settings.max_action_rate)
        before = np.broadcast_to(prev, seqs[..., 0, :].shape)
        for t in range(seqs.shape[-2]):
            # Inputs are within bounds and so is `before`, hence the clipped value is too.
            np.clip(seqs[..., t, :], before - rate, before + rate, out=seqs[..., t, :])
            before = seqs[..., t, :]

    def _score(self, ctx: CriticContext, costs: np.ndarray,
               weights: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Weighted critic costs summed into ``costs``; ``weights`` read once per iteration (all chunks agree)."""
        costs[...] = 0.0
        parts: dict[str, np.ndarray] = {}
        for name, critic in self._critics.items():
            weight = weights[name]
            if weight == 0.0:
                continue
            part = np.asarray(critic.score(ctx), dtype=np.float64)
            if part.shape != costs.shape:
                raise CriticError(f'critic {name!r} returned shape {part.shape}, expected {costs.shape}')
            part = part * weight  # not in place: a critic may return its own buffer
            parts[name] = part
            costs += part
        return costs, parts

    def _chunk(self, index: int, z0: np.ndarray, prev: np.ndarray, weights: dict[str, float],
               u_scaled: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Sample, roll out and score samples ``bounds[index]``; fills their actions, eps, costs and finite flags.

        Returns the weighted cost of each critic and the predicted observations of the chunk (a rollout buffer,
        valid until this thread's next rollout call).
        """
        s = self._settings
        lo, hi = self._bounds[index]
        batch, horizon = hi - lo, s.horizon
        noise = self._noises[index].sample()
        if s.include_nominal and lo == 0:
            noise[0] = 0.0
        if self._committed:
            noise[:, :self._committed] = 0.0
        actions, eps = self._actions[lo:hi], self._eps[lo:hi]
        np.add(self._nominal, noise, out=actions)
        # Bounds tiled over the horizon on flattened rows: np.clip against (m,) bounds was 13x slower here.
        rows = actions.reshape(batch, -1)
        np.minimum(rows, self._high_row, out=rows)
        np.maximum(rows, self._low_row, out=rows)
        if math.isfinite(s.max_action_rate):
            self._rate_limit(actions, prev)
        if self._update_sampled:
            eps[...] = noise                               # as drawn: the update may press the plan onto a bound
        else:
            np.subtract(actions, self._nominal, out=eps)  # the perturbation actually applied, after the constraints
        rollout = check_rollout(self.rollout_fn(z0, actions), batch, horizon)
        costs, parts = self._score(CriticContext(actions, rollout, prev), self._costs[lo:hi], weights)
        if u_scaled is not None:
            # gamma * sum_t u_t^T Sigma^-1 eps_t, as one GEMV over the flattened sequence.
            costs += s.control_cost_weight * (eps.reshape(batch, -1) @ u_scaled)
        # A sample is usable only if its whole prediction is finite, even where no critic looks.
        finite = np.isfinite(costs, out=self._finite[lo:hi])
        for arr in (rollout.observations, rollout.energy, rollout.latent):
            finite &= np.isfinite(arr.reshape(batch, -1).sum(axis=1))
        return parts, rollout.observations

    def _worker_pool(self) -> ThreadPoolExecutor | None:
        """The pool of ``workers - 1`` helper threads, made when first needed, after :meth:`close` or a new count."""
        helpers = self._settings.workers - 1
        if self._pool is not None and self._pool_helpers != helpers:
            self.close()
        if helpers and self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=helpers, thread_name_prefix='mppi-worker')
            self._pool_helpers = helpers
        return self._pool

    def _run_chunks(self, *args: Any) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Every chunk, chunk 0 on this thread; waits for all before returning or raising."""
        pool = self._worker_pool()
        futures: list[Future] = [pool.submit(self._chunk, i, *args)
                                 for i in range(1, len(self._bounds))] if pool is not None else []
        try:
            results = [self._chunk(0, *args)]
        finally:
            # The others write into shared buffers: they must finish before anything else touches them.
            others = [f.exception() for f in futures]
        for future, error in zip(futures, others):
            if error is not None:
                raise error
            results.append(future.result())
        return results

    def _iterate(self, z0: np.ndarray, prev: np.ndarray) -> dict | None:
        """One sample-score-update pass; None when no sample was finite (nominal untouched)."""
        s = self._settings
        batch, horizon, m = self._actions.shape
        weights = self.weights()
        u_scaled = (self._nominal * self._inv_var).ravel() if s.control_cost_weight > 0.0 else None
        results = self._run_chunks(z0, prev, weights, u_scaled)
        costs, finite, eps = self._costs, self._finite, self._eps
        n_finite = int(np.count_nonzero(finite))
        if n_finite == 0:
            return None
        if n_finite < batch:
            costs[~finite] = np.inf
        min_cost = float(costs.min())
        w = self._weights
        np.subtract(costs, min_cost, out=w)
        scale = s.temperature
        if s.normalise_costs:
            # Median excess over the best (finite samples only): invariant to the critics' overall cost scale.
            spread = float(np.median(w[finite]))
            if spread > 0.0 and math.isfinite(spread):
                scale *= spread
        w *= -1.0 / scale
        np.exp(w, out=w)  # inf cost -> weight 0
        w /= w.sum()
        w32 = w.astype(np.float32)
        kept = self._nominal[:self._committed].copy()
        self._nominal += (w32 @ eps.reshape(batch, -1)).reshape(horizon, m)
        if self._smoother is not None:
            self._smoother(self._nominal, prev, out=self._smoothed)
            self._nominal[...] = self._smoothed
        self._nominal[:self._committed] = kept       # the committed steps run whatever the samples say
        np.clip(self._nominal, self._low, self._high, out=self._nominal)
        if math.isfinite(s.max_action_rate):
            self._rate_limit(self._nominal, prev)
        predicted = None
        for (lo, hi), (_, obs) in zip(self._bounds, results):
            flat, w_chunk, usable = obs.reshape(hi - lo, -1), w32[lo:hi], finite[lo:hi]
            if not usable.all():  # 0 * nan is nan: average only over the usable samples
                flat, w_chunk = flat[usable], w_chunk[usable]
            term = w_chunk @ flat
            predicted = term if predicted is None else predicted + term
        finite_costs = np.where(finite, costs, 0.0)
        critic_costs = {}
        for name in results[0][0]:
            part = np.concatenate([r[0][name] for r in results]) if len(results) > 1 else results[0][0][name]
            critic_costs[name] = float(w @ np.where(finite, part, 0.0))
        return {
            'finite_fraction': n_finite / batch,
            'min_cost': min_cost,
            'weighted_cost': float(w @ finite_costs),
            'effective_samples': float(1.0 / np.dot(w, w)),
            'critic_costs': critic_costs,
            'predicted_observations': predicted.reshape(horizon, -1),
        }

    def _invalid(self, reason: str, prev: np.ndarray, iterations: int, retries: int) -> PlanResult:
        # Move toward the safe action no faster than the rate limit, so even a failure gives a bounded step.
        rate = np.float32(self._settings.max_action_rate)
        command = np.clip(self._safe, prev - rate, prev + rate) if math.isfinite(rate) else self._safe.copy()
        command = np.clip(command, self._low, self._high).astype(np.float32)
        self._last_command[...] = command
        return PlanResult(command=command, sequence=self._nominal.copy(), valid=False, reason=reason,
                          iterations=iterations, retries=retries)


__all__ = ['MPPIOptimizer', 'PlanResult', 'Rollout']
