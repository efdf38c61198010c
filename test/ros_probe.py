"""Test helper: sim_node in its own process plus a probe node in the test process, over real DDS.

``SimHarness`` starts ``python -m hamwm_ros.nodes.sim_node`` (the test session's ROS_DOMAIN_ID and loopback-only
discovery come from conftest.py through the environment), records the node's topics with
:class:`hamwm_ros.sim.cli.TopicProbe`, and gives the tests publishers and the node's parameter services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import random
import subprocess
import tempfile
import time
from typing import Any
import xml.etree.ElementTree as ET

from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters
from rclpy.parameter import Parameter, parameter_value_to_python

from hamwm_ros.rosdomain import DOMAIN_RANGE
from hamwm_ros.sim import robot_urdf_path
from hamwm_ros.sim.cli import SimProcess, TopicProbe, diagnostics_values, interrupt_process, node_command, sim_topics

_HANDED_OUT: set[int] = set()


def other_domain() -> int:
    """A random ROS domain other than this test session's and any returned before in this process.

    For a node that must not hear, or be heard by, the other nodes of the same test file (each simulator publishes
    ``/joint_states``).
    """
    taken = _HANDED_OUT | {int(os.environ.get('ROS_DOMAIN_ID', '0'))}
    low, high = DOMAIN_RANGE
    domain = random.SystemRandom().choice([d for d in range(low, high + 1) if d not in taken])
    _HANDED_OUT.add(domain)
    return domain


def urdf_joint_names(robot: str) -> list[str]:
    """Movable joints of a robot's URDF in file order, read straight from the XML."""
    root = ET.parse(robot_urdf_path(robot)).getroot()
    return [j.get('name') for j in root.iter('joint') if j.get('type') not in ('fixed', 'floating', 'planar')]


def start_node_processes(nodes: dict[str, dict[str, Any]], params_file: Path, cwd: Path,
                         tag: str) -> tuple[dict[str, subprocess.Popen], dict[str, Path]]:
    """Start each node as ``ros2 launch`` would (its own process, ``params_file`` plus overrides); logs per node.

    Returns the processes and their log files (``/tmp/hamwm_<tag>_<pid>_<node>.log``), both by node name; stop the
    processes with :func:`hamwm_ros.sim.cli.interrupt_process`. If one fails to start, those already started are
    stopped before the error propagates.
    """
    env = dict(os.environ, PYTHONUNBUFFERED='1', MUJOCO_GL=os.environ.get('MUJOCO_GL', 'egl'))
    processes: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}
    try:
        for name, parameters in nodes.items():
            logs[name] = Path(f'/tmp/hamwm_{tag}_{os.getpid()}_{name}.log')
            processes[name] = subprocess.Popen(node_command(name, parameters, params_file), cwd=cwd, env=env,
                                               stdout=logs[name].open('w'), stderr=subprocess.STDOUT,
                                               start_new_session=True)
    except BaseException:
        for process in processes.values():
            interrupt_process(process)
        raise
    return processes, logs


