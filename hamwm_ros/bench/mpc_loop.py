"""The control-loop half of ``hamwm bench mpc``: mpc_node at its control rate over real DDS, against baselines.

Three processes run side by side for ``--loop-seconds`` (60 by default), so load from elsewhere hits all alike:

* ``mpc_node`` (the product) on the shipped pendulum model at ``--control-rate`` Hz (500 by default), planner at 50 Hz;
* a **bare loop**: the same sleep-until-deadline loop in a plain Python process with no ROS and no planner: the floor
  the operating system and the interpreter give a 500 Hz Python loop on this machine;
* a **reactive PD node**: the smallest rclpy controller there is (one subscription callback that publishes a PD
  command at once), the floor for "``/joint_states`` in, command out" through rclpy and the DDS.

This process publishes ``/joint_states`` at 500 Hz (wall-clock stamps) with the hinge stepping between +0.3 and
-0.3 rad every 0.25 s (goal 0), and records every command either controller publishes. The **end-to-end latency** of
a step is the time from publishing the first message with the new position to receiving the first command of the new
sign: for mpc_node that covers the DDS both ways, waiting for the next planner slot, one MPPI plan on the new state
and the next control tick. mpc_node's own ``/diagnostics`` give its period error and missed deadlines.
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
import textwrap
import threading
import time
from typing import Any

import numpy as np

STEP_S = 0.25                  # s between position steps
AMPLITUDE = 0.3                # rad
PUBLISH_RATE = 500.0           # Hz of /joint_states
PD_TOPIC = '/hamwm_bench/pd_command'

_BARE_LOOP = textwrap.dedent('''
    import json, os, sys, time
    rate, seconds, priority = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    period = 1.0 / rate
    scheduling = 'SCHED_OTHER'
    if priority > 0:   # the same policy as mpc_node's control thread, so the ratio compares like with like
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            scheduling = f'SCHED_FIFO {priority}'
        except OSError:
            scheduling = 'SCHED_OTHER (SCHED_FIFO refused)'
    errors, missed = [], 0
    deadline = time.monotonic()
    previous = None
    end = deadline + seconds
    while True:
        deadline += period
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        if now > end:
            break
        if now - deadline > period:
            missed += int((now - deadline) / period)
            deadline = now
        if previous is not None:
            errors.append(abs(now - previous - period))
        previous = now
    errors.sort()
    p99 = errors[int(0.99 * (len(errors) - 1))] if errors else float('nan')
    print(json.dumps({'ticks': len(errors) + 1, 'missed': missed, 'period_error_p99_ms': 1e3 * p99,
                      'scheduling': scheduling}))
''')

_PD_NODE = textwrap.dedent('''
    import rclpy, sys
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    rclpy.init()
    node = rclpy.create_node('hamwm_bench_pd')
    publisher = node.create_publisher(Float64MultiArray, sys.argv[1], 10)
    def on_state(msg):
        publisher.publish(Float64MultiArray(data=[-10.0 * msg.position[0] - 1.0 * msg.velocity[0]]))
    node.create_subscription(JointState, 'joint_states', on_state, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
''')


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {'n': 0, 'p50_ms': math.nan, 'p90_ms': math.nan, 'p99_ms': math.nan, 'max_ms': math.nan}
    ms = np.asarray(values) * 1e3
    return {'n': int(ms.size), 'p50_ms': float(np.percentile(ms, 50)), 'p90_ms': float(np.percentile(ms, 90)),
            'p99_ms': float(np.percentile(ms, 99)), 'max_ms': float(ms.max())}


def step_latencies(steps: list[tuple[float, float]], commands: list[tuple[float, float]],
                   threshold: float = 0.05) -> list[float]:
    """Seconds from each position step to the first command of the sign that step calls for.

    Parameters
    ----------
    steps
        ``(time, position)`` of the first message with each new position (goal 0: the command should oppose it).
    commands
        ``(receipt time, command)`` in receipt order.
    threshold
        Smallest ``|command|`` (N m) that counts as a response.

    Returns
    -------
    list[float]
        One latency per step that got a response before the next step (steps without one are left out).
    """
    times = np.array([t for t, _ in commands]) if commands else np.zeros(0)
    values = np.array([v for _, v in commands]) if commands else np.zeros(0)
    latencies = []
    for i, (start, position) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else math.inf
        wanted = -math.copysign(1.0, position)
        window = (times >= start) & (times < end) & (values * wanted > threshold)
        hits = np.flatnonzero(window)
        if hits.size:
            latencies.append(float(times[hits[0]] - start))
    return latencies


def run_loop(seconds: float, control_rate: float, model_dir: Path, samples: int,
             extra: list[str] | None = None, rt_priority: int = 50) -> dict[str, Any]:
    """Run mpc_node, the bare loop and the PD node side by side for ``seconds``; return the figures.

    ``extra`` holds further mpc_node parameters as ``name:=value`` strings. ``rt_priority`` is mpc_node's
    ``control_rt_priority`` and the bare loop's SCHED_FIFO priority (0: normal scheduling for both).

    Raises
    ------
    RuntimeError
        If mpc_node does not reach PLANNING or publishes no diagnostics.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, String

    from hamwm_ros.sim.cli import node_command

    try:   # the C++ events executor keeps up with 1000+ messages per second in this process
        from rclpy.experimental import EventsExecutor as Executor
    except ImportError:  # pragma: no cover - older rclpy
        from rclpy.executors import SingleThreadedExecutor as Executor

    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    logs = {name: tempfile.NamedTemporaryFile(prefix=f'hamwm_bench_{name}_', suffix='.log', delete=False)  # noqa: SIM115
            for name in ('mpc', 'pd', 'bare')}
    params = {'model_dir': str(model_dir), 'control_rate': float(control_rate), 'planner_rate': 50.0,
              'autostart': True, 'goal_position': [0.0], 'mppi.num_samples': int(samples),
              'joint_state_timeout': 0.1, 'max_plan_age': 0.2, 'diagnostics_rate': 1.0,
              'control_rt_priority': int(rt_priority)}
    mpc_cmd = node_command('mpc_node', params)
    for item in extra or []:
        mpc_cmd += ['-p', item]
    processes: dict[str, subprocess.Popen] = {}
    context = rclpy.Context()
    rclpy.init(args=[], context=context)     # not sys.argv: --mpc-param values would read as remap rules
    node = rclpy.create_node('hamwm_bench_loop', context=context)
    executor = Executor(context=context)
    executor.add_node(node)
    lock = threading.Lock()
    records: dict[str, list[tuple[float, float]]] = {'mpc': [], 'pd': []}
    diagnostics: list[dict[str, str]] = []
    modes: list[str] = []

    def recorder(name: str):
        def record(msg: Float64MultiArray) -> None:
            now = time.monotonic()
            if msg.data:
                with lock:
                    records[name].append((now, float(msg.data[0])))
        return record

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith('mpc_node'):
                with lock:
                    diagnostics.append({kv.key: kv.value for kv in status.values})

    node.create_subscription(Float64MultiArray, '/effort_controller/commands', recorder('mpc'), 100)
    node.create_subscription(Float64MultiArray, PD_TOPIC, recorder('pd'), 100)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    node.create_subscription(String, '/hamwm/mpc/mode', lambda m: modes.append(m.data), 10)
    publisher = node.create_publisher(JointState, '/joint_states', qos_profile_sensor_data)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    steps: list[tuple[float, float]] = []
    try:
        processes['mpc'] = subprocess.Popen(mpc_cmd, stdout=logs['mpc'], stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        processes['pd'] = subprocess.Popen([sys.executable, '-c', _PD_NODE, PD_TOPIC], stdout=logs['pd'],
                                           stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def publish(position: float) -> None:
            msg = JointState(name=['hinge'], position=[position], velocity=[0.0], effort=[0.0])
            msg.header.stamp = node.get_clock().now().to_msg()
            publisher.publish(msg)

        # Warm up: hold +AMPLITUDE until mpc_node plans and the PD node answers (model load, discovery), <= 60 s.
        period = 1.0 / PUBLISH_RATE

        def ready() -> bool:
            with lock:
                answered = bool(records['pd'])
            return answered and any(m.startswith('PLANNING') for m in modes)

        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not ready():
            publish(AMPLITUDE)
            time.sleep(period)
        if not ready():
            raise RuntimeError('mpc_node never reached PLANNING or the PD node never answered:\n'
                               + Path(logs['mpc'].name).read_text()[-3000:] + Path(logs['pd'].name).read_text()[-1000:])
        with lock:
            diagnostics.clear()
        processes['bare'] = subprocess.Popen([sys.executable, '-c', _BARE_LOOP, str(control_rate), str(seconds),
                                              str(int(rt_priority))],
                                             stdout=subprocess.PIPE, stderr=logs['bare'], env=env, text=True)
        began = time.monotonic()
        next_tick = began
        position = AMPLITUDE
        next_step = began
        while time.monotonic() - began < seconds:
            now = time.monotonic()
            if now >= next_step:
                position = -position
                steps.append((time.monotonic(), position))
                next_step += STEP_S
            publish(position)
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif -delay > period:
                next_tick = time.monotonic()
        bare_out, _ = processes['bare'].communicate(timeout=30.0)
        time.sleep(1.5)          # one more diagnostics message covers the whole window
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(10.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5.0)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        for handle in logs.values():
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
    if not diagnostics:
        raise RuntimeError('no /diagnostics from mpc_node during the run')
    last = diagnostics[-1]
    bare = json.loads(bare_out.strip().splitlines()[-1])
    with lock:
        mpc_lat = step_latencies(steps, records['mpc'])
        pd_lat = step_latencies(steps, records['pd'])
        counts = {name: len(r) for name, r in records.items()}
    ticks = int(last.get('control_ticks', 0))
    missed = int(last.get('missed_deadlines', 0))
    return {
        'benchmark': 'mpc.loop', 'seconds': seconds, 'extra_parameters': list(extra or []),
        'control_rate_hz': control_rate, 'model': str(model_dir),
        'mppi_samples': samples, 'steps': len(steps),
        'mpc_node': {'period_error_p99_ms': float(last.get('period_error_p99_ms', 'nan')),
                     'missed_deadlines': missed, 'control_ticks': ticks,
                     'missed_fraction': missed / max(ticks + missed, 1),
                     'control_rate_achieved_hz': float(last.get('control_rate_achieved_hz', 'nan')),
                     'scheduling': last.get('control_scheduling', 'unknown'),
                     'planner_ms_p50': float(last.get('planner_ms_p50', 'nan')),
                     'gc_collections': last.get('gc_collections', 'unknown'),
                     'state_to_command_ms_p50': float(last.get('state_to_command_ms_p50', 'nan')),
                     'state_to_command_ms_p99': float(last.get('state_to_command_ms_p99', 'nan')),
                     'feedback_ticks': int(last.get('feedback_ticks', 0)),
                     'commands_received': counts['mpc'], 'latency': _percentiles(mpc_lat)},
        'command_relay': None if 'relay_ticks' not in last else {
            'status': last.get('command_relay', 'unknown'),
            'period_error_p99_ms': float(last.get('relay_period_error_p99_ms', 'nan')),
            'missed_deadlines': int(last.get('relay_missed_deadlines', 0)),
            'control_ticks': int(last.get('relay_ticks', 0)),
            'commands_published': int(last.get('relay_commands_published', 0)),
            'stale_ticks': int(last.get('relay_stale_ticks', 0)), 'repeats': int(last.get('relay_repeats', 0)),
            'bypassed': int(last.get('relay_bypassed', 0)),
            'unmatched': int(last.get('relay_unmatched_ticks', 0)),
            'command_age_ms_p50': float(last.get('relay_command_age_ms_p50', 'nan')),
            'command_age_ms_p99': float(last.get('relay_command_age_ms_p99', 'nan'))},
        'bare_loop': {'period_error_p99_ms': bare['period_error_p99_ms'], 'missed_deadlines': bare['missed'],
                      'control_ticks': bare['ticks'], 'missed_fraction': bare['missed'] / max(bare['ticks'], 1),
                      'scheduling': bare['scheduling']},
        'reactive_pd_node': {'commands_received': counts['pd'], 'latency': _percentiles(pd_lat)},
        'load_average_1min': os.getloadavg()[0],
    }


def print_loop(fig: dict[str, Any]) -> None:
    """Print the control-loop figures as a side-by-side table with ratios."""
    m, b, p = fig['mpc_node'], fig['bare_loop'], fig['reactive_pd_node']
    print(f"\ncontrol loop, {fig['seconds']:.0f} s at {fig['control_rate_hz']:.0f} Hz, mpc_node on {fig['model']} "
          f"({fig['mppi_samples']} samples, planner 50 Hz), {fig['steps']} position steps; "
          f"load {fig['load_average_1min']:.1f}")
    print(f"{'':<36} {'p99 period error ms':>20} {'missed deadlines':>18}   scheduling")
    print(f"{'mpc_node control thread':<36} {m['period_error_p99_ms']:20.3f} "
          f"{m['missed_deadlines']:>8d} ({100 * m['missed_fraction']:.2f}%)   {m['scheduling']}")
    relay = fig.get('command_relay')
    if relay:
        fraction = relay['missed_deadlines'] / max(relay['control_ticks'] + relay['missed_deadlines'], 1)
        print(f"{'command relay process (publishes)':<36} {relay['period_error_p99_ms']:20.3f} "
              f"{relay['missed_deadlines']:>8d} ({100 * fraction:.2f}%)   {relay['status']}")
    print(f"{'bare Python loop (no ROS, baseline)':<36} {b['period_error_p99_ms']:20.3f} "
          f"{b['missed_deadlines']:>8d} ({100 * b['missed_fraction']:.2f}%)   {b['scheduling']}")
    if relay:
        print(f"command relay: {relay['commands_published']} published, {relay['repeats']} of them repeats (the "
              f"control thread had posted no newer one), {relay['stale_ticks']} ticks with no fresh command, "
              f"{relay['bypassed'] + relay['unmatched']} published by the control thread instead ({relay['unmatched']} "
              "while the relay had not yet matched every subscriber); command age when published p50 "
              f"{relay['command_age_ms_p50']:.3f} ms, p99 {relay['command_age_ms_p99']:.3f} ms")
    publisher = relay['period_error_p99_ms'] if relay else m['period_error_p99_ms']
    ratio = publisher / max(b['period_error_p99_ms'], 1e-9)
    print(f"period error p99 ratio {'relay' if relay else 'mpc_node'} / bare loop: {ratio:.2f}x; achieved rate "
          f"{m['control_rate_achieved_hz']:.1f} Hz; planner p50 {m['planner_ms_p50']:.2f} ms; garbage collections "
          f"(generation 0/1/2, whole run) {m.get('gc_collections', 'unknown')}")
    ml, pl = m['latency'], p['latency']
    header = f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>5}"
    print(f"{'/joint_states -> command it causes':<36} {header}")
    print(f"{'mpc_node, receipt -> planned command':<36} {m['state_to_command_ms_p50']:8.2f} {'-':>8} "
          f"{m['state_to_command_ms_p99']:8.2f} {'-':>8} {'':>5}  (in-node: first command from the plan made on it)")
    print(f"{'mpc_node, step -> opposing command':<36} {ml['p50_ms']:8.2f} {ml['p90_ms']:8.2f} {ml['p99_ms']:8.2f} "
          f"{ml['max_ms']:8.2f} {ml['n']:5d}")
    print(f"{'reactive PD node (rclpy floor)':<36} {pl['p50_ms']:8.2f} {pl['p90_ms']:8.2f} {pl['p99_ms']:8.2f} "
          f"{pl['max_ms']:8.2f} {pl['n']:5d}")
    feedback = m.get('feedback_ticks', 0) > 0
    print(f"step-response p50 ratio mpc_node / reactive PD: {ml['p50_ms'] / max(pl['p50_ms'], 1e-9):.2f}x "
          + ('(plan_feedback: the next control tick opposes the deviation from the plan\'s prediction)' if feedback
             else '(mpc_node waits for its next planner slot, and its warm-started plan takes a few plans to '
                  'reverse; plan_feedback.kp reacts at the next control tick)'))
