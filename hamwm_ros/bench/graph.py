"""``hamwm bench graph``: the simulated humanoid graph as ``ros2 launch hamwm_ros sim.launch.py`` starts it.

sim_node, balance_node, world_model_node and mpc_node, each in its own process, from one parameter file (default
``config/hamwm.yaml``) with the launch file's overrides (robot, model_dir, use_sim_time, autostart), on a private ROS
domain. Each run lasts ``--seconds`` of wall time after the first /odom; a push of ``--push-ns`` N s (sim_node's
``push_duration`` at the matching force on /sim/push, forward) lands halfway. Reported per run and as medians: the
share of mpc_node's control ticks in PLANNING, FALLBACK and safe hold (its diagnostics), its plan wall time p50, each
process's CPU (cores, from ``/proc``), the real-time factor, the lowest pelvis height and whether the robot stood
(pelvis above 0.5 m throughout; it stands at 0.59 m), and how much the standing robot moves before the push: the RMS of
every joint velocity in /joint_states from ``SETTLE_S`` of simulated time to the push (a still robot under its PD hold
reads below 0.01 rad/s; a planner that shakes it, tenths). Where mpc_node did not plan, each run also says why: the
share of the run spent in each mode and reason published on ``/hamwm/mpc/mode`` (numbers in a reason read ``#``, so
"planner late: plan is 231 ms old" and "... 245 ms old" count together), and what world_model_node's validity
monitor said (:func:`monitor_summary`: the share of its reports at each level, the share in which each check was
not OK, and the medians of its hold-still ratio and energy-balance error).

``--baseline NODE.NAME:=VALUE`` (repeatable) adds a second arm with those overrides, run interleaved with the first
(run by run, so load from other processes hits both alike), and prints the medians side by side with their ratio.
Session 11 chose ``hamwm.yaml``'s humanoid rates this way (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from hamwm_ros.cli import HelpFormatter

NODES = ('sim_node', 'balance_node', 'world_model_node', 'mpc_node')
STANDING_M = 0.5            # pelvis height; the humanoid stands at 0.59 m, a fallen one lies below 0.3 m
SETTLE_S = 2.0              # simulated seconds after the first joint state before the joint speeds count


def joint_speed_rms(stamps: np.ndarray, velocities: np.ndarray, until: float) -> float:
    """RMS of all joint velocities (rows stamped ``stamps``, seconds) from ``SETTLE_S`` after the first to ``until``.

    NaN when no row falls in that window (a run too short for it).
    """
    if stamps.size == 0:
        return float('nan')
    window = (stamps >= stamps[0] + SETTLE_S) & (stamps < until)
    if not np.any(window):
        return float('nan')
    return float(np.sqrt(np.mean(np.square(velocities[window]))))


def mode_shares(events: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Share of the time from the first event to ``end`` spent in each mode text (numbers read ``#``).

    Parameters
    ----------
    events
        (monotonic time, ``'<MODE>: <reason>'``) in order of arrival, as published on ``/hamwm/mpc/mode``.
    end
        Monotonic time the last mode lasts until.

    Returns
    -------
    dict
        Normalised mode text -> share of the time (the shares sum to 1), largest first; empty without events or
        time.
    """
    if not events or end <= events[0][0]:
        return {}
    spent: dict[str, float] = {}
    for (start, text), (stop, _) in zip(events, [*events[1:], (end, '')]):
        key = re.sub(r'-?\d+(\.\d+)?', '#', text)
        spent[key] = spent.get(key, 0.0) + max(0.0, min(stop, end) - start)
    total = end - events[0][0]
    return {key: value / total for key, value in sorted(spent.items(), key=lambda kv: -kv[1])}


MONITOR_LEVELS = ('OK', 'WARN', 'ERROR', 'STALE')


