"""World-model validity input and the outward-effort limit rule, alone and inside the supervisor."""

import math

import numpy as np
import pytest

from hamwm_ros.mpc.fallback import PDHoldFallback
from hamwm_ros.safety import (
    CommandGuard,
    JointLimits,
    Mode,
    ModelValidity,
    Plan,
    Supervisor,
    SupervisorConfig,
    clamp_trajectory,
    outward_effort_mask,
)
from hamwm_ros.safety.validity import ERROR, OK, STALE, WARN
from hamwm_ros.sim import robot_urdf_path

MS = 1.0 / 1024
PERIOD = 2 * MS
NAMES = ['cart_slider', 'pole_hinge']


def test_error_or_stale_must_persist_and_ok_or_warn_ends_it_at_once():
    validity = ModelValidity(invalid_time=0.5)
    assert validity.problem(0.0) is None                     # nothing heard: the monitor is optional
    validity.report(OK, 'fine', 0.0)
    assert validity.problem(0.1) is None
    validity.report(ERROR, 'prediction error 0.9', 1.0)
    assert validity.problem(1.25) is None                    # not yet for invalid_time
    validity.report(STALE, 'no joint states', 1.3)           # still bad: the clock keeps running from 1.0
    assert 'STALE: no joint states' in validity.problem(1.5)
    validity.report(WARN, 'drifting', 1.6)
    assert validity.problem(1.6) is None
    validity.report(7, 'garbage level', 2.0)                 # unknown levels count as ERROR
    assert validity.problem(2.5) is not None and 'ERROR' in validity.problem(2.5)


def test_a_silent_monitor_counts_as_stale_only_after_it_was_heard():
    validity = ModelValidity(invalid_time=0.0, report_timeout=1.0)
    assert validity.problem(100.0) is None
    validity.report(OK, '', 100.0)
    assert validity.problem(100.9) is None
    assert 'no report' in validity.problem(101.5)


@pytest.mark.parametrize('bad', [{'invalid_time': -1.0}, {'invalid_time': math.nan}, {'report_timeout': 0.0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ModelValidity(**bad)
    with pytest.raises(ValueError):
        SupervisorConfig(**{{'invalid_time': 'model_invalid_time', 'report_timeout': 'model_validity_timeout'}[k]: v
                            for k, v in bad.items()})


def make(**config) -> Supervisor:
    limits = JointLimits.from_urdf(robot_urdf_path('cartpole'))
    fallback = PDHoldFallback([0.0, 0.0], kp=40.0, kd=8.0, effort_limits=np.maximum(limits.effort, 1e-9))
    defaults = {'joint_state_timeout': 8 * MS, 'recovery_time': 16 * MS, 'max_plan_age': 64 * MS}
    return Supervisor(limits, fallback, SupervisorConfig(**{**defaults, **config}))


def feed(sup, t, q=(0.1, 0.0), v=(0.0, 0.0)):
    return sup.on_joint_state(NAMES, list(q), list(v), [], 100.0 + t, 100.0 + t, t)


def planning(sup, t=0.0, effort=1.0, q=(0.1, 0.0), v=(0.0, 0.0)):
    sup.activate(t)
    for _ in range(20):
        feed(sup, t, q, v)
        sup.on_plan(Plan(np.full((64, 2), [effort, 0.0]), start=t, dt=PERIOD))
        result = sup.tick(t)
        t += PERIOD
    return t, result


def test_model_error_switches_to_fallback_with_the_reason_and_back():
    sup = make(model_invalid_time=0.0)
    t, result = planning(sup)
    assert result.mode is Mode.PLANNING
    sup.on_model_validity(ERROR, 'prediction error 0.9 > 0.5', t)
    feed(sup, t)
    sup.on_plan(Plan(np.full((64, 2), [1.0, 0.0]), start=t, dt=PERIOD))
    assert not sup.trajectory_allowed(t)
    result = sup.tick(t)
    assert result.mode is Mode.FALLBACK and 'world model validity ERROR: prediction error 0.9' in result.reason
    assert result.transition is not None
    assert result.command[0] == pytest.approx(-4.0)          # the PD hold, not the plan's +1
    t += PERIOD
    sup.on_model_validity(OK, 'fine', t)
    feed(sup, t)
    sup.on_plan(Plan(np.full((64, 2), [1.0, 0.0]), start=t, dt=PERIOD))
    assert sup.trajectory_allowed(t)
    result = sup.tick(t)
    assert result.mode is Mode.PLANNING and result.command[0] == pytest.approx(1.0)


def test_outward_rule_table():
    limits = JointLimits(('a', 'b'), [[-1.0, 1.0], [-2.0, 2.0]], [3.0, 4.0], [10.0, 10.0])
    q = np.array([1.0, 0.0])
    v = np.array([0.0, 4.0])
    # a at its upper position limit; b at its +velocity limit: only positive efforts are cut, on both
    assert outward_effort_mask(np.array([5.0, 5.0]), q, v, limits).tolist() == [True, True]
    assert outward_effort_mask(np.array([-5.0, -5.0]), q, v, limits).tolist() == [False, False]
    assert outward_effort_mask(np.array([0.0, 0.0]), q, v, limits).tolist() == [False, False]
    below = np.array([-1.2, 0.0])                               # over the lower limit, slowly moving out
    assert outward_effort_mask(np.array([-1.0, 1.0]), below, np.array([-0.1, 0.0]), limits).tolist() == [True, False]
    inside = np.array([0.95, 0.0])
    assert not outward_effort_mask(np.array([5.0, 0.0]), inside, np.zeros(2), limits).any()
    assert outward_effort_mask(np.array([5.0, 0.0]), inside, np.zeros(2), limits, margin=0.1).tolist() == [True, False]
    assert outward_effort_mask(np.array([5.0, -5.0]), np.array([math.nan, 0.0]), np.zeros(2), limits)[0]

    guard = CommandGuard(limits.effort, joint_limits=limits)
    out = guard.apply([8.0, 20.0], q, np.zeros(2))
    assert out.tolist() == [0.0, 10.0] and guard.limit_cut == 1 and guard.clamped == 1
    assert guard.apply([-8.0, 0.0], q, np.zeros(2)).tolist() == [-8.0, 0.0]


def test_supervisor_cuts_outward_effort_at_the_limit_in_every_commanding_mode():
    sup = make()
    upper = sup.limits.position[0, 1]
    t, result = planning(sup, effort=3.0, q=(upper, 0.0))
    assert result.mode is Mode.PLANNING and result.command[0] == 0.0   # the plan pushes further out: cut
    assert sup.command_guard.limit_cut > 0
    t, result = planning(sup, effort=-3.0, q=(upper, 0.0))
    assert result.mode is Mode.PLANNING and result.command[0] == pytest.approx(-3.0)   # back inside: passes


def test_trajectory_clamp():
    limits = JointLimits(('a', 'b'), [[-1.0, 1.0], [-2.0, 2.0]], [3.0, 4.0], [10.0, 10.0])
    q, v = clamp_trajectory(np.array([[1.5, -3.0], [0.0, 0.0]]), np.array([[9.0, -9.0], [1.0, 1.0]]), limits)
    assert q.tolist() == [[1.0, -2.0], [0.0, 0.0]] and v.tolist() == [[3.0, -4.0], [1.0, 1.0]]
    assert clamp_trajectory(np.zeros((1, 2)), None, limits)[1] is None