class SimHarness:
    """sim_node for ``robot`` with ``parameters`` (no parameter file: the node's own defaults) and a probe.

    Raises
    ------
    RuntimeError
        If no /joint_states arrive within ``startup_timeout`` seconds (the node's output is in the message).
    """

    def __init__(self, robot: str, parameters: dict[str, Any] | None = None, startup_timeout: float = 60.0,
                 domain_id: int | None = None) -> None:
        self.robot = robot
        self.domain_id = domain_id
        parameters = dict(parameters or {})
        camera = float(parameters.get('camera_rate', 30.0)) > 0
        env = None if domain_id is None else {'ROS_DOMAIN_ID': str(domain_id)}
        self.process = SimProcess(robot, parameters, params_file=False, env=env)
        self.probe = TopicProbe(sim_topics(robot, camera=camera, clock=True), name=f'probe_{robot}',
                                domain_id=domain_id)
        self.node = self.probe.node
        self._publishers: dict[str, Any] = {}
        deadline = time.monotonic() + startup_timeout
        while self.probe.wait_for('/joint_states', timeout=0.5) is None:
            if not self.process.alive() or time.monotonic() > deadline:
                log = self.process.log()
                self.close()
                raise RuntimeError(f'sim_node ({robot}) published no /joint_states:\n{log}')

    # ------------------------------------------------------------------ topics
    def publisher(self, message_type: type, topic: str, timeout: float = 10.0) -> Any:
        """A publisher on ``topic`` that sim_node's subscription has matched (so nothing sent is lost)."""
        if topic not in self._publishers:
            publisher = self.node.create_publisher(message_type, topic, 10)
            deadline = time.monotonic() + timeout
            while publisher.get_subscription_count() == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f'sim_node never subscribed to {topic}')
                time.sleep(0.05)
            self._publishers[topic] = publisher
        return self._publishers[topic]

    def joint_state(self, predicate=None, timeout: float = 10.0) -> Any:
        """The next /joint_states message (satisfying ``predicate``), or None on timeout."""
        return self.probe.wait_for('/joint_states', predicate, timeout)

    def diagnostics(self, timeout: float = 5.0) -> dict[str, str]:
        """sim_node's next /diagnostics key/values."""
        msg = self.probe.wait_for('/diagnostics', timeout=timeout)
        return diagnostics_values(msg) if msg is not None else {}

    def measure(self, seconds: float) -> dict:
        """Reset the probe, wait ``seconds``, return its per-topic records."""
        self.probe.reset()
        time.sleep(seconds)
        return self.probe.snapshot()

    # ------------------------------------------------------------------ parameters
    def _call(self, service_type: type, name: str, request: Any, timeout: float = 10.0) -> Any:
        return self.probe.call(service_type, f'/sim_node/{name}', request, timeout)

    def set_parameters(self, **values: Any) -> list:
        """Set sim_node parameters through its service; returns the SetParametersResult list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return list(self._call(SetParameters, 'set_parameters', request).results)

    def get_parameter(self, name: str) -> Any:
        """A sim_node parameter's current value through its service."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self._call(GetParameters, 'get_parameters', GetParameters.Request(names=[name]))
        return parameter_value_to_python(response.values[0])

    # ------------------------------------------------------------------ shutdown
    def log(self) -> str:
        """sim_node's output so far."""
        return self.process.log()

    def close(self) -> None:
        """Stop the probe and the node (SIGINT) and remove the node's log."""
        try:
            self.probe.close()
        finally:
            self.process.close()


class MpcProcess:
    """mpc_node in a subprocess (output to a log file) and a probe node in this process: what the mpc_node tests share.

    ``command`` is :func:`hamwm_ros.sim.cli.node_command`'s list; ``topics`` what the probe records.
    """

    def __init__(self, command: list[str], topics: dict[str, type], name: str, keep: int, log_prefix: str) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix='.log', delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, PYTHONUNBUFFERED='1'), start_new_session=True)
        self.probe = TopicProbe(topics, name=name, keep=keep)
        self.node = self.probe.node
        self._answered = False

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors='replace')

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        """Wait until ``text`` is in the node's output (AssertionError with the log's tail on timeout)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f'{text!r} not logged within {timeout} s:\n{self.log()[-3000:]}')
            time.sleep(0.05)

    def call(self, service_type: type, name: str, request: Any, timeout: float = 30.0) -> Any:
        """The service's response; TimeoutError (with the node's log) when it is missing or silent."""
        try:
            if not self._answered:      # a request the new process surely gets comes first
                from std_srvs.srv import SetBool

                self.probe.reach_lifecycle_node('/mpc_node', timeout, services=[(SetBool, '/hamwm/estop')])
                self._answered = True
            return self.probe.call(service_type, name, request, timeout)
        except TimeoutError as error:
            raise TimeoutError(f'{error}; node log:\n{self.log()}') from None

    def diagnostics(self) -> dict[str, str]:
        """mpc_node's next /diagnostics key/values (AssertionError with the log when none comes)."""
        msg = self.probe.wait_for('/diagnostics', lambda m: m.status and m.status[0].name.startswith('mpc_node'),
                                  timeout=5.0, after=self.probe.seq('/diagnostics'))
        if msg is None:
            raise AssertionError(f'no diagnostics from mpc_node:\n{self.log()[-3000:]}')
        return {kv.key: kv.value for kv in msg.status[0].values}

    def close(self) -> int:
        """Stop the probe and mpc_node (SIGINT); its exit code. The log file is removed (its text: ``final_log``)."""
        try:
            self.probe.close()
        finally:
            code = interrupt_process(self.process)
            self.final_log = self.log()       # what it wrote up to its exit, for the caller
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
        return code