def monitor_summary(reports: list[dict[str, str]]) -> dict[str, Any]:
    """What world_model_node's validity monitor said over a run.

    Parameters
    ----------
    reports
        The key/values of each of its /diagnostics statuses, in order, with their ``level`` added ('OK', 'WARN',
        'ERROR' or 'STALE'). Reports before its first prediction (no ``prediction_error`` key) are left out.

    Returns
    -------
    dict
        ``reports`` (count), ``levels`` (level -> share of the reports), ``not_ok`` (check -> share of the reports in
        which that ``check_<name>`` was not OK) and the medians ``hold_still_ratio`` and ``balance_error`` over the
        reports where they were numbers (NaN when never).
    """
    judged = [r for r in reports if 'prediction_error' in r]

    def median(key: str) -> float:
        values = [float(r[key]) for r in judged if key in r]
        values = [v for v in values if np.isfinite(v)]
        return float(np.median(values)) if values else float('nan')

    count = len(judged)
    levels = {level: sum(r.get('level') == level for r in judged) / count if count else 0.0
              for level in MONITOR_LEVELS}
    checks = sorted({key.removeprefix('check_') for r in judged for key in r if key.startswith('check_')})
    not_ok = {check: sum(r.get(f'check_{check}', 'OK') != 'OK' for r in judged) / count for check in checks}
    return {'reports': count, 'levels': levels, 'not_ok': not_ok,
            'hold_still_ratio': median('prediction_vs_hold_still'), 'balance_error': median('balance_error')}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='hamwm bench graph', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--runs', type=int, default=2, help='runs per arm (default 2)')
    p.add_argument('--seconds', type=float, default=20.0, help='wall seconds per run after the first /odom (20)')
    p.add_argument('--push-ns', type=float, default=22.0, help='forward push at mid-run, N s (default 22; 0: none)')
    p.add_argument('--params-file', type=Path, default=None, help='parameter file (default: config/hamwm.yaml)')
    p.add_argument('--model-dir', type=Path, default=None, help='humanoid model (default: the shipped one)')
    p.add_argument('--set', dest='overrides', action='extend', nargs='+', default=[], metavar='NODE.NAME:=VALUE',
                   help='override for the (first) arm, e.g. mpc_node.planner_rate:=25.0 (repeatable)')
    p.add_argument('--baseline', action='extend', nargs='+', default=[], metavar='NODE.NAME:=VALUE',
                   help='overrides of a second arm run interleaved with the first (repeatable)')
    p.add_argument('--json', type=Path, default=None, help='also write every figure as JSON here')
    return p


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``['mpc_node.planner_rate:=25.0', ...]`` -> ``{'mpc_node': {'planner_rate': 25.0}}`` (values read as YAML).

    Raises
    ------
    ValueError
        If an item is not ``NODE.NAME:=VALUE`` or names a node the graph does not start.
    """
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition(':=')
        node, dot, name = target.partition('.')
        if not sep or not dot or not name:
            raise ValueError(f"override '{item}' is not NODE.NAME:=VALUE")
        if node not in NODES:
            raise ValueError(f"override '{item}': node '{node}' is not one of {', '.join(NODES)}")
        out.setdefault(node, {})[name] = yaml.safe_load(value)
    return out


def summarise_run(mpc: dict[str, str], heights: np.ndarray, cpu: dict[str, float],
                  real_time_factor: float | None, speed_rms: float = float('nan'),
                  modes: dict[str, float] | None = None, monitor: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run's figures from mpc_node's last diagnostics, the /odom pelvis heights and per-node CPU (cores).

    ``speed_rms`` is :func:`joint_speed_rms` before the push (rad/s), ``modes`` :func:`mode_shares` and ``monitor``
    :func:`monitor_summary`, all carried into the figures.

    Raises
    ------
    ValueError
        If mpc_node never reported control ticks or no /odom arrived.
    """
    ticks = int(mpc.get('control_ticks', 0) or 0)
    if ticks <= 0:
        raise ValueError('mpc_node reported no control ticks (did it activate? see its log)')
    if heights.size == 0:
        raise ValueError('no /odom from sim_node')
    lowest = float(np.min(heights))
    return {'planned': int(mpc['planned_ticks']) / ticks, 'fallback': int(mpc['fallback_ticks']) / ticks,
            'hold': int(mpc['hold_ticks']) / ticks, 'control_ticks': ticks, 'plans': int(mpc['plans']),
            'plan_ms_p50': float(mpc['planner_ms_p50']), 'pelvis_min_m': lowest, 'stood': lowest > STANDING_M,
            'cpu_cores': cpu, 'cpu_total': float(sum(cpu.values())), 'real_time_factor': real_time_factor,
            'joint_speed_rms': float(speed_rms), 'modes': dict(modes or {}),
            'monitor': dict(monitor or monitor_summary([]))}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (Linux /proc)."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except OSError:
        return float('nan')
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _node_statuses(messages: list, node: str) -> list[dict[str, str]]:
    """Key/values of each status of ``node`` (name prefix) in DiagnosticArray ``messages``, in order.

    Each carries its ``level`` as well: 'OK', 'WARN', 'ERROR' or 'STALE'.
    """
    out = []
    for msg in messages:
        for status in msg.status:
            if status.name.startswith(node):
                level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
                values = {kv.key: kv.value for kv in status.values}
                values['level'] = MONITOR_LEVELS[level] if 0 <= level < len(MONITOR_LEVELS) else str(level)
                out.append(values)
    return out


