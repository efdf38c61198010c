"""mpc_node: MPPI over the ONNX world model in the control loop, behind the safety supervisor.

A lifecycle node (``rclpy.lifecycle``):

configure
    Loads and validates the model directory (:class:`hamwm_ros.runtime.WorldModelRuntime`) and the URDF (the
    ``robot_description`` text, else ``urdf_file``, else the shipped URDF of the model's ``robot``); the model's joints
    must be the URDF's movable joints in URDF order, and ``joints`` a permutation of them (passive joints, effort
    limit 0, may be left out: a command interface lists the actuated joints; unset, the actuated joints in model
    order). Builds the MPPI optimizer
    (:mod:`hamwm_ros.mpc`), the PD-hold fallback and the :class:`hamwm_ros.safety.Supervisor`. Fails with the reason
    (logged and published on ``/hamwm/mpc/mode``). A floating-base robot with sole frames (``balance.floating_base``
    ``auto``: the shipped robot's setting, i.e. the humanoid) also gets the whole-body balance critic: a Pinocchio
    :class:`hamwm_ros.wholebody.WholeBodyModel` of the same URDF in a :class:`~hamwm_ros.wholebody.PlanBalance`
    (estimator and batched balance) behind a :class:`hamwm_ros.mpc.BalanceCritic` (ZMP margin in the
    current support polygon + capture point, weights ``critics.balance.*``). Every plan linearises it around the
    current state first (~0.2 ms): base pose from ``/imu`` + ``/odom`` when they were received within
    ``balance.base_timeout`` of the joint state, otherwise stance-foot kinematics; the batched evaluation then costs
    ``mppi.num_samples`` x horizon states per iteration (~17 ms at 1024 x 32 on a loaded 2-core machine). With no
    sole in contact the balance critic adds nothing for that plan (diagnostics say why).
activate
    Starts the planner thread (its own rate, ``planner_rate``) and the control thread (``control_rate``, 100-1000 Hz,
    absolute-deadline pacing on the monotonic clock). The optimizer's warm start is cleared. With ``plan_feedback.*``
    gains the control thread adds a PD on the deviation of the newest joint state from the one the plan predicted
    for that instant (:class:`hamwm_ros.safety.PlanFeedback`), so it reacts between two plans.
deactivate
    Stops both threads and publishes one zero-effort command (the safe hold).
cleanup / shutdown
    Release the model and the optimizer (shutdown also stops the threads and holds first).

Publishes
    ``/effort_controller/commands`` (std_msgs/Float64MultiArray; one effort per entry of ``joints``, ros2_control
    ForwardCommandController convention) on every control tick while active, when ``command_interface`` is
    ``effort`` or ``both``; ``/joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory,
    JointTrajectoryController convention) when it is ``trajectory`` or ``both``: each accepted plan while the
    supervisor allows planning, as the softmin-weighted predicted positions and velocities of the rollout (decoded
    observations), point k at ``time_from_start = (k + 1) * dt`` (model dt), header stamp zero (start on receipt),
    clamped to the URDF position and velocity limits; on every change into a non-planning mode (fallback, hold,
    e-stop, deactivate) one point holding the last measured position with zero velocity. ``/hamwm/mpc/command``
    (sensor_msgs/JointState: the same efforts with joint names and the stamp of the tick, node clock) when
    ``publish_stamped``; ``/hamwm/mpc/feedforward`` (sensor_msgs/JointState, effort = the correction to the PD hold
    in force, model joint names, node clock stamp) with ``pd_residual``: on every plan that goes out (taken while the
    supervisor allows planning), once per model step while a switch is handed over (``handover_time``) and as zeros
    on every change out of planning, so world_model_node's monitor knows the input of a model whose
    ``action_source`` is ``feedforward``; ``/hamwm/mpc/mode`` (std_msgs/String
    ``'<MODE>: <reason>'``, transient local, on every mode change; modes in :mod:`hamwm_ros.safety.modes`);
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray at ``diagnostics_rate``: mode, reason, counters, planner and
    loop timing).
Subscribes
    ``/joint_states`` (sensor_msgs/JointState; joints matched by name, extra joints ignored); ``/diagnostics``
    (diagnostic_msgs/DiagnosticArray: the status named ``model_validity_status``, by default ``world_model_node:
    model validity``; ERROR or STALE for ``model_invalid_time`` -> FALLBACK with the monitor's level and message in
    the mode; OK or WARN -> back; see :mod:`hamwm_ros.safety.validity`); ``/imu`` (sensor_msgs/Imu) and ``/odom``
    (nav_msgs/Odometry) for the balance critic's base state.

Effort limit rule (besides the URDF effort clamp): an effort that would push a joint that is at or beyond a position
limit (within ``limit_margin``) further out, or a joint at or beyond its velocity limit faster, is cut to zero;
efforts toward the inside pass (:func:`hamwm_ros.safety.outward_effort_mask`).
Services
    ``/hamwm/estop`` (std_srvs/SetBool): ``true`` latches the e-stop (in any lifecycle state; zero effort overrides
    everything while latched); ``false`` resets it only when it is safe (inactive, or active with fresh, valid joint
    states), otherwise the response says why not.

Hot-load: setting ``model_dir`` while configured loads and validates the new model in the parameter callback; a model
that fails to load, or whose joints differ, is refused with the reason and the old one keeps running. The planner
swaps models between iterations and drops its warm start; a swing-up's terminal value is rebuilt for the new model's
dt (as it is for changed weights, horizon or goal).

Task (``task``, read-only): ``track`` holds ``goal_position``; ``swingup`` swings a pole up from hanging and balances
it with :class:`hamwm_ros.mpc.swingup.SwingUpSchedule`, the code the demo's in-process episodes use: before every plan
it gates energy shaping off near upright (``swingup.energy_gate``), picks the energy target of the pole's side of
upright, tracks upright with the pole angle on the circle, wraps the angle before encoding, and (cart-pole) keeps a
rail envelope; its energy and tracking critics replace the track task's, ``critics.*.weight`` scale them (settings:
``swingup.*``; complete files: ``config/swingup_pendulum.yaml``, ``config/swingup_cartpole.yaml``).

Threads: the node's one executor thread (services, parameters, diagnostics, /clock), the input thread (joint states,
IMU, odometry), the planner thread and the control thread share only the supervisor (internally locked) and a few
slots guarded by ``self._lock``.

Command relay (``command_relay``, on by default): with efforts to publish, configure starts a process of its own
(:mod:`hamwm_ros.nodes.command_relay`, node ``<name>_relay``) that publishes the effort commands on its own clock
and interpreter lock; the control thread posts each command to it through shared memory instead of publishing it.
Activate restarts it if it died and waits until it runs (failing with the reason if it does not); while it is not
ticking, or while its publisher has matched fewer subscriptions than the node's own (a new subscriber discovers the
two DDS participants separately), the control thread publishes itself (``relay_bypassed``,
``relay_unmatched_ticks``); holds at deactivate and shutdown go out from the node itself after the relay has been
told to go quiet; cleanup and exit stop it. When this process stalls (the posts stop without a hold: starved,
stopped, a long pause) the relay publishes zero effort until they resume if ``safe_hold`` is ``zero_effort``
(``relay_stale_holds``), and goes quiet with ``driver_hold`` / ``nominal_hold`` (the driver holds a posture).
"""

from __future__ import annotations

import array
from collections import deque
from dataclasses import dataclass
import faulthandler
import gc
import math
import os
from pathlib import Path
import sys
import threading
import time
from typing import Any

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension, String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from hamwm_ros.closedloop.rollout import EffortRollout
from hamwm_ros.mpc import (
    BalanceCritic,
    BatchedRollout,
    EffortCritic,
    EnergyCritic,
    JointLimitsCritic,
    MPPIOptimizer,
    MPPISettings,
    PDHoldFallback,
    SmoothnessCritic,
    TrackingCritic,
    planner_budget,
    timed_rollout,
)
from hamwm_ros.mpc.settings import SMOOTHING_METHODS, UPDATE_PERTURBATIONS
from hamwm_ros.mpc.swingup import SwingUpSchedule, SwingUpTask, pole_inertia, terminal_value_matrix
from hamwm_ros.mpc.timing import committed_steps, elapsed_steps
from hamwm_ros.nodes import (
    finish_node_process,
    init_node_process,
    message_executor,
    name_os_thread,
    spin_until_shutdown,
)
from hamwm_ros.nodes.command_relay import MATCH_REPORT_TICKS, CommandRelay
from hamwm_ros.nodes.input_thread import InputThread
from hamwm_ros.nodes.params import declare_executor
from hamwm_ros.nodes.params import descriptor as _descriptor
from hamwm_ros.runtime import MetadataError, SessionConfig, WorldModelRuntime, check_joint_order
from hamwm_ros.safety import (
    EStop,
    JointLimits,
    LimitsError,
    Mode,
    Plan,
    PlanFeedback,
    Supervisor,
    SupervisorConfig,
    clamp_trajectory,
)
from hamwm_ros.sim.robots import ROBOTS, SETTINGS, robot_urdf_path
from hamwm_ros.throttle import EventThrottle
from hamwm_ros.wholebody import BaseMeasurement, PlanBalance, WholeBodyError, WholeBodyModel, base_measurement

NODE_NAME = 'mpc_node'
# HAMWM_STALL_DUMP=<seconds>: when a control tick is that late, print every thread's Python stack to stderr (a C
# watchdog thread does it, so it works even while another thread holds the GIL). Off by default.
STALL_DUMP_S = float(os.environ.get('HAMWM_STALL_DUMP', '0') or 0.0)
SHUTDOWN_LIMIT_S = 12.0    # s from SIGINT to exit at most (the threads get 5 s each to stop)
WARN_PERIOD_S = 2.0
LATENCY_WINDOW = 50         # plans whose receipt-to-plan latency sets committed_steps -1
PASSIVE_BOUND = 1e-6        # MPPI needs low < high: a passive joint (effort limit 0) gets a tiny range, clamped to 0
CRITICS = ('tracking', 'energy', 'effort', 'smoothness', 'limits')
DEFAULT_WEIGHTS = {'tracking': 100.0, 'energy': 0.0, 'effort': 0.01, 'smoothness': 0.01, 'limits': 1.0}
SUPERVISOR_PARAMS = ('joint_state_timeout', 'recovery_time', 'max_stamp_age', 'max_future_stamp', 'zero_stamp',
                     'position_tolerance', 'max_consecutive_rejections', 'max_plan_age', 'overrun_limit',
                     'limit_margin', 'model_invalid_time', 'handover_time')
BALANCE_PARAMS = ('critics.balance.weight', 'critics.balance.margin_target', 'critics.balance.capture_weight')
COMMAND_INTERFACES = ('effort', 'trajectory', 'both')
SAFE_HOLDS = ('zero_effort', 'driver_hold', 'nominal_hold')
DRIVER_HOLD_MODES = (Mode.WAITING_FOR_STATE, Mode.SAFE_HOLD)    # ESTOP keeps zero effort: an e-stop cuts torque
MPPI_PARAMS = ('num_samples', 'horizon', 'iterations', 'temperature', 'normalise_costs', 'noise_std', 'seed',
               'noise_correlation', 'workers', 'smoothing', 'smoothing_window', 'smoothing_order',
               'update_perturbation')
# Settings that change the planner budget: its period, or the rollout a worker makes per iteration
BUDGET_PARAMS = ('planner_rate', 'mppi.num_samples', 'mppi.horizon', 'mppi.workers')
TASKS = ('track', 'swingup')
# swing-up schedule settings changeable at run time (the others are read-only: they shape the critics at configure)
SWINGUP_LIVE = ('energy_gate', 'far_tracking_fraction', 'energy_margin', 'wrap_encode', 'terminal_value_weight',
                'far_update_perturbation')
# live parameters the swing-up's terminal value P is built from (its stage costs, the plan's horizon, the goal);
# changing one rebuilds P, as does a hot-loaded model (its dt)
TERMINAL_INPUTS = ('critics.tracking.weight', 'critics.effort.weight', 'mppi.horizon', 'goal_position')
# appended to a command relay failure (the relay process writes to this node's output)
RELAY_HINT = ' (its output is in this log; command_relay false publishes from the control thread)'


def _doubles(values: np.ndarray) -> array.array:
    return array.array('d', np.ascontiguousarray(values, dtype=np.float64).tobytes())


