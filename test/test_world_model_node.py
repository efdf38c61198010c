"""world_model_node over real DDS: the node and sim_node (pendulum) run in their own processes, a probe listens here.

One node process for the whole module, driven through its lifecycle and parameter services like a lifecycle manager
would. The model is the shipped pendulum model when ``models/pendulum`` holds a valid one, else the linear
port-Hamiltonian reference model of the pendulum (hamwm_ros.monitor.reference), a real ONNX model either way.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_probe import sweep_parameters
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from hamwm_ros.monitor.reference import write_linear_model
from hamwm_ros.runtime import MetadataError, load_metadata
from hamwm_ros.sim.cli import SimProcess, TopicProbe

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parent.parent
NODE = '/world_model_node'
HORIZON = 20
TOPICS = {'/hamwm/latent': Float64MultiArray, '/hamwm/predicted_trajectory': JointTrajectory,
          '/hamwm/energy': Float64, '/hamwm/world_model/markers': MarkerArray, '/diagnostics': DiagnosticArray,
          '/joint_states': JointState}


def _pendulum_reference(directory: Path, dt: float = 0.01, horizon: int = 32) -> Path:
    # linearised about hanging down: inertia m l^2 + I_bob, stiffness m g l, no damping (the URDF has none)
    write_linear_model(directory, ['hinge'], mass=[1.001], stiffness=[9.81], damping=[0.0], dt=dt, horizon=horizon,
                       robot='pendulum', obs_std=[0.5, 2.0])
    return directory


def _shipped_pendulum() -> Path | None:
    directory = ROOT / 'models' / 'pendulum'
    try:
        load_metadata(directory, check_files=True)
    except MetadataError:
        return None
    return directory


def _seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def _our_status(msg: DiagnosticArray):
    return next((s for s in msg.status if s.name.startswith('world_model_node')), None)


class NodeProcess:
    """world_model_node in a subprocess (unconfigured), with lifecycle and parameter calls through ``probe``."""

    def __init__(self, probe: TopicProbe, parameters: dict, params_file: Path | None = None) -> None:
        self.probe = probe
        self._answered = False
        probe.forget_clients(f'{NODE}/')     # this process's services are new: no client matched to a previous one
        self._log = tempfile.NamedTemporaryFile(prefix='hamwm_wm_', suffix='.log', delete=False)  # noqa: SIM115
        command = [sys.executable, '-m', 'hamwm_ros.nodes.world_model_node', '--ros-args']
        if params_file is not None:    # first: the -p values below override it
            command += ['--params-file', str(params_file)]
        for name, value in parameters.items():
            command += ['-p', f'{name}:={value}']
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors='replace')

    def call(self, service_type, name: str, request, timeout: float = 20.0):
        try:
            if not self._answered:      # a request the new process surely gets comes first
                self.probe.reach_lifecycle_node(NODE, timeout)
                self._answered = True
            return self.probe.call(service_type, f'{NODE}/{name}', request, timeout)
        except TimeoutError as error:
            raise TimeoutError(f'{error}:\n{self.log()}') from None

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self.call(ChangeState, 'change_state', request).success

    def state(self) -> int:
        return self.call(GetState, 'get_state', GetState.Request()).current_state.id

    def set(self, **values):
        parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        request = SetParameters.Request(parameters=parameters)
        return list(self.call(SetParameters, 'set_parameters', request).results)

    def ensure_active(self, model_dir: Path) -> None:
        if self.state() == State.PRIMARY_STATE_ACTIVE:
            return
        if self.state() == State.PRIMARY_STATE_UNCONFIGURED:
            assert self.set(model_dir=str(model_dir))[0].successful
            assert self.transition(Transition.TRANSITION_CONFIGURE), self.log()
        assert self.transition(Transition.TRANSITION_ACTIVATE), self.log()

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        return self.process.returncode

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('wm_models')
    reference = _pendulum_reference(root / 'reference')
    primary = _shipped_pendulum() or reference
    other = _pendulum_reference(root / 'coarse', dt=0.02, horizon=16)   # a different model to hot-load
    corrupt = _pendulum_reference(root / 'corrupt')
    with open(corrupt / 'predictor.onnx', 'ab') as handle:
        handle.write(b'\0')
    feedforward = _pendulum_reference(root / 'feedforward')   # its input: a correction over a PD hold it includes
    meta = json.loads((feedforward / 'metadata.json').read_text())
    meta['action_source'] = 'feedforward'
    (feedforward / 'metadata.json').write_text(json.dumps(meta))
    return {'primary': primary, 'other': other, 'corrupt': corrupt, 'feedforward': feedforward,
            'missing': root / 'no_such_model'}


@pytest.fixture(scope='module')
def graph(models):
    sim = SimProcess('pendulum', {'camera_rate': 0.0}, params_file=False)
    probe = TopicProbe(TOPICS, name='wm_probe')
    node = NodeProcess(probe, {'model_dir': str(models['missing']), 'horizon': HORIZON, 'rate': 50.0,
                               'diagnostics_rate': 5.0, 'marker_rate': 5.0})
    try:
        if probe.wait_for('/joint_states', timeout=60.0) is None:
            raise RuntimeError(f'sim_node published no /joint_states:\n{sim.log()}')
        yield node
    finally:
        node.close()
        probe.close()
        sim.close()


def _next(probe: TopicProbe, topic: str, predicate=None, timeout: float = 15.0):
    msg = probe.wait_for(topic, predicate, timeout=timeout)
    assert msg is not None, f'nothing on {topic}'
    return msg


# ---------------------------------------------------------------------------------------------------- lifecycle
def test_configure_fails_with_a_reason_on_a_bad_model_dir(graph, models):
    assert graph.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert not graph.transition(Transition.TRANSITION_CONFIGURE)
    assert graph.state() == State.PRIMARY_STATE_UNCONFIGURED
    log = graph.log()
    assert 'configure failed' in log and 'does not exist' in log, log
    assert graph.set(model_dir=str(models['corrupt']))[0].successful      # unconfigured: checked at configure
    assert not graph.transition(Transition.TRANSITION_CONFIGURE)
    assert 'sha256' in graph.log()
    assert graph.probe.wait_for('/hamwm/latent', timeout=0.5) is None, 'an unconfigured node publishes nothing'


def test_active_node_publishes_finite_predictions(graph, models):
    graph.ensure_active(models['primary'])
    probe = graph.probe
    push = probe.node.create_publisher(WrenchStamped, '/sim/push', 10)
    deadline = time.monotonic() + 10.0
    while push.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    kick = WrenchStamped()
    kick.wrench.force.x = 5.0     # a small swing, so the predictions have something to get right
    push.publish(kick)

    trajectory = _next(probe, '/hamwm/predicted_trajectory')
    assert list(trajectory.joint_names) == ['hinge']
    assert len(trajectory.points) == HORIZON
    times = [_seconds(p.time_from_start) for p in trajectory.points]
    dt = load_metadata(models['primary']).dt
    assert times == pytest.approx([(k + 1) * dt for k in range(HORIZON)], abs=1e-6)
    assert all(b > a for a, b in zip(times, times[1:]))
    assert all(math.isfinite(x) for p in trajectory.points for x in (*p.positions, *p.velocities))
    assert trajectory.header.stamp.sec + trajectory.header.stamp.nanosec > 0, 'stamped with the joint-state time'

    latent = _next(probe, '/hamwm/latent')
    assert len(latent.data) == load_metadata(models['primary']).latent_dim
    assert all(math.isfinite(x) for x in latent.data)
    assert math.isfinite(_next(probe, '/hamwm/energy').data)

    markers = _next(probe, '/hamwm/world_model/markers')
    namespaces = {m.ns for m in markers.markers}
    assert {'predicted_joints', 'phase_portrait', 'status'} <= namespaces
    assert all(math.isfinite(p.z) for m in markers.markers for p in m.points)

    # the monitor has compared predictions with what happened (k steps of history needed first)
    diagnostics = _next(probe, '/diagnostics', lambda m: (s := _our_status(m)) is not None and any(
        kv.key == 'evaluations' and float(kv.value) > 0 for kv in s.values), timeout=20.0)
    status = _our_status(diagnostics)
    values = {kv.key: kv.value for kv in status.values}
    assert status.level in (b'\x00', b'\x01', b'\x02')
    assert status.message
    for key in ('prediction_error', 'hold_still_error', 'balance_error', 'passivity_violation', 'energy',
                'power_claimed', 'power_unforced', 'check_prediction', 'check_energy_balance', 'tick_ms_mean'):
        assert key in values, key
    assert math.isfinite(float(values['prediction_error']))
    if models['primary'].name == 'reference':   # the linearised pendulum is right about the real one near rest
        assert status.level == b'\x00', (status.message, values)


def test_every_writable_parameter_at_its_range_ends_leaves_the_node_predicting(graph, models):
    """Tuning cannot crash the node (see ``ros_probe.sweep_parameters``); afterwards it still predicts, finitely."""
    graph.ensure_active(models['primary'])
    sweep = sweep_parameters(lambda kind, name, request: graph.probe.call(kind, name, request, 20.0), NODE,
                             lambda: graph.process.poll() is None)
    assert sweep.swept >= 10, sweep
    # in-range values refused only against another parameter (warn <= error pairs, error_step x dt <= 4 s)
    assert sweep.accepted >= sweep.swept and len(sweep.refused) < sweep.swept // 2, sweep
    after = graph.probe.seq('/hamwm/predicted_trajectory')
    trajectory = graph.probe.wait_for('/hamwm/predicted_trajectory', timeout=15.0, after=after)
    assert trajectory is not None, graph.log()[-4000:]
    assert all(math.isfinite(x) for p in trajectory.points for x in (*p.positions, *p.velocities))
    assert 'Traceback' not in graph.log(), graph.log()[-4000:]


def test_nan_joint_states_are_dropped_and_nothing_non_finite_is_published(graph, models):
    graph.ensure_active(models['primary'])
    probe = graph.probe
    publisher = probe.node.create_publisher(JointState, '/joint_states', 10)
    deadline = time.monotonic() + 10.0
    while publisher.get_subscription_count() < 2 and time.monotonic() < deadline:   # the node and the probe
        time.sleep(0.05)
    seq = {topic: probe.seq(topic) for topic in TOPICS}
    far = 1.0e6      # a stamp after everything the simulation sent: only the NaN check can refuse these
    # The drop warning is throttled (one per 2 s, naming the reason of the drop that opens the window): keep sending
    # non-finite states until their warning is out, since an earlier test's drops may hold the window.
    deadline = time.monotonic() + 10.0
    i = 0
    while 'not finite' not in graph.log() and time.monotonic() < deadline:
        msg = JointState(name=['hinge'], position=[math.nan], velocity=[0.0])
        msg.header.stamp.sec = int(far) + i
        publisher.publish(msg)
        publisher.publish(JointState(name=['hinge'], position=[0.1], velocity=[math.inf]))
        i += 1
        time.sleep(0.02)
    for _ in range(20):
        publisher.publish(JointState(name=['elbow'], position=[0.1], velocity=[0.0]))    # unknown joint
        time.sleep(0.01)
    # the node goes on predicting from the simulation's valid states
    later = _next(probe, '/hamwm/predicted_trajectory', timeout=10.0)
    assert later.header.stamp.sec < far, 'a NaN message was taken as the newest state'
    time.sleep(0.5)
    for topic in ('/hamwm/latent', '/hamwm/energy', '/hamwm/predicted_trajectory'):
        assert probe.seq(topic) > seq[topic], f'{topic} stopped'
    for msg in probe.recent('/hamwm/latent'):
        assert all(math.isfinite(x) for x in msg.data)
    for msg in probe.recent('/hamwm/energy'):
        assert math.isfinite(msg.data)
    for msg in probe.recent('/hamwm/predicted_trajectory'):
        assert all(math.isfinite(x) for p in msg.points for x in (*p.positions, *p.velocities))
    log = graph.log()
    assert 'dropped joint state' in log and 'not finite' in log, log
    status = _our_status(_next(probe, '/diagnostics', lambda m: _our_status(m) is not None))
    assert int({kv.key: kv.value for kv in status.values}['dropped_inputs']) > 0


def test_a_stamp_from_the_future_does_not_lock_out_the_real_stream(graph, models):
    graph.ensure_active(models['primary'])
    probe = graph.probe
    publisher = probe.node.create_publisher(JointState, '/joint_states', 10)
    deadline = time.monotonic() + 10.0
    while publisher.get_subscription_count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # a valid state from a clock far ahead (another robot, a bag); the simulation's stamps are then far behind:
    # the node restarts its history and follows them again
    deadline = time.monotonic() + 10.0
    sent = 0
    while 'time jumped back' not in graph.log():
        assert time.monotonic() < deadline, graph.log()
        stray = JointState(name=['hinge'], position=[0.0], velocity=[0.0])
        stray.header.stamp.sec = 2_000_000 + sent
        publisher.publish(stray)
        sent += 1
        time.sleep(0.2)
    after = probe.seq('/hamwm/predicted_trajectory')
    resumed = probe.wait_for('/hamwm/predicted_trajectory', lambda m: m.header.stamp.sec < 1_000_000, timeout=10.0,
                             after=after)
    assert resumed is not None, 'the real stream is followed again'
    assert all(math.isfinite(x) for p in resumed.points for x in p.positions)


# ---------------------------------------------------------------------------------------------------- parameters
def test_bad_parameters_are_refused_with_a_reason(graph, models):
    graph.ensure_active(models['primary'])
    result = graph.set(error_warn=2.0, error_error=1.0)
    assert not result[0].successful and 'error_warn' in result[0].reason
    result = graph.set(input_source='telepathy')
    assert not result[0].successful and 'input_source' in result[0].reason
    assert not graph.set(rate=0.0)[0].successful, 'outside the declared range'
    assert graph.set(error_warn=0.3, error_error=0.6)[0].successful
    assert graph.set(rate=25.0)[0].successful           # the tick is re-timed and goes on
    after = graph.probe.seq('/hamwm/predicted_trajectory')
    assert graph.probe.wait_for('/hamwm/predicted_trajectory', timeout=10.0, after=after) is not None


def test_hot_load_refuses_a_bad_model_and_keeps_the_old_one_then_loads_a_good_one(graph, models):
    graph.ensure_active(models['primary'])
    probe = graph.probe
    result = graph.set(model_dir=str(models['corrupt']))[0]
    assert not result.successful and 'sha256' in result.reason
    old_dt = load_metadata(models['primary']).dt
    after = probe.seq('/hamwm/predicted_trajectory')
    trajectory = probe.wait_for('/hamwm/predicted_trajectory', timeout=10.0, after=after)
    assert trajectory is not None, 'the old model keeps running'
    assert _seconds(trajectory.points[0].time_from_start) == pytest.approx(old_dt)

    assert graph.set(model_dir=str(models['other']))[0].successful
    new = _next(probe, '/hamwm/predicted_trajectory',
                lambda m: abs(_seconds(m.points[0].time_from_start) - 0.02) < 1e-6, timeout=10.0)
    assert len(new.points) == HORIZON      # published horizon is the node's parameter, chained over 16-step calls
    assert 'model ' + str(models['other']) in graph.log()
    assert json.loads((models['other'] / 'metadata.json').read_text())['dt'] == 0.02


def _input_in_force(graph, publish=None, expected: str = '0', timeout: float = 10.0) -> str | None:
    """Wait until the monitor reports ``expected`` as its input (diagnostics ``input``), calling ``publish``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if publish is not None:
            publish()
        msg = graph.probe.wait_for('/diagnostics', lambda m: _our_status(m) is not None, timeout=0.3,
                                   after=graph.probe.seq('/diagnostics'))
        if msg is not None:
            last = {kv.key: kv.value for kv in _our_status(msg).values}.get('input')
            if last == expected:
                return last
    return last


