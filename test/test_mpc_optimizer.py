"""MPPIOptimizer on a real analytic pendulum.

Cost reduction, swing-up in closed loop, seeds, live weights, non-finite predictions, bounded retries, and the
bounds / rate-limit guarantees (hypothesis).
"""

import math
import threading

from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
import numpy as np
import pytest

from hamwm_ros.mpc.analytic import Pendulum
from hamwm_ros.mpc.critics import EffortCritic, EnergyCritic, SmoothnessCritic, TrackingCritic
from hamwm_ros.mpc.critics.base import Critic, CriticContext, CriticError
from hamwm_ros.mpc.optimizer import MPPIOptimizer
from hamwm_ros.mpc.rollout import RolloutShapeError
from hamwm_ros.mpc.settings import MPPISettings, SettingsError

LIMIT = 3.0  # N m, below m g l = 9.81: the pendulum cannot be lifted directly, it has to be swung up


def swing_up_critics(p, effort=0.01):
    return [EnergyCritic(p.upright_energy, weight=1.0, scale=p.upright_energy),
            TrackingCritic([np.pi, 0.0], [1.0, 0.05], weight=1.0, terminal_weight=1.0, wrap=[0]),
            EffortCritic(effort, scale=LIMIT)]


def make(pendulum=None, critics=None, **changes):
    p = pendulum or Pendulum()
    s = MPPISettings(action_low=-LIMIT, action_high=LIMIT, num_samples=256, horizon=30, temperature=0.05,
                     noise_std=1.5, noise_correlation=0.5, seed=1).replace(**changes)
    return MPPIOptimizer(s, p, swing_up_critics(p) if critics is None else critics), p


def angle_error(theta):
    return (theta - np.pi + np.pi) % (2 * np.pi) - np.pi


def test_iterations_lower_the_cost_of_the_plan():
    opt, p = make(iterations=1)
    z0 = np.array([0.3, 0.0], np.float32)
    before = opt.evaluate(z0, opt.nominal[None])[0]
    costs = [before]
    for _ in range(4):
        opt.plan(z0, shift=0)
        costs.append(opt.evaluate(z0, opt.nominal[None])[0])
    assert costs[-1] < 0.8 * before
    # Sample 0 is the nominal itself, so the weighted update cannot be much worse than the warm start.
    assert all(b <= a * 1.05 for a, b in zip(costs, costs[1:]))


def test_swings_the_pendulum_up_from_rest_and_holds_it():
    opt, p = make()
    x = np.zeros(2)
    errors = []
    for _ in range(240):  # 12 s at 20 Hz
        result = opt.plan(x.astype(np.float32))
        assert result.valid and abs(result.command[0]) <= LIMIT
        x = p.step(x, result.command)
        errors.append(abs(angle_error(x[0])))
    first_up = next(i for i, e in enumerate(errors) if e < 0.2)
    assert first_up * p.dt < 8.0
    assert max(errors[-40:]) < 0.2  # held upright for the last 2 s