def _last_status(messages: list, node: str, key: str) -> dict[str, str]:
    """Key/values of the last status of ``node`` (name prefix) in DiagnosticArray ``messages`` that has ``key``."""
    return next((values for values in reversed(_node_statuses(messages, node)) if key in values), {})


def run_once(params_file: Path, model_dir: Path, overrides: dict[str, dict[str, Any]], seconds: float,
             push_ns: float, domain_id: int) -> dict[str, Any]:
    """Start the four nodes, run ``seconds`` (push at mid-run), stop them; the run's figures (see module doc).

    Raises
    ------
    RuntimeError
        If a node exits early or sim_node publishes no /odom within 90 s (logs in the message).
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import WrenchStamped
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    import yaml

    from hamwm_ros.sim.cli import TopicProbe, interrupt_process, node_command

    launch = {'sim_node': {'robot': 'humanoid'}, 'balance_node': {'use_sim_time': True},
              'world_model_node': {'model_dir': str(model_dir), 'autostart': True, 'use_sim_time': True},
              'mpc_node': {'model_dir': str(model_dir), 'autostart': True, 'use_sim_time': True}}
    for node, values in overrides.items():
        launch[node].update(values)
    sim_file = (yaml.safe_load(Path(params_file).read_text()) or {}).get('sim_node', {}).get('ros__parameters', {})
    push_duration = float(launch['sim_node'].get('push_duration', sim_file.get('push_duration', 0.2)))
    env = dict(os.environ, PYTHONUNBUFFERED='1', ROS_DOMAIN_ID=str(domain_id),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    env.setdefault('MUJOCO_GL', 'egl')
    processes: dict[str, subprocess.Popen] = {}
    logs = {name: tempfile.NamedTemporaryFile(prefix=f'hamwm_graph_{name}_', suffix='.log', delete=False)  # noqa: SIM115
            for name in NODES}
    topics = {'/odom': Odometry, '/diagnostics': DiagnosticArray, '/joint_states': JointState}
    with TopicProbe(topics, domain_id=domain_id, name='hamwm_bench_graph', keep=100000) as probe:
        mode_events: list[tuple[float, str]] = []
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        probe.node.create_subscription(String, '/hamwm/mpc/mode',
                                       lambda m: mode_events.append((time.monotonic(), m.data)), latched)
        try:
            for name in NODES:
                processes[name] = subprocess.Popen(node_command(name, launch[name], params_file), env=env,
                                                   stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True)
            if probe.wait_for('/odom', timeout=90.0) is None:
                raise RuntimeError('no /odom within 90 s:\n' + Path(logs['sim_node'].name).read_text()[-3000:])
            pusher = probe.node.create_publisher(WrenchStamped, '/sim/push', 10)
            before = {name: _cpu_seconds(p.pid) for name, p in processes.items()}
            start = time.monotonic()
            pushed = push_ns <= 0.0
            push_stamp = float('inf')           # simulated time of the push (the last joint state before it)
            while time.monotonic() - start < seconds:
                dead = [name for name, p in processes.items() if p.poll() is not None]
                if dead:
                    raise RuntimeError(f'{dead[0]} exited early:\n' + Path(logs[dead[0]].name).read_text()[-3000:])
                if not pushed and time.monotonic() - start >= seconds / 2:
                    push = WrenchStamped()
                    push.header.frame_id = 'odom'
                    push.wrench.force.x = push_ns / push_duration
                    latest = probe.latest('/joint_states')
                    if latest is not None:
                        push_stamp = latest.header.stamp.sec + latest.header.stamp.nanosec * 1e-9
                    pusher.publish(push)
                    pushed = True
                time.sleep(0.1)
            end = time.monotonic()
            elapsed = end - start
            cpu = {name: (_cpu_seconds(p.pid) - before[name]) / elapsed for name, p in processes.items()}
            time.sleep(1.2)         # one more diagnostics report from mpc_node (1 Hz)
        finally:
            for name in reversed(NODES):
                if name in processes:
                    interrupt_process(processes[name])
            for log in logs.values():
                log.close()
        heights = np.array([m.pose.pose.position.z for m in probe.recent('/odom')])
        states = [m for m in probe.recent('/joint_states') if len(m.velocity)]
        stamps = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in states])
        speed = joint_speed_rms(stamps, np.array([list(m.velocity) for m in states]), push_stamp)
        mpc, sim = _last_status(probe.recent('/diagnostics'), 'mpc_node', 'control_ticks'), \
            _last_status(probe.recent('/diagnostics'), 'sim_node', 'real_time_factor')
        monitor = monitor_summary(_node_statuses(probe.recent('/diagnostics'), 'world_model_node'))
    factor = float(sim['real_time_factor']) if 'real_time_factor' in sim else None
    # the shares count from the first /odom (start-up, before the model is loaded, is not the graph's steady state)
    modes = mode_shares([(max(t, start), text) for t, text in mode_events if t < end], end)
    result = summarise_run(mpc, heights, cpu, factor, speed, modes, monitor)
    for log in logs.values():
        Path(log.name).unlink(missing_ok=True)
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median of each figure over runs, and how many stood."""
    keys = ('planned', 'fallback', 'hold', 'plan_ms_p50', 'pelvis_min_m', 'cpu_total', 'joint_speed_rms')
    out = {key: float(np.median([r[key] for r in runs])) for key in keys}
    for level in ('OK', 'WARN', 'ERROR'):       # the monitor's verdicts (shares of its reports)
        out[f'monitor_{level.lower()}'] = float(np.median([r['monitor']['levels'][level] for r in runs]))
    out['stood'] = sum(bool(r['stood']) for r in runs)
    out['runs'] = len(runs)
    return out