def _rss_kb(pid: int | str = 'self') -> int:
    """Resident memory of process ``pid`` (default this one) in KiB (Linux /proc; -1 elsewhere or if it is gone)."""
    try:
        with open(f'/proc/{pid}/statm') as statm:
            return int(statm.read().split()[1]) * (os.sysconf('SC_PAGE_SIZE') // 1024)
    except (OSError, ValueError, IndexError):
        return -1




@dataclass
class _Controller:
    """Everything configure builds; replaced as a whole, never half-built."""

    runtime: WorldModelRuntime
    limits: JointLimits                  # model (= URDF) joint order
    optimizer: MPPIOptimizer
    supervisor: Supervisor
    critics: dict[str, Any]
    output_index: np.ndarray             # model order -> ``joints`` order
    output_names: list[str]
    robot: str
    balance: PlanBalance | None = None
    swingup: SwingUpSchedule | None = None     # task swingup: sets the critics before every plan


def _joint_predictions(result: Any, n: int) -> np.ndarray | None:
    """(H, 2n) predicted joint positions then velocities of a plan; None when missing or not finite."""
    if result.predicted_observations is None:
        return None
    predicted = np.asarray(result.predicted_observations, dtype=np.float64)
    if predicted.ndim != 2 or predicted.shape[1] < 2 * n or not np.all(np.isfinite(predicted[:, :2 * n])):
        return None
    return predicted[:, :2 * n]


def _hold_target(fallback: PDHoldFallback, correction: np.ndarray) -> np.ndarray:
    """The position target at which a driver's PD (the fallback's gains) commands the PD hold plus ``correction``."""
    return fallback.nominal + np.divide(correction, fallback.kp, out=np.zeros_like(correction), where=fallback.kp > 0)


class MpcNode(Node):
    """Lifecycle node running MPPI on the world model behind the safety supervisor; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self._lock = threading.Lock()
        self._throttle = EventThrottle(WARN_PERIOD_S)
        self._estop = EStop()                      # exists before configure: an e-stop can latch at any time
        self._controller: _Controller | None = None
        self._state_arrived = threading.Event()    # set by every accepted joint state (planner_trigger state)
        self._terminal_problem = ''                # why the last build of the terminal value failed ('' if none)
        self._terminal_source: tuple[str, np.ndarray] | None = None   # URDF and actuated joints P is built from
        self._terminal_candidate: np.ndarray | str | None = None      # P (or why not) for changes being validated
        self._pending_runtime: WorldModelRuntime | None = None
        self._pending_settings: MPPISettings | None = None
        self._pending_terminal: np.ndarray | str | None = None        # P (or why not) for the pending runtime
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._input: InputThread | None = None   # set below; destroy_node may run if start-up fails before that
        self._relay: CommandRelay | None = None  # the command relay process (command_relay), from configure
        self._relay_bypassed = 0                 # control ticks that published directly: the relay was not ticking
        self._relay_unmatched = 0                # ... or had matched fewer subscribers than this node's publisher
        self._direct_matched = 0                 # subscribers of this node's effort publisher, refreshed every
        self._match_check = 0                    # MATCH_REPORT_TICKS ticks
        self._loop_stats = self._new_loop_stats()
        self._mode_text = 'INACTIVE: not configured'
        self._imu: tuple[float, Imu] | None = None         # (monotonic receipt, message), for the balance critic
        self._odom: tuple[float, Odometry] | None = None
        self._trajectories = 0
        self._driver_holds = 0      # holds handed to the driver (safe_hold driver_hold or nominal_hold)
        self._validity_reports = 0
        # (receipt, stamp in ns) of recently accepted joint states: the planner's warm-start shift is counted in
        # stamp time, so the same input sequence gives the same plans whatever the transport jitter
        self._stamps: deque[tuple[float, int]] = deque(maxlen=64)
        self._stamps_lock = threading.Lock()
        # receipt -> plan handed to the supervisor, s (planner thread only): sets the committed steps
        self._plan_latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._committed = 0
        # The last budget check: one rollout of a worker's samples (ms), the runtime and (samples, horizon) it timed,
        # and its share of the planner period
        self._predictor_ms = math.nan
        self._budget_timed: tuple[Any, int, int] | None = None
        self._budget_percent = math.nan
        # Run-time checks run on their own threads, one at a time, so a parameter change returns at once. Each times
        # a bounded rollout (mpc.budget.timed_rollout) and the node joins them on exit: a check of 65536 samples used
        # to run for seconds on a daemon thread and abort the process (SIGABRT inside onnxruntime) when SIGINT came
        self._budget_lock = threading.Lock()
        self._budget_threads: list[threading.Thread] = []
        self._budget_cancel = threading.Event()
        self._declare_parameters()
        self._validate_all()       # a bad value from a parameter file fails start-up here, loudly
        self._cache_rates()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        # Plain (not lifecycle) publishers: the node itself decides when to publish, so the safe hold can still go
        # out during the deactivate transition and the mode is visible in every state.
        self._command_pub = self.create_publisher(Float64MultiArray, 'effort_controller/commands', reliable)
        self._stamped_pub = self.create_publisher(JointState, 'hamwm/mpc/command', reliable)
        self._feedforward_pub = self.create_publisher(JointState, 'hamwm/mpc/feedforward', reliable)
        self._mode_pub = self.create_publisher(String, 'hamwm/mpc/mode', latched)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, 'diagnostics', reliable)
        self._trajectory_pub = self.create_publisher(JointTrajectory, 'joint_trajectory_controller/joint_trajectory',
                                                     reliable)
        # The high-rate inputs (joint states, IMU, odometry at up to 1 kHz) get their own light node and executor
        # thread: this node's executor walks ~40 entities per wake-up with the interpreter lock held.
        self._input = InputThread(self, on_error=self._on_input_error) if self._param('input_thread') else None
        state_group = MutuallyExclusiveCallbackGroup()
        for msg_type, topic, callback in ((JointState, 'joint_states', self._on_joint_state),
                                          (Imu, 'imu', self._on_imu), (Odometry, 'odom', self._on_odom)):
            if self._input is not None:
                self._input.subscribe(msg_type, topic, callback, qos_profile_sensor_data)
            else:
                self.create_subscription(msg_type, topic, callback, qos_profile_sensor_data,
                                         callback_group=state_group)
        self.create_subscription(DiagnosticArray, 'diagnostics', self._on_diagnostics, 50)
        self.create_service(SetBool, 'hamwm/estop', self._on_estop)
        # Steady clock: diagnostics must keep coming when simulated time stands still (a dead simulator).
        self._diagnostics_timer = self.create_timer(1.0 / self._param('diagnostics_rate'), self._publish_diagnostics,
                                                    clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._publish_mode('INACTIVE: not configured')
        if self._input is not None:
            self._input.start()
        self.get_logger().info('ready (unconfigured); configure loads the model and the URDF')

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        self.executor_kind = declare_executor(self)
        d = self.declare_parameter
        d('model_dir', '', _descriptor('world-model directory (metadata.json, encoder.onnx, predictor.onnx); '
                                       'changing it while configured hot-loads the model (refused if invalid)'))
        d('robot_description', '', _descriptor('URDF XML; wins over urdf_file; read at configure'))
        d('urdf_file', '', _descriptor("URDF path; both empty: the shipped URDF of the model's robot; read at "
                                       'configure'))
        d('joints', Parameter.Type.STRING_ARRAY, _descriptor(
            'joint order of /effort_controller/commands (the model joints in any order, passive ones may be left '
            'out; unset: the actuated ones in model order, as a ros2_control command interface lists them)',
            read_only=True))
        d('providers', ['cpu'], _descriptor('onnxruntime providers in priority order: tensorrt, cuda, cpu',
                                            read_only=True))
        d('onnx_threads', 1, _descriptor('onnxruntime intra-op threads (0: one per core)', read_only=True,
                                         int_range=(0, 64)))
        d('control_rate', 500.0, _descriptor('Hz of the command loop', float_range=(100.0, 1000.0)))
        d('planner_rate', 50.0, _descriptor('Hz of the MPPI planner loop', float_range=(1.0, 500.0)))
        d('gil_switch_interval', 0.0002, _descriptor(
            's; Python thread switch interval set for this process at activate (default 5 ms in Python): how long '
            'the planner may keep the interpreter lock from the waking control thread', read_only=True,
            float_range=(1e-5, 0.05)))
        d('control_rt_priority', 50, _descriptor(
            'SCHED_FIFO priority of the control thread (as ros2_control does for its loop; needs root or an rtprio '
            'limit, else a warning and normal scheduling); 0 keeps normal scheduling', read_only=True,
            int_range=(0, 98)))
        d('input_thread', True, _descriptor(
            'serve /joint_states, /imu and /odom on a private node (<name>_input) with its own executor thread, so '
            'their rate does not load this node\'s executor and the control thread waits less for the interpreter '
            'lock; false: on this node\'s executor', read_only=True))
        d('command_relay', True, _descriptor(
            'publish the effort commands from a separate process (<name>_relay, started at configure) with its own '
            'interpreter lock, on SCHED_FIFO control_rt_priority at control_rate, 1 ms after each control tick: the '
            'control thread decides each command and posts it, the relay publishes the latest while it is at most '
            '2.5 periods old; false: the control thread publishes (its timing then carries the interpreter lock\'s '
            'jitter)', read_only=True))
        d('planner_nice', 0, _descriptor(
            'niceness added to the planner thread (and its MPPI workers) at activate, so the kernel runs the control '
            'thread first when cores are short; 0 leaves it at the process priority (Linux; ignored elsewhere)',
            read_only=True, int_range=(0, 19)))
        d('diagnostics_rate', 1.0, _descriptor('Hz of /diagnostics', read_only=True, float_range=(0.1, 50.0)))
        d('publish_stamped', True, _descriptor('also publish each command, named and stamped, on /hamwm/mpc/command',
                                               read_only=True))
        d('nominal_posture', Parameter.Type.DOUBLE_ARRAY, _descriptor(
            'posture the fallback holds, model joint order (unset: the shipped robot\'s resting posture, else zeros)',
            read_only=True))
        d('fallback_kp', Parameter.Type.DOUBLE_ARRAY, _descriptor(
            'fallback PD stiffness, 1 or one per joint (unset: the shipped robot\'s gains)', read_only=True))
        d('fallback_kd', Parameter.Type.DOUBLE_ARRAY, _descriptor('fallback PD damping, like fallback_kp',
                                                                  read_only=True))
        d('goal_position', Parameter.Type.DOUBLE_ARRAY, _descriptor(
            'tracking goal, model joint order (unset: the nominal posture); changeable at run time'))
        d('plan_feedback.kp', [0.0], _descriptor(
            'effort per rad (or m) of the measured positions\' deviation from the ones the plan predicts for that '
            'instant, added to the planned effort on every control tick: 1 value or one per model joint, >= 0; 0: '
            'off. Refused with pd_residual (its PD hold feeds back already)'))
        d('plan_feedback.kd', [0.0], _descriptor(
            'the same per rad/s (or m/s) of the velocities\' deviation'))
        d('autostart', False, _descriptor('configure and activate at start-up (launch files without a lifecycle '
                                          'manager)', read_only=True))
        d('pd_residual', False, _descriptor(
            'true: MPPI plans a correction to the PD hold of nominal_posture (fallback gains); every control tick '
            'commands that PD hold from the latest joint state plus the plan (floating-base robots: posture feedback '
            'at the control rate). false: the plan is the whole effort', read_only=True))
        d('pd_residual_fraction', 0.2, _descriptor(
            'with pd_residual: bound of the planned correction as a fraction of each effort limit',
            read_only=True, float_range=(0.01, 1.0)))
        d('planner_trigger', 'timer', _descriptor(
            'timer: plan on the planner_rate clock from the newest joint state; state: plan as soon as a fresh joint '
            'state arrives, at most planner_rate (saves the state\'s wait for the next planner slot)',
            constraints='timer | state'))
        d('plan_playback', 'linear', _descriptor(
            'how the control loop plays a plan between its model steps: linear (interpolated) or hold (each step\'s '
            'effort over the whole step, as the world model was trained and rolled out; the swing-up needs it)',
            constraints='linear | hold'))
        d('committed_steps', 0, _descriptor(
            'delay compensation: leading model steps of each plan kept from the previous plan and not optimised, '
            'because the robot executes them while the plan is computed and delivered; -1: from the measured '
            f'receipt-to-plan latency (p90 of the last {LATENCY_WINDOW} plans, in whole model steps); 0: off',
            int_range=(-1, 32)))
        d('command_interface', 'effort', _descriptor(
            'effort: /effort_controller/commands; trajectory: /joint_trajectory_controller/joint_trajectory; both',
            constraints='effort | trajectory | both'))
        d('safe_hold', 'zero_effort', _descriptor(
            'what waiting for state and safe hold command: zero_effort (the effort controller goes limp); '
            'driver_hold (no effort; an empty JointTrajectory on entering the mode tells the driver to hold where it '
            'is with its own position loop, as sim_node and joint_trajectory_controller read it; under gravity '
            'repeated holds creep down, each from the sagged posture); nominal_hold (no effort; the driver holds '
            'nominal_posture: a standing humanoid, which falls limp and creeps down under repeated holds in place). '
            'The e-stop is not affected (zero effort; on the trajectory interface a hold where the robot was)',
            read_only=True, constraints='zero_effort | driver_hold | nominal_hold'))
        d('limit_margin', 0.0, _descriptor('rad or m: a joint this close to a position limit counts as at it; '
                                           'efforts pushing it further out are cut to zero',
                                           float_range=(0.0, 1.0)))
        # world-model validity (world_model_node's monitor on /diagnostics)
        d('use_model_validity', True, _descriptor('follow the world-model monitor on /diagnostics (ERROR/STALE -> '
                                                  'fallback)'))
        d('model_validity_status', 'world_model_node: model validity', _descriptor(
            'name of the DiagnosticStatus that reports the world model\'s validity', read_only=True))
        d('model_invalid_time', 0.5, _descriptor('s an ERROR or STALE model validity must last before the fallback '
                                                 'takes over', float_range=(0.0, 60.0)))
        d('model_validity_timeout', 5.0, _descriptor('s without a validity report, once one was heard, that count as '
                                                     'STALE; 0: never', float_range=(0.0, 3600.0)))
        # whole-body balance critic (floating-base robots with sole frames)
        d('balance.floating_base', 'auto', _descriptor(
            'auto: the shipped robot\'s setting (humanoid: true), false otherwise; true: require the balance critic',
            read_only=True, constraints='auto | true | false'))
        d('balance.sole_frames', ['left_sole', 'right_sole'], _descriptor(
            'sole-centre frames of the URDF (z up) for the support polygon', read_only=True))
        d('balance.use_imu', True, _descriptor('base state from /imu (+ /odom) when fresh, else stance-foot '
                                               'kinematics'))
        d('balance.base_timeout', 0.1, _descriptor('s; /imu and /odom received further from the joint state than '
                                                   'this are not used', float_range=(0.001, 10.0)))
        # safety supervisor
        d('joint_state_timeout', 0.02, _descriptor('s without an accepted /joint_states (receipt time) before '
                                                   'the safe hold', float_range=(0.001, 1.0)))
        d('recovery_time', 0.2, _descriptor('s of fresh, valid joint states needed after activation, a stale period '
                                            'or a fault before control resumes', float_range=(0.0, 10.0)))
        d('max_stamp_age', 0.5, _descriptor('s; older stamps (against the node clock) are ignored',
                                            float_range=(0.001, 10.0)))
        d('max_future_stamp', 0.05, _descriptor('s; stamps further in the future are ignored',
                                                float_range=(0.0, 10.0)))
        d('zero_stamp', 'reject', _descriptor('zero stamps: reject (ignored) or accept (used, with a warning)',
                                              constraints='reject | accept'))
        d('position_tolerance', 0.05, _descriptor('rad or m a measured position may exceed its URDF range before '
                                                  'it is a fault (a swing-up pole is not checked: it may turn '
                                                  'over)', float_range=(0.0, 1.0)))
        d('max_consecutive_rejections', 10, _descriptor('rejected joint-state messages in a row that make a fault',
                                                        int_range=(1, 10000)))
        d('max_plan_age', 0.1, _descriptor('s; a plan made from an older state is late: fallback',
                                           float_range=(0.001, 5.0)))
        d('overrun_limit', 5, _descriptor('planner overruns in a row that trip the fallback', int_range=(1, 10000)))
        d('max_effort_rate', 0.0, _descriptor('largest effort change per second (N m/s or N/s); 0: unlimited',
                                              float_range=(0.0, 1.0e7)))
        d('handover_time', 0.0, _descriptor(
            's over which a switch between the plan and the fallback (either way) blends from the last command to '
            'the new law (bumpless transfer; with pd_residual the trajectory targets too); 0: at once. E-stop and '
            'safe holds never blend',
            float_range=(0.0, 1.0)))
        # MPPI
        d('mppi.num_samples', 256, _descriptor('sampled action sequences per iteration', int_range=(2, 65536)))
        d('mppi.horizon', 0, _descriptor('planning steps (model steps); 0: the horizon the model was exported with',
                                         int_range=(0, 1000)))
        d('mppi.iterations', 1, _descriptor('MPPI iterations per plan', int_range=(1, 20)))
        d('mppi.temperature', 0.1, _descriptor('MPPI temperature lambda (relative to the cost spread when '
                                               'mppi.normalise_costs)', float_range=(1e-6, 1e6)))
        d('mppi.normalise_costs', True, _descriptor('scale the temperature by the median excess cost, so it does '
                                                    'not depend on the critic weights'' overall size'))
        d('mppi.noise_std', 0.3, _descriptor('exploration noise std as a fraction of the plan\'s bound per joint (the '
                                             'effort limit, scaled by swingup.effort_fraction or pd_residual_fraction)',
                                             float_range=(1e-4, 10.0)))
        d('mppi.seed', 0, _descriptor('noise seed of the MPPI sampler', int_range=(0, 2**31 - 1)))
        d('mppi.noise_correlation', 0.0, _descriptor('lag-one correlation of the exploration noise over the horizon '
                                                     '(0: white; near 1: slowly varying)', float_range=(0.0, 0.99)))
        d('mppi.smoothing', 'none', _descriptor(
            'none | savgol: Savitzky-Golay filter of the plan after each update (a standing robot\'s corrections '
            'wander less)'))
        d('mppi.smoothing_window', 5, _descriptor('odd window of the plan smoothing, model steps',
                                                  int_range=(3, 101)))
        d('mppi.smoothing_order', 2, _descriptor('polynomial order of the plan smoothing, < mppi.smoothing_window',
                                                 int_range=(0, 10)))
        d('mppi.update_perturbation', 'applied', _descriptor(
            'applied | sampled: the plan moves by the weighted perturbations after the bounds (applied: averaging '
            'pulls it back inside a bound it presses against) or as drawn (sampled: it can sit on the bound, full '
            'effort); with task swingup the one near upright (swingup.far_update_perturbation: while pumping)'))
        d('mppi.workers', 1, _descriptor('planner threads: the samples are split into this many chunks, rolled out '
                                         'and scored concurrently (each with onnx_threads onnxruntime threads); on '
                                         'a small machine more than 1 competes with the control thread',
                                         int_range=(1, 16)))
        for name in CRITICS:
            d(f'critics.{name}.weight', DEFAULT_WEIGHTS[name], _descriptor(
                f'weight of the {name} critic; changes apply at the next iteration, warm start kept',
                float_range=(0.0, 1e6)))
        d('critics.energy.target', 0.0, _descriptor('energy critic target (model energy units)',
                                                    float_range=(-1e9, 1e9)))
        d('critics.balance.weight', 1.0, _descriptor(
            'weight of the balance critic (floating-base robots only); changes apply at the next iteration',
            float_range=(0.0, 1e6)))
        d('critics.balance.margin_target', 0.03, _descriptor(
            'm of ZMP margin inside the support polygon beyond which balance costs nothing', float_range=(1e-4, 1.0)))
        d('critics.balance.capture_weight', 1.0, _descriptor(
            'relative weight of the capture point\'s distance outside the support polygon', float_range=(0.0, 1e6)))
        # task: what the critics aim at (hamwm_ros.mpc.swingup for the swing-up schedule)
        d('task', 'track', _descriptor(
            'track: hold goal_position; swingup: swing a pole up from hanging and balance it (energy shaping far '
            'from upright, tracking near it; critics.energy.target and the pole entry of goal_position unused)',
            read_only=True, constraints='track | swingup'))
        d('swingup.angle_joint', '', _descriptor('the pole joint (0 hangs down, +-pi upright); empty: the last '
                                                 'model joint', read_only=True))
        d('swingup.energy_source', 'model', _descriptor(
            "model: the world model's Hamiltonian, one target per side of upright; pole: the pole's own energy from "
            "the predictions and the URDF's pole inertia (cart-pole)", read_only=True, constraints='model | pole'))
        d('swingup.energy_gate', 1.0, _descriptor('rad from upright within which energy shaping is off and '
                                                  'tracking has its full weight', float_range=(0.0, math.pi)))
        d('swingup.far_tracking_fraction', 0.05, _descriptor(
            'tracking weight farther than energy_gate from upright, as a fraction of critics.tracking.weight',
            float_range=(0.0, 1.0)))
        d('swingup.energy_margin', 0.0, _descriptor(
            'energy target below the upright energy as a fraction of the energy scale (negative: above it)',
            float_range=(-1.0, 1.0)))
        d('swingup.wrap_encode', True, _descriptor('wrap the pole angle to [-pi, pi) before encoding'))
        d('swingup.position_weights', [1.0], _descriptor('tracking weight per joint position (1 value or one per '
                                                         'joint, model order)', read_only=True))
        d('swingup.velocity_weights', [0.05], _descriptor('tracking weight per joint velocity (1 value or one per '
                                                          'joint, model order)', read_only=True))
        d('swingup.terminal_weight', 1.0, _descriptor('extra tracking weight on the last predicted step',
                                                      read_only=True, float_range=(0.0, 1e6)))
        d('swingup.effort_fraction', 1.0, _descriptor(
            'MPPI action bounds as a fraction of the URDF effort limits (> 0): keeps plans inside the efforts the '
            'model was trained on', read_only=True, float_range=(0.0, 1.0)))
        d('swingup.position_envelope', 1.0, _descriptor(
            'limits critic range of bounded joints (a cart rail), fraction of the URDF range about its centre (> 0)',
            read_only=True, float_range=(0.0, 1.0)))
        d('swingup.velocity_envelope', 1.0, _descriptor(
            'limits critic velocity limits, fraction of the URDF velocity limits (> 0)', read_only=True,
            float_range=(0.0, 1.0)))
        d('swingup.terminal_value_weight', 0.0, _descriptor(
            'near upright, weight (x critics.tracking.weight) of the LQR cost-to-go of the URDF robot linearised '
            'upright on the last predicted step (0: off); the matrix follows the tracking and effort weights, '
            'mppi.horizon, goal_position and the model', float_range=(0.0, 1e6)))
        d('swingup.far_update_perturbation', 'applied', _descriptor(
            'applied | sampled: mppi.update_perturbation while energy shaping leads (farther than '
            'swingup.energy_gate from upright); sampled pumps at full effort. Near upright mppi.update_perturbation '
            'applies'))

    def _cache_rates(self) -> None:
        # The loops read these plain attributes, not the parameter store, on every tick.
        self._control_period = 1.0 / float(self._param('control_rate'))
        self._planner_period = 1.0 / float(self._param('planner_rate'))
        self._publish_stamped = bool(self._param('publish_stamped'))
        interface = str(self._param('command_interface'))
        self._publish_effort = interface in ('effort', 'both')
        self._publish_trajectory = interface in ('trajectory', 'both')
        self._driver_hold = self._param('safe_hold') in ('driver_hold', 'nominal_hold')
        self._hold_nominal = self._param('safe_hold') == 'nominal_hold'
        self._pd_residual = bool(self._param('pd_residual'))
        self._use_validity = bool(self._param('use_model_validity'))
        self._hold_playback = self._param('plan_playback') == 'hold'
        self._plan_on_state = self._param('planner_trigger') == 'state'
        self._committed_param = int(self._param('committed_steps'))
        if self._relay is not None:
            self._relay.set_period(self._control_period)

    def _param(self, name: str, changes: dict[str, Any] | None = None) -> Any:
        """Value of a parameter, overridden by ``changes``; None for an unset statically typed parameter."""
        if changes and name in changes:
            return changes[name]
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    def _supervisor_config(self, changes: dict[str, Any] | None = None) -> SupervisorConfig:
        values = {name: self._param(name, changes) for name in SUPERVISOR_PARAMS}
        timeout = float(self._param('model_validity_timeout', changes))
        values['model_validity_timeout'] = timeout if timeout > 0 else math.inf
        rate = float(self._param('max_effort_rate', changes))
        values['max_effort_delta'] = rate / float(self._param('control_rate', changes)) if rate > 0 else math.inf
        values['plan_on_fallback'] = bool(self._param('pd_residual', changes))
        for name in ('joint_state_timeout', 'recovery_time', 'max_stamp_age', 'max_future_stamp',
                     'position_tolerance', 'max_plan_age', 'max_effort_delta', 'limit_margin', 'model_invalid_time',
                     'model_validity_timeout'):
            if not math.isfinite(values[name]) and not (name in ('max_effort_delta', 'model_validity_timeout')
                                                        and values[name] == math.inf):
                raise ValueError(f'{name} must be finite, got {values[name]}')
        return SupervisorConfig(**values)

    def _mppi_settings(self, limits: JointLimits, model_horizon: int,
                       changes: dict[str, Any] | None = None) -> MPPISettings:
        bound = self._action_bound(limits, changes)
        horizon = int(self._param('mppi.horizon', changes)) or int(model_horizon)
        noise = float(self._param('mppi.noise_std', changes))
        return MPPISettings(action_low=tuple(-bound), action_high=tuple(bound),
                            num_samples=int(self._param('mppi.num_samples', changes)),
                            horizon=horizon,
                            iterations=int(self._param('mppi.iterations', changes)),
                            temperature=float(self._param('mppi.temperature', changes)),
                            normalise_costs=bool(self._param('mppi.normalise_costs', changes)),
                            noise_std=tuple(noise * bound), max_retries=2,
                            noise_correlation=float(self._param('mppi.noise_correlation', changes)),
                            seed=int(self._param('mppi.seed', changes)),
                            workers=int(self._param('mppi.workers', changes)),
                            smoothing=str(self._param('mppi.smoothing', changes)),
                            smoothing_window=int(self._param('mppi.smoothing_window', changes)),
                            smoothing_order=int(self._param('mppi.smoothing_order', changes)),
                            update_perturbation=str(self._param('mppi.update_perturbation', changes)))

    def _action_bound(self, limits: JointLimits, changes: dict[str, Any] | None = None) -> np.ndarray:
        """The plan's effort bound per joint: the limits, scaled for the swing-up and the PD-residual modes."""
        bound = np.maximum(limits.effort, PASSIVE_BOUND)
        if self._param('task', changes) == 'swingup':
            bound = bound * float(self._param('swingup.effort_fraction', changes))
        if self._param('pd_residual', changes):
            bound = bound * float(self._param('pd_residual_fraction', changes))
        return bound

    def _check_rollout_inputs(self, runtime: WorldModelRuntime) -> None:
        """pd_residual adds the PD hold's effort to every planned step: the model must take one effort per joint.

        Raises
        ------
        ValueError
            If pd_residual is set and the model does not take one effort per joint, or the model's input is a
            feed-forward over a PD hold (``action_source``) and pd_residual is not set.
        """
        meta = runtime.metadata
        if self._pd_residual and meta.action_dim != len(meta.joint_names):
            raise ValueError(f'pd_residual needs a model with one effort input per joint; {meta.robot} has '
                             f'{meta.action_dim} inputs for {len(meta.joint_names)} joints')
        if meta.feedforward and not self._pd_residual:
            raise ValueError(f'the {meta.robot} model takes a feed-forward effort over the PD hold it was trained '
                             "with (metadata action_source 'feedforward'): it needs pd_residual true")

    def _rollout_for(self, runtime: WorldModelRuntime) -> BatchedRollout | EffortRollout:
        """The planner's rollout: plain, or (pd_residual) with the PD hold effort added to every planned step.

        Raises
        ------
        ValueError
            As :meth:`_check_rollout_inputs`.
        """
        self._check_rollout_inputs(runtime)
        if not self._pd_residual:
            return BatchedRollout.from_runtime(runtime)
        return EffortRollout(runtime, np.arange(runtime.metadata.action_dim))

    def _swingup_task(self, joint_names: tuple[str, ...] | None,
                      changes: dict[str, Any] | None = None) -> SwingUpTask:
        """The swing-up schedule's settings from the ``swingup.*`` parameters; ValueError with the reason.

        ``joint_names`` (model order) resolves ``swingup.angle_joint``; None (not configured yet) checks the rest.
        """
        name = str(self._param('swingup.angle_joint', changes))
        angle = 0
        if joint_names is not None:
            if name and name not in joint_names:
                raise ValueError(f'swingup.angle_joint {name!r} is not a model joint ({list(joint_names)})')
            angle = joint_names.index(name) if name else len(joint_names) - 1
        if not float(self._param('swingup.effort_fraction', changes)) > 0.0:
            raise ValueError('swingup.effort_fraction must be > 0')
        values = {field: self._param(f'swingup.{field}', changes) for field in SwingUpTask.field_names()
                  if field != 'angle_joint'}
        values['position_weights'] = list(values['position_weights'])
        values['velocity_weights'] = list(values['velocity_weights'])
        try:
            return SwingUpTask(angle_joint=angle, **values)
        except ValueError as error:
            raise ValueError(f'swingup: {error}') from None

    def _validate_all(self, changes: dict[str, Any] | None = None) -> None:
        """Raise ValueError (with the reason) if the parameters with ``changes`` applied are invalid."""
        for name in ('control_rate', 'planner_rate', 'mppi.temperature', 'mppi.noise_std', 'critics.energy.target',
                     'balance.base_timeout', *BALANCE_PARAMS, *(f'critics.{c}.weight' for c in CRITICS)):
            value = float(self._param(name, changes))
            if not math.isfinite(value):
                raise ValueError(f'{name} must be finite, got {value}')
        for name in ('plan_feedback.kp', 'plan_feedback.kd'):
            gains = list(self._param(name, changes) or [])
            if not gains or not all(math.isfinite(g) and g >= 0.0 for g in gains):
                raise ValueError(f'{name} needs finite values >= 0 (1 or one per model joint), got {gains}')
        if str(self._param('planner_trigger', changes)) not in ('timer', 'state'):
            raise ValueError(f"planner_trigger must be timer or state, got {self._param('planner_trigger', changes)!r}")
        smoothing = str(self._param('mppi.smoothing', changes))
        if smoothing not in SMOOTHING_METHODS:
            raise ValueError(f'mppi.smoothing must be one of {list(SMOOTHING_METHODS)}, got {smoothing!r}')
        window, order = int(self._param('mppi.smoothing_window', changes)), int(self._param('mppi.smoothing_order',
                                                                                           changes))
        if window % 2 == 0 or order >= window:
            raise ValueError(f'mppi.smoothing_window must be odd and above mppi.smoothing_order, got {window} and '
                             f'{order}')
        update = str(self._param('mppi.update_perturbation', changes))
        if update not in UPDATE_PERTURBATIONS:
            raise ValueError(f'mppi.update_perturbation must be one of {list(UPDATE_PERTURBATIONS)}, got {update!r}')
        if str(self._param('plan_playback', changes)) not in ('linear', 'hold'):
            raise ValueError(f"plan_playback must be linear or hold, got {self._param('plan_playback', changes)!r}")
        interface = str(self._param('command_interface', changes))
        if interface not in COMMAND_INTERFACES:
            raise ValueError(f'command_interface must be one of {list(COMMAND_INTERFACES)}, got {interface!r}')
        if str(self._param('safe_hold', changes)) not in SAFE_HOLDS:
            raise ValueError(f"safe_hold must be one of {list(SAFE_HOLDS)}, got {self._param('safe_hold', changes)!r}")
        floating = str(self._param('balance.floating_base', changes))
        if floating not in ('auto', 'true', 'false'):
            raise ValueError(f'balance.floating_base must be auto, true or false, got {floating!r}')
        task = str(self._param('task', changes))
        if task not in TASKS:
            raise ValueError(f'task must be one of {list(TASKS)}, got {task!r}')
        # the joint is resolved against the model only for task swingup (track ignores the swingup.* settings)
        swingup = self._swingup_task(self._controller.limits.names
                                     if self._controller is not None and task == 'swingup' else None, changes)
        schedule = self._controller.swingup if self._controller is not None else None
        if schedule is not None and schedule.terminal is None and swingup.terminal_value_weight > 0:
            raise ValueError(f'swingup.terminal_value_weight needs the LQR value at upright, which configure could '
                             f'not build: {self._terminal_problem}')
        self._supervisor_config(changes)
        if self._param('planner_rate', changes) > self._param('control_rate', changes):
            raise ValueError('planner_rate must not exceed control_rate')
        controller = self._controller
        if controller is not None:
            self._mppi_settings(controller.limits, controller.runtime.horizon, changes)
            self._plan_feedback(controller.limits, controller.swingup, changes)
            goal = self._param('goal_position', changes)
            if goal is not None and len(goal) not in (0, len(controller.limits.names)):
                raise ValueError(f'goal_position needs {len(controller.limits.names)} values, got {len(goal)}')
            if goal is not None and not all(math.isfinite(g) for g in goal):
                raise ValueError('goal_position must be finite')
            if schedule is not None and schedule.terminal is not None:   # last: its inputs are valid by now
                self._validate_terminal(swingup, changes)

    def _validate_terminal(self, swingup: SwingUpTask, changes: dict[str, Any]) -> None:
        """Rebuild the terminal value P for changed inputs into ``_terminal_candidate``; refuse where it is needed.

        Raises
        ------
        ValueError
            If the terminal value is weighted (after the changes) and P cannot be built for them, or was left stale
            by an earlier change that could not build it.
        """
        controller = self._controller
        if set(changes) & set(TERMINAL_INPUTS):
            runtime = self._pending_runtime or controller.runtime
            try:
                settings = self._mppi_settings(controller.limits, runtime.horizon, changes)
                self._terminal_candidate = self._terminal_value(controller.limits, runtime.dt, settings, changes)
            except ValueError as error:
                if swingup.terminal_value_weight > 0:
                    raise ValueError(f'swingup.terminal_value_weight: no LQR value for these settings: {error}') \
                        from None
                self._terminal_candidate = str(error)    # P stays stale, and unweighted until a build succeeds
        elif self._terminal_problem and swingup.terminal_value_weight > 0:
            raise ValueError(f'swingup.terminal_value_weight: the LQR value is stale ({self._terminal_problem}); '
                             f'change the settings it is built from ({", ".join(TERMINAL_INPUTS)}) first')

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse (with a reason) any change that would leave invalid settings; the old values are kept."""
        changes = {p.name: p.value for p in parameters}
        self._terminal_candidate = None
        try:
            self._validate_all(changes)
            if 'model_dir' in changes and self._controller is not None:
                runtime = self._load_runtime(str(changes['model_dir']), self._controller.limits.names)
                self._check_rollout_inputs(runtime)
                settings = self._mppi_settings(self._controller.limits, runtime.horizon, changes)
                terminal = self._hot_load_terminal(runtime, settings, changes)
                with self._lock:
                    # Swapped in together by the planner thread, between two iterations.
                    self._pending_runtime, self._pending_settings = runtime, settings
                    self._pending_terminal = terminal
        except (ValueError, TypeError, MetadataError, LimitsError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, parameters: list[Parameter]) -> None:
        """Apply accepted values: supervisor settings, critic weights and goals now; MPPI settings via the planner."""
        names = {p.name for p in parameters}
        self._cache_rates()
        controller = self._controller
        if controller is not None and 'command_interface' in names and self._wants_relay() and self._relay is None:
            # efforts from now on: start the relay; the control thread publishes them itself until it is up
            reason = self._start_relay(len(controller.output_names))
            if reason is not None:
                self.get_logger().error(f'{reason}; the control thread publishes the efforts')
        if controller is not None:
            controller.supervisor.update_config(self._supervisor_config())
            if names & {'plan_feedback.kp', 'plan_feedback.kd'}:
                controller.supervisor.set_plan_feedback(self._plan_feedback(controller.limits, controller.swingup))
            for critic in CRITICS:
                if f'critics.{critic}.weight' in names and critic in controller.critics:
                    controller.optimizer.set_weight(critic, float(self._param(f'critics.{critic}.weight')))
            schedule = controller.swingup
            if schedule is not None:
                # The schedule gates the energy and tracking weights before every plan, around these values.
                schedule.energy_weight = float(self._param('critics.energy.weight'))
                schedule.tracking_weight = float(self._param('critics.tracking.weight'))
                if names & {f'swingup.{n}' for n in SWINGUP_LIVE}:
                    schedule.update_task(self._swingup_task(controller.limits.names))
            if 'critics.energy.target' in names:
                controller.critics['energy'].target = float(self._param('critics.energy.target'))
            balance = controller.critics.get('balance')
            if balance is not None:
                # Plain attribute writes, read once per scoring call by the planner thread: no lock needed.
                if 'critics.balance.weight' in names:
                    controller.optimizer.set_weight('balance', float(self._param('critics.balance.weight')))
                if 'critics.balance.margin_target' in names:
                    balance.margin_target = float(self._param('critics.balance.margin_target'))
                if 'critics.balance.capture_weight' in names:
                    balance.capture_weight = float(self._param('critics.balance.capture_weight'))
            if 'goal_position' in names:
                goal = self._goal_observation(controller.limits)
                if schedule is not None:     # the pole's goal stays upright
                    goal = schedule.goal_observation(goal[:len(controller.limits.names)])
                    if schedule.terminal is not None:   # P itself is rebuilt below, linearised at the new goal
                        schedule.terminal.goal = goal
                controller.critics['tracking'].goal = goal
            if schedule is not None and schedule.terminal is not None and names & set(TERMINAL_INPUTS):
                self._apply_terminal(schedule, self._terminal_candidate)
                with self._lock:   # a model swap still pending takes this P (built for its dt), not its own older one
                    if self._pending_runtime is not None and 'model_dir' not in names:
                        self._pending_terminal = self._terminal_candidate
            if names & {f'mppi.{n}' for n in MPPI_PARAMS} and 'model_dir' not in names:
                with self._lock:
                    runtime = self._pending_runtime or controller.runtime
                    self._pending_settings = self._mppi_settings(controller.limits, runtime.horizon)
            if names & set(BUDGET_PARAMS) and 'model_dir' not in names:
                self._check_planner_budget_later(reuse=True)
            if 'model_dir' in names:
                self.get_logger().info(f"model {self._param('model_dir')} validated; the planner switches to it")
                self._check_planner_budget_later()
        self.get_logger().info('parameters set: ' + ', '.join(f'{p.name}={p.value}' for p in parameters))

    # ------------------------------------------------------------------ configure helpers
    def _load_runtime(self, model_dir: str, joint_names: tuple[str, ...] | None) -> WorldModelRuntime:
        if not model_dir:
            raise ValueError('parameter model_dir is empty: give a model directory (models/<robot>)')
        if not Path(model_dir).is_dir():
            raise ValueError(f'model_dir {model_dir} is not a directory')
        providers = tuple(self._param('providers'))
        num_samples = int(self._param('mppi.num_samples'))
        config = SessionConfig(providers=providers, intra_op_threads=int(self._param('onnx_threads')),
                               warmup_batch=(1, num_samples))
        runtime = WorldModelRuntime.load(model_dir, joint_names=joint_names, config=config)
        meta = runtime.metadata
        if not meta.uses_joints or meta.images is not None:
            raise ValueError(f'model {model_dir} needs camera images; mpc_node plans from joint states only')
        if meta.action_dim != len(meta.joint_names):
            raise ValueError(f'model action_dim {meta.action_dim} is not one effort per joint '
                             f'({len(meta.joint_names)} joints)')
        return runtime

    def _urdf_source(self, robot: str) -> str:
        description = str(self._param('robot_description'))
        if description.strip():
            return description
        urdf_file = str(self._param('urdf_file'))
        if urdf_file:
            return urdf_file
        if robot in ROBOTS:
            return str(robot_urdf_path(robot))
        raise ValueError(f"no URDF: set robot_description or urdf_file (the model's robot {robot!r} is not shipped)")

    def _per_joint(self, name: str, default: np.ndarray, n: int,
                   changes: dict[str, Any] | None = None) -> np.ndarray:
        value = self._param(name, changes)
        if value is None or len(value) == 0:
            return default
        array_ = np.asarray(value, dtype=np.float64)
        if array_.size not in (1, n) or not np.all(np.isfinite(array_)):
            raise ValueError(f'{name} needs 1 or {n} finite values, got {list(value)}')
        return np.broadcast_to(array_, (n,)).copy()

    def _plan_feedback(self, limits: JointLimits, schedule: SwingUpSchedule | None,
                       changes: dict[str, Any] | None = None) -> PlanFeedback | None:
        """The control-rate feedback around the plan from ``plan_feedback.*``; None when its gains are all zero.

        The swing-up's pole angle is compared on the circle (the planner encodes it wrapped).

        Raises
        ------
        ValueError
            On gains of another count than 1 or one per joint, or non-zero gains with ``pd_residual``.
        """
        n = len(limits.names)
        kp = self._per_joint('plan_feedback.kp', np.zeros(n), n, changes)
        kd = self._per_joint('plan_feedback.kd', np.zeros(n), n, changes)
        wrapped = np.zeros(n, dtype=bool)
        if schedule is not None:
            wrapped[schedule.angle_joint] = True
        feedback = PlanFeedback(kp, kd, wrapped)
        if not feedback.active:
            return None
        if self._param('pd_residual', changes):
            raise ValueError('plan_feedback needs pd_residual false: the PD hold already feeds the joint state back')
        return feedback

    def _goal_observation(self, limits: JointLimits) -> np.ndarray:
        n = len(limits.names)
        goal = self._per_joint('goal_position', self._nominal, n)
        return np.concatenate([goal, np.zeros(n)])

    def _build(self) -> _Controller:
        """Load and validate everything configure needs; raise with the reason on any problem."""
        runtime = self._load_runtime(str(self._param('model_dir')), None)
        meta = runtime.metadata
        urdf = self._urdf_source(meta.robot)
        urdf_joints = JointLimits.urdf_joint_names(urdf)
        check_joint_order(meta, urdf_joints)
        limits = JointLimits.from_urdf(urdf, meta.joint_names)
        n = len(limits.names)
        # Passive joints (effort limit 0) may be left out, as a ros2_control command interface lists actuated ones
        # only (the cart-pole's pole, the acrobot's shoulder): their effort is always zero. Unset: left out.
        passive = {name for name, effort in zip(limits.names, limits.effort) if effort <= 0}
        joints = self._param('joints')
        joints = [name for name in limits.names if name not in passive] if not joints else list(joints)
        if not joints:
            raise ValueError(f'every model joint is passive (effort limit 0 in the URDF): {sorted(passive)}; '
                             'nothing to command')
        if set(joints) - set(limits.names) or set(limits.names) - set(joints) - passive \
                or len(set(joints)) != len(joints):
            raise ValueError(f'parameter joints {joints} must name each model joint once, in any order '
                             f'({list(limits.names)}; passive ones may be left out: {sorted(passive)})')
        shipped = SETTINGS.get(meta.robot)     # resting posture and gains of a shipped robot, else generic ones
        default_nominal = np.array([shipped.nominal.get(j, 0.0) for j in limits.names]) if shipped else np.zeros(n)
        default_kp = np.array([shipped.kp.get(j, shipped.kp.get('*', 0.0)) for j in limits.names]) if shipped \
            else np.full(n, 10.0)
        default_kd = np.array([shipped.kd.get(j, shipped.kd.get('*', 0.0)) for j in limits.names]) if shipped \
            else np.full(n, 1.0)
        self._nominal = self._per_joint('nominal_posture', default_nominal, n)
        kp = self._per_joint('fallback_kp', default_kp, n)
        kd = self._per_joint('fallback_kd', default_kd, n)
        if np.any(kp < 0) or np.any(kd < 0):
            raise ValueError('fallback gains must be >= 0')
        bound = np.maximum(limits.effort, PASSIVE_BOUND)
        fallback = PDHoldFallback(self._nominal, kp, kd, bound)
        plan_bound = self._action_bound(limits)
        critics = {
            'tracking': TrackingCritic(self._goal_observation(limits),
                                       state_weights=np.concatenate([np.ones(n), np.full(n, 0.1)]),
                                       weight=self._param('critics.tracking.weight'), terminal_weight=1.0),
            'energy': EnergyCritic(self._param('critics.energy.target'), weight=self._param('critics.energy.weight')),
            # scaled by the plan's own bound (pd_residual: the correction's)
            'effort': EffortCritic(weight=self._param('critics.effort.weight'), scale=plan_bound),
            'smoothness': SmoothnessCritic(weight=self._param('critics.smoothness.weight'), scale=plan_bound),
            'limits': JointLimitsCritic(range(n), range(n, 2 * n), limits.position, limits.velocity,
                                        weight=self._param('critics.limits.weight')),
        }
        settings = self._mppi_settings(limits, meta.horizon)
        schedule = None
        if self._param('task') == 'swingup':    # the schedule's critics replace tracking, energy and limits
            scale = bound * float(self._param('swingup.effort_fraction'))    # the plan's action bounds
            schedule = self._build_swingup(urdf, runtime, limits, settings)
            critics.update(tracking=schedule.tracking, energy=schedule.energy,
                           effort=EffortCritic(weight=self._param('critics.effort.weight'), scale=scale),
                           smoothness=SmoothnessCritic(weight=self._param('critics.smoothness.weight'), scale=scale))
            del critics['limits']
            if schedule.limits is not None:     # only bounded joints (a cart rail): a pole may turn over
                critics['limits'] = schedule.limits
            if schedule.terminal is not None:
                critics['terminal'] = schedule.terminal
        balance = self._build_balance(urdf, meta.robot, limits.names, runtime.dt)
        if balance is not None:
            critics['balance'] = BalanceCritic(balance, weight=self._param('critics.balance.weight'),
                                               margin_target=self._param('critics.balance.margin_target'),
                                               capture_weight=self._param('critics.balance.capture_weight'),
                                               hard=False)
        optimizer = MPPIOptimizer(settings, self._rollout_for(runtime), list(critics.values()))
        # a swing-up's pole may turn over (after an e-stop it may spin for ever): its angle has no range to check
        supervisor = Supervisor(limits, fallback, self._supervisor_config(), estop=self._estop,
                                free_turning=() if schedule is None else (schedule.angle_joint,))
        supervisor.set_plan_feedback(self._plan_feedback(limits, schedule))
        output_index = np.array([limits.names.index(j) for j in joints], dtype=np.intp)
        return _Controller(runtime, limits, optimizer, supervisor, critics, output_index, joints, meta.robot,
                           balance, schedule)

    def _build_swingup(self, urdf: str, runtime: WorldModelRuntime, limits: JointLimits,
                       settings: MPPISettings) -> SwingUpSchedule:
        """The swing-up schedule (:mod:`hamwm_ros.mpc.swingup`) from the ``swingup.*`` parameters.

        ``settings`` are the plan's (the terminal value's stage costs use its horizon and action bounds).

        Raises
        ------
        ValueError
            If a setting is invalid, the angle joint unknown, or the pole's inertia cannot be read from the URDF.
        """
        task = self._swingup_task(limits.names)
        pole = pole_inertia(urdf, limits.names[task.angle_joint]) if task.energy_source == 'pole' else None
        goal = self._per_joint('goal_position', self._nominal, len(limits.names))
        tracking_weight = float(self._param('critics.tracking.weight'))
        self._terminal_source = (urdf, np.nonzero(limits.effort > 0)[0])
        self._terminal_problem = ''
        try:   # the LQR value at upright, rebuilt when the settings it comes from change (its weight is live)
            terminal = self._terminal_value(limits, runtime.dt, settings)
        except ValueError as error:
            if task.terminal_value_weight > 0:
                raise ValueError(f'swingup.terminal_value_weight: {error}') from None
            terminal = None     # off, and it cannot be switched on: the on-set callback refuses with the reason
            self._terminal_problem = str(error)
        return SwingUpSchedule(task, runtime, limits.position, limits.velocity,
                               energy_weight=float(self._param('critics.energy.weight')),
                               tracking_weight=tracking_weight,
                               limits_weight=float(self._param('critics.limits.weight')), pole=pole,
                               goal=goal, terminal_value=terminal)

    def _terminal_value(self, limits: JointLimits, dt: float, settings: MPPISettings,
                        changes: dict[str, Any] | None = None) -> np.ndarray:
        """P of the swing-up's terminal value for the plan's ``settings`` (horizon, bounds), weights, goal, model dt.

        Raises
        ------
        ValueError
            If the robot cannot be linearised there or the LQR value does not exist (see ``terminal_value_matrix``).
        """
        urdf, actuated = self._terminal_source
        goal = self._per_joint('goal_position', self._nominal, len(limits.names), changes)
        tracking = max(float(self._param('critics.tracking.weight', changes)), 1e-6)
        effort = max(float(self._param('critics.effort.weight', changes)), 1e-6)
        return terminal_value_matrix(self._swingup_task(limits.names, changes), urdf, limits.names, actuated,
                                     dt, settings.horizon, effort / tracking,
                                     np.asarray(settings.action_high)[actuated], goal)

    def _hot_load_terminal(self, runtime: WorldModelRuntime, settings: MPPISettings,
                           changes: dict[str, Any]) -> np.ndarray | str | None:
        """P for a model being hot-loaded (its dt; ``settings``: its horizon), why not (old P kept, stale), or None.

        Raises
        ------
        ValueError
            If the terminal value is weighted and P cannot be built for the new model.
        """
        controller = self._controller
        schedule = controller.swingup
        if schedule is None or schedule.terminal is None:
            return None
        try:
            return self._terminal_value(controller.limits, runtime.dt, settings, changes)
        except ValueError as error:
            if self._swingup_task(controller.limits.names, changes).terminal_value_weight > 0:
                raise ValueError(f"swingup.terminal_value_weight: no LQR value for model {changes['model_dir']}: "
                                 f'{error}') from None
            return str(error)

    def _apply_terminal(self, schedule: SwingUpSchedule, candidate: np.ndarray | str | None) -> None:
        """Put a rebuilt P in the terminal critic, or record why it stays stale."""
        if isinstance(candidate, str):
            self._terminal_problem = candidate
            self.get_logger().warning(f'terminal value kept stale (weight it only after a rebuild): {candidate}')
        elif candidate is not None:
            schedule.terminal.value_matrix = candidate
            self._terminal_problem = ''

    @staticmethod
    def _swingup_input(schedule: SwingUpSchedule, runtime: WorldModelRuntime, position: np.ndarray) -> np.ndarray:
        """Set the swing-up critics for the next plan (planner thread); return the positions to encode."""
        if schedule.runtime is not runtime:     # a hot-loaded model has its own upright energies
            schedule.retarget(runtime)
        return schedule.prepare(position)

    def _build_balance(self, urdf: str, robot: str, joint_names: tuple[str, ...], dt: float) -> PlanBalance | None:
        """The balance term for a floating-base robot with sole frames; None for a fixed base.

        Raises
        ------
        ValueError
            If ``balance.floating_base`` is true (or auto on a shipped floating-base robot) and the URDF has no such
            soles, or Pinocchio's joint order differs from the model's.
        """
        setting = str(self._param('balance.floating_base'))
        shipped = SETTINGS.get(robot)
        floating = setting == 'true' or (setting == 'auto' and shipped is not None and shipped.floating_base)
        if not floating:
            return None
        soles = list(self._param('balance.sole_frames'))
        if not soles:
            raise ValueError('balance.sole_frames is empty: a floating-base robot needs its sole frames')
        try:
            wb = WholeBodyModel(urdf, floating_base=True, sole_frames=soles)
        except WholeBodyError as error:
            raise ValueError(f'balance critic: {error}') from None
        if tuple(wb.joint_names) != tuple(joint_names):
            raise ValueError(f'balance critic: Pinocchio joint order {list(wb.joint_names)} differs from the model\'s '
                             f'{list(joint_names)}')
        return PlanBalance(wb, dt)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            controller = self._build()
        except Exception as error:  # noqa: BLE001 - any failure to build means: stay unconfigured, say why
            reason = f'configure failed: {type(error).__name__}: {error}'
            self.get_logger().error(reason)
            self._publish_mode(f'INACTIVE: {reason}')
            return TransitionCallbackReturn.FAILURE
        with self._lock:
            self._controller = controller
            self._pending_runtime = self._pending_settings = self._pending_terminal = None
        meta = controller.runtime.metadata
        balance = controller.balance
        self.get_logger().info(
            f"configured: model {self._param('model_dir')} ({meta.robot}, {len(meta.joint_names)} joints, dt "
            f'{meta.dt:g} s, providers {list(controller.runtime.providers)}), commands for {controller.output_names}'
            + (f', balance critic on soles {[f.frame for f in balance.wb.feet]}' if balance is not None else ''))
        self._check_planner_budget(controller.runtime, controller.optimizer.settings)
        if self._wants_relay():
            reason = self._start_relay(len(controller.output_names))
            if reason is not None:
                self.get_logger().error(f'configure failed: {reason}{RELAY_HINT}')
                self._publish_mode(f'INACTIVE: configure failed: {reason}')
                with self._lock:
                    self._controller = None
                return TransitionCallbackReturn.FAILURE
        self._publish_mode('INACTIVE: configured')
        return TransitionCallbackReturn.SUCCESS

    def _wants_relay(self) -> bool:
        """Whether a relay should run: ``command_relay`` on and efforts published (not the trajectory interface)."""
        return bool(self._param('command_relay')) and self._publish_effort

    def _start_relay(self, size: int) -> str | None:
        """Start the command relay process for ``size``-joint commands (if not running); None, or why it failed."""
        if self._relay is not None and self._relay.process.poll() is None:
            return None     # running (one relay per configured controller: its command size cannot change)
        self._stop_relay()
        try:
            # a stall of this process: zero effort from the relay when that is the safe hold (the driver would keep
            # the last effort); quiet when the driver holds a posture (safe_hold is read-only: set once here)
            relay = CommandRelay(size, self.resolve_topic_name('effort_controller/commands'),
                                 f'{self.get_name()}_relay', self.get_namespace(), self.context.get_domain_id(),
                                 int(self._param('control_rt_priority')), self._control_period,
                                 stale_hold=not self._driver_hold)
        except OSError as error:
            return f'the command relay process did not start: {error}'
        self._relay = relay
        return None

    def _stop_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            code = relay.stop()
            if code not in (0, None):
                self.get_logger().warning(f'the command relay process exited with code {code}')

    def _check_planner_budget_later(self, reuse: bool = False) -> None:
        """:meth:`_check_planner_budget` on a thread of its own (run-time changes: the caller does not wait).

        The thread reads the model and settings in force when it runs, so of several quick changes the last check
        is of the final settings, whatever order the threads take the lock in.
        """
        def check() -> None:
            with self._budget_lock:
                controller = self._controller
                if controller is None or self._budget_cancel.is_set():
                    return
                with self._lock:    # a hot-loaded model the planner has not switched to yet counts already
                    runtime = self._pending_runtime or controller.runtime
                self._check_planner_budget(runtime, self._mppi_settings(controller.limits, runtime.horizon),
                                           reuse=reuse)

        self._budget_threads = [t for t in self._budget_threads if t.is_alive()]
        thread = threading.Thread(target=check, name='planner-budget')
        self._budget_threads.append(thread)
        thread.start()

    def _join_budget_checks(self) -> None:
        """Let a running budget check finish (it is bounded) and drop the queued ones: the node is going away."""
        self._budget_cancel.set()
        for thread in self._budget_threads:
            thread.join(timeout=10.0)
        self._budget_threads = []

    def _check_planner_budget(self, runtime: WorldModelRuntime, settings: MPPISettings, *,
                              reuse: bool = False) -> None:
        """Time one predictor rollout of a worker's samples and say how much of the planner period it takes.

        At configure, when a new model is hot-loaded and when a setting in :data:`BUDGET_PARAMS` changes (rollouts
        are thread-safe: the planner may be using the runtime meanwhile). With ``reuse`` the last measurement
        stands in when it timed the same runtime, samples and horizon (a new ``planner_rate`` only rescales it).
        """
        samples = math.ceil(settings.num_samples / settings.workers)
        timed = self._budget_timed
        plan = timed_rollout(samples, settings.horizon, runtime.horizon)
        try:
            if reuse and timed is not None and timed[0] is runtime and timed[1:] == (samples, settings.horizon) \
                    and math.isfinite(self._predictor_ms):
                rollout_s = self._predictor_ms / 1e3
            else:
                rollout_s = runtime.time_rollout(plan.samples, plan.steps) * plan.scale
            budget = planner_budget(rollout_s, self._planner_period, samples, settings.horizon,
                                    runtime.metadata.training.get('model_config'), timed=plan)
        except Exception as error:  # noqa: BLE001 - a check only: configure already validated the model
            self._predictor_ms = self._budget_percent = math.nan
            self._budget_timed = None
            self.get_logger().warning(f'planner budget not measured: {type(error).__name__}: {error}')
            return
        self._predictor_ms = 1e3 * rollout_s
        self._budget_timed = (runtime, samples, settings.horizon)
        self._budget_percent = 100.0 * budget.fraction
        # Two call sites: rclpy refuses one call site logging at two severities (ValueError, seen when a run-time
        # change pushed the budget over after configure had logged it at info).
        if budget.over:
            self.get_logger().warning(budget.message)
        else:
            self.get_logger().info(budget.message)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        controller = self._controller
        if self._wants_relay():
            # (re)start it if it is not running (it died since configure), then wait until it publishes
            reason = self._start_relay(len(controller.output_names))
            if reason is None:
                reason = self._relay.wait_ready()
            if reason is not None:
                self.get_logger().error(f'activate failed: {reason}{RELAY_HINT}')
                return TransitionCallbackReturn.FAILURE
        controller.supervisor.activate(time.monotonic())
        controller.optimizer.reset()
        if controller.balance is not None:
            controller.balance.reset()
        self._loop_stats = self._new_loop_stats()
        # The control thread sleeps between ticks and needs the GIL back when it wakes; another thread running Python
        # keeps it for up to this interval. With the control thread on SCHED_FIFO the lock is what remains: an A/B
        # (hamwm bench mpc --loop-only --mpc-param gil_switch_interval:=..., 3 x 20 s each) gave p99 period error
        # 0.87-1.08 ms at Python's 5 ms and 0.46-0.63 ms at 0.2 ms.
        sys.setswitchinterval(float(self._param('gil_switch_interval')))
        self._stop.clear()
        self._threads = [threading.Thread(target=self._planner_loop, name='mpc_planner', daemon=True),
                         threading.Thread(target=self._control_loop, name='mpc_control', daemon=True)]
        for thread in self._threads:
            thread.start()
        self._publish_mode(controller.supervisor.modes.status())
        self.get_logger().info(f"active: control {self._param('control_rate'):g} Hz, planner "
                               f"{self._param('planner_rate'):g} Hz")
        return super().on_activate(state)

    def _stop_threads(self) -> None:
        self._stop.set()
        self._state_arrived.set()          # a planner waiting for a state wakes to see the stop
        # A plan of a large sample count can spend seconds in one rollout: end it (onnxruntime stops between graph
        # nodes), so deactivation and exit take one period, not one plan; a daemon thread still inside onnxruntime
        # when the interpreter exits aborts the process.
        with self._lock:
            controller, pending = self._controller, self._pending_runtime
        runtimes = {id(r): r for r in (controller.runtime if controller else None, pending) if r is not None}
        for runtime in runtimes.values():
            runtime.cancel_runs()
        try:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join(timeout=5.0)
                    if thread.is_alive():
                        self.get_logger().warning(f'{thread.name} still busy 5 s after the stop; waiting for it')
                        thread.join(timeout=60.0)
        finally:
            for runtime in runtimes.values():
                runtime.cancel_runs(False)
        self._threads = []

    def _hold(self, reason: str) -> None:
        """Stop the loops and publish one zero-effort command."""
        self._stop_threads()
        controller = self._controller
        if controller is None:
            return
        hold = controller.supervisor.deactivate(time.monotonic(), reason)
        if self._relay is not None:
            self._relay.clear()           # the relay goes quiet; the hold goes out from here
        if self._driver_hold:
            self._publish_driver_hold(controller)
        else:
            self._publish_command(controller, hold)
            self._publish_hold_trajectory(controller)
        self._publish_mode(controller.supervisor.modes.status())

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._hold('deactivated: safe hold published')
        self.get_logger().info('deactivated: safe hold published')
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._stop_relay()
        with self._lock:
            self._controller = self._pending_runtime = self._pending_settings = self._pending_terminal = None
        self._publish_mode('INACTIVE: not configured')
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._hold('shutting down')
        with self._lock:
            self._controller = None
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._hold('error: safe hold published')
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ executor callbacks
    def _on_joint_state(self, msg: JointState) -> None:
        receipt = time.monotonic()
        controller = self._controller
        if controller is None:
            return
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        ros_now = self.get_clock().now().nanoseconds * 1e-9
        verdict = controller.supervisor.on_joint_state(msg.name, msg.position, msg.velocity, msg.effort, stamp,
                                                       ros_now, receipt)
        if verdict.ok:
            with self._stamps_lock:
                self._stamps.append((receipt, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))
            self._state_arrived.set()      # planner_trigger state: the planner waits on it
        if verdict.kind == 'clock_not_started':    # expected while a simulator's /clock is not yet heard
            if self._throttle.due(verdict.kind):
                self.get_logger().info(f'/joint_states: {verdict.reason}')
        elif verdict.kind:
            count = self._throttle.due(verdict.kind)
            if count:
                what = 'used' if verdict.ok else 'ignored'
                self.get_logger().warning(f'/joint_states {what} ({count} since the last warning): {verdict.reason}')

    def _on_input_error(self, error: BaseException) -> None:
        """A joint-state/IMU/odometry callback raised: the message is dropped, the input thread keeps serving."""
        count = self._throttle.due('input_callback')
        if count:
            self.get_logger().error(f'input callback failed, message dropped ({count} since the last report): '
                                    f'{type(error).__name__}: {error}')

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        controller = self._controller
        if controller is None or not self._use_validity:
            return
        name = self._param('model_validity_status')
        for status in msg.status:
            if status.name == name:
                level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
                controller.supervisor.on_model_validity(level, status.message, time.monotonic())
                self._validity_reports += 1

    def _on_imu(self, msg: Imu) -> None:
        self._imu = (time.monotonic(), msg)

    def _on_odom(self, msg: Odometry) -> None:
        self._odom = (time.monotonic(), msg)

    def _base_measurement(self, receipt: float) -> BaseMeasurement | None:
        """/imu (+ /odom) received within ``balance.base_timeout`` of the joint state ``receipt``, else None.

        None means stance-foot kinematics; see :func:`hamwm_ros.wholebody.base_measurement`.
        """
        if not self._param('balance.use_imu'):
            return None
        return base_measurement(receipt, self._imu, self._odom, float(self._param('balance.base_timeout')))

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        now = time.monotonic()
        controller = self._controller
        if request.data:
            reason = 'requested on /hamwm/estop'
            if controller is not None:
                controller.supervisor.trigger_estop(reason, now)
            else:
                self._estop.trigger(reason)
            self.get_logger().error('E-STOP latched: zero effort until reset (/hamwm/estop false)')
            response.success, response.message = True, 'e-stop latched'
        else:
            if controller is not None:
                released, message = controller.supervisor.reset_estop(now)
            else:
                released, message = self._estop.reset()
            if released:
                self.get_logger().warning(message)
            else:
                self.get_logger().error(message)
            response.success, response.message = released, message
        return response

    # ------------------------------------------------------------------ planner thread
    def _planner_loop(self) -> None:
        name_os_thread()
        self._lower_planner_priority(int(self._param('planner_nice')))
        controller = self._controller
        supervisor, optimizer = controller.supervisor, controller.optimizer
        runtime = controller.runtime
        last_receipt: float | None = None
        next_start = time.monotonic()
        while not self._stop.is_set():
            period = self._planner_period
            start = time.monotonic()
            with self._lock:
                new_runtime, self._pending_runtime = self._pending_runtime, None
                new_settings, self._pending_settings = self._pending_settings, None
                new_terminal, self._pending_terminal = self._pending_terminal, None
            if new_runtime is not None:
                if new_terminal is not None:   # P for the new model's dt (planner thread: between two iterations)
                    self._apply_terminal(controller.swingup, new_terminal)
                runtime = controller.runtime = new_runtime
                optimizer.rollout_fn = self._rollout_for(runtime)     # checked when the model was validated
                optimizer.reset()
                last_receipt = None
            if new_settings is not None:
                try:
                    optimizer.update_settings(new_settings)
                except Exception as error:  # noqa: BLE001 - validated already; never let the planner thread die
                    self.get_logger().error(f'MPPI settings not applied: {error}')
            if supervisor.take_reset_request():
                optimizer.reset()
                last_receipt = None
            state = supervisor.latest_state()
            if state is not None and state[2] != last_receipt:
                self._plan_once(controller, runtime, state, last_receipt)
                last_receipt = state[2]
                supervisor.on_planner_iteration(time.monotonic() - start, period)
                self._loop_stats['planner_s'].append(time.monotonic() - start)
            next_start = max(next_start + period, time.monotonic() - period)   # skip, never burst, after a stall
            if self._plan_on_state:
                self._wait_for_fresh_state(supervisor, last_receipt, period)
            else:
                self._stop.wait(max(0.0, next_start - time.monotonic()))

    def _wait_for_fresh_state(self, supervisor: Supervisor, last_receipt: float | None, period: float) -> None:
        """Wait for the next plan's state (planner_trigger state).

        Returns when an accepted joint state arrives that was received at least 0.9 planner periods after the last
        planned one (at most about planner_rate plans), or after a period without one (the loop then applies pending
        settings and resets, and sees a stop).
        """
        deadline = time.monotonic() + period
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0.0 or not self._state_arrived.wait(remaining):
                return
            self._state_arrived.clear()
            state = supervisor.latest_state()
            if state is not None and (last_receipt is None or state[2] - last_receipt >= 0.9 * period):
                return

    def _lower_planner_priority(self, nice: int) -> None:
        """Raise this thread's nice value (Linux schedules threads as tasks; workers it starts inherit it).

        Lowering a priority needs no privilege, and the planner thread is started afresh at every activate, so the
        executor and control threads keep the process priority.
        """
        if nice <= 0 or not hasattr(os, 'setpriority') or not sys.platform.startswith('linux'):
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError as error:
            self.get_logger().warning(f'planner priority unchanged: {error}')

    def _plan_once(self, controller: _Controller, runtime: WorldModelRuntime,
                   state: tuple[np.ndarray, np.ndarray, float], last_receipt: float | None) -> None:
        position, velocity, receipt = state
        supervisor, optimizer = controller.supervisor, controller.optimizer
        dt = runtime.dt
        shift = 0 if last_receipt is None else self._elapsed_steps(last_receipt, receipt, dt)
        balance = controller.balance
        if balance is not None:
            balance.dt = dt
            if not balance.update(receipt, position, velocity, self._base_measurement(receipt)):
                count = self._throttle.due('balance_off')
                if count:
                    self.get_logger().warning(f'balance critic off for this plan ({count} since the last report): '
                                              f'{balance.reason}')
        try:
            encoded = position if controller.swingup is None else self._swingup_input(controller.swingup, runtime,
                                                                                       position)
            z = runtime.encode(encoded[None], velocity[None])
            z0 = z[:, 0] if z.ndim == 3 else z[0]
            if self._pd_residual:
                # the model sees the PD hold at this state (held over the horizon) plus the correction, or, when
                # the hold is part of the plant it learned (action_source 'feedforward'), the correction alone;
                # the rate limit and the smoothness critic apply to the correction alone.
                if not runtime.metadata.feedforward:
                    optimizer.rollout_fn.set_offset(supervisor.fallback.command(position, velocity))
                previous = optimizer.last_command
            else:
                previous = supervisor.command_guard.previous.astype(np.float32)
            self._committed = committed = self._committed_steps(dt)
            result = optimizer.plan(z0, previous_action=previous, shift=shift, committed=committed,
                                    update_perturbation=None if controller.swingup is None
                                    else controller.swingup.plan_update)
        except Exception as error:  # noqa: BLE001 - a failing model must end in the fallback, not a dead thread
            optimizer.reset()
            if self._stop.is_set():         # a rollout ended by the stop (cancel_runs): nothing went wrong
                self.get_logger().info('planner: the plan in progress was ended by the stop')
                return
            supervisor.on_plan(None, f'planner error: {type(error).__name__}: {error}')
            count = self._throttle.due('planner_error')
            if count:
                self.get_logger().error(f'planner failed ({count} since the last report): {error}')
            return
        if not result.valid:
            optimizer.reset()
            supervisor.on_plan(None, f'no valid plan: {result.reason}')
            return
        n = len(controller.limits.names)
        feedback_states = supervisor.plan_feedback is not None
        predicted = _joint_predictions(result, n) \
            if feedback_states or (not self._pd_residual and self._publish_trajectory) else None
        states = None
        if feedback_states and predicted is not None:   # row 0: the state the plan starts from, as encoded
            start = np.concatenate([np.asarray(encoded, dtype=np.float64), np.asarray(velocity, dtype=np.float64)])
            states = np.vstack([start[None], predicted])
        taken = supervisor.on_plan(Plan(np.asarray(result.sequence, dtype=np.float64), start=receipt, dt=dt,
                                        hold=self._hold_playback, states=states))
        if taken:
            self._plan_latency.append(time.monotonic() - receipt)
        # the correction due now (pd_residual); it goes out only while the supervisor allows planning (a plan taken
        # while the monitor holds the fallback is kept for later but not applied)
        applied = taken and self._pd_residual and supervisor.trajectory_allowed(time.monotonic(), receipt)
        if applied:
            step = min(len(result.sequence) - 1, max(0, int((time.monotonic() - receipt) / dt)))
            correction = np.asarray(result.sequence[step], dtype=np.float64)
            # A plan that ends a fallback with a hand-over starts from the output in force, and during a hand-over
            # the control loop publishes the correction actually applied, every tick.
            fades_in = supervisor.plan_fades_in
            if not (fades_in or supervisor.handing_over):
                self._publish_feedforward(controller, correction)
        if applied and self._publish_trajectory:
            # pd_residual over the trajectory interface: the driver's own PD (at its rate, without the transport's
            # delay) holds nominal + correction / kp, which commands PD hold + correction. One point at time 0 (a
            # step target with zero velocity, held until the next plan): a spline through the plan's steps would
            # add velocity targets, that is damping the model never saw.
            added = supervisor.handover_added(time.monotonic())
            if fades_in:        # this plan ends a fallback at the next tick: ramp from the target in force to it
                self._publish_target_ramp(controller, np.zeros_like(correction) if added is None else added,
                                          correction)
            else:
                if added is not None:       # a hand-over in progress: the blended correction
                    correction = correction + added
                target = _hold_target(supervisor.fallback, correction)[None]
                self._publish_trajectory_msg(controller, target, np.zeros_like(target), dt, first_step=0)
        elif taken and not self._pd_residual and self._publish_trajectory and predicted is not None \
                and supervisor.trajectory_allowed(time.monotonic(), receipt):
            self._publish_trajectory_msg(controller, predicted[:, :n], predicted[:, n:], dt)

    def _publish_feedforward(self, controller: _Controller, correction: np.ndarray | None) -> None:
        """The correction to the PD hold now in force (None: zero) on /hamwm/mpc/feedforward, model joint order."""
        if not self.context.ok():
            return
        n = len(controller.limits.names)
        effort = np.zeros(n) if correction is None else np.asarray(correction, dtype=np.float64)
        if effort.shape != (n,) or not np.all(np.isfinite(effort)):
            effort = np.zeros(n)
        msg = JointState(name=list(controller.limits.names))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.effort = _doubles(effort)
        try:
            self._feedforward_pub.publish(msg)
        except Exception:  # noqa: BLE001 - the context can shut down between the check and the publish
            if self.context.ok():
                raise

    def _committed_steps(self, dt: float) -> int:
        """Plan steps the robot runs before this plan can take over (:func:`hamwm_ros.mpc.timing.committed_steps`)."""
        return committed_steps(self._plan_latency, dt, self._committed_param)

    def _elapsed_steps(self, last_receipt: float, receipt: float, dt: float) -> int:
        """Model steps between two accepted states, by stamp (:func:`hamwm_ros.mpc.timing.elapsed_steps`)."""
        with self._stamps_lock:
            stamps = dict(self._stamps)
        return elapsed_steps(stamps, last_receipt, receipt, dt)

    # ------------------------------------------------------------------ trajectory output
    def _publish_trajectory_msg(self, controller: _Controller, positions: np.ndarray,
                                velocities: np.ndarray | None, dt: float, first_step: int = 1) -> None:
        """One JointTrajectory (model-order arrays in; clamped to the URDF limits, reordered to ``joints``).

        Point k is at ``(k + first_step) * dt``; a first point at time 0 is where the trajectory starts (the driver
        steps its target there rather than interpolating from the measured state).
        """
        if not self.context.ok():
            return
        q, v = clamp_trajectory(positions, velocities, controller.limits)
        index = controller.output_index
        msg = JointTrajectory(joint_names=controller.output_names)   # stamp zero: start when received
        points = []
        for k in range(q.shape[0]):
            ns = int(round((k + first_step) * dt * 1e9))
            point = JointTrajectoryPoint(positions=_doubles(q[k, index]),
                                         time_from_start=Duration(sec=ns // 1_000_000_000,
                                                                  nanosec=ns % 1_000_000_000))
            if v is not None:
                point.velocities = _doubles(v[k, index])
            points.append(point)
        msg.points = points
        if self._send_trajectory(msg):
            self._trajectories += 1

    def _send_trajectory(self, msg: JointTrajectory) -> bool:
        """Publish on the trajectory topic; False when the context shut down under the call (shutting down)."""
        try:
            self._trajectory_pub.publish(msg)
        except Exception:  # noqa: BLE001 - the context can shut down between the caller's check and the publish
            if self.context.ok():
                raise
            return False
        return True

    def _publish_driver_hold(self, controller: _Controller) -> None:
        """Hand the robot to the driver's own position loop (safe_hold driver_hold / nominal_hold).

        driver_hold: an empty JointTrajectory ("stop and hold where you are"); nominal_hold: nominal_posture as one
        point at time 0 (the driver steps its target there: a PD hold of that posture).
        """
        if not self.context.ok():
            return
        if self._hold_nominal:
            self._publish_nominal_target(controller)
            self._driver_holds += 1
        elif self._send_trajectory(JointTrajectory(joint_names=controller.output_names)):
            self._driver_holds += 1

    def _publish_nominal_target(self, controller: _Controller) -> None:
        """nominal_posture as one point at time 0: the driver steps its target there (a PD hold of it)."""
        nominal = controller.supervisor.fallback.nominal[None].copy()
        self._publish_trajectory_msg(controller, nominal, np.zeros_like(nominal), self._control_period, first_step=0)

    def _publish_target_ramp(self, controller: _Controller, start: np.ndarray, end: np.ndarray) -> None:
        """Two-point target ramp of a pd_residual hand-over on the trajectory interface.

        The target for correction ``start`` now and for ``end`` at ``handover_time``, zero velocities.
        """
        supervisor = controller.supervisor
        targets = np.stack([_hold_target(supervisor.fallback, start), _hold_target(supervisor.fallback, end)])
        self._publish_trajectory_msg(controller, targets, np.zeros_like(targets), supervisor.config.handover_time,
                                     first_step=0)

    def _publish_hold_trajectory(self, controller: _Controller, mode: Mode | None = None,
                                 correction: np.ndarray | None = None) -> None:
        """Hold the last measured position (one point, zero velocity): the trajectory interface's safe hold.

        With pd_residual the FALLBACK (PD hold of the nominal posture) holds the nominal posture instead; when the
        switch is handed over (``correction``: the one still applied, non-zero), the target moves there from nominal +
        correction / kp over ``handover_time`` (two points), as the efforts do.
        """
        state = controller.supervisor.latest_state()
        if state is None or not self._publish_trajectory:
            return
        if mode is Mode.FALLBACK and self._pd_residual:
            if controller.supervisor.config.handover_time > 0.0 and correction is not None \
                    and np.any(correction != 0.0):
                self._publish_target_ramp(controller, correction, np.zeros_like(correction))
                return
            self._publish_nominal_target(controller)    # a step target, not a 2 ms dash to the nominal posture
            return
        position = state[0][None]
        self._publish_trajectory_msg(controller, position, np.zeros_like(position), self._control_period)

    # ------------------------------------------------------------------ control thread
    @staticmethod
    def _new_loop_stats() -> dict[str, Any]:
        return {'ticks': 0, 'missed': 0, 'errors': 0, 'published': 0, 'started': time.monotonic(),
                'period_error_s': deque(maxlen=5000), 'planner_s': deque(maxlen=500), 'scheduling': 'starting'}

    def _raise_control_priority(self, priority: int) -> str:
        """Put the calling (control) thread on SCHED_FIFO ``priority``; returns the policy in force, for diagnostics.

        The loop sleeps until each deadline and re-anchors when late, so a real-time thread never spins; the kernel's
        real-time throttling (sched_rt_runtime_us) bounds it even if it did.
        """
        if priority <= 0 or not hasattr(os, 'sched_setscheduler'):
            return 'SCHED_OTHER'
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))   # pid 0: this thread (Linux)
        except OSError as error:
            self.get_logger().warning(
                f'control thread keeps normal scheduling: SCHED_FIFO {priority} refused ({error}); allow it with an '
                'rtprio limit (/etc/security/limits.conf) or set control_rt_priority 0')
            return 'SCHED_OTHER (SCHED_FIFO refused)'
        return f'SCHED_FIFO {priority}'

    def _control_loop(self) -> None:
        name_os_thread()
        controller = self._controller
        supervisor = controller.supervisor
        stats = self._loop_stats
        logger = self.get_logger()
        stats['scheduling'] = self._raise_control_priority(int(self._param('control_rt_priority')))
        deadline = time.monotonic()
        previous_tick = None
        handing_over = False
        # During a hand-over the applied correction goes out on /hamwm/mpc/feedforward once per model step (its
        # reader, the validity monitor, samples inputs at that step), not every control tick; the end always.
        feedforward_step = float(controller.runtime.dt)
        feedforward_due = -math.inf
        while not self._stop.is_set():
            period = self._control_period
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            if now - deadline > period:            # a whole period late: count it and re-anchor, no burst
                stats['missed'] += int((now - deadline) / period)
                deadline = now
            relay = self._relay      # read each tick: a change of command_interface may start one
            if relay is not None:
                relay.set_phase(deadline)
            if previous_tick is not None:
                stats['period_error_s'].append(abs(now - previous_tick - period))
            previous_tick = now
            if STALL_DUMP_S > 0.0:     # debugging aid: a C watchdog dumps every thread's stack if this tick is late
                faulthandler.dump_traceback_later(STALL_DUMP_S, exit=False)
            try:
                result = supervisor.tick(now)
                command = result.command
            except Exception as error:  # noqa: BLE001 - the loop must outlive any bug: hold and report
                result, command = None, np.zeros(len(controller.limits.names))
                stats['errors'] += 1
                if self._throttle.due('control_error'):
                    logger.error(f'control tick failed, zero effort published: {type(error).__name__}: {error}')
            stats['ticks'] += 1
            driver_holds = self._driver_hold and result is not None and result.mode in DRIVER_HOLD_MODES
            if driver_holds:
                if result.transition is not None:    # the driver holds from here; no effort until the mode ends
                    self._publish_driver_hold(controller)
            elif not self._publish_command(controller, command, via_relay=True):
                return
            blending = result is not None and result.handover is not None
            ended = handing_over and not blending
            if self._pd_residual and (ended or (blending and now >= feedforward_due)):
                # the correction applied on the PD hold while a switch is blended, and once when it ends
                self._publish_feedforward(controller, result.correction if result is not None else None)
                feedforward_due = now + feedforward_step
            handing_over = blending
            if result is not None and result.transition is not None:
                self._report_transition(result.transition)
                if result.transition.mode is not Mode.PLANNING and self._pd_residual and not blending:
                    self._publish_feedforward(controller, None)     # the hold alone: no correction from here
                if result.transition.mode is not Mode.PLANNING and not driver_holds:
                    self._publish_hold_trajectory(controller, result.transition.mode, result.correction)

    def _report_transition(self, transition: Any) -> None:
        """Publish a mode change and log it (throttled per target mode)."""
        self._publish_mode(f'{transition.mode.value}: {transition.reason}')
        count = self._throttle.due('mode ' + transition.mode.value)
        if not count:
            return
        text = f'mode {transition} ({count} transitions to it since the last report)'
        # rclpy fixes a log call site's severity at its first call: one call site per severity.
        if transition.mode in (Mode.PLANNING, Mode.WAITING_FOR_STATE):
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)

    def _publish_command(self, controller: _Controller, command: np.ndarray, via_relay: bool = False) -> bool:
        """Publish one command (and its stamped copy); False when the ROS context is gone (shutting down).

        ``via_relay`` (the control loop): hand it to the command relay process when one is running and ticking.
        """
        if not self.context.ok():
            return False
        values = np.asarray(command, dtype=np.float64)[controller.output_index]
        if not np.all(np.isfinite(values)):     # cannot happen after the command guard; never publish it anyway
            values = np.zeros_like(values)
        if not self._publish_effort:
            return True
        data = _doubles(values)
        try:
            if not (via_relay and self._post_to_relay(values)):
                msg = Float64MultiArray(data=data)
                msg.layout.dim = [MultiArrayDimension(label='joints', size=values.size, stride=values.size)]
                self._command_pub.publish(msg)
            self._loop_stats['published'] += 1
            if self._publish_stamped:
                stamped = JointState(name=controller.output_names)
                stamped.header.stamp = self.get_clock().now().to_msg()
                stamped.effort = data
                self._stamped_pub.publish(stamped)
        except Exception:  # noqa: BLE001 - the context can shut down between the check and the publish
            if self.context.ok():
                raise
            return False
        return True

    def _post_to_relay(self, values: np.ndarray) -> bool:
        """Hand ``values`` to the command relay; False when the caller must publish them itself.

        That is: no relay, a relay not ticking (counted, with a throttled warning), or a relay whose publisher has
        matched fewer subscribers than this node's (a subscriber that has not discovered it yet; counted).
        """
        relay = self._relay
        if relay is None:
            return False
        now = time.monotonic()
        if not relay.healthy(now, self._control_period):
            relay.clear()       # withdrawn, not stale: a relay ticking again must not zero what this node publishes
            self._relay_bypassed += 1
            count = self._throttle.due('relay_bypassed')
            if count:
                self.get_logger().warning(
                    f'command relay not ticking: {count} commands published from the control thread instead')
            return False
        self._match_check -= 1
        if self._match_check <= 0:
            self._match_check = MATCH_REPORT_TICKS
            self._direct_matched = self._command_pub.get_subscription_count()
        if relay.matched < self._direct_matched:
            relay.clear()       # nothing older from the relay while this node publishes
            self._relay_unmatched += 1
            return False
        relay.post(values, now)
        return True

    def _publish_mode(self, text: str) -> None:
        self._mode_text = text
        if self.context.ok():
            self._mode_pub.publish(String(data=text))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        controller = self._controller
        status = DiagnosticStatus(name=f'{NODE_NAME}: supervisor', hardware_id=NODE_NAME)
        values: dict[str, str] = {'status': self._mode_text, 'estop_latched': str(self._estop.latched),
                                  'threads': str(threading.active_count()), 'rss_kb': str(_rss_kb())}
        if controller is None:
            status.level, status.message = DiagnosticStatus.WARN, self._mode_text
        else:
            sup = controller.supervisor
            mode = sup.modes.mode
            relay_stats = self._relay.stats() if self._relay is not None else None
            status.level = {Mode.PLANNING: DiagnosticStatus.OK, Mode.FALLBACK: DiagnosticStatus.WARN,
                            Mode.WAITING_FOR_STATE: DiagnosticStatus.WARN, Mode.INACTIVE: DiagnosticStatus.OK,
                            Mode.SAFE_HOLD: DiagnosticStatus.ERROR, Mode.ESTOP: DiagnosticStatus.ERROR}[mode]
            status.message = sup.modes.status()
            stats = self._loop_stats
            elapsed = max(1e-9, time.monotonic() - stats['started'])
            errors = np.array(stats['period_error_s']) if stats['period_error_s'] else np.zeros(1)
            planner = np.array(stats['planner_s']) if stats['planner_s'] else np.full(1, math.nan)
            latency = np.array(sup.stats.state_to_command) if sup.stats.state_to_command else np.full(1, math.nan)
            values.update({
                'mode': mode.value, 'reason': sup.modes.reason,
                'model_dir': str(controller.runtime.directory),
                'control_elapsed_s': f'{elapsed:.3f}', 'control_ticks': str(stats['ticks']),
                'commands_published': str(stats['published']), 'control_errors': str(stats['errors']),
                'control_rate_achieved_hz': f"{stats['ticks'] / elapsed:.1f}" if sup.active else '0',
                'missed_deadlines': str(stats['missed']), 'control_scheduling': stats['scheduling'],
                'period_error_p99_ms': f'{1e3 * float(np.percentile(errors, 99)):.3f}',
                'command_relay': self._relay_status(relay_stats),
                'planner_ms_p50': f'{1e3 * float(np.median(planner)):.2f}',
                # the last planner budget check (configure, hot-load, or a change of BUDGET_PARAMS)
                'predictor_ms': f'{self._predictor_ms:.2f}',
                'planner_budget_percent': f'{self._budget_percent:.0f}',
                'planner_ms_max': f'{1e3 * float(np.max(planner)):.2f}',
                # joint state receipt -> first command from the plan made on it (last 2000 plans)
                'state_to_command_ms_p50': f'{1e3 * float(np.median(latency)):.2f}',
                'state_to_command_ms_p99': f'{1e3 * float(np.percentile(latency, 99)):.2f}',
                'committed_steps': str(self._committed),
                # cyclic-collector runs per generation since start-up: a generation-2 run over the ~65k start-up
                # objects holds the interpreter lock ~50 ms (in 20 s loop benchmarks: 1, at start-up)
                'gc_collections': '/'.join(str(g['collections']) for g in gc.get_stats()),
                'planner_overruns_total': str(sup.overruns.total),
                'planner_overruns_consecutive': str(sup.overruns.consecutive),
                'plans': str(sup.stats.plans), 'invalid_plans': str(sup.stats.invalid_plans),
                'planned_ticks': str(sup.stats.planned_ticks), 'fallback_ticks': str(sup.stats.fallback_ticks),
                'hold_ticks': str(sup.stats.hold_ticks), 'handover_ticks': str(sup.stats.handover_ticks),
                'feedback_ticks': str(sup.stats.feedback_ticks),
                'feedback_effort_max': f'{sup.stats.feedback_effort_max:.4g}',
                'commands_non_finite_refused': str(sup.command_guard.non_finite),
                'commands_clamped': str(sup.command_guard.clamped),
                'commands_limit_cut': str(sup.command_guard.limit_cut),
                'command_interface': str(self._param('command_interface')),
                'trajectories_published': str(self._trajectories), 'driver_holds': str(self._driver_holds),
                'model_validity': sup.validity.problem(time.monotonic()) or (
                    'no report' if sup.validity.level is None else
                    ('OK', 'WARN', 'ERROR', 'STALE')[sup.validity.level] + ' (not long enough to act)'
                    if sup.validity.level >= 2 else ('OK', 'WARN')[sup.validity.level]),
                'model_validity_reports': str(self._validity_reports),
                'joint_states_accepted': str(sup.input_guard.accepted),
                'watchdog_stale_events': str(sup.watchdog.stale_events), 'watchdog_gaps': str(sup.watchdog.gaps),
                'stale_holds': str(sup.stats.stale_holds),
                'stale_to_hold_ms_last': f'{1e3 * sup.stats.stale_to_hold_last:.3f}',
                'stale_to_hold_ms_max': f'{1e3 * sup.stats.stale_to_hold_max:.3f}',
                'estop_triggers': str(self._estop.triggers),
            })
            values.update({f'rejected_{kind}': str(count) for kind, count in sorted(sup.stats.rejected.items())})
            if relay_stats is not None:
                values.update({
                    'relay_period_error_p99_ms': f"{1e3 * relay_stats['period_error_p99_s']:.3f}",
                    'relay_missed_deadlines': str(relay_stats['missed']), 'relay_ticks': str(relay_stats['ticks']),
                    'relay_commands_published': str(relay_stats['published']),
                    'relay_stale_ticks': str(relay_stats['stale']), 'relay_repeats': str(relay_stats['repeats']),
                    'relay_stale_holds': str(relay_stats['stale_holds']),
                    'relay_command_age_ms_p50': f"{1e3 * relay_stats['command_age_p50_s']:.3f}",
                    'relay_command_age_ms_p99': f"{1e3 * relay_stats['command_age_p99_s']:.3f}",
                    'relay_bypassed': str(self._relay_bypassed),
                    'relay_unmatched_ticks': str(self._relay_unmatched),
                    'relay_rss_kb': str(_rss_kb(relay_stats['pid'])
                                        if relay_stats['running'] and relay_stats['pid'] else -1),
                })
            schedule = controller.swingup
            values['task'] = 'track' if schedule is None else 'swingup'
            if schedule is not None:
                values['swingup_terminal_value'] = (
                    f'off: {self._terminal_problem}' if schedule.terminal is None else
                    f'weight {schedule.terminal.weight:g} in the last plan (x{schedule.task.terminal_value_weight:g} '
                    f'tracking near upright), trace(P) {float(np.trace(schedule.terminal.value_matrix)):.4g}'
                    + (f', stale: {self._terminal_problem}' if self._terminal_problem else ''))
            if schedule is not None and schedule.near is not None:
                values['swingup_phase'] = 'balancing (tracking)' if schedule.near else 'energy shaping'
                values['swingup_update'] = schedule.plan_update or controller.optimizer.settings.update_perturbation
                values['swingup_energy_target'] = f'{schedule.energy.target:.4f}'
            balance = controller.balance
            values['balance_critic'] = 'off (fixed base)' if balance is None else (
                'on' if balance.ready else f'off for the last plan: {balance.reason}')
            if balance is not None:
                values.update({
                    'balance_base_source': balance.base_source, 'balance_margin_now_m': f'{balance.margin_now:.4f}',
                    'balance_linearise_ms': f'{1e3 * balance.linearise_s:.3f}',
                    'balance_evaluate_ms': f'{1e3 * balance.evaluate_s:.3f}',
                    'balance_skipped_plans': str(balance.skipped),
                    # predicted states of the last scoring without vertical contact force, scored as ZMP 1 m outside
                    'balance_flight_states_last': str(balance.flight_states),
                })
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        message = DiagnosticArray(status=[status])
        message.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(message)

    def _relay_status(self, stats: dict[str, Any] | None) -> str:
        """The relay's state in words, from its :meth:`CommandRelay.stats` (None: no relay)."""
        if stats is None:
            if not self._param('command_relay'):
                return 'off'
            return 'not started (configure starts it)' if self._publish_effort else \
                'not started (command_interface publishes no effort)'
        if not stats['running']:
            return f"exited (code {stats['exit_code']})"
        if stats['pid'] == 0:
            return 'starting'
        return f"running (pid {stats['pid']}, {stats['scheduling']})"

    def destroy_node(self) -> None:
        """Stop the loops (publishing the safe hold if active), then destroy the node."""
        self._join_budget_checks()
        if self._threads:
            self._hold('node destroyed')
        self._stop_relay()
        if self._input is not None:
            self._input.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run mpc_node until SIGINT or an external shutdown; return the process exit code."""
    # SIGINT/SIGTERM end the spin loop below with the context still valid, so the safe hold is still published.
    init_node_process(args)
    node = None
    code = 0
    # One thread on purpose: the callbacks are short and the real-time work runs on the node's own planner and
    # control threads. rclpy's MultiThreadedExecutor busy-waits while a callback runs in its pool (the entity stays
    # ready in the wait set), holds the GIL most of the time and starved the control thread for 0.2-2.4 s on 2 cores.
    # The events executor (where rclpy has it) spends less of the interpreter lock on its own machinery per /clock
    # message than the single-threaded one.
    executor = None
    try:
        node = MpcNode()
        executor = message_executor(node.executor_kind)
        executor.add_node(node)
        if node.get_parameter('autostart').value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            else:
                node.get_logger().error('autostart: configure failed (reason above); fix it and configure again')
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, TypeError, InvalidParameterValueException, InvalidParameterTypeException) as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {error}')
        code = 2
    finally:
        # Shutting down must end in bounded time even if something below hangs (once seen after a 10-minute soak,
        # not reproduced): past the limit a C watchdog prints every thread's stack to stderr and exits with code 1.
        faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)
        if node is not None:
            node.destroy_node()
        if executor is not None:
            executor.shutdown()
        finish_node_process()
        faulthandler.cancel_dump_traceback_later()
    return code


if __name__ == '__main__':
    import sys

    sys.exit(main())
