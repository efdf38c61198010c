"""``hamwm sim``: run a simulated robot over ROS 2 and report what it published.

Starts ``sim_node`` in its own process (real DDS between processes, as on a robot) with the project's parameter
file, listens with a probe node in this process for ``--duration`` seconds, stops the node with SIGINT and prints
one row per topic (type, message count, rate in wall-clock and in simulated time) plus the real-time factor.

The pieces are reusable: :class:`SimProcess` (the node in a subprocess) and :class:`TopicProbe` (an rclpy node in
its own context, spinning in a background thread, recording every topic it listens to) serve ``hamwm bench sim``
and the ROS tests too.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from hamwm_ros.cli import HelpFormatter

PACKAGE = 'hamwm_ros'
ROBOT_CHOICES = ('pendulum', 'cartpole', 'acrobot', 'humanoid')   # == hamwm_ros.sim.ROBOTS


def find_params_file() -> Path | None:
    """config/hamwm.yaml of a source checkout, else of the installed package share directory, else None."""
    source = Path(__file__).resolve().parents[2] / 'config' / 'hamwm.yaml'
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / 'config' / 'hamwm.yaml'
        return installed if installed.is_file() else None
    except Exception:  # noqa: BLE001 - not installed through colcon (PackageNotFoundError, missing ament index)
        return None


def _ros_value(value: Any) -> str:
    """A parameter value as ``-p name:=value`` text (floats keep a decimal point so they stay doubles)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_ros_value(v) for v in value) + ']'
    return str(value)


def node_command(node: str, parameters: dict[str, Any] | None = None,
                 params_file: Path | str | None = None) -> list[str]:
    """Command line running ``hamwm_ros.nodes.<node>`` with this interpreter, a parameter file and ``-p`` overrides."""
    command = [sys.executable, '-m', f'{PACKAGE}.nodes.{node}', '--ros-args']
    if params_file is not None:
        command += ['--params-file', str(params_file)]
    for name, value in (parameters or {}).items():
        command += ['-p', f'{name}:={_ros_value(value)}']
    return command


def sim_node_command(robot: str | None = None, params_file: Path | str | None = None,
                     parameters: dict[str, Any] | None = None) -> list[str]:
    """Command line that runs sim_node with this interpreter, a parameter file and ``-p`` overrides."""
    overrides = dict(parameters or {})
    if robot is not None:
        overrides['robot'] = robot
    return node_command('sim_node', overrides, params_file)