@dataclass
class ParameterSweep:
    """What :func:`sweep_parameters` did.

    Numeric parameters swept, in-range values accepted, the refusals of in-range values (with their reasons), and
    the node's own refusals of values rclpy let through just past an end.
    """

    swept: int = 0
    accepted: int = 0
    refused: list[str] = field(default_factory=list)
    edge_refused: list[str] = field(default_factory=list)


def sweep_parameters(call: Callable[[type, str, Any], Any], node: str, alive: Callable[[], bool],
                     skip_maxima: frozenset[str] = frozenset()) -> ParameterSweep:
    """Set every writable parameter of ``node`` to both ends of its range, just past them, NaN and a wrong type.

    In range: accepted and read back, or (where another parameter forbids it) refused with a reason and the old value
    kept. Within rclpy's tolerance past an end (it passes those on): accepted, or refused with a reason. Out of
    range, NaN or of the wrong type: refused with a reason. Each parameter gets its old value back and
    the node must still run (``alive``) after each. ``call(service_type, service_name, request)`` returns the
    response; ``skip_maxima`` names parameters set to their minimum only (sizes whose maximum would only make the
    node slow).

    Raises
    ------
    AssertionError
        On the first value handled otherwise.
    """
    def set_one(name: str, value: Any) -> Any:
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return call(SetParameters, f'{node}/set_parameters', request).results[0]

    def get_one(name: str) -> Any:
        return parameter_value_to_python(
            call(GetParameters, f'{node}/get_parameters', GetParameters.Request(names=[name])).values[0])

    names = call(ListParameters, f'{node}/list_parameters', ListParameters.Request()).result.names
    descriptors = call(DescribeParameters, f'{node}/describe_parameters',
                       DescribeParameters.Request(names=names)).descriptors
    sweep = ParameterSweep()
    for descriptor in descriptors:
        name = descriptor.name
        if descriptor.read_only or name == 'use_sim_time':
            continue
        ranges = list(descriptor.floating_point_range) or list(descriptor.integer_range)
        if ranges:
            low, high = ranges[0].from_value, ranges[0].to_value
            original = in_force = get_one(name)
            for value in [low] if name in skip_maxima else [low, high]:
                result = set_one(name, value)
                if result.successful:
                    assert get_one(name) == value, name
                    in_force = value
                    sweep.accepted += 1
                else:
                    assert result.reason and get_one(name) == in_force, (name, value, result.reason)
                    sweep.refused.append(f'{name}={value}: {result.reason}')
            if descriptor.floating_point_range:
                # rclpy lets values within 1e-6 (relative) past an end through as "on the edge": the node's own
                # checks see them; accepted or refused, they must not break it.
                for value in (low - 5e-7 * abs(low), high + 5e-7 * abs(high)):
                    result = set_one(name, value)
                    assert result.successful or result.reason, (name, value)
                    if not result.successful:
                        sweep.edge_refused.append(f'{name}={value}: {result.reason}')
            step = 1 if descriptor.integer_range else max(abs(high - low) * 1e-3, 1e-9)
            for value in [low - step, high + step] + ([math.nan] if descriptor.floating_point_range else []):
                result = set_one(name, value)
                assert not result.successful and result.reason, (name, value)
            assert set_one(name, original).successful, name
            sweep.swept += 1
        result = set_one(name, 3 if descriptor.type == ParameterType.PARAMETER_STRING else 'three')
        assert not result.successful and 'type' in result.reason, (name, result.reason)
        assert alive(), f'{node} died at {name}'
    return sweep
