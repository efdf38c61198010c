"""world_model_node: the Hamiltonian world model next to the robot, and whether it is still right.

A lifecycle node. **configure** loads and validates the ONNX model directory (``model_dir``; hamwm_ros.runtime checks
the metadata, hashes and graph signatures) and fails with the reason if it cannot. **activate** subscribes and starts
the tick; **deactivate** stops them; **cleanup** drops the model. A new model is hot-loaded by setting ``model_dir``:
it is loaded and validated inside the parameter callback, and on failure the change is refused with the reason and
the old model keeps running.

Subscribes
    ``/joint_states`` (sensor_msgs/JointState; joints matched by name, messages with missing joints, NaN/Inf or
    out-of-order stamps are dropped with a throttled warning), ``/effort_controller/commands``
    (std_msgs/Float64MultiArray, the efforts actually sent: the control input u; in ``command_joints`` order when
    that is set, other inputs zero), ``/hamwm/mpc/feedforward`` (sensor_msgs/JointState efforts by name: mpc_node's
    correction to the PD hold, the input of a model whose metadata ``action_source`` is ``feedforward``) and, for
    models with a camera encoder, ``/camera/image_raw`` (sensor_msgs/Image,
    rgb8 or bgr8 at the model's size; other images and frames not newer than the last are dropped with a throttled
    warning, a frame more than 1 s older restarts the frame history).
Publishes (at ``rate``; stamps are the stamp of the joint state the prediction starts from)
    ``/hamwm/latent`` (std_msgs/Float64MultiArray, z = (q, p)), ``/hamwm/predicted_trajectory``
    (trajectory_msgs/JointTrajectory, ``horizon`` points at multiples of the model step, under the input in force
    held), ``/hamwm/energy`` (std_msgs/Float64, H of the current state), ``/hamwm/world_model/markers``
    (visualization_msgs/MarkerArray: predicted joint paths over time and a phase portrait of (q0, p0); at
    ``marker_rate``) and ``/diagnostics`` (diagnostic_msgs/DiagnosticArray from the validity monitor; at
    ``diagnostics_rate``). Nothing non-finite is ever published: a forecast with NaN/Inf is withheld and reported as
    ERROR. Joints named in ``wrap_joints`` are encoded shifted by whole turns into [-pi, pi) and forecast in the
    robot's own angles (for models trained on angles there, such as the shipped pendulum and cart-pole).

All algorithms live in :mod:`hamwm_ros.monitor` (no rclpy); this node converts messages and holds parameters. One
single-threaded executor runs subscriptions, the tick and parameter callbacks, so no state is shared across threads.
"""

from __future__ import annotations

from collections import deque
import math
from pathlib import Path
import time
from typing import Any

from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import ColorRGBA, Float64, Float64MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from hamwm_ros.jointmap import JointMap, JointMapError
from hamwm_ros.monitor import STALE, ModelTracker, MonitorConfig, TickResult
from hamwm_ros.nodes import finish_node_process, init_node_process, message_executor, spin_until_shutdown
from hamwm_ros.nodes.params import declare_executor
from hamwm_ros.nodes.params import descriptor as _descriptor
from hamwm_ros.runtime import MetadataError, SessionConfig, WorldModelRuntime
from hamwm_ros.throttle import EventThrottle

NODE_NAME = 'world_model_node'
RCLError = _rclpy.RCLError
WARN_PERIOD_S = 2.0
TIME_JUMP_S = 1.0            # joint-state stamps this far back restart the history instead of being dropped
INPUT_SOURCES = ('auto', 'commands', 'effort', 'feedforward', 'zero')
_EFFORT_NOT_FEEDFORWARD = ("input_source effort: this model's input is the feed-forward over the PD hold it was "
                           "trained with (metadata action_source 'feedforward'), and measured efforts include the "
                           "hold; use auto or feedforward")
MAX_HINDSIGHT_S = 4.0        # error_step x dt must fit in the joint-state history (4096 samples: ~8 s at 500 Hz)
FRAMES_KEPT = 32             # recent camera frames, to stack them at the model's frame spacing
TRAIL = 200                  # encoded (q0, p0) points kept for the phase portrait
JOINT_COLOURS = ((0.10, 0.60, 0.95), (0.95, 0.45, 0.10), (0.20, 0.80, 0.30), (0.85, 0.20, 0.60),
                 (0.60, 0.50, 0.95), (0.90, 0.80, 0.10))
LEVEL_COLOURS = {0: (0.2, 0.8, 0.2), 1: (0.95, 0.7, 0.1), 2: (0.9, 0.15, 0.1), 3: (0.6, 0.6, 0.6)}
# parameter name -> MonitorConfig field (the node's names carry a prefix where the bare name would be ambiguous)
MONITOR_PARAMETERS = ('error_step', 'error_time_constant', 'error_warn', 'error_error', 'hold_still_warn',
                      'hold_still_error', 'hold_still_floor', 'energy_window',
                      'energy_floor', 'balance_warn', 'balance_error', 'passivity_warn', 'passivity_error',
                      'raise_after', 'energy_raise_time', 'clear_after', 'clear_ratio')