def interrupt_process(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """Stop a node process as Ctrl-C would: SIGINT, wait up to ``timeout`` s, then SIGKILL.

    Before the kill it sends SIGUSR1, on which the project's nodes print every thread's stack to their log
    (:func:`hamwm_ros.nodes.dump_stacks_on_sigusr1`), so a stuck shutdown can be diagnosed afterwards.
    Returns the exit code (negative: killed by that signal); an already finished process just reports its code.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            if hasattr(signal, 'SIGUSR1'):
                process.send_signal(signal.SIGUSR1)
                try:
                    process.wait(1.0)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.kill()
                process.wait(5.0)
    return process.returncode


class SimProcess:
    """sim_node in a subprocess; its output goes to a log file; :meth:`stop` sends SIGINT and waits.

    Parameters
    ----------
    robot
        Robot to simulate.
    parameters
        ``-p`` overrides on top of the parameter file.
    params_file
        Parameter file; None looks for config/hamwm.yaml (see :func:`find_params_file`), False uses none.
    env
        Extra environment variables (ROS_DOMAIN_ID, ...) on top of this process's.
    """

    def __init__(self, robot: str, parameters: dict[str, Any] | None = None,
                 params_file: Path | str | None | bool = None, env: dict[str, str] | None = None) -> None:
        if params_file is None:
            params_file = find_params_file()
        self.command = sim_node_command(robot, params_file or None, parameters)
        self._log = tempfile.NamedTemporaryFile(prefix='hamwm_sim_', suffix='.log', delete=False)  # noqa: SIM115
        environment = dict(os.environ)
        environment.setdefault('MUJOCO_GL', 'egl')
        environment['PYTHONUNBUFFERED'] = '1'
        environment.update(env or {})
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=environment,
                                        start_new_session=True)
        self.returncode: int | None = None

    @property
    def log_path(self) -> str:
        """Path of the node's combined stdout/stderr."""
        return self._log.name

    def log(self) -> str:
        """Everything the node printed so far."""
        self._log.flush()
        return Path(self._log.name).read_text(errors='replace')

    def alive(self) -> bool:
        """True while the node process runs."""
        return self.process.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the node process has used so far (Linux /proc; NaN elsewhere or once ended)."""
        try:
            fields = Path(f'/proc/{self.process.pid}/stat').read_text().rsplit(')', 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
        except (OSError, IndexError, ValueError):
            return math.nan

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, wait up to ``timeout`` s (then SIGKILL); return the exit code (negative: killed by signal)."""
        self.returncode = interrupt_process(self.process, timeout)
        return self.returncode

    def close(self) -> None:
        """Stop the node and remove its log file."""
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stamp_seconds(msg: Any) -> float | None:
    """Header stamp (or Clock.clock) of a message in seconds, None when it has neither."""
    stamp = getattr(getattr(msg, 'header', None), 'stamp', None) or getattr(msg, 'clock', None)
    if stamp is None:
        return None
    return stamp.sec + stamp.nanosec * 1e-9


@dataclass
class TopicRecord:
    """What a probe saw on one topic since its last reset."""

    type_name: str
    count: int = 0
    first_wall: float = math.nan
    last_wall: float = math.nan
    first_stamp: float | None = None
    last_stamp: float | None = None
    stamp_regressions: int = 0            # messages whose stamp was not after the previous one
    seq: int = 0                          # total messages ever (not reset), for wait_for
    recent: deque = field(default_factory=lambda: deque(maxlen=200))

    def rate_wall(self) -> float:
        """Messages per wall-clock second between the first and last message."""
        span = self.last_wall - self.first_wall
        return (self.count - 1) / span if self.count > 1 and span > 0 else math.nan

    def rate_sim(self) -> float:
        """Messages per second of stamp time (simulated time), NaN without stamps."""
        if self.count < 2 or self.first_stamp is None or self.last_stamp is None:
            return math.nan
        span = self.last_stamp - self.first_stamp
        return (self.count - 1) / span if span > 0 else math.nan


class TopicProbe:
    """An rclpy node in its own context that records topics from a background executor thread.

    Parameters
    ----------
    topics
        Topic name -> message class.
    domain_id
        ROS domain; None uses ROS_DOMAIN_ID.
    best_effort
        Topics to subscribe best effort (big images); the rest are subscribed reliable.
    keep
        How many recent messages to keep per topic (images: at most 3).
    name
        Node name of the probe.
    latched
        Topics published transient local (latched); subscribed transient local so the last message arrives even if
        it was published before discovery.
    """

    def __init__(self, topics: dict[str, type], *, domain_id: int | None = None,
                 best_effort: tuple[str, ...] = ('/camera/image_raw',), keep: int = 200,
                 name: str = 'hamwm_probe', latched: tuple[str, ...] = ('/hamwm/mpc/mode',)) -> None:
        import rclpy
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        try:   # the C++ events executor keeps up with thousands of messages per second; the Python one does not
            from rclpy.experimental import EventsExecutor as Executor
        except ImportError:
            from rclpy.executors import SingleThreadedExecutor as Executor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = Executor(context=self.context)
        self.executor.add_node(self.node)
        self.records: dict[str, TopicRecord] = {}
        self._condition = threading.Condition()
        self._clients: dict[tuple[type, str], Any] = {}
        self._clients_lock = threading.Lock()
        for topic, message_type in topics.items():
            reliability = ReliabilityPolicy.BEST_EFFORT if topic in best_effort else ReliabilityPolicy.RELIABLE
            # Deep reliable queues: a probe counts rates, and a loaded host can stall its spin thread for a few hundred
            # ms (500 Hz joint states overflowed a depth of 100 in a CI run, reading 458 Hz for 500).
            depth = 5 if topic in best_effort else 1000
            # Latched topics (published on change, transient local) are subscribed the same way: otherwise a message
            # published before discovery completes is never seen.
            durability = DurabilityPolicy.TRANSIENT_LOCAL if topic in latched else DurabilityPolicy.VOLATILE
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                             durability=durability)
            self.records[topic] = TopicRecord(f'{message_type.__module__.split(".")[0]}/{message_type.__name__}')
            self.records[topic].recent = deque(maxlen=min(keep, 3) if 'image' in topic.lower() else keep)
            self.node.create_subscription(message_type, topic, self._callback(topic), qos)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='probe_spin', daemon=True)
        self._thread.start()

    def _callback(self, topic: str):
        def record(msg: Any) -> None:
            now = time.monotonic()
            stamp = _stamp_seconds(msg)
            with self._condition:
                rec = self.records[topic]
                if rec.count == 0:
                    rec.first_wall, rec.first_stamp = now, stamp
                elif stamp is not None and rec.last_stamp is not None and stamp <= rec.last_stamp:
                    rec.stamp_regressions += 1
                rec.count += 1
                rec.seq += 1
                rec.last_wall, rec.last_stamp = now, stamp
                rec.recent.append(msg)
                self._condition.notify_all()
        return record

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down under us while closing
                if not self._stop.is_set():
                    raise
                return

    def reset(self) -> None:
        """Forget counts and rates (not ``seq``) so the next window is measured on its own."""
        with self._condition:
            for rec in self.records.values():
                rec.count, rec.first_wall, rec.last_wall = 0, math.nan, math.nan
                rec.first_stamp = rec.last_stamp = None
                rec.stamp_regressions = 0

    def seq(self, topic: str) -> int:
        """Messages received on ``topic`` so far (never reset)."""
        with self._condition:
            return self.records[topic].seq

    def latest(self, topic: str) -> Any:
        """Last message on ``topic`` or None."""
        with self._condition:
            recent = self.records[topic].recent
            return recent[-1] if recent else None

    def recent(self, topic: str) -> list:
        """The kept recent messages on ``topic``, oldest first."""
        with self._condition:
            return list(self.records[topic].recent)

    def wait_for(self, topic: str, predicate=None, timeout: float = 10.0, after: int | None = None) -> Any:
        """Wait for a message on ``topic`` (newer than sequence number ``after``) satisfying ``predicate``.

        Returns the message, or None on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            seen = self.records[topic].seq if after is None else after
            while True:
                rec = self.records[topic]
                fresh = rec.seq - seen
                if fresh > 0:
                    candidates = list(rec.recent)[-min(fresh, len(rec.recent)):]
                    seen = rec.seq
                    for msg in candidates:
                        if predicate is None or predicate(msg):
                            return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(min(remaining, 0.1))

    def snapshot(self) -> dict[str, TopicRecord]:
        """A copy of the per-topic records (without the kept messages)."""
        with self._condition:
            return {topic: TopicRecord(rec.type_name, rec.count, rec.first_wall, rec.last_wall, rec.first_stamp,
                                       rec.last_stamp, rec.stamp_regressions, rec.seq, deque(maxlen=1))
                    for topic, rec in self.records.items()}

    def call(self, service_type: type, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call service ``name`` from the probe's node (spun by its own thread) and return the response.

        Raises
        ------
        TimeoutError
            If the service is not available, or does not answer, within ``timeout`` s.
        """
        # One client per service for the probe's life: a client made for each call must be discovered by the server
        # again each time, and a response sent before that completes is lost (seen as a rare 30 s silence in a test
        # that made some 300 calls, the node idle in its wait set).
        client = self.client(service_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'service {name} not available within {timeout:.0f} s')
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                client.remove_pending_request(future)
                raise TimeoutError(f'service {name}: no answer within {timeout:.0f} s')
            time.sleep(0.01)
        return future.result()

    def client(self, service_type: type, name: str) -> Any:
        """The probe's client of service ``name`` (made on first use, then kept: see :meth:`call`)."""
        with self._clients_lock:
            client = self._clients.get((service_type, name))
            if client is None:
                client = self._clients[(service_type, name)] = self.node.create_client(service_type, name)
        return client

    def call_until_answered(self, service_type: type, name: str, request: Any, timeout: float = 30.0,
                            attempt_s: float = 2.0, prepare: Sequence[tuple[type, str]] = ()) -> Any:
        """:meth:`call` for a request that is safe to repeat (get_state, get_parameters), until one is answered.

        After a server restarts under the same name, the graph can still list the old one's endpoints: the client
        then counts the service as available and sends its request before its writer has matched the new server's
        reader, and that request is lost (a test's first configure of a restarted world_model_node went unanswered
        in about half the runs of two test modules back to back). Each attempt that gets no answer within
        ``attempt_s`` drops the client and tries again with a new one. ``prepare`` names the clients (type, name)
        that non-repeatable calls (change_state) will use: they are made before each attempt, so the server has
        discovered them by the time it answers (a client made just before its first request races that discovery).

        Raises
        ------
        TimeoutError
            If no attempt is answered within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            for kind, other in prepare:
                self.client(kind, other)
            left = deadline - time.monotonic()
            try:
                return self.call(service_type, name, request, timeout=max(0.1, min(attempt_s, left)))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
                for other in (name, *(n for _, n in prepare)):
                    self.forget_clients(other)

    def reach_lifecycle_node(self, node: str, timeout: float = 30.0,
                             services: Sequence[tuple[type, str]] = ()) -> None:
        """First contact with a (re)started lifecycle node ``node`` (``/name``): its get_state answered.

        Through :meth:`call_until_answered`, with the clients of its change_state and set_parameters (and
        ``services``, (type, name) pairs) made beforehand, so the calls that follow are not lost.

        Raises
        ------
        TimeoutError
            If get_state is not answered within ``timeout`` s.
        """
        from lifecycle_msgs.srv import ChangeState, GetState
        from rcl_interfaces.srv import SetParameters

        self.call_until_answered(GetState, f'{node}/get_state', GetState.Request(), timeout,
                                 prepare=[(ChangeState, f'{node}/change_state'),
                                          (SetParameters, f'{node}/set_parameters'), *services])

    def forget_clients(self, prefix: str = '') -> int:
        """Destroy the cached clients of the services whose names start with ``prefix``; how many.

        A client keeps what it matched; call this when a new process is to serve the same names.
        """
        with self._clients_lock:
            stale = [key for key in self._clients if key[1].startswith(prefix)]
            for key in stale:
                self.node.destroy_client(self._clients.pop(key))
        return len(stale)

    def close(self) -> None:
        """Stop spinning and shut the probe's context down."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()

    def __enter__(self) -> TopicProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sim_topics(robot: str, camera: bool = True, clock: bool = True) -> dict[str, type]:
    """The topics sim_node publishes for ``robot`` -> message classes."""
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, Imu, JointState

    topics: dict[str, type] = {'/joint_states': JointState}
    if robot == 'humanoid':
        topics.update({'/imu': Imu, '/odom': Odometry})
    if camera:
        topics.update({'/camera/image_raw': Image, '/camera/camera_info': CameraInfo})
    if clock:
        topics['/clock'] = Clock
    topics['/diagnostics'] = DiagnosticArray
    return topics