def test_a_feedforward_model_takes_its_input_from_the_planners_correction(graph, models):
    """A model whose plant includes the PD hold (metadata action_source feedforward) is driven by mpc_node's correction.

    The measured joint efforts include the hold, so they are not its input: input_source effort is refused, and with
    the correction stale the input falls back to zero (the hold alone), not to the measured effort.
    """
    graph.ensure_active(models['primary'])
    assert graph.set(model_dir=str(models['feedforward']))[0].successful
    probe = graph.probe
    publisher = probe.node.create_publisher(JointState, '/hamwm/mpc/feedforward', 10)
    commands = probe.node.create_publisher(Float64MultiArray, '/effort_controller/commands', 10)
    deadline = time.monotonic() + 10.0
    while min(publisher.get_subscription_count(), commands.get_subscription_count()) < 1 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        def correction():
            publisher.publish(JointState(name=['hinge'], effort=[0.7]))
            commands.publish(Float64MultiArray(data=[5.0]))   # a total effort (hold + correction): not its input

        assert _input_in_force(graph, correction, '0.7') == '0.7'
        refused = graph.set(input_source='effort')[0]
        assert not refused.successful and 'feed-forward' in refused.reason, refused.reason
        assert _input_in_force(graph, None, '0') == '0', 'a stale correction leaves the hold alone: zero input'
        assert graph.set(input_source='zero')[0].successful
        assert _input_in_force(graph, correction, '0', timeout=2.0) == '0'
    finally:
        assert graph.set(input_source='auto')[0].successful
        probe.node.destroy_publisher(publisher)
        probe.node.destroy_publisher(commands)
        assert graph.set(model_dir=str(models['primary']))[0].successful


