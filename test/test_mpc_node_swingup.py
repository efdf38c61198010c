"""mpc_node with ``task: swingup`` over real DDS: it swings the shipped pendulum up with sim_node, parameters checked.

Real nodes in their own processes (``python -m hamwm_ros.nodes.<node>``), configured by the shipped parameter file
``config/swingup_pendulum.yaml``, the shipped learned pendulum model through the real onnxruntime, MuJoCo in
sim_node. The pendulum's 5 N m limit is half of m g l: it cannot be lifted directly, so coming upright at all means
the schedule pumped energy in through the model's predictions.

Order matters: the tests that start their own mpc_node run before the module's shared one (``waiting_mpc``) exists,
so two nodes named mpc_node never share the domain.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
import shutil
import signal
import subprocess
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.parameter import Parameter, parameter_value_to_python
from ros_probe import MpcProcess
from sensor_msgs.msg import JointState
from std_msgs.msg import String
import yaml

from hamwm_ros.sim.cli import SimProcess, node_command

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parent.parent
PENDULUM = ROOT / 'config' / 'swingup_pendulum.yaml'
CARTPOLE = ROOT / 'config' / 'swingup_cartpole.yaml'
UPRIGHT_TOLERANCE = 0.3     # rad, the demo's success tolerance
STALL_S = 0.3              # s mpc_node's process is stopped while the pole balances


def _model(robot: str) -> Path:
    path = ROOT / 'models' / robot
    if not (path / 'metadata.json').is_file():
        pytest.skip(f'{path} is missing: run `hamwm models` (make models)')
    return path


def _stamp(msg: Any) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


class SwingUpMpc(MpcProcess):
    """mpc_node from a parameter file (+ overrides) in a subprocess, and a probe node in this process."""

    def __init__(self, params_file: Path, parameters: dict[str, Any]) -> None:
        super().__init__(node_command('mpc_node', parameters, params_file),
                         {'/joint_states': JointState, '/hamwm/mpc/mode': String, '/diagnostics': DiagnosticArray},
                         name='probe_swingup', keep=3000, log_prefix='hamwm_swingup_')

    def set(self, **values: Any) -> Any:
        """Set one parameter (``__`` in a keyword stands for ``.``); its SetParametersResult."""
        request = SetParameters.Request(parameters=[Parameter(k.replace('__', '.'), value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return self.call(SetParameters, '/mpc_node/set_parameters', request).results[0]

    def get(self, *names: str) -> list:
        """The parameters' values, raw (rcl_interfaces/ParameterValue: NOT_SET for an undeclared one)."""
        return list(self.call(GetParameters, '/mpc_node/get_parameters', GetParameters.Request(names=names)).values)

    def wait_mode(self, prefix: str, timeout: float = 60.0) -> str:
        msg = self.probe.wait_for('/hamwm/mpc/mode', lambda m: m.data.startswith(prefix), timeout, after=0)
        latest = self.probe.latest('/hamwm/mpc/mode')
        assert msg is not None, (f'mode never became {prefix}; last: {latest.data if latest else None}\n'
                                 f'{self.log()[-3000:]}')
        return msg.data