def _line(label: str, run: dict[str, Any]) -> str:
    cpu = ' '.join(f"{name.removesuffix('_node')} {value:.2f}" for name, value in run['cpu_cores'].items())
    outcome = 'stood' if run['stood'] else 'FELL'
    return (f"  {label}: planned {run['planned']:.2f} fallback {run['fallback']:.2f} hold {run['hold']:.2f}; plan p50 "
            f"{run['plan_ms_p50']:.1f} ms; pelvis min {run['pelvis_min_m']:.3f} m ({outcome}); joint speed RMS "
            f"before the push {run['joint_speed_rms']:.3f} rad/s; "
            f"CPU {run['cpu_total']:.2f} cores ({cpu}); real-time factor {run['real_time_factor']}"
            + _monitor_line(run['monitor'])
            + ''.join(f'\n      {share:.2f} of the run {text}' for text, share in run['modes'].items()
                      if not text.startswith('PLANNING') and share >= 0.005))


def _monitor_line(monitor: dict[str, Any]) -> str:
    if not monitor['reports']:
        return '\n      world_model_node monitor: no reports'
    levels = ' '.join(f'{level} {share:.2f}' for level, share in monitor['levels'].items() if level != 'STALE')
    not_ok = ', '.join(f'{check} {share:.2f}' for check, share in monitor['not_ok'].items() if share > 0)
    return (f"\n      world_model_node monitor ({monitor['reports']} reports): {levels}; hold-still ratio p50 "
            f"{monitor['hold_still_ratio']:.2f}, energy balance p50 {monitor['balance_error']:.2f}"
            + (f'; not OK: {not_ok}' if not_ok else ''))