def test_lifecycle_cycles_and_clean_shutdown(graph, models):
    graph.ensure_active(models['primary'])
    for _ in range(2):      # deactivate / cleanup / configure / activate again: the node keeps working
        assert graph.transition(Transition.TRANSITION_DEACTIVATE)
        assert graph.state() == State.PRIMARY_STATE_INACTIVE
        time.sleep(0.2)
        after = graph.probe.seq('/hamwm/latent')
        assert graph.probe.wait_for('/hamwm/latent', timeout=0.5, after=after) is None, 'inactive: nothing published'
        assert graph.transition(Transition.TRANSITION_CLEANUP)
        assert graph.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert graph.transition(Transition.TRANSITION_CONFIGURE), graph.log()
        assert graph.transition(Transition.TRANSITION_ACTIVATE)
        after = graph.probe.seq('/hamwm/latent')
        assert graph.probe.wait_for('/hamwm/latent', timeout=10.0, after=after) is not None
    assert graph.stop() == 0, 'SIGINT while active ends the node cleanly'
    assert 'Traceback' not in graph.log(), graph.log()


def test_wrap_joints_must_name_joints_of_the_model(models):
    """``wrap_joints`` is checked when a model loads (configure or hot-load): an unknown joint is refused by name."""
    from hamwm_ros.nodes.world_model_node import _Loaded
    from hamwm_ros.runtime import SessionConfig, WorldModelRuntime

    runtime = WorldModelRuntime.load(models['primary'], config=SessionConfig(providers=('cpu',)))
    joint = runtime.metadata.joint_names[0]
    assert _Loaded(runtime, 'primary', [], [joint]).wrap_joints == [0]
    assert _Loaded(runtime, 'primary', [], []).wrap_joints == []
    with pytest.raises(MetadataError, match=r"wrap_joints names \['pole_hinge'\]"):
        _Loaded(runtime, 'primary', [], [joint, 'pole_hinge'])