def test_mpc_node_swings_the_shipped_pendulum_up_with_sim_node():
    """Seed 3 from hanging still: upright within 8 s of simulated time and balanced over its last second.

    While it balances, mpc_node's process is stopped for 0.3 s (SIGSTOP: a starved host): its command relay must
    apply the file's safe hold (zero effort) meanwhile, control must come back within a few ticks of fresh joint
    states (the file's ``recovery_time``), not after a hold that outlasts the stall, and the pole must stay up.
    """
    model = _model('pendulum')
    mpc = SwingUpMpc(PENDULUM, {'model_dir': str(model), 'autostart': True, 'use_sim_time': True,
                                'diagnostics_rate': 5.0})
    sim = None
    try:
        mpc.wait_mode('WAITING_FOR_STATE')     # configured and active before the episode starts
        # physics starts once mpc_node and the probe listen (and have matched the publisher too), so both see the
        # seeded start
        sim = SimProcess('pendulum', {'initial_seed': 3, 'wait_for_subscribers': 2, 'subscriber_settle_time': 0.5},
                         params_file=PENDULUM)
        first = mpc.probe.wait_for('/joint_states', timeout=60.0, after=0)
        assert first is not None, f'no joint states:\n{sim.log()[-3000:]}'
        assert _stamp(first) < 0.05, 'the probe missed the start of the episode'
        deadline = time.monotonic() + 60.0
        stalled_at = resumed_at = holds_before = None
        while _stamp(mpc.probe.latest('/joint_states')) < 8.0:
            assert sim.alive() and mpc.process.poll() is None, sim.log()[-2000:] + mpc.log()[-3000:]
            assert time.monotonic() < deadline, 'simulated time stalled'
            if stalled_at is None and _stamp(mpc.probe.latest('/joint_states')) >= 5.0:
                holds_before = int(mpc.diagnostics()['hold_ticks'])
                stalled_at = _stamp(mpc.probe.latest('/joint_states'))
                mpc.process.send_signal(signal.SIGSTOP)
                try:
                    time.sleep(STALL_S)
                finally:        # never leave it stopped: the clean-up's SIGINT would wait for its kill timeout
                    mpc.process.send_signal(signal.SIGCONT)
                resumed_at = _stamp(mpc.probe.latest('/joint_states'))
            time.sleep(0.1)
        values = mpc.diagnostics()
        states = [m for m in mpc.probe.recent('/joint_states') if _stamp(m) <= 8.0]
    finally:
        if sim is not None:
            assert sim.stop() == 0, sim.log()[-3000:]
            sim.close()
        log = mpc.log()
        code = mpc.close()
    assert code == 0, f'mpc_node did not exit cleanly:\n{log[-3000:]}'
    t = np.array([_stamp(m) for m in states])
    angle = np.array([m.position[0] for m in states])
    effort = np.array([m.effort[0] for m in states])
    error = np.abs((angle - math.pi + math.pi) % (2 * math.pi) - math.pi)      # distance from upright, wrapped
    trace = ', '.join(f'{tt:.1f} s: {a:+.2f}' for tt, a in zip(t[::50], angle[::50]))
    assert t[0] < 0.05 and len(t) > 600, f'{len(t)} states from {t[0]:.2f} s'
    assert np.all(np.abs(effort) <= 5.0 + 1e-9)
    assert error.min() < UPRIGHT_TOLERANCE, f'never came near upright: {trace}\n{log[-3000:]}'
    # pumping with the sampled update: the plan sits on the 5 N m bound (in-process 89-95 ticks of 20 ms before the
    # pole comes up, seeds 0-4; none with the applied update)
    pumping = t < t[np.argmax(error < UPRIGHT_TOLERANCE)]
    assert np.count_nonzero(np.abs(effort[pumping]) >= 5.0 - 1e-6) > 20, effort[pumping][::10]
    assert np.all(error[t >= 7.0] < UPRIGHT_TOLERANCE), f'not balanced over the last second: {trace}'
    # While mpc_node is stopped its relay publishes the file's safe hold, zero effort (sim_node would otherwise keep
    # the last effort); afterwards its watchdog holds until the joint states have been fresh for recovery_time
    # (0.02 s): a few hold ticks at 100 Hz, then control (with 0.1 s: 10 or more).
    assert resumed_at - stalled_at > 0.8 * STALL_S, (stalled_at, resumed_at)
    during = effort[(t > stalled_at + 0.06) & (t < resumed_at - 0.01)]
    assert during.size > 10 and np.all(during == 0.0), during
    assert int(values['hold_ticks']) - holds_before <= 7, (holds_before, values['hold_ticks'])
    assert values['task'] == 'swingup' and values['swingup_phase'] == 'balancing (tracking)', values
    assert values['swingup_update'] == 'applied', values      # the file pumps with 'sampled', balances with this
    assert int(values['planned_ticks']) > int(values['fallback_ticks']), values