def diagnostics_values(msg: Any) -> dict[str, str]:
    """Key/values of sim_node's status in a DiagnosticArray."""
    for status in getattr(msg, 'status', []):
        if status.name.startswith('sim_node'):
            return {kv.key: kv.value for kv in status.values}
    return {}


def real_time_factor(records: dict[str, TopicRecord]) -> float:
    """Simulated seconds per wall second seen on /clock (or /joint_states when /clock is absent)."""
    for topic in ('/clock', '/joint_states'):
        rec = records.get(topic)
        if rec is not None and rec.count > 1 and rec.first_stamp is not None:
            wall = rec.last_wall - rec.first_wall
            if wall > 0:
                return (rec.last_stamp - rec.first_stamp) / wall
    return math.nan


def measure(robot: str, duration: float, parameters: dict[str, Any] | None = None, *,
            params_file: Path | str | None | bool = None, warmup: float = 0.5, startup_timeout: float = 60.0,
            domain_id: int | None = None, clock: bool = True) -> dict[str, Any]:
    """Run sim_node for ``robot`` and measure its topics over ``duration`` wall seconds after a warm-up.

    Returns a dict: ``records`` (topic -> TopicRecord), ``real_time_factor``, ``diagnostics`` (the node's last
    status values), ``returncode`` (sim_node's exit code after SIGINT), ``started`` (bool) and ``log`` (its output).
    """
    parameters = dict(parameters or {})
    camera = float(parameters.get('camera_rate', 30.0)) > 0.0
    env = {} if domain_id is None else {'ROS_DOMAIN_ID': str(domain_id)}
    result: dict[str, Any] = {'robot': robot, 'started': False}
    with SimProcess(robot, parameters, params_file=params_file, env=env) as sim:
        probe = TopicProbe(sim_topics(robot, camera, clock), domain_id=domain_id)
        try:
            deadline = time.monotonic() + startup_timeout
            while sim.alive() and time.monotonic() < deadline:
                if probe.wait_for('/joint_states', timeout=0.5) is not None:
                    result['started'] = True
                    break
            if result['started']:
                time.sleep(warmup)
                probe.reset()
                end = time.monotonic() + duration
                while sim.alive() and time.monotonic() < end:
                    time.sleep(min(0.2, max(0.0, end - time.monotonic())))
            records = probe.snapshot()
            result['diagnostics'] = diagnostics_values(probe.latest('/diagnostics'))
        finally:
            probe.close()
        result['returncode'] = sim.stop()
        result['log'] = sim.log()
    result['records'] = records
    result['real_time_factor'] = real_time_factor(records)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The report table of :func:`measure`'s result."""
    lines = [f"{'topic':<22} {'type':<30} {'messages':>8} {'Hz (wall)':>10} {'Hz (sim)':>9}"]
    for topic, rec in result['records'].items():
        def fmt(x: float) -> str:
            return '-' if math.isnan(x) else f'{x:.1f}'
        lines.append(f'{topic:<22} {rec.type_name:<30} {rec.count:>8} {fmt(rec.rate_wall()):>10} '
                     f'{fmt(rec.rate_sim()):>9}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """``hamwm sim``: run sim_node for a robot, print a table of what it published; 0 on a clean run."""
    parser = argparse.ArgumentParser(prog='hamwm sim',
                                     description='Run a simulated robot over ROS 2 and report what it published.',
                                     formatter_class=HelpFormatter)
    parser.add_argument('--robot', choices=ROBOT_CHOICES, default='humanoid', help='robot to simulate')
    parser.add_argument('--duration', type=float, default=5.0, help='measurement window in wall seconds')
    parser.add_argument('--camera-rate', type=float, default=None,
                        help="Hz of simulated time; 0 disables rendering (default: the parameter file's)")
    parser.add_argument('--joint-states-rate', type=float, default=None,
                        help="Hz of simulated time (default: the parameter file's)")
    parser.add_argument('--free-running', action='store_true', help='real_time:=false (as fast as possible)')
    parser.add_argument('--params-file', type=Path, default=None, help='default: config/hamwm.yaml')
    parser.add_argument('--domain-id', type=int, default=None,
                        help='ROS domain for the node and probe (default: ROS_DOMAIN_ID)')
    parser.add_argument('--show-log', action='store_true', help="print sim_node's output")
    parser.add_argument('--json', action='store_true', help='print the result as JSON instead of a table')
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error('--duration must be > 0')

    parameters: dict[str, Any] = {}
    if args.camera_rate is not None:
        parameters['camera_rate'] = float(args.camera_rate)
    if args.joint_states_rate is not None:
        parameters['joint_states_rate'] = float(args.joint_states_rate)
    if args.free_running:
        parameters['real_time'] = False
    params_file = args.params_file if args.params_file is not None else find_params_file()
    print(f"hamwm sim: {args.robot}, {args.duration:g} s, parameters {params_file or '(none)'}"
          f"{' ' + str(parameters) if parameters else ''}, ROS_DOMAIN_ID "
          f"{args.domain_id if args.domain_id is not None else os.environ.get('ROS_DOMAIN_ID', '0')}", flush=True)
    result = measure(args.robot, args.duration, parameters, params_file=params_file or False,
                     domain_id=args.domain_id)
    ok = result['started'] and result['returncode'] == 0
    if args.json:
        print(json.dumps({
            'robot': args.robot, 'started': result['started'], 'returncode': result['returncode'],
            'real_time_factor': result['real_time_factor'], 'diagnostics': result['diagnostics'],
            'topics': {t: {'type': r.type_name, 'count': r.count, 'hz_wall': r.rate_wall(), 'hz_sim': r.rate_sim()}
                       for t, r in result['records'].items()}}, indent=2, default=str))
    else:
        if not result['started']:
            print('sim_node published no /joint_states; its output:\n' + result['log'], file=sys.stderr)
        print(format_table(result))
        diagnostics = result['diagnostics']
        print(f"real-time factor: {result['real_time_factor']:.3f} (probe, /clock stamps over wall time); "
              f"{diagnostics.get('real_time_factor', '-')} (sim_node /diagnostics, last second)")
        if diagnostics:
            print(f"sim_node (own count, last second): {diagnostics.get('physics_steps_per_s', '-')} physics steps/s, "
                  f"{diagnostics.get('joint_states_per_s', '-')} joint_states/s, "
                  f"{diagnostics.get('images_per_s', '-')} images/s (render {diagnostics.get('render_ms_mean', '-')} "
                  f"ms/frame, {diagnostics.get('camera_frames_skipped', '-')} frames skipped), lag resets "
                  f"{diagnostics.get('lag_resets', '-')}, dropped inputs {diagnostics.get('dropped_inputs', '-')}")
            print('(the table counts what this process received: on a saturated machine its own subscriber can fall '
                  'behind, which shows as Hz (sim) below the configured rate)')
        print(f"sim_node exit code after SIGINT: {result['returncode']}")
    if args.show_log:
        print(result['log'])
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
