"""mpc_node with ``pd_residual`` and ``safe_hold: nominal_hold`` over real DDS (the humanoid's settings in hamwm.yaml).

The plan is a bounded correction to the PD hold of the nominal posture: effort commands are that PD hold at the
newest joint state plus the correction, trajectory commands are one point at time 0 at nominal + correction / kp
(the driver's own PD then commands the same), and a safe hold publishes no effort but the nominal posture for the
driver to hold. The world model is the analytic pendulum of ``test_mpc_node`` run by onnxruntime, rolled out by two
MPPI workers (the PD offset is shared, each worker builds its own model input).
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from sensor_msgs.msg import JointState
from test_mpc_node import DT, injected_mpc, write_pendulum_model
from trajectory_msgs.msg import JointTrajectory

pytestmark = pytest.mark.ros

KP, KD, FRACTION, LIMIT = 4.0, 0.5, 0.2, 5.0      # fallback gains, correction bound, the pendulum's effort limit
TRAJECTORY = '/joint_trajectory_controller/joint_trajectory'
FEEDFORWARD = '/hamwm/mpc/feedforward'    # the correction in force, for the monitor of a feed-forward model


@pytest.fixture(scope='module')
def residual(tmp_path_factory):
    model = write_pendulum_model(tmp_path_factory.mktemp('residual') / 'pendulum')
    yield from injected_mpc({'model_dir': str(model), 'autostart': True, 'control_rate': 100.0, 'planner_rate': 10.0,
                             'mppi.num_samples': 64, 'joint_state_timeout': 0.25, 'recovery_time': 0.1,
                             'max_plan_age': 0.5, 'pd_residual': True, 'pd_residual_fraction': FRACTION,
                             'fallback_kp': [KP], 'fallback_kd': [KD], 'command_interface': 'both',
                             'safe_hold': 'nominal_hold', 'goal_position': [0.6], 'mppi.workers': 2},
                            topics={TRAJECTORY: JointTrajectory, FEEDFORWARD: JointState})


def test_commands_are_the_pd_hold_plus_a_bounded_correction(residual):
    mpc, injector = residual
    injector.set(position=(0.3,), velocity=(0.0,))
    mode = mpc.wait_mode('PLANNING')
    assert 'on the PD hold' in mode, mode
    time.sleep(0.5)
    efforts = mpc.commands_after(1.0)[:, 0]
    pd_hold = KP * (0.0 - 0.3)                    # nominal posture 0 (hanging), the injected state at rest
    assert efforts.size > 20
    assert np.all(np.abs(efforts - pd_hold) <= FRACTION * LIMIT + 1e-6), efforts
    # The goal (0.6 rad) lies above the state: the correction pushes up, against the PD hold's pull to 0.
    assert np.median(efforts) > pd_hold + 0.1 * FRACTION * LIMIT, (np.median(efforts), pd_hold)
    planned = [m for m in mpc.probe.recent(TRAJECTORY) if len(m.points) == 1 and m.points[0].positions[0] != 0.0]
    assert planned, 'no planned target on the trajectory interface'
    for msg in planned[-5:]:
        point = msg.points[0]
        assert point.time_from_start.sec == 0 and point.time_from_start.nanosec == 0   # a step target
        assert list(msg.joint_names) == ['hinge'] and list(point.velocities) == [0.0]
        assert 0.0 < point.positions[0] <= FRACTION * LIMIT / KP + 1e-9     # nominal + correction / kp, pushing up
    feedforward = [m for m in mpc.probe.recent(FEEDFORWARD) if any(m.effort)]
    assert feedforward, 'no correction published on ' + FEEDFORWARD
    corrections = np.array([m.effort[0] for m in feedforward[-10:]])
    assert all(list(m.name) == ['hinge'] and m.header.stamp.sec + m.header.stamp.nanosec > 0 for m in feedforward)
    assert np.all(np.abs(corrections) <= FRACTION * LIMIT + 1e-6) and np.median(corrections) > 0.0, corrections
    assert mpc.diagnostics()['mode'] == 'PLANNING'


def test_safe_hold_publishes_no_effort_and_the_nominal_posture_for_the_driver(residual):
    mpc, injector = residual
    injector.set(position=(0.3,), velocity=(0.0,))
    mpc.wait_mode('PLANNING')
    mpc.mark = mpc.probe.seq('/hamwm/mpc/mode')
    holds_before = mpc.probe.seq(TRAJECTORY)
    injector.fields = {}                           # the joint states stop: the watchdog holds
    ff_before = mpc.probe.seq(FEEDFORWARD)
    hold = mpc.wait_mode('SAFE_HOLD')
    assert 'stale' in hold, hold
    zero = mpc.probe.wait_for(FEEDFORWARD, lambda m: list(m.effort) == [0.0], timeout=5.0, after=ff_before)
    assert zero is not None, 'leaving PLANNING publishes a zero correction'
    time.sleep(0.1)
    assert mpc.commands_after(0.6).shape[0] == 0, 'effort was published during the safe hold'
    new = mpc.probe.recent(TRAJECTORY)[-(mpc.probe.seq(TRAJECTORY) - holds_before):]
    nominal = [m for m in new if len(m.points) == 1 and m.points[0].positions[0] == 0.0
               and m.points[0].time_from_start.sec == 0 and m.points[0].time_from_start.nanosec == 0]
    assert nominal, [list(m.points[0].positions) for m in new if m.points]
    assert int(mpc.diagnostics()['driver_holds']) >= 1
    injector.set(position=(0.3,), velocity=(0.0,))  # fresh data again: planning and efforts resume
    mpc.wait_mode('PLANNING')
    assert mpc.commands_after(0.5).shape[0] > 0


def test_a_switch_to_the_fallback_fades_the_correction_out_over_handover_time(residual):
    mpc, injector = residual
    # the fixture's settings, also when a failed first attempt left its own (a rerun shares the node)
    assert all(r.successful for r in mpc.set(handover_time=0.0, planner_rate=10.0, max_plan_age=0.5))
    injector.set(position=(0.3,), velocity=(0.0,))
    mpc.wait_settled('PLANNING')
    assert all(r.successful for r in mpc.set(handover_time=0.5))
    time.sleep(0.5)
    pd_hold = KP * (0.0 - 0.3)                    # the injected state stays put: the PD hold is constant
    commands_before = mpc.probe.seq('/effort_controller/commands')
    ff_before = mpc.probe.seq(FEEDFORWARD)
    trajectories_before = mpc.probe.seq(TRAJECTORY)
    assert all(r.successful for r in mpc.set(max_plan_age=0.001))     # every plan is late from the next tick on
    mpc.wait_mode('FALLBACK', contains='late')
    ff_fading = mpc.probe.seq(FEEDFORWARD)        # from here only the hand-over publishes the correction
    time.sleep(1.2)
    new = mpc.probe.seq('/effort_controller/commands') - commands_before
    corrections = np.array([m.data[0] for m in mpc.probe.recent('/effort_controller/commands')[-new:]]) - pd_hold
    zero = np.flatnonzero(np.abs(corrections) > 1e-12)
    assert zero.size and zero[-1] < corrections.size - 10, corrections   # the hold alone at the end
    fade = corrections[:zero[-1] + 1][-20:]
    # A step would go from a plan's correction (held for its 20 ms steps) straight to 0; the hand-over falls
    # tick by tick, from at most the bound, over 0.5 s (about 50 ticks at 100 Hz). A late control tick repeats
    # the previous command once (the relay republishes it) and the next one falls two steps: never a rise.
    assert np.all(fade > 0.0) and np.all(np.diff(fade) <= 0.0) and fade[0] <= FRACTION * LIMIT + 1e-9, fade
    assert np.unique(fade).size >= 15, fade
    fading = mpc.probe.seq(FEEDFORWARD) - ff_fading
    assert fading > 0 and ff_fading >= ff_before
    messages = mpc.probe.recent(FEEDFORWARD)[-fading:]
    feedforward = [m.effort[0] for m in messages]
    assert feedforward[-1] == 0.0, feedforward
    # The applied correction while it fades, once per model step (DT, every second tick here), not every tick:
    # about 25 over the 0.5 s; the last (zero) when the hand-over ends.
    stamps = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in messages[:-1]])
    assert 12 <= len(feedforward) <= 0.5 / DT + 4, feedforward
    assert np.all(np.diff(stamps) >= 0.8 * DT), np.diff(stamps)
    assert np.all(np.diff(feedforward[:-1]) <= 0.0) and np.unique(feedforward).size >= 10, feedforward
    assert int(mpc.diagnostics()['handover_ticks']) >= 20
    # Over the trajectory interface the target moves the same way: from nominal + correction / kp to nominal over
    # handover_time (two points, zero velocities), not in a step.
    new = mpc.probe.seq(TRAJECTORY) - trajectories_before
    ramps = [m for m in mpc.probe.recent(TRAJECTORY)[-new:] if len(m.points) == 2]
    assert len(ramps) == 1, [len(m.points) for m in mpc.probe.recent(TRAJECTORY)[-new:]]
    start, end = ramps[0].points
    assert (start.time_from_start.sec, start.time_from_start.nanosec) == (0, 0)
    assert (end.time_from_start.sec, end.time_from_start.nanosec) == (0, 500_000_000)
    assert list(end.positions) == [0.0] and list(start.velocities) == list(end.velocities) == [0.0]
    assert 0.0 < abs(start.positions[0]) <= FRACTION * LIMIT / KP + 1e-9, start.positions
    # Plans at 2 Hz that age past max_plan_age after 0.3 s: each new plan ends a fallback. Over the trajectory
    # interface it goes out as a ramp from the target in force to its own over handover_time, never as a step.
    assert all(r.successful for r in mpc.set(handover_time=0.2, planner_rate=2.0, max_plan_age=0.3))
    trajectories_before = mpc.probe.seq(TRAJECTORY)
    time.sleep(3.0)
    new = mpc.probe.seq(TRAJECTORY) - trajectories_before
    messages = mpc.probe.recent(TRAJECTORY)[-new:]
    ramps_in = [m for m in messages if len(m.points) == 2 and m.points[1].positions[0] != 0.0]
    assert len(ramps_in) >= 3, [[p.positions[0] for p in m.points] for m in messages]
    for msg in ramps_in:
        start, end = msg.points
        assert (end.time_from_start.sec, end.time_from_start.nanosec) == (0, 200_000_000)
        assert abs(start.positions[0]) < abs(end.positions[0]) <= FRACTION * LIMIT / KP + 1e-9
    # Before the first ramp the old plan may end the fallback itself (the next plan then finds PLANNING and sends a
    # blended target); from it on, every plan ends a fallback: no target of a plan's full correction in one point.
    first = messages.index(ramps_in[0])
    steps = [m.points[0].positions[0] for m in messages[first:]
             if len(m.points) == 1 and m.points[0].positions[0] != 0.0]
    assert not steps, steps
    assert all(r.successful for r in mpc.set(handover_time=0.0, planner_rate=10.0, max_plan_age=0.5))
    mpc.wait_mode('PLANNING')


def test_a_stalled_node_leaves_the_driver_holding_no_zero_effort_from_the_relay(residual):
    # safe_hold nominal_hold: zero effort is not this robot's safe hold (a humanoid would fall limp), so while the
    # node's process is stopped its relay goes quiet (the driver holds) instead of publishing zeros
    mpc, injector = residual
    injector.set(position=(0.3,), velocity=(0.0,))
    mpc.wait_settled('PLANNING')
    deadline = time.monotonic() + 20.0
    while int(mpc.diagnostics().get('relay_commands_published', 0)) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mpc.commands_after(0.3).shape[0] > 0
    before = mpc.probe.seq('/effort_controller/commands')
    mpc.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(0.3)
        during = mpc.probe.seq('/effort_controller/commands') - before
    finally:
        mpc.process.send_signal(signal.SIGCONT)
    assert during <= 4, during              # the last command for up to 2.5 periods (100 Hz), then nothing
    mpc.wait_settled('PLANNING')
    assert int(mpc.diagnostics()['relay_stale_holds']) == 0


def test_feedback_around_the_plan_is_refused_where_the_pd_hold_feeds_back(residual):
    mpc, _ = residual
    refused = mpc.set(plan_feedback__kp=[5.0])[0]
    assert not refused.successful and 'plan_feedback needs pd_residual false' in refused.reason
    assert list(mpc.get('plan_feedback.kp')) == [0.0]           # the old gains kept