@pytest.mark.parametrize('override, reason', [
    ('task:=dance', "task must be one of ['track', 'swingup']"),
    ('swingup.effort_fraction:=0.0', 'swingup.effort_fraction must be > 0'),
    ('swingup.energy_source:=kinetic', 'energy_source must be one of'),
    ('swingup.position_envelope:=0.0', 'position_envelope must be in (0, 1]'),
])
def test_bad_swingup_startup_parameters_exit_with_reason(override, reason):
    command = node_command('mpc_node', {'model_dir': str(_model('pendulum'))}, PENDULUM) + ['-p', override]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert reason in result.stdout + result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('overrides, reason', [
    ({'swingup.angle_joint': 'elbow'}, "swingup.angle_joint 'elbow' is not a model joint"),
    ({'joints': ['pole_hinge']}, 'must name each model joint once'),    # the actuated cart left out
])
def test_configure_fails_with_a_reason(overrides, reason):
    mpc = SwingUpMpc(CARTPOLE, {'model_dir': str(_model('cartpole')), 'autostart': True, **overrides})
    try:
        mode = mpc.wait_mode('INACTIVE: configure failed')
    finally:
        code = mpc.close()
    assert reason in mode and code == 0, mode


@pytest.fixture(scope='module')
def waiting_mpc():
    """mpc_node with the cart-pole's swing-up file, active and waiting for joint states (no simulator)."""
    mpc = SwingUpMpc(CARTPOLE, {'model_dir': str(_model('cartpole')), 'autostart': True})
    yield mpc
    log = mpc.log()
    assert mpc.close() == 0, log[-3000:]


def test_swingup_file_parameters_are_declared_and_applied(waiting_mpc):
    """Every value of config/swingup_cartpole.yaml's mpc_node section reached a declared parameter."""
    assert waiting_mpc.wait_mode('WAITING_FOR_STATE')     # configured: joints [cart_slider] left out the pole
    section = yaml.safe_load(CARTPOLE.read_text())['mpc_node']['ros__parameters']
    names = [name for name in section if name != 'model_dir']
    values = waiting_mpc.get(*names)
    undeclared = [name for name, value in zip(names, values) if value.type == ParameterType.PARAMETER_NOT_SET]
    assert not undeclared, f'the file sets parameters mpc_node does not declare: {undeclared}'
    for name, value in zip(names, values):
        got = parameter_value_to_python(value)
        got = list(got) if isinstance(got, (list, tuple)) or hasattr(got, 'tolist') else got
        assert got == section[name], name
    diagnostics = waiting_mpc.diagnostics()
    assert diagnostics['task'] == 'swingup'
    # the LQR value at upright was built at configure; no plan yet, so no weight in force
    assert diagnostics['swingup_terminal_value'].startswith('weight 0 in the last plan (x0'), diagnostics


def _terminal_trace(mpc: SwingUpMpc) -> float:
    """trace(P) of the terminal value from mpc_node's next diagnostics."""
    text = mpc.diagnostics()['swingup_terminal_value']
    assert 'trace(P) ' in text and 'stale' not in text, text
    return float(text.split('trace(P) ')[1].split(',')[0])


def test_terminal_value_is_rebuilt_when_the_settings_it_comes_from_change(waiting_mpc, tmp_path):
    """P is the LQR value of the plan's stage costs: live weights, horizon and hot-loaded models rebuild it."""
    waiting_mpc.wait_mode('WAITING_FOR_STATE')
    base = _terminal_trace(waiting_mpc)
    assert waiting_mpc.set(mppi__horizon=16).successful
    assert _terminal_trace(waiting_mpc) == pytest.approx(2.0 * base, rel=2e-3)   # stage costs over half the steps
    assert waiting_mpc.set(mppi__horizon=0).successful                           # back to the model's 32
    assert _terminal_trace(waiting_mpc) == base
    tracking = parameter_value_to_python(waiting_mpc.get('critics.tracking.weight')[0])
    assert waiting_mpc.set(critics__tracking__weight=4.0 * tracking).successful  # effort 4x cheaper, relatively
    cheaper_effort = _terminal_trace(waiting_mpc)
    assert cheaper_effort < 0.99 * base
    assert waiting_mpc.set(critics__tracking__weight=tracking).successful
    assert _terminal_trace(waiting_mpc) == base
    # a hot-loaded model brings its own dt (the same graphs, declared at twice the step: P from a coarser ZOH)
    slow = tmp_path / 'cartpole_40ms'
    shutil.copytree(_model('cartpole'), slow)
    meta = json.loads((slow / 'metadata.json').read_text())
    meta['dt'] = 2 * meta['dt']
    (slow / 'metadata.json').write_text(json.dumps(meta))
    assert waiting_mpc.set(model_dir=str(slow)).successful
    deadline = time.monotonic() + 10.0
    while (coarse := _terminal_trace(waiting_mpc)) == base and time.monotonic() < deadline:
        pass     # swapped in by the planner thread between two of its iterations
    assert coarse != pytest.approx(base, rel=1e-3)
    assert waiting_mpc.set(model_dir=str(_model('cartpole'))).successful
    deadline = time.monotonic() + 10.0
    while (back := _terminal_trace(waiting_mpc)) != base and time.monotonic() < deadline:
        pass
    assert back == base


