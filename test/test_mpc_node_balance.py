"""mpc_node on the humanoid over real DDS: balance critics, world-model validity input, trajectory output, limit rule.

One mpc_node process (wall time) loads the shipped humanoid model (``models/humanoid``: real onnxruntime; a copy
planned on with full efforts, see the fixture) and the humanoid URDF (real Pinocchio); this process feeds it
hand-made ``/joint_states`` (the standing posture) and world-model validity reports on ``/diagnostics``, and records
what it publishes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
import shutil
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
import numpy as np
import pytest
from rcl_interfaces.srv import ListParameters
from test_mpc_node import Injector, MpcHarness
from trajectory_msgs.msg import JointTrajectory

from hamwm_ros.safety import JointLimits
from hamwm_ros.sim import robot_urdf_path
from hamwm_ros.sim.robots import SETTINGS

MODEL = Path(__file__).resolve().parent.parent / 'models' / 'humanoid'
TRAJECTORY = '/joint_trajectory_controller/joint_trajectory'
pytestmark = [pytest.mark.ros,
              pytest.mark.skipif(not (MODEL / 'metadata.json').is_file(), reason='models/humanoid is not built')]


class ValidityPublisher:
    """Publishes world_model_node's validity status at about 20 Hz with a settable level and message."""

    def __init__(self, node) -> None:
        self.publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.level: int | None = None
        self.message = ''
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.level is None:
                continue
            status = DiagnosticStatus(name='world_model_node: model validity', hardware_id='world_model_node',
                                      level=bytes([self.level]), message=self.message)
            self.publisher.publish(DiagnosticArray(status=[status]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


@pytest.fixture(scope='module')
def humanoid(tmp_path_factory):
    limits = JointLimits.from_urdf(robot_urdf_path('humanoid'))
    # The shipped model's plant includes the PD hold (action_source feedforward), which needs pd_residual. This file
    # tests the full-effort planner's machinery (balance critics, multi-point trajectories, the limit rule), which does
    # not depend on what the model's input means: a copy with the field removed plans full efforts.
    model = tmp_path_factory.mktemp('humanoid') / 'humanoid'
    shutil.copytree(MODEL, model)
    meta = json.loads((model / 'metadata.json').read_text())
    meta.pop('action_source', None)
    (model / 'metadata.json').write_text(json.dumps(meta))
    harness = MpcHarness({'model_dir': str(model), 'control_rate': 100.0, 'planner_rate': 5.0,
                          'mppi.num_samples': 32, 'joint_state_timeout': 0.25, 'recovery_time': 0.1,
                          'max_plan_age': 1.0, 'command_interface': 'both', 'model_invalid_time': 0.0},
                         topics={TRAJECTORY: JointTrajectory})
    injector = Injector(harness.node)
    validity = ValidityPublisher(harness.node)
    yield harness, injector, validity, limits
    validity.close()
    injector.close()
    log = harness.log()
    code = harness.close()
    assert code == 0, f'mpc_node did not exit cleanly on SIGINT (code {code}):\n{log[-3000:]}'


def standing(limits: JointLimits) -> np.ndarray:
    nominal = SETTINGS['humanoid'].nominal
    return np.array([nominal.get(name, 0.0) for name in limits.names])


def planning(mpc, timeout: float = 60.0) -> None:
    """Return once mpc_node is in PLANNING (now or after its next mode change)."""
    latest = mpc.probe.latest('/hamwm/mpc/mode')
    if latest is not None and latest.data.startswith('PLANNING'):
        return
    mpc.wait_mode('PLANNING', timeout=timeout)


def active(mpc, injector, limits, position=None) -> None:
    if mpc.state() == 'unconfigured':
        assert mpc.transition(Transition.TRANSITION_CONFIGURE), mpc.log()[-3000:]
    if mpc.state() == 'inactive':
        assert mpc.transition(Transition.TRANSITION_ACTIVATE), mpc.log()[-3000:]
    q = standing(limits) if position is None else position
    injector.set(names=limits.names, position=tuple(q), velocity=(0.0,) * len(q))


class TestHumanoid:
    """In order: configure with balance critics, trajectory output, model validity, limit rule."""

    def test_configures_with_balance_critics_as_parameters(self, humanoid):
        mpc, injector, _, limits = humanoid
        assert mpc.transition(Transition.TRANSITION_CONFIGURE), mpc.log()[-3000:]
        mpc.wait_mode('INACTIVE: configured')
        assert 'balance critic on soles' in mpc.log()
        listed = mpc.call(ListParameters, '/mpc_node/list_parameters',
                          ListParameters.Request(prefixes=['critics.balance'])).result.names
        assert {'critics.balance.weight', 'critics.balance.margin_target',
                'critics.balance.capture_weight'} <= set(listed)
        for name, value in (('critics__balance__weight', -1.0), ('critics__balance__capture_weight', -0.5),
                            ('critics__balance__margin_target', 0.0), ('critics__balance__weight', math.nan)):
            result = mpc.set(**{name: value})[0]
            assert not result.successful and result.reason, (name, value)
        assert mpc.get('critics.balance.weight') == 1.0
        assert mpc.set(critics__balance__weight=2.0, critics__balance__margin_target=0.04)[0].successful
        assert mpc.get('critics.balance.weight') == 2.0

        # Running: every plan linearises the balance around the measured state (no /imu here: stance kinematics).
        active(mpc, injector, limits)
        mpc.wait_mode('PLANNING', timeout=60.0)
        diagnostics = mpc.diagnostics()
        assert diagnostics['balance_critic'] == 'on', diagnostics
        assert diagnostics['balance_base_source'].startswith('stance:'), diagnostics
        assert float(diagnostics['balance_margin_now_m']) > 0.0          # standing: the ZMP is inside the feet
        assert 0.0 < float(diagnostics['balance_evaluate_ms']) < 1e4
        # Predicted states without vertical contact force are counted (scored in test_wholebody_planning). This copy
        # of the model is fed full efforts it was not trained on (its plant holds the posture by itself), and some
        # samples lift a foot in prediction: the count is reported, within the plan's states.
        flights = int(diagnostics['balance_flight_states_last'])
        assert 0 <= flights <= int(mpc.get('mppi.num_samples')) * 32, diagnostics

    def test_trajectory_output_names_times_and_limits(self, humanoid):
        mpc, injector, _, limits = humanoid
        active(mpc, injector, limits)
        planning(mpc)
        start = mpc.probe.seq(TRAJECTORY)
        msg = mpc.probe.wait_for(TRAJECTORY, lambda m: len(m.points) > 1, timeout=30.0, after=start)
        assert msg is not None, mpc.log()[-3000:]
        assert list(msg.joint_names) == list(limits.names)
        times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points]
        assert times[0] > 0.0 and all(b > a for a, b in zip(times, times[1:]))
        assert times[1] - times[0] == pytest.approx(0.02, abs=1e-6)      # the model's dt
        q = np.array([list(p.positions) for p in msg.points])
        v = np.array([list(p.velocities) for p in msg.points])
        assert q.shape == v.shape == (len(times), len(limits.names))
        assert np.all(np.isfinite(q)) and np.all(q >= limits.position[:, 0]) and np.all(q <= limits.position[:, 1])
        assert np.all(np.abs(v) <= limits.velocity)
        assert int(mpc.diagnostics()['trajectories_published']) > 0

    def test_world_model_error_gives_fallback_with_the_reason_and_back(self, humanoid):
        mpc, injector, validity, limits = humanoid
        active(mpc, injector, limits)
        validity.message, validity.level = 'all good', DiagnosticStatus.OK[0]
        planning(mpc)
        mpc.mark = mpc.probe.seq('/hamwm/mpc/mode')
        validity.message, validity.level = 'prediction error 0.93 > 0.5', DiagnosticStatus.ERROR[0]
        mode = mpc.wait_mode('FALLBACK', contains='world model validity ERROR')
        assert 'prediction error 0.93 > 0.5' in mode
        # While the model is invalid no planned trajectory goes out: only the one-point hold of the last measured
        # position (published on the change into FALLBACK; not again if a loaded machine had it in FALLBACK already).
        mark = mpc.probe.seq(TRAJECTORY)
        time.sleep(1.0)
        new = mpc.probe.seq(TRAJECTORY) - mark
        since = mpc.probe.recent(TRAJECTORY)[-new:] if new else []
        assert all(len(m.points) == 1 and list(m.points[0].velocities) == [0.0] * len(limits.names)
                   for m in since), [len(m.points) for m in since]
        # FALLBACK as long as the model is invalid. A loaded 2-core host can delay the injected joint states past
        # joint_state_timeout, which puts a safe hold over it for a moment (seen in a fresh-clone run): wait it out.
        deadline = time.monotonic() + 10.0
        while (diagnostics := mpc.diagnostics())['mode'] != 'FALLBACK' and time.monotonic() < deadline:
            assert diagnostics['mode'] == 'SAFE_HOLD', diagnostics
            time.sleep(0.1)
        assert diagnostics['mode'] == 'FALLBACK' and 'ERROR' in diagnostics['model_validity'], diagnostics
        mpc.mark = mpc.probe.seq('/hamwm/mpc/mode')
        validity.message, validity.level = 'no joint states for 0.6 s', DiagnosticStatus.STALE[0]
        stale = mpc.probe.wait_for('/diagnostics', lambda m: m.status and m.status[0].name.startswith('mpc_node')
                                   and 'STALE: no joint states' in {kv.key: kv.value for kv in m.status[0].values}
                                   .get('reason', ''), timeout=10.0, after=mpc.probe.seq('/diagnostics'))
        assert stale is not None, mpc.log()[-3000:]                       # STALE holds the fallback too
        mpc.mark = mpc.probe.seq('/hamwm/mpc/mode')
        validity.message, validity.level = 'drifting', DiagnosticStatus.WARN[0]
        mpc.wait_mode('PLANNING', timeout=30.0)
        validity.message, validity.level = 'fine', DiagnosticStatus.OK[0]   # keep reporting: silence is STALE

    def test_a_joint_at_its_position_limit_gets_no_further_outward_effort(self, humanoid):
        mpc, injector, validity, limits = humanoid
        validity.message, validity.level = 'fine', DiagnosticStatus.OK[0]   # whatever the previous test left
        # The standing posture with one knee at its upper limit, and a goal beyond it: tracking pulls outward.
        index = next(i for i, name in enumerate(limits.names) if 'knee' in name)
        upper = limits.position[index, 1]
        posture = standing(limits)
        posture[index] = upper
        active(mpc, injector, limits, posture)
        goal = standing(limits)
        goal[index] = upper + 1.0
        assert mpc.set(goal_position=list(goal), critics__tracking__weight=1000.0)[0].successful
        planning(mpc)
        start = mpc.probe.seq('/effort_controller/commands')
        cut = mpc.probe.wait_for('/diagnostics', lambda m: m.status and m.status[0].name.startswith('mpc_node')
                                 and int({kv.key: kv.value for kv in m.status[0].values}.get('commands_limit_cut',
                                                                                             0)) > 0,
                                 timeout=30.0, after=mpc.probe.seq('/diagnostics'))
        assert cut is not None, mpc.log()[-3000:]
        recent = mpc.probe.recent('/effort_controller/commands')
        new = mpc.probe.seq('/effort_controller/commands') - start
        commands = np.array([list(m.data) for m in recent[len(recent) - min(new, len(recent)):]])
        assert commands.shape[0] > 0 and commands.shape[1] == len(limits.names)
        assert np.all(commands[:, index] <= 0.0), commands[:, index]
        assert np.all(np.isfinite(commands)) and np.all(np.abs(commands) <= limits.effort)