def _seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _stamp(seconds: float) -> Time:
    nanoseconds = int(round(max(seconds, 0.0) * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def _duration(seconds: float) -> Duration:
    nanoseconds = int(round(seconds * 1e9))
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def held_out_error(meta: Any, error_step: int) -> tuple[int, float] | None:
    """(h, RMS) of a model's own held-out normalised error at the longest recorded horizon h <= ``error_step``.

    The metadata of shipped models records MSE over predicted steps 1..h in units of obs_std
    (``metrics.held_out.mse_normalised``); None when it does not.
    """
    metrics = meta.metrics if isinstance(meta.metrics, dict) else {}
    held_out = metrics.get('held_out')
    table = held_out.get('mse_normalised') if isinstance(held_out, dict) else None
    if not isinstance(table, dict):
        return None
    usable = [(int(h), float(v)) for h, v in table.items() if str(h).isdigit() and int(h) <= error_step
              and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0]
    if not usable:
        return None
    horizon, mse = max(usable)
    return horizon, math.sqrt(mse)


def resolve_model_dir(directory: str) -> Path:
    """Path of a model directory parameter.

    A relative path that does not exist under the working directory is looked up in the source checkout
    (``<repo>/models/...``) and in the installed package share (``share/hamwm_ros/models/...``).
    """
    path = Path(directory).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidates = [Path(__file__).resolve().parents[2] / path]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory('hamwm_ros')) / path)
    except Exception:  # noqa: BLE001 - not installed through colcon (no ament index or package)
        pass
    return next((c for c in candidates if c.exists()), path)




class _Loaded:
    """A validated model with everything derived from it (swapped as a whole on hot-load)."""

    def __init__(self, runtime: WorldModelRuntime, directory: str, action_joints: list[str],
                 wrap_joints: list[str], command_joints: list[str] | None = None) -> None:
        meta = runtime.metadata
        self.runtime = runtime
        self.directory = directory
        self.joint_map = JointMap(meta.joint_names)
        unknown = [name for name in wrap_joints if name not in meta.joint_names]
        if unknown:
            raise MetadataError(f'parameter wrap_joints names {unknown}, which the model does not have '
                                f'(its joints: {list(meta.joint_names)})')
        self.wrap_joints = [list(meta.joint_names).index(name) for name in wrap_joints]
        self.effort_map: JointMap | None = None
        if action_joints:
            if len(action_joints) != meta.action_dim:
                raise MetadataError(f'parameter action_joints names {len(action_joints)} joints, the model takes '
                                    f'{meta.action_dim} inputs')
            self.effort_map = JointMap(action_joints)
        elif meta.action_dim == len(meta.joint_names):
            self.effort_map = JointMap(meta.joint_names)
        # Where each value of /effort_controller/commands goes among the model's inputs (None: all, in order).
        self.command_index: np.ndarray | None = None
        if command_joints:
            inputs = self.effort_map.target_names if self.effort_map is not None else None
            if inputs is None:
                raise MetadataError(f'parameter command_joints needs action_joints: the model takes '
                                    f'{meta.action_dim} inputs for {len(meta.joint_names)} joints')
            unknown = [name for name in command_joints if name not in inputs]
            if unknown:
                raise MetadataError(f'parameter command_joints names {unknown}, which are not model inputs (the '
                                    f'inputs: {list(inputs)})')
            repeated = sorted({name for name in command_joints if command_joints.count(name) > 1})
            if repeated:
                raise MetadataError(f'parameter command_joints repeats {repeated}')
            self.command_index = np.array([inputs.index(name) for name in command_joints])