@pytest.mark.parametrize('name, value, accepted', [
    ('swingup.energy_gate', 0.8, True),
    ('swingup.energy_gate', 4.0, False),              # beyond pi
    ('swingup.far_tracking_fraction', -0.1, False),
    ('swingup.energy_margin', -0.1, True),
    ('swingup.energy_margin', 1.5, False),
    ('swingup.wrap_encode', False, True),
    ('swingup.terminal_value_weight', 1.5, True),       # live: from the next plan on
    ('swingup.terminal_value_weight', -1.0, False),
    ('swingup.far_update_perturbation', 'applied', True),     # live: from the next plan on
    ('swingup.far_update_perturbation', 'sampled', True),     # the swing-up files' value (set back)
    ('swingup.far_update_perturbation', 'clipped', False),
    ('mppi.noise_correlation', 0.3, True),
    ('mppi.noise_correlation', 1.0, False),           # must stay below 1
    ('task', 'track', False),                         # read-only
    ('swingup.effort_fraction', 0.5, False),          # read-only: shapes the plan's bounds at configure
    ('swingup.angle_joint', 'cart_slider', False),    # read-only
    ('plan_playback', 'cubic', False),
    ('planner_trigger', 'timer', True),
    ('planner_trigger', 'state', True),                # the swing-up files' value (set back by the case above)
    ('planner_trigger', 'on_demand', False),
    ('plan_playback', 'linear', True),
])
def test_swingup_parameters_are_validated(waiting_mpc, name, value, accepted):
    waiting_mpc.wait_mode('WAITING_FOR_STATE')
    before = parameter_value_to_python(waiting_mpc.get(name)[0])
    result = waiting_mpc.set(**{name.replace('.', '__'): value})
    assert result.successful == accepted, result.reason
    after = parameter_value_to_python(waiting_mpc.get(name)[0])
    if accepted:
        assert after == value
    else:
        assert result.reason and after == before, (result.reason, before, after)


def test_a_pole_that_turned_over_is_planned_for_not_held(waiting_mpc):
    """A frictionless pole that falls from upright (after an e-stop, say) turns for ever: past its range is no fault.

    Last in the module: it ends the fixture's wait for joint states.
    """
    from hamwm_ros.safety import JointLimits
    from hamwm_ros.sim import robot_urdf_path

    limits = JointLimits.from_urdf(robot_urdf_path('cartpole'))
    pole = limits.names.index('pole_hinge')
    position = [0.0] * len(limits.names)
    position[pole] = limits.position[pole, 0] - 0.6           # two turns and a bit, hanging 0.6 rad off down
    publisher = waiting_mpc.node.create_publisher(JointState, '/joint_states', 10)
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.01):
            msg = JointState(name=list(limits.names), position=position, velocity=[0.0] * len(position))
            ns = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
            publisher.publish(msg)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        waiting_mpc.wait_mode('PLANNING', timeout=30.0)
        time.sleep(0.5)
        diagnostics = waiting_mpc.diagnostics()
    finally:
        stop.set()
        thread.join(5.0)
    assert diagnostics.get('rejected_position_limit', '0') == '0', diagnostics
    assert 'beyond the URDF limits' not in waiting_mpc.log()