def test_same_seed_reproduces_and_different_seed_differs():
    runs = []
    for seed in (3, 3, 4):
        opt, _ = make(seed=seed)
        runs.append([opt.plan(np.array([0.5, 0.0], np.float32)).command[0] for _ in range(5)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize('workers', [1, 2])
def test_reseed_replays_the_draws_and_update_settings_with_the_same_seed_does_not(workers):
    opt, _ = make(seed=3, workers=workers)
    state = np.array([0.5, 0.0], np.float32)

    def episode():
        opt.reset()
        return [opt.plan(state).command[0] for _ in range(3)]

    first = episode()
    opt.update_settings(opt.settings.replace(seed=3))      # the same seed: the stream goes on
    assert episode() != first
    opt.reseed(3)
    assert episode() == first
    opt.close()


def test_weight_change_takes_effect_without_resetting_the_warm_start():
    opt, _ = make()
    z0 = np.array([0.5, 1.0], np.float32)
    for _ in range(5):
        opt.plan(z0, shift=0)
    warm = opt.nominal
    opt.set_weight('effort', 1000.0)
    assert opt.weights()['effort'] == 1000.0
    np.testing.assert_array_equal(opt.nominal, warm)  # no reset
    for _ in range(10):
        result = opt.plan(z0, shift=0)
    assert np.abs(result.sequence).mean() < 0.5 * np.abs(warm).mean()
    with pytest.raises(CriticError):
        opt.set_weight('effort', -1.0)
    assert opt.weights()['effort'] == 1000.0
    with pytest.raises(KeyError):
        opt.set_weight('nope', 1.0)


def test_partial_nan_rollouts_get_zero_weight():
    # The model is only valid up to |omega| = 2 rad/s: faster samples are NaN. The plan must stay in the valid domain.
    p = Pendulum(valid_speed=2.0)
    opt, _ = make(p, noise_std=3.0)
    z0 = np.array([0.0, 1.5], np.float32)
    for _ in range(5):
        result = opt.plan(z0, shift=0)
        assert result.valid and 0.0 < result.finite_fraction < 1.0
        assert np.isfinite(result.command).all() and np.isfinite(result.predicted_observations).all()
    check = p(z0, result.sequence[None])
    assert np.isfinite(check.observations).all()


def test_all_nan_rollouts_retry_a_bounded_number_of_times_then_report_invalid():
    broken = Pendulum(mass=math.nan)  # corrupted model: every prediction is NaN
    opt, _ = make(broken, swing_up_critics(Pendulum()), iterations=2, max_retries=3, max_action_rate=0.5)
    prev = np.array([2.0], np.float32)
    result = opt.plan(np.array([0.1, 0.0], np.float32), previous_action=prev)
    assert not result.valid and 'no finite rollout' in result.reason
    assert broken.calls == 1 + 3  # first attempt + max_retries, then give up
    assert result.retries == 3
    assert np.isfinite(result.command).all() and abs(result.command[0]) <= LIMIT
    assert result.command[0] == pytest.approx(1.5)  # toward the safe action 0, at the rate limit
    np.testing.assert_array_equal(result.sequence, 0.0)  # the warm start was reset


def test_non_finite_state_is_invalid_without_calling_the_model():
    opt, p = make()
    result = opt.plan(np.array([np.nan, 0.0], np.float32))
    assert not result.valid and 'state' in result.reason and p.calls == 0
    assert np.isfinite(result.command).all()


def test_recovers_after_invalid():
    opt, p = make()
    assert not opt.plan(np.array([np.inf, 0.0], np.float32)).valid
    assert opt.plan(np.array([0.0, 0.0], np.float32)).valid


def test_wrong_rollout_shape_is_a_wiring_error():
    opt, _ = make(critics=[EffortCritic()], pendulum=None)
    opt.rollout_fn = lambda z0, a: Pendulum()(z0, a[:, :-1])
    with pytest.raises(RolloutShapeError, match='expected'):
        opt.plan(np.zeros(2, np.float32))


def test_critic_with_wrong_output_shape_is_named():
    class PerStep(EffortCritic):
        name = 'per_step'

        def score(self, ctx):
            return np.square(ctx.actions[..., 0])  # (B, H) instead of (B,)

    opt, _ = make(critics=[PerStep()])
    with pytest.raises(CriticError, match='per_step'):
        opt.plan(np.zeros(2, np.float32))


def test_shift_moves_the_warm_start_and_repeats_the_tail():
    opt, _ = make(horizon=6, iterations=1)
    opt.plan(np.array([0.4, 0.0], np.float32))
    seq = opt.nominal
    opt._shift(2)
    np.testing.assert_array_equal(opt.nominal[:4], seq[2:])
    np.testing.assert_array_equal(opt.nominal[4:], seq[[5, 5]])


def test_update_settings_keeps_warm_start_and_resizes():
    opt, _ = make()
    z0 = np.array([0.5, 0.0], np.float32)
    opt.plan(z0)
    warm = opt.nominal
    opt.update_settings(opt.settings.replace(horizon=40, temperature=0.1, num_samples=128))
    assert opt.nominal.shape == (40, 1)
    np.testing.assert_array_equal(opt.nominal[:30], warm)
    np.testing.assert_array_equal(opt.nominal[30:], warm[-1:].repeat(10, 0))
    assert opt.plan(z0).valid
    with pytest.raises(SettingsError):
        opt.update_settings({'horizon': 3})


def test_smoothing_reduces_command_chatter():
    chatter = {}
    for method in ('none', 'savgol'):
        opt, p = make(smoothing=method, smoothing_window=9, seed=5)
        x = np.array([np.pi - 0.05, 0.0])
        commands = []
        for _ in range(60):
            result = opt.plan(x.astype(np.float32))
            x = p.step(x, result.command)
            commands.append(result.command[0])
        chatter[method] = np.abs(np.diff(commands)).mean()
    assert chatter['savgol'] < chatter['none']


class BeyondTheBoundCritic(Critic):
    """Prefers every action at twice the upper bound: its best feasible plan is the bound itself."""

    name = 'beyond'

    def score(self, ctx: CriticContext) -> np.ndarray:
        return np.square(ctx.actions[..., 0] - 2.0 * LIMIT).sum(axis=1)


@pytest.mark.parametrize('update', ['applied', 'sampled'])
def test_sampled_perturbations_let_the_plan_sit_on_its_bound(update):
    # an averaging temperature (a greedy one follows the single best sample, which can be the bound either way)
    opt, _ = make(critics=[BeyondTheBoundCritic()], update_perturbation=update, noise_std=1.0, normalise_costs=True,
                  temperature=1.0)
    z0 = np.array([0.0, 0.0], np.float32)
    for _ in range(60):
        result = opt.plan(z0, shift=0)
    plan = result.sequence[:, 0]
    assert result.valid and np.all(plan <= LIMIT)
    if update == 'sampled':
        # the samples beyond the bound all score as the bound and pull the plan out; the clip puts it on the bound
        assert plan.mean() > LIMIT - 0.05 and np.count_nonzero(plan == LIMIT) > plan.size // 2
    else:
        # those samples count as their clipped value while the ones inside pull the average in: it stays well inside
        assert plan.mean() < LIMIT - 0.5


def test_a_plan_call_can_override_the_update_and_refuses_an_unknown_one():
    z0 = np.array([0.0, 0.0], np.float32)
    plans = {}
    for name, settings_update, call_update in (('settings', 'sampled', None), ('call', 'applied', 'sampled'),
                                               ('applied', 'applied', None)):
        opt, _ = make(critics=[BeyondTheBoundCritic()], update_perturbation=settings_update, noise_std=1.0,
                      normalise_costs=True, temperature=1.0)
        for _ in range(60):
            result = opt.plan(z0, shift=0, update_perturbation=call_update)
        plans[name] = result.sequence
        assert opt.settings.update_perturbation == settings_update       # the override is for the call only
    np.testing.assert_array_equal(plans['call'], plans['settings'])      # same seed, same update: same plan
    assert plans['applied'].mean() < LIMIT - 0.5 < plans['call'].mean()
    opt, _ = make()
    with pytest.raises(ValueError, match='update_perturbation'):
        opt.plan(z0, update_perturbation='clipped')


def test_sampled_perturbations_pump_at_full_effort_and_swing_up_sooner():
    outcome = {}
    for update in ('applied', 'sampled'):
        opt, p = make(update_perturbation=update, seed=3)
        x, saturated, upright_tick = np.zeros(2), 0, None
        for tick in range(240):
            result = opt.plan(x.astype(np.float32))
            saturated += abs(result.command[0]) >= LIMIT
            x = p.step(x, result.command)
            if abs(angle_error(x[0])) < 0.2:
                upright_tick = tick
                break
        assert upright_tick is not None, update
        outcome[update] = upright_tick, saturated
    (applied_up, applied_full), (sampled_up, sampled_full) = outcome['applied'], outcome['sampled']
    assert sampled_full > 5 * max(applied_full, 1)       # the plan sits on the bound while pumping
    assert sampled_up <= applied_up                       # and the pole comes up no later


@hyp_settings(max_examples=30, deadline=None)
@given(theta=st.floats(-10, 10), omega=st.floats(-20, 20), previous=st.floats(-LIMIT, LIMIT),
       effort=st.floats(0, 100), smooth=st.floats(0, 100), temperature=st.floats(1e-3, 10),
       rate=st.floats(0.05, 2.0), seed=st.integers(0, 2**31 - 1), update=st.sampled_from(['applied', 'sampled']))
def test_command_within_limits_and_rate(theta, omega, previous, effort, smooth, temperature, rate, seed, update):
    p = Pendulum()
    critics = swing_up_critics(p, effort) + [SmoothnessCritic(smooth, scale=LIMIT)]
    opt, _ = make(p, critics, num_samples=32, horizon=8, temperature=temperature, max_action_rate=rate, seed=seed,
                  iterations=2, smoothing='savgol', update_perturbation=update)
    last = np.array([previous], np.float32)
    z = np.array([theta, omega], np.float32)
    for _ in range(3):
        result = opt.plan(z, previous_action=last)
        assert np.isfinite(result.command).all()
        assert abs(result.command[0]) <= LIMIT
        assert abs(result.command[0] - last[0]) <= rate * (1 + 1e-5) + 1e-6
        seq = np.concatenate([last, result.sequence[:, 0]])
        assert np.all(np.abs(np.diff(seq)) <= rate * (1 + 1e-5) + 1e-6)
        assert np.all(np.abs(result.sequence) <= LIMIT)
        last = result.command
        z = p.step(z, result.command).astype(np.float32)


def test_normalised_costs_make_the_plan_independent_of_the_overall_cost_scale():
    z0 = np.array([0.5, 0.0], np.float32)
    plans = {}
    for normalise in (False, True):
        for scale in (1.0, 1000.0):
            p = Pendulum()
            critics = swing_up_critics(p)
            for critic in critics:
                critic.weight *= scale
            opt, _ = make(p, critics, normalise_costs=normalise, temperature=0.3 if normalise else 0.05)
            results = [opt.plan(z0, shift=0) for _ in range(3)]
            plans[normalise, scale] = (np.stack([r.sequence for r in results]), results[-1].effective_samples)
    # Same seed, costs x1000: normalised weights are the same, so are the plans (to float rounding).
    np.testing.assert_allclose(plans[True, 1.0][0], plans[True, 1000.0][0], rtol=1e-4, atol=1e-4)
    assert plans[True, 1000.0][1] > 2.0                          # several samples still share the weight
    # Raw costs x1000: the softmin collapses onto the single best sample and the plan changes.
    assert plans[False, 1000.0][1] < 1.01
    assert not np.allclose(plans[False, 1.0][0], plans[False, 1000.0][0], atol=1e-3)


def test_normalise_costs_must_be_a_bool():
    with pytest.raises(SettingsError, match='normalise_costs'):
        MPPISettings(normalise_costs='yes')


# ---------------------------------------------------------------------------------------------- parallel workers
class ThreadRecordingPendulum(Pendulum):
    """The analytic pendulum, recording which thread rolled out how many samples (the real model underneath)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def __call__(self, z0, actions):
        self.seen.append((threading.get_ident(), actions.shape[0]))
        return super().__call__(z0, actions)


def test_workers_split_the_samples_over_threads_and_still_swing_up():
    p = ThreadRecordingPendulum()
    opt, _ = make(p, workers=2)
    x = np.zeros(2)
    errors = []
    for _ in range(240):
        result = opt.plan(x.astype(np.float32))
        assert result.valid and abs(result.command[0]) <= LIMIT
        x = p.step(x, result.command)
        errors.append(abs(angle_error(x[0])))
    opt.close()
    threads = {ident for ident, _ in p.seen}
    assert len(threads) == 2 and threading.get_ident() in threads
    assert sorted({n for _, n in p.seen}) == [128]  # two chunks of 256 / 2
    assert max(errors[-40:]) < 0.2


def test_workers_are_deterministic_and_their_plan_matches_one_worker():
    z0 = np.array([0.5, 0.0], np.float32)
    plans = []
    for workers in (2, 2, 1):
        opt, _ = make(workers=workers, num_samples=2048)
        for _ in range(6):
            result = opt.plan(z0, shift=0)
        plans.append(result)
        opt.close()
    np.testing.assert_array_equal(plans[0].sequence, plans[1].sequence)
    assert not np.array_equal(plans[0].sequence, plans[2].sequence)  # other noise streams...
    # ...but the same optimum: with many samples both plans cost about the same.
    opt, _ = make()
    cost_2, cost_1 = (opt.evaluate(z0, r.sequence[None])[0] for r in plans[1:])
    assert cost_2 == pytest.approx(cost_1, rel=0.05)
    assert plans[0].predicted_observations.shape == plans[2].predicted_observations.shape


class FailingInWorker(Pendulum):
    """Raises in the worker thread's chunk only (not on the calling thread)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.caller = threading.get_ident()
        self.fail = True

    def __call__(self, z0, actions):
        if self.fail and threading.get_ident() != self.caller:
            raise RuntimeError('model failed in a worker')
        return super().__call__(z0, actions)


def test_an_exception_in_a_worker_propagates_and_the_optimizer_stays_usable():
    p = FailingInWorker()
    opt, _ = make(p, workers=2)
    z0 = np.array([0.2, 0.0], np.float32)
    with pytest.raises(RuntimeError, match='in a worker'):
        opt.plan(z0)
    p.fail = False
    assert opt.plan(z0).valid
    opt.close()
    assert opt.plan(z0).valid  # close() then plan: the pool restarts
    opt.close()


def test_partial_nan_with_workers_weighs_only_finite_samples():
    p = Pendulum(valid_speed=2.0)
    opt, _ = make(p, noise_std=3.0, workers=3)
    z0 = np.array([0.0, 1.5], np.float32)
    for _ in range(5):
        result = opt.plan(z0, shift=0)
        assert result.valid and 0.0 < result.finite_fraction < 1.0
        assert np.isfinite(result.predicted_observations).all()
    opt.close()
    assert np.isfinite(p(z0, result.sequence[None]).observations).all()


def test_changing_workers_at_run_time_keeps_the_warm_start():
    opt, _ = make()
    z0 = np.array([0.5, 0.0], np.float32)
    for _ in range(4):
        opt.plan(z0, shift=0)
    warm = opt.nominal
    opt.update_settings(opt.settings.replace(workers=4))
    np.testing.assert_array_equal(opt.nominal, warm)
    assert opt.plan(z0, shift=0).valid
    opt.update_settings(opt.settings.replace(workers=1))
    assert opt.plan(z0, shift=0).valid
    opt.close()


def test_workers_must_be_in_range():
    with pytest.raises(SettingsError, match='workers'):
        MPPISettings(workers=0)
    with pytest.raises(SettingsError, match='workers'):
        MPPISettings(num_samples=4, workers=8)


def test_committed_steps_keep_the_warm_start_and_the_rest_is_optimised():
    opt, _ = make(horizon=8, iterations=1, smoothing='savgol', smoothing_window=5)
    z0 = np.array([0.4, 0.0], np.float32)
    opt.plan(z0)
    warm = opt.nominal
    result = opt.plan(z0, shift=1, committed=3)
    np.testing.assert_array_equal(result.sequence[:3], warm[1:4])   # shifted by one, then kept (smoothing too)
    assert not np.allclose(result.sequence[3:], np.concatenate([warm[4:], warm[-1:]]))
    np.testing.assert_array_equal(result.command, warm[1])


def test_first_plan_commits_the_command_in_force_and_never_all_steps():
    opt, _ = make(horizon=6, iterations=1)
    result = opt.plan(np.array([0.4, 0.0], np.float32), previous_action=np.array([1.25]), committed=2)
    np.testing.assert_array_equal(result.sequence[:2, 0], [1.25, 1.25])
    result = opt.plan(np.array([0.4, 0.0], np.float32), shift=0, committed=50)   # clipped to horizon - 1
    assert result.valid and result.sequence.shape == (6, 1)
    with pytest.raises(ValueError, match='committed'):
        opt.plan(np.array([0.4, 0.0], np.float32), committed=-1)


def _final_error_with_delay(delay: int, committed: int, seed: int) -> float:
    """Swing up with every command reaching the pendulum ``delay`` steps after the state it was planned from.

    What arrives is the plan's step ``delay`` (time-indexed playback, as mpc_node plays plans from their state's
    stamp); steps before it are what the earlier plans sent meanwhile.
    """
    opt, p = make(seed=seed)
    x, applied = np.zeros(2), np.zeros(1)
    in_flight = [np.zeros(1)] * delay
    errors = []
    for _ in range(240):
        result = opt.plan(x.astype(np.float32), previous_action=applied, committed=committed)
        in_flight.append(result.sequence[delay].copy())
        applied = in_flight.pop(0)
        x = p.step(x, applied)
        errors.append(abs(angle_error(x[0])))
    return max(errors[-40:])


def test_committing_the_in_flight_steps_compensates_a_long_delay():
    # 5 steps = 0.25 s: planning as if the plan took effect at once leaves the pendulum wobbling around upright
    compensated = [_final_error_with_delay(5, 5, seed) for seed in (0, 1)]
    uncompensated = [_final_error_with_delay(5, 0, seed) for seed in (0, 1)]
    assert max(compensated) < 0.06
    assert min(uncompensated) > 2 * max(compensated)