class WorldModelNode(LifecycleNode):
    """Lifecycle node running a world model and its validity monitor; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._throttle = EventThrottle(WARN_PERIOD_S)
        self.executor_kind = declare_executor(self)
        declare = self.declare_parameter
        declare('model_dir', '', _descriptor(
            'model directory (metadata.json, encoder.onnx, predictor.onnx); loaded at configure, hot-loaded when '
            'changed later (refused with the reason if it does not load; the old model is kept)'))
        declare('autostart', False, _descriptor(
            'configure and activate at start-up (no lifecycle manager needed)', read_only=True))
        declare('joints', Parameter.Type.STRING_ARRAY, _descriptor(
            'joint order the model must have (checked at load); empty: accept the model\'s own order',
            read_only=True))
        declare('action_joints', Parameter.Type.STRING_ARRAY, _descriptor(
            'joints whose /joint_states effort is the model input (input_source effort/auto); empty: all model '
            'joints when the model takes one input per joint', read_only=True))
        declare('command_joints', Parameter.Type.STRING_ARRAY, _descriptor(
            'joints of /effort_controller/commands in message order (the effort controller\'s joints); model '
            'inputs not named are zero (passive joints); empty: the commands carry every model input in order',
            read_only=True))
        declare('wrap_joints', Parameter.Type.STRING_ARRAY, _descriptor(
            'joints whose angle is encoded shifted by whole turns into [-pi, pi) (forecasts shifted back): '
            'continuous joints of models trained on angles there, such as the shipped pendulum and cart-pole; '
            'empty: encode the angles as received', read_only=True))
        declare('providers', ['cpu'], _descriptor(
            'onnxruntime execution providers in priority order (tensorrt, cuda, cpu); cpu is always the fallback',
            read_only=True))
        declare('onnx_threads', 1, _descriptor('onnxruntime intra-op threads (0: one per core)', read_only=True,
                                               int_range=(0, 64)))
        declare('rate', 20.0, _descriptor('prediction and monitor ticks per second (wall clock)',
                                          float_range=(1.0, 500.0)))
        declare('horizon', 32, _descriptor(
            'predicted steps published (each one model dt); every export horizon started costs one predictor call',
            int_range=(2, 2000)))
        declare('input_source', 'auto', _descriptor(
            "control input u: 'commands' (/effort_controller/commands), 'effort' (/joint_states effort), "
            "'feedforward' (/hamwm/mpc/feedforward), 'auto' (commands while fresh, else effort; for a model whose "
            "input is the feed-forward over a PD hold: feedforward while fresh, else zero), 'zero'",
            constraints=' | '.join(INPUT_SOURCES)))
        declare('input_timeout', 0.5, _descriptor('seconds an input holds before zero input is assumed',
                                                  float_range=(0.001, 60.0)))
        declare('state_timeout', 0.5, _descriptor(
            'joint states received longer ago than this (s) are stale: no prediction, diagnostics STALE',
            float_range=(0.001, 60.0)))
        declare('use_camera', True, _descriptor('subscribe /camera/image_raw when the model encodes images',
                                                read_only=True))
        declare('diagnostics_rate', 2.0, _descriptor('/diagnostics messages per second', float_range=(0.1, 100.0)))
        declare('marker_rate', 10.0, _descriptor('rviz markers per second (0: off)', float_range=(0.0, 100.0)))
        declare('marker_joints', 3, _descriptor('joints whose predicted paths are drawn', int_range=(0, 32)))
        declare('marker_frame', 'odom', _descriptor('frame of the rviz markers (rviz fixed frame)', read_only=True))
        declare('marker_time_scale', 1.0, _descriptor('metres of marker x-axis per second of prediction',
                                                      float_range=(0.01, 100.0)))
        declare('marker_phase_scale', 0.25, _descriptor('metres per latent unit in the phase portrait',
                                                        float_range=(0.001, 100.0)))
        defaults = MonitorConfig()
        declare('error_step', defaults.error_step, _descriptor(
            'k: model steps ahead at which predictions are compared with what happened', int_range=(1, 1000)))
        declare('error_time_constant', defaults.error_time_constant, _descriptor(
            'seconds; moving-average time constant of the prediction error', float_range=(0.01, 600.0)))
        declare('error_warn', defaults.error_warn, _descriptor(
            'WARN above this averaged prediction error (RMS in units of the model\'s obs_std)',
            float_range=(1e-6, 1e6)))
        declare('error_error', defaults.error_error, _descriptor('ERROR above this averaged prediction error',
                                                                 float_range=(1e-6, 1e6)))
        declare('held_out_factor', 3.0, _descriptor(
            'raise error_warn / error_error to this / twice this times the model\'s own held-out error (from its '
            'metadata) when that is higher; 0: use error_warn / error_error as they are', float_range=(0.0, 1e3)))
        declare('hold_still_warn', defaults.hold_still_warn, _descriptor(
            'WARN above this averaged prediction error divided by the averaged error of holding still (judged while '
            'that is above hold_still_floor)', float_range=(0.01, 1e3)))
        declare('hold_still_error', defaults.hold_still_error, _descriptor(
            'ERROR above this ratio of the prediction error to the error of holding still', float_range=(0.01, 1e3)))
        declare('hold_still_floor', defaults.hold_still_floor, _descriptor(
            'the ratio is judged only while the averaged hold-still error is above this (normalised units: the '
            'robot moves enough for a forecast to matter)', float_range=(0.0, 1e6)))
        declare('energy_window', defaults.energy_window, _descriptor(
            'seconds of history the energy-balance checks integrate over', float_range=(0.05, 600.0)))
        declare('energy_floor', defaults.energy_floor, _descriptor(
            'noise floor of the energy checks, per second, as a fraction of the model\'s energy scale (spread of H '
            'over its training distribution; 1 energy unit for camera-only models)', float_range=(1e-9, 1e6)))
        declare('balance_warn', defaults.balance_warn, _descriptor(
            'WARN above this energy-balance error (fraction, 0..1)', float_range=(0.001, 1.0)))
        declare('balance_error', defaults.balance_error, _descriptor('ERROR above this energy-balance error',
                                                                     float_range=(0.001, 1.0)))
        declare('passivity_warn', defaults.passivity_warn, _descriptor(
            'WARN above this share of energy the model creates without input (fraction, 0..1)',
            float_range=(0.001, 1.0)))
        declare('passivity_error', defaults.passivity_error, _descriptor('ERROR above this passivity violation',
                                                                         float_range=(0.001, 1.0)))
        declare('raise_after', defaults.raise_after, _descriptor(
            'consecutive bad evaluations before a check raises its level', int_range=(1, 10000)))
        declare('energy_raise_time', defaults.energy_raise_time, _descriptor(
            'seconds the energy checks must stay bad before raising (longer than energy_window: one push is not '
            'the model\'s fault)', float_range=(0.0, 600.0)))
        declare('clear_after', defaults.clear_after, _descriptor(
            'consecutive good evaluations before a check lowers its level', int_range=(1, 100000)))
        declare('clear_ratio', defaults.clear_ratio, _descriptor(
            'a value must fall below clear_ratio x threshold to count as good', float_range=(0.01, 1.0)))
        self._joints = self._optional_list('joints')
        self._action_joints = self._optional_list('action_joints')
        self._wrap_joints = self._optional_list('wrap_joints')
        self._command_joints = self._optional_list('command_joints')

        self._model: _Loaded | None = None
        self._tracker: ModelTracker | None = None
        self._pending_model: _Loaded | None = None
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._camera_sub = None
        self._tick_timer = None
        self._reset_inputs()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._autostart_timer = None
        if self.get_parameter('autostart').value:
            # once the executor spins (so bring-up scripts that only construct and spin the node get it too)
            self._autostart_timer = self.create_timer(0.0, self._autostart)
        else:
            self.get_logger().info('unconfigured; configure loads model_dir')

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        self._autostart_timer = None
        if self._pubs:     # configured already, by a lifecycle manager or a bring-up that drives the transitions
            self.get_logger().info('autostart: already configured; left as it is')
            return
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()
        else:
            self.get_logger().error('autostart: configure failed; set a loadable model_dir and configure again')

    def _optional_list(self, name: str) -> list[str]:
        """A string-array parameter without default: [] while unset."""
        try:
            return [str(v) for v in (self.get_parameter(name).value or [])]
        except ParameterUninitializedException:
            return []

    # ------------------------------------------------------------------ model loading
    def _session_config(self) -> SessionConfig:
        providers = tuple(p for p in self.get_parameter('providers').value if p) or ('cpu',)
        return SessionConfig(providers=providers, intra_op_threads=int(self.get_parameter('onnx_threads').value),
                             warmup_batch=(2, 3))

    def _load(self, directory: str) -> _Loaded:
        """Load and validate a model directory (MetadataError/ValueError with the reason when it cannot be used)."""
        if not directory:
            raise MetadataError('parameter model_dir is empty')
        runtime = WorldModelRuntime.load(resolve_model_dir(directory), joint_names=self._joints or None,
                                         config=self._session_config())
        loaded = _Loaded(runtime, directory, self._action_joints, self._wrap_joints, self._command_joints)
        meta = runtime.metadata
        source = str(self.get_parameter('input_source').value)
        if source in ('effort', 'feedforward') and loaded.effort_map is None:
            raise MetadataError(f'input_source {source} needs action_joints: the model takes {meta.action_dim} '
                                f'inputs for {len(meta.joint_names)} joints')
        if source == 'effort' and meta.feedforward:
            raise MetadataError(_EFFORT_NOT_FEEDFORWARD)
        step = int(self.get_parameter('error_step').value)
        if step * meta.dt > MAX_HINDSIGHT_S:
            raise MetadataError(f'error_step {step} x model dt {meta.dt:g} s exceeds {MAX_HINDSIGHT_S:g} s of history')
        return loaded

    def _install(self, loaded: _Loaded) -> None:
        """Make ``loaded`` the running model; histories and monitor start afresh."""
        self._model = loaded
        self._tracker = ModelTracker(loaded.runtime, self._monitor_config({}, loaded),
                                     input_timeout=float(self.get_parameter('input_timeout').value),
                                     wrap_joints=loaded.wrap_joints)
        self._reset_inputs()
        meta = loaded.runtime.metadata
        self.get_logger().info(
            f'model {loaded.directory}: {meta.robot}, {len(meta.joint_names)} joints, latent {meta.latent_dim}, '
            f'{meta.action_dim} inputs, dt {meta.dt:g} s, export horizon {meta.horizon}, ensemble {meta.ensemble}, '
            f"{'camera ' if meta.images is not None else ''}encoder; providers {list(loaded.runtime.providers)}")

    def _reset_inputs(self) -> None:
        self._frames: deque[tuple[float, np.ndarray]] = deque(maxlen=FRAMES_KEPT)
        self._last_state_wall = -math.inf      # monotonic receipt time of the newest accepted joint state
        self._last_state_stamp = math.nan
        self._last_command_wall = -math.inf
        self._trail: deque[tuple[float, float]] = deque(maxlen=TRAIL)
        self._last_markers = -math.inf
        self._last_diagnostics = -math.inf
        self._dropped = 0
        self._ticks = 0
        self._tick_seconds = 0.0
        self._withheld = 0

    # ------------------------------------------------------------------ parameters
    def _monitor_config(self, changes: dict[str, Any], model: _Loaded | None = None) -> MonitorConfig:
        """Monitor settings from the parameters; ValueError when they are invalid.

        With ``model``, the prediction-error thresholds are raised to ``held_out_factor`` (WARN) and twice that
        (ERROR) times the model's own held-out error, so a model is judged against how well it predicted data it was
        not trained on.
        """
        values = {name: changes.get(name, self.get_parameter(name).value) for name in MONITOR_PARAMETERS}
        config = MonitorConfig(**values)
        factor = float(changes.get('held_out_factor', self.get_parameter('held_out_factor').value))
        held = held_out_error(model.runtime.metadata, config.error_step) if model is not None else None
        if held is not None and factor > 0:
            config = config.with_changes(error_warn=max(config.error_warn, factor * held[1]),
                                         error_error=max(config.error_error, 2.0 * factor * held[1]))
        return config

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse (with a reason) values that are invalid together with the others; old values are then kept."""
        changes = {p.name: p.value for p in parameters}
        try:
            self._monitor_config(changes)
            source = changes.get('input_source', self.get_parameter('input_source').value)
            if source not in INPUT_SOURCES:
                raise ValueError(f"input_source must be one of {', '.join(INPUT_SOURCES)}, not '{source}'")
            model = self._model
            if model is not None and 'error_step' in changes:
                if changes['error_step'] * model.runtime.metadata.dt > MAX_HINDSIGHT_S:
                    raise ValueError(f"error_step {changes['error_step']} x model dt exceeds {MAX_HINDSIGHT_S:g} s")
            if model is not None and source in ('effort', 'feedforward') and model.effort_map is None:
                raise ValueError(f'input_source {source} needs action_joints for this model')
            if model is not None and source == 'effort' and model.runtime.metadata.feedforward:
                raise ValueError(_EFFORT_NOT_FEEDFORWARD)
            if 'model_dir' in changes and model is not None and changes['model_dir'] != model.directory:
                # configured: the new model must load now, or the change is refused and the old one stays
                self._pending_model = self._load(str(changes['model_dir']))
        except (ValueError, MetadataError, JointMapError) as error:
            self._pending_model = None
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        """Apply accepted values: swap a hot-loaded model, pass thresholds on, re-time the tick."""
        names = {p.name for p in parameters}
        if self._pending_model is not None:
            loaded, self._pending_model = self._pending_model, None
            self._install(loaded)
            if self._subs:      # active: the camera subscription depends on the model
                self._update_camera_subscription()
        elif self._tracker is not None and names & (set(MONITOR_PARAMETERS) | {'input_timeout', 'held_out_factor'}):
            self._tracker.reconfigure(self._monitor_config({}, self._model),
                                      float(self.get_parameter('input_timeout').value))
        if 'rate' in names and self._tick_timer is not None:
            self.destroy_timer(self._tick_timer)
            self._tick_timer = self.create_timer(1.0 / float(self.get_parameter('rate').value), self._tick)
        self.get_logger().info('parameters set: ' + ', '.join(f'{p.name}={p.value}' for p in parameters))

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and validate the model; create the publishers."""
        directory = str(self.get_parameter('model_dir').value)
        try:
            self._install(self._load(directory))
        except (MetadataError, ValueError, JointMapError) as error:
            self.get_logger().error(f'configure failed: cannot use model_dir {directory!r}: {error}')
            return TransitionCallbackReturn.FAILURE
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for key, message_type, topic in (('latent', Float64MultiArray, 'hamwm/latent'),
                                         ('trajectory', JointTrajectory, 'hamwm/predicted_trajectory'),
                                         ('energy', Float64, 'hamwm/energy'),
                                         ('markers', MarkerArray, 'hamwm/world_model/markers'),
                                         ('diagnostics', DiagnosticArray, 'diagnostics')):
            self._pubs[key] = self.create_lifecycle_publisher(message_type, topic, reliable)
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start ticking."""
        self._reset_inputs()
        self._subs = [
            self.create_subscription(JointState, 'joint_states', self._on_joint_state, 50),
            self.create_subscription(Float64MultiArray, 'effort_controller/commands', self._on_command, 10),
            self.create_subscription(JointState, 'hamwm/mpc/feedforward', self._on_feedforward, 10),
        ]
        self._update_camera_subscription()
        self._tick_timer = self.create_timer(1.0 / float(self.get_parameter('rate').value), self._tick)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop ticking and unsubscribe (the model stays loaded)."""
        self._stop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the model and the publishers."""
        self._stop_io()
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything."""
        self._stop_io()
        self._release()
        return super().on_shutdown(state)

    def _stop_io(self) -> None:
        if self._tick_timer is not None:
            self.destroy_timer(self._tick_timer)
            self._tick_timer = None
        for subscription in self._subs:
            self.destroy_subscription(subscription)
        self._subs = []
        if self._camera_sub is not None:
            self.destroy_subscription(self._camera_sub)
            self._camera_sub = None

    def _release(self) -> None:
        for publisher in self._pubs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._pubs = {}
        self._model = self._tracker = self._pending_model = None

    def _update_camera_subscription(self) -> None:
        wanted = (self._model is not None and self._model.runtime.metadata.images is not None
                  and bool(self.get_parameter('use_camera').value))
        if wanted and self._camera_sub is None:
            image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)
            self._camera_sub = self.create_subscription(Image, 'camera/image_raw', self._on_image, image_qos)
        elif not wanted and self._camera_sub is not None:
            self.destroy_subscription(self._camera_sub)
            self._camera_sub = None

    # ------------------------------------------------------------------ subscriptions
    def _drop(self, kind: str, reason: str) -> None:
        self._dropped += 1
        count = self._throttle.due(kind)
        if count:
            self.get_logger().warning(f'dropped {kind} ({count} since the last warning): {reason}')

    def _on_joint_state(self, msg: JointState) -> None:
        model, tracker = self._model, self._tracker
        if model is None or tracker is None:
            return
        try:
            position = model.joint_map.reorder(msg.name, msg.position, field='position')
            velocity = model.joint_map.reorder(msg.name, msg.velocity, field='velocity', allow_empty=True)
        except JointMapError as error:
            self._drop('joint state', str(error))
            return
        if velocity is None:
            self._drop('joint state', 'no velocities (the model encodes positions and velocities)')
            return
        stamp = _seconds(msg.header.stamp)
        if stamp <= 0.0:
            stamp = self.get_clock().now().nanoseconds * 1e-9
        if not tracker.observe_state(stamp, position, velocity):
            if not stamp < self._last_state_stamp - TIME_JUMP_S:
                self._drop('joint state', f'stamp {stamp:.6f} s is not after the previous one')
                return
            self.get_logger().warning(f'joint-state time jumped back by {self._last_state_stamp - stamp:.3f} s '
                                      '(restarted simulation or bag?): history and monitor restarted')
            tracker.restart()
            tracker.observe_state(stamp, position, velocity)
        self._last_state_wall = time.monotonic()
        self._last_state_stamp = stamp
        source = str(self.get_parameter('input_source').value)
        feedforward = model.runtime.metadata.feedforward   # measured efforts include the PD hold: not its input
        if source == 'effort' or (source == 'auto' and not feedforward and not self._commands_fresh()):
            if model.effort_map is not None and len(msg.effort):
                try:
                    effort = model.effort_map.reorder(msg.name, msg.effort, field='effort')
                except JointMapError as error:
                    self._drop('joint state effort', str(error))
                    return
                tracker.observe_input(stamp, effort)

    def _commands_fresh(self) -> bool:
        return time.monotonic() - self._last_command_wall <= float(self.get_parameter('input_timeout').value)

    def _on_command(self, msg: Float64MultiArray) -> None:
        model, tracker = self._model, self._tracker
        source = str(self.get_parameter('input_source').value)
        if model is None or tracker is None or source in ('effort', 'feedforward', 'zero') \
                or (source == 'auto' and model.runtime.metadata.feedforward):   # its input is the correction alone
            return
        u = np.asarray(msg.data, dtype=np.float64)
        want = model.runtime.metadata.action_dim
        index = model.command_index
        expected = want if index is None else index.size
        if u.shape != (expected,):
            self._drop('effort command', f'{u.size} values, expected {expected} ('
                       + ('the model\'s inputs' if index is None else 'one per command_joints entry') + ')')
            return
        if not np.all(np.isfinite(u)):
            self._drop('effort command', 'non-finite value')
            return
        if index is not None:
            full = np.zeros(want)
            full[index] = u
            u = full
        stamp = self._receipt_stamp()
        if stamp is not None and tracker.observe_input(stamp, u):
            self._last_command_wall = time.monotonic()

    def _on_feedforward(self, msg: JointState) -> None:
        model, tracker = self._model, self._tracker
        if model is None or tracker is None or model.effort_map is None:
            return
        source = str(self.get_parameter('input_source').value)
        if source != 'feedforward' and not (source == 'auto' and model.runtime.metadata.feedforward):
            return
        try:
            u = model.effort_map.reorder(msg.name, msg.effort, field='effort')
        except JointMapError as error:
            self._drop('feed-forward', str(error))
            return
        stamp = self._receipt_stamp()
        if stamp is not None:
            tracker.observe_input(stamp, u)

    def _receipt_stamp(self) -> float | None:
        """An unstamped input placed on the joint-state clock by its receipt time; None before any joint state."""
        if not math.isfinite(self._last_state_stamp):
            return None
        return self._last_state_stamp + (time.monotonic() - self._last_state_wall)

    def _on_image(self, msg: Image) -> None:
        model = self._model
        if model is None or model.runtime.metadata.images is None:
            return
        spec = model.runtime.metadata.images
        if msg.encoding not in ('rgb8', 'bgr8') or msg.height != spec.height or msg.width != spec.width:
            self._drop('image', f'{msg.encoding} {msg.width}x{msg.height}; the model takes rgb8/bgr8 '
                                f'{spec.width}x{spec.height}')
            return
        rows = np.frombuffer(bytes(msg.data), dtype=np.uint8)
        if rows.size != msg.step * msg.height or msg.step < 3 * msg.width:
            self._drop('image', 'data size does not match step x height')
            return
        pixels = rows.reshape(msg.height, msg.step)[:, :3 * msg.width].reshape(msg.height, msg.width, 3)
        stamp = _seconds(msg.header.stamp)
        if stamp <= 0.0:
            stamp = self.get_clock().now().nanoseconds * 1e-9
        if self._frames and stamp <= self._frames[-1][0]:
            if not stamp < self._frames[-1][0] - TIME_JUMP_S:
                self._drop('image', f'stamp {stamp:.6f} s is not after the previous one')
                return
            # A frame stamped far ahead (a bad stamp, another clock, a bag) must not lock the real stream out until
            # its time comes: a frame this far back restarts the frame history, as for joint states.
            count = self._throttle.due('image time jump')
            if count:
                self.get_logger().warning(f'camera time jumped back by {self._frames[-1][0] - stamp:.3f} s ({count} '
                                          'since the last warning): frame history restarted')
            self._frames.clear()
        self._frames.append((stamp, pixels[..., ::-1] if msg.encoding == 'bgr8' else pixels))

    def _stacked_frames(self, count: int, spacing: float) -> np.ndarray | None:
        """The newest frame and ``count`` - 1 earlier ones ``spacing`` s apart, oldest first (as the model was trained).

        None when the kept frames are not close enough to that spacing (camera rate below 1 / dt).
        """
        if not self._frames:
            return None
        stamps = np.array([stamp for stamp, _ in self._frames])
        picks = []
        for i in range(count - 1, -1, -1):
            target = stamps[-1] - i * spacing
            j = int(np.argmin(np.abs(stamps - target)))
            if abs(stamps[j] - target) > 0.5 * spacing + 1e-9:
                return None
            picks.append(self._frames[j][1])
        return np.stack(picks)

    # ------------------------------------------------------------------ the tick
    def _tick(self) -> None:
        try:
            self._tick_once()
        except RCLError:
            if self.context.ok():
                raise
            # SIGINT shut the context down while this tick was publishing: nothing to do, spin ends next

    def _tick_once(self) -> None:
        tracker, model = self._tracker, self._model
        if tracker is None or model is None:
            return
        now = time.monotonic()
        meta = model.runtime.metadata
        if now - self._last_state_wall > float(self.get_parameter('state_timeout').value):
            self._publish_stale(now, 'no fresh /joint_states' if self._ticks or math.isfinite(self._last_state_stamp)
                                else 'waiting for /joint_states')
            return
        images = None
        if meta.images is not None:
            images = self._stacked_frames(meta.images.frames, meta.dt)
            if images is None:
                self._publish_stale(now, f'waiting for {meta.images.frames} camera frames {meta.dt:g} s apart '
                                         f'(camera rate >= {1.0 / meta.dt:g} Hz)')
                return
        started = time.perf_counter()
        try:
            result = tracker.tick(int(self.get_parameter('horizon').value), images)
        except ValueError as error:
            self._drop('tick', str(error))
            return
        self._tick_seconds += time.perf_counter() - started
        self._ticks += 1
        if result is None:
            return
        if result.prediction is None:
            self._withheld += 1
            self._drop('forecast', 'the model produced NaN/Inf; nothing published')
        else:
            self._publish_prediction(result)
            if float(self.get_parameter('marker_rate').value) > 0 and (
                    now - self._last_markers >= 1.0 / float(self.get_parameter('marker_rate').value)):
                self._last_markers = now
                self._pubs['markers'].publish(self._markers(result))
        if now - self._last_diagnostics >= 1.0 / float(self.get_parameter('diagnostics_rate').value):
            self._last_diagnostics = now
            self._publish_diagnostics(result)

    def _publish_prediction(self, result: TickResult) -> None:
        prediction = result.prediction
        meta = self._model.runtime.metadata
        stamp = _stamp(result.time)
        latent = Float64MultiArray()
        size = len(prediction.latent)
        latent.layout.dim = [MultiArrayDimension(label='z=(q,p)', size=size, stride=size)]
        latent.data = prediction.latent.tolist()
        self._pubs['latent'].publish(latent)

        trajectory = JointTrajectory()
        trajectory.header.stamp = stamp
        trajectory.joint_names = list(meta.joint_names)
        points = []
        for k in range(len(prediction.position)):
            point = JointTrajectoryPoint()
            point.positions = prediction.position[k].tolist()
            point.velocities = prediction.velocity[k].tolist()
            point.time_from_start = _duration((k + 1) * meta.dt)
            points.append(point)
        trajectory.points = points
        self._pubs['trajectory'].publish(trajectory)
        self._pubs['energy'].publish(Float64(data=float(prediction.energy_now)))
        half = size // 2
        self._trail.append((float(prediction.latent[0]), float(prediction.latent[half])))

    def _markers(self, result: TickResult) -> MarkerArray:
        prediction = result.prediction
        meta = self._model.runtime.metadata
        frame = str(self.get_parameter('marker_frame').value)
        time_scale = float(self.get_parameter('marker_time_scale').value)
        phase_scale = float(self.get_parameter('marker_phase_scale').value)
        stamp = _stamp(result.time)
        markers = []

        def marker(ns: str, marker_id: int, kind: int, colour: tuple[float, float, float], width: float) -> Marker:
            m = Marker()
            m.header.frame_id = frame
            m.header.stamp = stamp
            m.ns, m.id, m.type, m.action = ns, marker_id, kind, Marker.ADD
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = m.scale.z = width
            m.color = ColorRGBA(r=colour[0], g=colour[1], b=colour[2], a=1.0)
            markers.append(m)
            return m

        shown = min(int(self.get_parameter('marker_joints').value), len(meta.joint_names))
        times = (np.arange(len(prediction.position)) + 1) * meta.dt * time_scale
        for j in range(shown):   # predicted joint position over time; one lane per joint along y
            path = marker('predicted_joints', j, Marker.LINE_STRIP, JOINT_COLOURS[j % len(JOINT_COLOURS)], 0.01)
            path.points = [Point(x=float(x), y=0.5 * j, z=float(q)) for x, q in zip(times, prediction.position[:, j])]
        half = len(prediction.latent) // 2
        origin = -0.5 - 2.0 * phase_scale      # phase portrait to the left of the paths, in the x-z plane
        trail = marker('phase_portrait', 0, Marker.LINE_STRIP, (0.6, 0.6, 0.6), 0.005)
        trail.points = [Point(x=origin + phase_scale * q, y=0.0, z=phase_scale * p) for q, p in self._trail]
        if len(trail.points) < 2:
            trail.points = trail.points * 2 if trail.points else [Point(x=origin), Point(x=origin)]
        future = marker('phase_portrait', 1, Marker.LINE_STRIP, (0.1, 0.6, 0.95), 0.01)
        future.points = [Point(x=origin + phase_scale * float(z[0]), y=0.0, z=phase_scale * float(z[half]))
                         for z in prediction.latent_seq]
        now = marker('phase_portrait', 2, Marker.SPHERE, LEVEL_COLOURS[result.report.level], 0.04)
        now.pose.position = Point(x=origin + phase_scale * float(prediction.latent[0]), y=0.0,
                                  z=phase_scale * float(prediction.latent[half]))
        text = marker('status', 0, Marker.TEXT_VIEW_FACING, LEVEL_COLOURS[result.report.level], 0.08)
        text.pose.position = Point(x=origin, y=0.0, z=0.6)
        text.text = f'world model {result.report.level_name}: {result.report.message}'
        return MarkerArray(markers=markers)

    def _publish_stale(self, now: float, reason: str) -> None:
        if now - self._last_diagnostics < 1.0 / float(self.get_parameter('diagnostics_rate').value):
            return
        self._last_diagnostics = now
        status = DiagnosticStatus(name=f'{NODE_NAME}: model validity', level=bytes([STALE]), message=reason,
                                  hardware_id=self._model.runtime.metadata.robot if self._model else '')
        status.values = [KeyValue(key='model_dir', value=self._model.directory if self._model else '')]
        message = DiagnosticArray(status=[status])
        message.header.stamp = self.get_clock().now().to_msg()
        self._pubs['diagnostics'].publish(message)

    def _publish_diagnostics(self, result: TickResult) -> None:
        report = result.report
        meta = self._model.runtime.metadata
        status = DiagnosticStatus(name=f'{NODE_NAME}: model validity', level=bytes([report.level]),
                                  message=report.message,
                                  hardware_id=meta.robot)
        values = {key: f'{value:.6g}' for key, value in report.values.items()}
        values.update({f'check_{name}': ('OK', 'WARN', 'ERROR', 'STALE')[level]
                       for name, level in report.checks.items()})
        values.update({
            'model_dir': self._model.directory,
            'input': ' '.join(f'{u:.4g}' for u in result.input),
            'input_source': str(self.get_parameter('input_source').value),
            'tick_ms_mean': f'{1e3 * self._tick_seconds / max(self._ticks, 1):.3f}',
            'ticks': str(self._ticks),
            'dropped_inputs': str(self._dropped),
            'withheld_forecasts': str(self._withheld),
            'providers': ','.join(self._model.runtime.providers),
        })
        config = self._tracker.config
        values['error_warn_effective'] = f'{config.error_warn:.6g}'
        values['error_error_effective'] = f'{config.error_error:.6g}'
        held = held_out_error(meta, config.error_step)
        if held is not None:
            values['held_out_error'] = f'{held[1]:.6g}'
            values['held_out_horizon'] = str(held[0])
        if result.prediction is not None and meta.ensemble > 1:
            values['ensemble_spread'] = f'{result.prediction.ensemble_spread:.6g}'
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        message = DiagnosticArray(status=[status])
        message.header.stamp = _stamp(result.time)
        self._pubs['diagnostics'].publish(message)


def main(args: list[str] | None = None) -> int:
    """Run world_model_node until SIGINT or an external shutdown; return the process exit code.

    The node starts unconfigured (the lifecycle convention) unless ``autostart`` is true; then it configures and
    activates itself as soon as it spins, and stays unconfigured (waiting for a better ``model_dir`` and a configure
    request) when the model cannot be loaded.
    """
    init_node_process(args)
    executor = node = None
    code = 0
    try:
        node = WorldModelNode()
        executor = message_executor(node.executor_kind)
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as error:     # a read-only parameter refused at start-up
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {error}')
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        if executor is not None:
            executor.shutdown()
        finish_node_process()
    return code


if __name__ == '__main__':
    import sys

    sys.exit(main())