def test_an_unknown_executor_fails_start_up_with_the_choices():
    result = subprocess.run([sys.executable, '-m', 'hamwm_ros.nodes.world_model_node', '--ros-args', '-p',
                             'executor:=multi_threaded'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot start: parameter executor must be one of events, single_threaded, got 'multi_threaded'" in (
        result.stdout + result.stderr)


def test_autostart_leaves_a_node_that_is_already_configured_as_it_is(models, capfd):
    """A lifecycle manager (or bring-up) that configures first wins.

    The autostart timer then neither re-configures nor activates the node (it used to race the manager's own
    transitions).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter as RclpyParameter

    from hamwm_ros.nodes.world_model_node import WorldModelNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ.get('ROS_DOMAIN_ID', '0')))
    executor = SingleThreadedExecutor(context=context)
    node = WorldModelNode(context=context, parameter_overrides=[
        RclpyParameter('autostart', value=True), RclpyParameter('model_dir', value=str(models['primary']))])
    try:
        assert node._autostart_timer is not None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        executor.add_node(node)
        for _ in range(20):          # the autostart timer is due at once: give it every chance to run
            executor.spin_once(timeout_sec=0.05)
            if node._autostart_timer is None:
                break
        assert node._autostart_timer is None, 'the autostart timer never ran'
        assert node._state_machine.current_state[1] == 'inactive'     # configured, not activated behind our back
        log = capfd.readouterr()
        assert 'autostart: already configured; left as it is' in log.out + log.err
        assert 'configure failed' not in log.out + log.err
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
