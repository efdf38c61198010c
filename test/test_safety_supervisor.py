"""Supervisor: the per-tick decision (mode and command) over real watchdog, guards, e-stop and fallback."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from hamwm_ros.mpc.fallback import PDHoldFallback
from hamwm_ros.safety import JointLimits, Mode, Plan, PlanFeedback, Supervisor, SupervisorConfig
from hamwm_ros.sim import robot_urdf_path

MS = 1.0 / 1024                  # dyadic times: exact float arithmetic
PERIOD = 2 * MS                  # control period
NAMES = ['cart_slider', 'pole_hinge']


def make(**config) -> Supervisor:
    limits = JointLimits.from_urdf(robot_urdf_path('cartpole'))
    fallback = PDHoldFallback([0.0, 0.0], kp=40.0, kd=8.0, effort_limits=np.maximum(limits.effort, 1e-9))
    defaults = {'joint_state_timeout': 8 * MS, 'recovery_time': 16 * MS, 'max_plan_age': 64 * MS}
    return Supervisor(limits, fallback, SupervisorConfig(**{**defaults, **config}))


def feed(sup: Supervisor, t: float, q=(0.1, 0.0), v=(0.0, 0.0), names=NAMES, stamp=None):
    return sup.on_joint_state(names, list(q), list(v), [], 100.0 + t if stamp is None else stamp, 100.0 + t, t)


def run_until_healthy(sup: Supervisor, t: float = 0.0) -> float:
    for _ in range(20):
        feed(sup, t)
        sup.tick(t)
        t += PERIOD
    return t


def test_no_command_before_fresh_state_then_fallback():
    sup = make()
    assert sup.tick(0.0).mode is Mode.INACTIVE
    sup.activate(0.0)
    result = sup.tick(0.0)
    assert result.mode is Mode.WAITING_FOR_STATE and 'no joint states' in result.reason
    assert np.all(result.command == 0.0)
    t = 0.0
    while t < 16 * MS:                          # data, but not yet for the recovery time
        feed(sup, t)
        result = sup.tick(t)
        assert result.mode is Mode.WAITING_FOR_STATE and np.all(result.command == 0.0)
        t += PERIOD
    feed(sup, t)
    result = sup.tick(t)
    assert result.mode is Mode.FALLBACK and 'no plan yet' in result.reason
    assert result.command[0] == pytest.approx(-4.0) and result.command[1] == 0.0   # PD on the cart; pole passive


def test_stale_state_gives_safe_hold_on_the_first_tick_past_the_timeout():
    sup = make()
    sup.activate(0.0)
    t = run_until_healthy(sup)
    last = t - PERIOD                           # last receipt
    assert sup.tick(last + 8 * MS).mode is Mode.FALLBACK     # at the timeout: still fresh
    result = sup.tick(last + 8 * MS + PERIOD)               # the next tick: hold
    assert result.mode is Mode.SAFE_HOLD and 'stale' in result.reason and np.all(result.command == 0.0)
    assert result.transition is not None and result.transition.previous is Mode.FALLBACK
    assert sup.stats.stale_holds == 1 and 0 < sup.stats.stale_to_hold_max <= PERIOD
    t = last + 20 * MS
    feed(sup, t)                                # one fresh message does not release the latch
    assert sup.tick(t).mode is Mode.SAFE_HOLD
    t = run_until_healthy(sup, t + PERIOD)
    assert sup.tick(t - PERIOD).mode is Mode.FALLBACK


@pytest.mark.parametrize(('stamp_offset', 'kind'), [(-1.0, 'old_stamp'), (1.0, 'future_stamp')])
def test_badly_stamped_messages_never_count_as_fresh(stamp_offset, kind):
    sup = make()
    sup.activate(0.0)
    t = 0.0
    for _ in range(40):
        verdict = feed(sup, t, stamp=100.0 + t + stamp_offset)
        assert not verdict.ok and verdict.kind == kind
        assert sup.tick(t).mode is Mode.WAITING_FOR_STATE
        t += PERIOD
    assert sup.stats.rejected[kind] == 40 and sup.latest_state() is None


def test_zero_stamps_follow_the_policy():
    sup = make(zero_stamp='accept')
    sup.activate(0.0)
    verdict = feed(sup, 0.0, stamp=0.0)
    assert verdict.ok and verdict.kind == 'zero_stamp'
    sup = make()
    sup.activate(0.0)
    assert not feed(sup, 0.0, stamp=0.0).ok


def test_position_fault_holds_until_valid_data_for_the_recovery_time():
    sup = make()
    sup.activate(0.0)
    t = run_until_healthy(sup)
    verdict = feed(sup, t, q=(2.5, 0.0))        # cart beyond its 2 m rail
    assert verdict.fault and verdict.kind == 'position_limit'
    result = sup.tick(t)
    assert result.mode is Mode.SAFE_HOLD and 'cart_slider=2.5' in result.reason
    t = run_until_healthy(sup, t + PERIOD)
    assert sup.tick(t - PERIOD).mode is Mode.FALLBACK


def test_a_swing_up_pole_that_turned_over_is_no_position_fault():
    limits = JointLimits.from_urdf(robot_urdf_path('cartpole'))
    fallback = PDHoldFallback([0.0, 0.0], kp=40.0, kd=8.0, effort_limits=np.maximum(limits.effort, 1e-9))
    config = SupervisorConfig(joint_state_timeout=8 * MS, recovery_time=16 * MS, max_plan_age=64 * MS)
    pole = limits.names.index('pole_hinge')
    beyond = (0.1, limits.position[pole, 0] - 0.5)              # the pole past its URDF range (two turns)
    sup = Supervisor(limits, fallback, config, free_turning=[pole])
    sup.activate(0.0)
    t = run_until_healthy(sup)
    assert feed(sup, t, q=beyond).ok
    held = make()                                                # without it: a fault and a safe hold
    held.activate(0.0)
    verdict = feed(held, run_until_healthy(held), q=beyond)
    assert verdict.fault and verdict.kind == 'position_limit' and 'pole_hinge' in verdict.reason


def test_persistent_nan_input_gives_safe_hold():
    sup = make(max_consecutive_rejections=3)
    sup.activate(0.0)
    t = run_until_healthy(sup)
    for _ in range(3):
        feed(sup, t, q=(math.nan, 0.0))
        t += PERIOD
    result = sup.tick(t)
    assert result.mode is Mode.SAFE_HOLD and 'not finite' in result.reason


def test_plan_is_followed_interpolated_and_dropped_when_late_or_overrunning():
    sup = make(overrun_limit=2)
    sup.activate(0.0)
    t = run_until_healthy(sup)
    plan = Plan(np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]]), start=t, dt=4 * MS)
    assert sup.on_plan(plan)
    feed(sup, t)
    result = sup.tick(t + 2 * MS)
    assert result.mode is Mode.PLANNING and result.command[0] == pytest.approx(2.0)
    sup.on_planner_iteration(0.05, 0.02)
    sup.on_planner_iteration(0.05, 0.02)
    feed(sup, t + 2 * MS)
    result = sup.tick(t + 4 * MS)
    assert result.mode is Mode.FALLBACK and 'overran' in result.reason
    sup.on_planner_iteration(0.001, 0.02)
    for k in range(3, 80):                      # keep the state fresh; the plan grows old
        feed(sup, t + 2 * k * MS)
        result = sup.tick(t + 2 * k * MS)
    assert result.mode is Mode.FALLBACK and ('late' in result.reason or 'expired' in result.reason)


def test_plan_on_fallback_adds_the_pd_hold_at_every_tick():
    sup = make(plan_on_fallback=True)
    sup.activate(0.0)
    t = run_until_healthy(sup)                 # the state: cart at 0.1 m, at rest -> PD hold -4 N on the cart
    assert sup.on_plan(Plan(np.array([[1.0, 0.0], [3.0, 0.0]]), start=t, dt=4 * MS))
    feed(sup, t, q=(0.1, 0.0))
    result = sup.tick(t + 2 * MS)
    assert result.mode is Mode.PLANNING and 'on the PD hold' in result.reason
    assert result.command[0] == pytest.approx(2.0 - 4.0)
    feed(sup, t + 2 * MS, q=(-0.05, 0.0), v=(0.5, 0.0))   # the PD part follows the newest state between plans
    result = sup.tick(t + 2 * MS)
    assert result.command[0] == pytest.approx(2.0 + 40.0 * 0.05 - 8.0 * 0.5)
    sup.update_config(sup.replace_config(plan_on_fallback=False))
    assert sup.tick(t + 2 * MS).command[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match='plan_on_fallback'):
        sup.replace_config(plan_on_fallback=1)


def test_plan_feedback_adds_pd_on_the_deviation_from_the_predicted_state():
    sup = make()
    sup.activate(0.0)
    t = run_until_healthy(sup)
    # the plan predicts the cart at 0.1 m moving to 0.2 m over one step of 4 ms, at 25 m/s
    states = np.array([[0.1, 0.0, 25.0, 0.0], [0.2, 0.0, 25.0, 0.0]])
    plan = Plan(np.array([[1.0, 0.0], [1.0, 0.0]]), start=t, dt=4 * MS, hold=True, states=states)
    assert sup.on_plan(plan)
    feed(sup, t, q=(0.1, 0.0), v=(0.0, 0.0))
    assert sup.tick(t + 2 * MS).command[0] == pytest.approx(1.0)            # no feedback set: the plan alone
    sup.set_plan_feedback(PlanFeedback([20.0, 20.0], [0.1, 0.1]))
    result = sup.tick(t + 2 * MS)             # predicted 0.15 m at 25 m/s, measured 0.1 m at rest
    assert result.mode is Mode.PLANNING and 'with feedback' in result.reason
    assert result.command[0] == pytest.approx(1.0 + 20.0 * 0.05 + 0.1 * 25.0)
    assert result.command[1] == 0.0                                         # the passive pole stays at zero
    assert sup.stats.feedback_ticks == 1 and sup.stats.feedback_effort_max == pytest.approx(3.5)
    # a plan without predictions goes out alone; zero gains switch the feedback off
    assert sup.on_plan(Plan(np.array([[1.0, 0.0], [1.0, 0.0]]), start=t + 2 * MS, dt=4 * MS, hold=True))
    assert sup.tick(t + 2 * MS).command[0] == pytest.approx(1.0)
    assert sup.on_plan(plan)
    sup.set_plan_feedback(PlanFeedback([0.0, 0.0], [0.0, 0.0]))
    assert sup.tick(t + 2 * MS).command[0] == pytest.approx(1.0)
    # with the PD hold under the plan (plan_on_fallback) the hold is the feedback: none added
    sup.set_plan_feedback(PlanFeedback([20.0, 20.0], [0.1, 0.1]))
    sup.update_config(sup.replace_config(plan_on_fallback=True))
    assert sup.tick(t + 2 * MS).command[0] == pytest.approx(1.0 - 4.0)
    with pytest.raises(ValueError, match='gains for 1 joints'):
        sup.set_plan_feedback(PlanFeedback([1.0], [1.0]))


def test_switches_between_plan_and_fallback_hand_over_linearly():
    sup = make(plan_on_fallback=True, overrun_limit=1, handover_time=8 * MS)
    sup.activate(0.0)
    t = run_until_healthy(sup)                 # cart at 0.1 m, at rest: the PD hold alone is -4 N
    assert sup.on_plan(Plan(np.full((40, 2), [1.0, 0.0]), start=t, dt=4 * MS))
    feed(sup, t)
    result = sup.tick(t)                       # from the start-up fallback to the first plan: it fades in
    assert result.mode is Mode.PLANNING and result.command[0] == pytest.approx(-4.0)
    assert result.handover == pytest.approx([-1.0, 0.0]) and result.correction == pytest.approx([0.0, 0.0])
    t += 8 * MS
    feed(sup, t)
    result = sup.tick(t)
    assert result.mode is Mode.PLANNING and result.command[0] == pytest.approx(-3.0)
    assert result.handover is None and result.correction == pytest.approx([1.0, 0.0])
    sup.on_planner_iteration(0.05, 0.02)       # one overrun trips the fallback
    expected = {0: -3.0, 2: -3.5, 4: -4.0}     # ticks after the switch: the plan's 1 N fades over 8 ms
    handovers = sup.stats.handover_ticks
    for k in range(5):
        feed(sup, t + k * MS)
        result = sup.tick(t + (k + 1) * 2 * MS)
        assert result.mode is Mode.FALLBACK
        if k in expected:
            assert result.command[0] == pytest.approx(expected[k])
    assert result.handover is None and result.correction == pytest.approx([0.0, 0.0])
    assert sup.stats.handover_ticks == handovers + 4
    sup.on_planner_iteration(0.001, 0.02)      # on time again: back to the plan, the correction fades in
    now = t + 12 * MS
    feed(sup, now)
    result = sup.tick(now)
    assert result.mode is Mode.PLANNING and result.command[0] == pytest.approx(-4.0)
    assert result.correction == pytest.approx([0.0, 0.0])
    result = sup.tick(now + 4 * MS)
    assert result.command[0] == pytest.approx(-3.5) and result.correction == pytest.approx([0.5, 0.0])
    assert sup.tick(now + 8 * MS).command[0] == pytest.approx(-3.0)


def test_without_a_handover_time_the_fallback_takes_over_at_once_and_holds_never_blend():
    sup = make(plan_on_fallback=True, overrun_limit=1)
    sup.activate(0.0)
    t = run_until_healthy(sup)
    sup.on_plan(Plan(np.full((40, 2), [1.0, 0.0]), start=t, dt=4 * MS))
    feed(sup, t)
    assert sup.tick(t).command[0] == pytest.approx(-3.0)
    sup.on_planner_iteration(0.05, 0.02)
    result = sup.tick(t + PERIOD)
    assert result.mode is Mode.FALLBACK and result.command[0] == pytest.approx(-4.0) and result.handover is None
    assert not sup.plan_fades_in                                      # no hand-over time: a new plan steps in
    sup.update_config(sup.replace_config(handover_time=8 * MS))
    assert sup.plan_fades_in                                          # now a plan ending this fallback fades in
    sup.on_planner_iteration(0.001, 0.02)
    assert sup.tick(t + 2 * PERIOD).handover is not None             # back to the plan: blending in
    sup.trigger_estop('operator', t)
    result = sup.tick(t + 3 * PERIOD)
    assert result.mode is Mode.ESTOP and np.all(result.command == 0.0) and result.handover is None
    assert not sup.handing_over                                       # an e-stop ends a blend at once
    with pytest.raises(ValueError, match='duration'):
        sup.replace_config(handover_time=-1.0)


def test_a_plan_already_late_when_taken_may_not_go_out_as_a_trajectory():
    sup = make()                               # max_plan_age 64 ms
    sup.activate(0.0)
    t = run_until_healthy(sup)
    assert sup.on_plan(Plan(np.full((64, 2), [1.0, 0.0]), start=t, dt=4 * MS))
    assert sup.trajectory_allowed(t + 8 * MS, plan_start=t) and sup.trajectory_allowed(t + 8 * MS)
    assert not sup.trajectory_allowed(t + 80 * MS, plan_start=t)     # the next tick refuses it: late
    for k in range(0, 82, 2):                  # fresh states meanwhile: only the plan grows old
        feed(sup, t + k * MS)
        result = sup.tick(t + k * MS)
    assert result.mode is Mode.FALLBACK and 'late' in result.reason


def test_state_to_command_latency_is_recorded_once_per_plan():
    sup = make()
    sup.activate(0.0)
    t = run_until_healthy(sup)
    for k, delay in enumerate((3 * MS, 5 * MS)):
        start = t + 10 * k * MS
        feed(sup, start)
        assert sup.on_plan(Plan(np.ones((8, 2)), start=start, dt=4 * MS))
        for tick in range(3):                   # only the first tick that uses a plan counts
            feed(sup, start + delay + tick * MS)
            assert sup.tick(start + delay + tick * MS).mode is Mode.PLANNING
    assert list(sup.stats.state_to_command) == pytest.approx([3 * MS, 5 * MS])


@pytest.mark.parametrize('bad', [np.array([[math.nan, 0.0]]), np.array([[math.inf, 0.0], [0.0, 0.0]]),
                                 np.zeros((3, 5))])
def test_non_finite_or_misshaped_plans_never_reach_a_command(bad):
    sup = make()
    sup.activate(0.0)
    t = run_until_healthy(sup)
    assert not sup.on_plan(Plan(bad, start=t, dt=4 * MS))
    result = sup.tick(t)
    assert result.mode is Mode.FALLBACK and np.all(np.isfinite(result.command))
    assert sup.stats.invalid_plans == 1
    assert not sup.on_plan(None, 'no finite rollout after 3 attempt(s)')
    assert 'no finite rollout' in sup.tick(t).reason


def test_estop_overrides_and_resets_only_when_safe():
    sup = make()
    sup.trigger_estop('pressed during configure', 0.0)   # before activation: latched all the same
    sup.activate(0.0)
    t = run_until_healthy(sup)
    sup.on_plan(Plan(np.full((40, 2), 5.0), start=t, dt=4 * MS))
    result = sup.tick(t)
    assert result.mode is Mode.ESTOP and np.all(result.command == 0.0) and 'configure' in result.reason
    released, message = sup.reset_estop(t + 50 * MS)      # joint states stale by then
    assert not released and 'stale' in message
    sup.take_reset_request()
    t = run_until_healthy(sup, t + 50 * MS)               # ticks meanwhile stay in ESTOP
    assert sup.tick(t - PERIOD).mode is Mode.ESTOP
    released, message = sup.reset_estop(t - PERIOD)
    assert released and sup.take_reset_request() and not sup.take_reset_request()
    result = sup.tick(t - PERIOD)                         # the old plan was dropped, and the hold says so
    assert result.mode is Mode.FALLBACK and result.reason.endswith(': no plan since the e-stop'), result.reason
    sup.trigger_estop('operator', t)
    assert sup.tick(t + PERIOD).mode is Mode.ESTOP


def test_deactivate_returns_a_zero_hold_and_stops_commanding():
    sup = make()
    sup.activate(0.0)
    t = run_until_healthy(sup)
    assert np.any(sup.tick(t - PERIOD).command != 0.0)
    hold = sup.deactivate(t)
    assert np.all(hold == 0.0) and sup.tick(t).mode is Mode.INACTIVE


def test_invalid_config_is_refused():
    sup = make()
    with pytest.raises(ValueError):
        sup.replace_config(joint_state_timeout=-1.0)
    with pytest.raises(ValueError):
        sup.replace_config(max_plan_age=math.nan)
    with pytest.raises(TypeError):
        sup.replace_config(no_such_setting=1)
    sup.update_config(sup.replace_config(joint_state_timeout=0.5, max_effort_delta=1.0))
    assert sup.watchdog.timeout == 0.5 and sup.command_guard.max_delta == 1.0


@settings(max_examples=150, deadline=None)
@given(states=st.lists(st.tuples(st.floats(-5, 5), st.floats(-50, 50), st.floats(allow_nan=True)),
                       min_size=1, max_size=40),
       plan_scale=st.floats(-1e4, 1e4), delta=st.floats(0.01, 50.0))
def test_every_tick_output_is_finite_within_limits_and_change_bounded(states, plan_scale, delta):
    sup = make(max_effort_delta=delta, recovery_time=0.0)
    sup.activate(0.0)
    limits = sup.limits.effort
    previous = np.zeros(2)
    t = 0.0
    for q, v, noise in states:
        feed(sup, t, q=(q, noise), v=(v, 0.0))
        sup.on_plan(Plan(np.array([[plan_scale, plan_scale], [-plan_scale, noise]]), start=t, dt=4 * MS))
        result = sup.tick(t)
        out = result.command
        assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= limits)
        if not result.mode.commands_zero:
            # A joint at a position or velocity limit may have its outward effort cut to zero at once (like the
            # safe hold, zero bypasses the rate bound); every other change is bounded.
            position, velocity, _ = sup.latest_state()          # the state the guard judged by
            lower, upper = sup.limits.position.T
            at_limit = (position >= upper) | (position <= lower) | (np.abs(velocity) >= sup.limits.velocity)
            bounded = np.abs(out - previous) <= delta * (1 + 1e-9)
            assert np.all(bounded | (at_limit & (out == 0.0)))
        previous = out
        t += PERIOD


names_strategy = st.lists(st.sampled_from(['cart_slider', 'pole_hinge', 'other', '']), max_size=4)
values_strategy = st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=5)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(st.tuples(names_strategy, values_strategy, values_strategy, values_strategy,
                                   st.floats(allow_nan=True, allow_infinity=True)), min_size=1, max_size=20))
def test_fuzzed_joint_states_never_raise_and_never_give_a_bad_command(messages):
    sup = make(recovery_time=0.0)
    sup.activate(0.0)
    t = 0.0
    for names, position, velocity, effort, stamp_offset in messages:
        verdict = sup.on_joint_state(names, position, velocity, effort, 100.0 + t + stamp_offset, 100.0 + t, t)
        assert verdict.ok or verdict.kind                 # every rejection is classified (and counted)
        if verdict.ok:
            assert np.all(np.isfinite(verdict.position)) and np.all(np.isfinite(verdict.velocity))
        out = sup.tick(t).command
        assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= sup.limits.effort)
        t += PERIOD