def main(argv: list[str] | None = None) -> int:
    """``hamwm bench graph [--runs N] [--seconds S] [--push-ns X] [--set ...] [--baseline ...]``."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from hamwm_ros import share_path

    try:
        arms = {'A': parse_overrides(args.overrides)}
        if args.baseline:
            arms['B'] = parse_overrides(args.baseline)
        params_file = args.params_file or share_path('config', 'hamwm.yaml')
        model_dir = args.model_dir or share_path('models', 'humanoid')
    except (ValueError, FileNotFoundError) as error:
        print(f'hamwm bench graph: {error}', file=sys.stderr)
        return 2
    if args.runs < 1 or args.seconds <= 0:
        print('hamwm bench graph: --runs must be >= 1 and --seconds > 0', file=sys.stderr)
        return 2
    domain_id = random.SystemRandom().randint(1, 100)
    print(f'default humanoid graph: 4 processes from {params_file}, model {model_dir}, {args.runs} run(s) of '
          f'{args.seconds:g} s per arm, push {args.push_ns:g} N s forward at mid-run, ROS domain {domain_id}; '
          f'load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores', flush=True)
    for arm, overrides in arms.items():
        print(f'  arm {arm}: {overrides or "the file as it is"}')
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for index in range(args.runs):
        for arm, overrides in arms.items():
            try:
                run = run_once(Path(params_file), Path(model_dir), overrides, args.seconds, args.push_ns, domain_id)
            except (RuntimeError, ValueError) as error:
                print(f'hamwm bench graph: arm {arm} run {index + 1} failed: {error}', file=sys.stderr)
                return 1
            runs[arm].append(run)
            print(_line(f'{arm} run {index + 1}', run), flush=True)
    summary = {arm: medians(items) for arm, items in runs.items()}
    print('\nmedians        planned  fallback  hold  plan p50 ms  pelvis min m  CPU cores  joint speed rad/s  stood'
          '  monitor OK / WARN / ERROR')
    for arm, m in summary.items():
        print(f"  arm {arm}        {m['planned']:.2f}      {m['fallback']:.2f}  {m['hold']:.2f}"
              f"  {m['plan_ms_p50']:11.1f}  {m['pelvis_min_m']:12.3f}  {m['cpu_total']:9.2f}"
              f"  {m['joint_speed_rms']:17.3f}  {m['stood']}/{m['runs']}"
              f"  {m['monitor_ok']:.2f} / {m['monitor_warn']:.2f} / {m['monitor_error']:.2f}")
    if 'B' in summary:
        a, b = summary['A'], summary['B']
        ratio = a['planned'] / b['planned'] if b['planned'] > 0 else float('inf')
        print(f'planned share A / B: {ratio:.2f}x; plan p50 A / B: {a["plan_ms_p50"] / b["plan_ms_p50"]:.2f}x')
    if args.json is not None:
        args.json.write_text(json.dumps({'params_file': str(params_file), 'push_ns': args.push_ns,
                                         'seconds': args.seconds, 'arms': {k: str(v) for k, v in arms.items()},
                                         'runs': runs, 'medians': summary}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
