"""``hamwm demo``: the README's main command, the closed loop on the shipped learned models.

Stages (each on the shipped model in ``models/<robot>``, run through onnxruntime; no torch):

1. pendulum and 2. cart-pole swing-up and balance, planned by MPPI on the learned world model: success rate over
   seeded episodes (in-process, deterministic: ``hamwm_ros.closedloop.swingup``);
3. the humanoid standing under pushes: MPPI + world model + balance critics against the PD-only baseline, largest
   push impulse survived per direction by bisection (``hamwm_ros.closedloop.push``);
4. over real ROS 2: the pendulum's swing-up with ``sim_node`` in its own process and the planner in this one, joint
   states in and effort commands out over DDS topics (``/joint_states`` -> ``/effort_controller/commands``);
5. the product's node graph over real ROS 2: ``sim_node`` and ``mpc_node`` (lifecycle, autostart) in their own
   processes, the pendulum held at goals set through mpc_node's parameter service.

Prints a summary table and writes a report folder (default ``reports/demo/``): PNG plots and ``figures.json`` with
every figure. ``--quick`` runs a smoke-test-sized version of every stage.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import platform
import sys
import threading
import time
from typing import Any

import numpy as np

EXIT_OK, EXIT_STAGE_FAILED = 0, 1


def _log(*parts: Any) -> None:
    print(*parts, flush=True)


# ---------------------------------------------------------------------------------------------------- stages
def swingup_stage(robot: str, model_dir: Path, episodes: int, duration_s: float | None, threads: int,
                  first_seed: int = 0) -> tuple[dict[str, Any], list]:
    """Seeded episodes of one robot; returns the summary and the logs.

    Raises
    ------
    hamwm_ros.runtime.MetadataError
        If the model is missing or invalid.
    """
    from hamwm_ros.closedloop.swingup import CONFIGS, SwingUpLoop, summarise

    config = CONFIGS[robot] if duration_s is None else CONFIGS[robot].replace(duration_s=duration_s)
    started = time.perf_counter()
    loop = SwingUpLoop(config, model_dir, threads=threads)
    logs = []
    for seed in range(first_seed, first_seed + episodes):
        lg = loop.run(seed)
        logs.append(lg)
        _log(f'  {robot} seed {seed}: {"upright" if lg.success else "FAILED"} (final-window error '
             f'{lg.final_error:.3f} rad, upright at {lg.time_to_upright:.2f} s, fallback ticks '
             f'{int(np.count_nonzero(~lg.valid.astype(bool)))})')
    summary = summarise(logs, config)
    summary['wall_s'] = round(time.perf_counter() - started, 1)
    summary['model'] = _model_facts(model_dir)
    return summary, logs


def _model_facts(model_dir: Path) -> dict[str, Any]:
    """The held-out metrics the model directory records about itself (to relate control results to model quality)."""
    from hamwm_ros.runtime import load_metadata

    meta = load_metadata(model_dir)
    held = meta.metrics.get('held_out', {})
    return {'dir': str(model_dir), 'latent_dim': meta.latent_dim, 'dt': meta.dt, 'horizon': meta.horizon,
            'held_out_mse_normalised': held.get('mse_normalised'),
            'hold_baseline_mse_normalised': held.get('hold_baseline_mse_normalised'),
            'quick_model': bool(meta.training.get('quick'))}


def push_stage(model_dir: Path, quick: bool, threads: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """PD-only vs MPPI + world model + balance critics on the humanoid; returns figures and recorded traces."""
    from hamwm_ros.closedloop.push import PushConfig, PushLoop, compare

    config = PushConfig(directions_deg=(0.0,), bisection_steps=2, after_s=0.8, force_high=400.0) if quick \
        else PushConfig()
    started = time.perf_counter()
    loop = PushLoop(config, model_dir, threads=threads)
    figures = compare(loop, log=_log)
    # One recorded trial per controller at the same moderate push, for the ZMP and prediction plots.
    pd_force = figures['controllers']['pd']['per_direction'][f'{config.directions_deg[0]:g}']['force_n']
    force = max(20.0, 0.75 * pd_force)
    traces = {}
    for controller in ('pd', 'mppi'):
        trial = loop.trial(controller, force, config.directions_deg[0], seed=0, record=True)
        trace = dict(trial.trace)
        trace['joint_names'] = loop.sim.joint_names
        gap = np.asarray(trace['zmp']) - np.asarray(trace['cop'])
        figures.setdefault('zmp_vs_contact_cop_rms_m', {})[controller] = float(np.sqrt(np.nanmean(gap ** 2)))
        traces[f'{controller}: push {force * config.push_duration_s:.1f} N s at '
               f'{config.directions_deg[0]:g} deg ({"stood" if trial.survived else "fell"})'] = trace
    figures['recorded_push_ns'] = force * config.push_duration_s
    mppi_trace = next(t for k, t in traces.items() if k.startswith('mppi'))
    # how hard the planner actually worked: mean |feed-forward correction| as a fraction of the effort limits
    figures['mppi_mean_correction_fraction'] = float(np.mean(np.abs(mppi_trace['correction'])
                                                             / loop.sim.effort_limits))
    figures['wall_s'] = round(time.perf_counter() - started, 1)
    figures['model'] = _model_facts(model_dir)
    figures['limits_of_this_comparison'] = (
        'the humanoid model observes joints only (no floating base); the PD effort is frozen over the predicted '
        'horizon; the ZMP margin is scored in the current support polygon (no stepping)')
    return figures, traces


@dataclass
class RosRecord:
    """What the ROS leg's controller saw and did."""

    stamps: list[float] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    velocities: list[np.ndarray] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)   # joint state receipt -> command published
    plan_ms: list[float] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    commands: int = 0
    joint_states: int = 0


def ros_stage(model_dir: Path, duration_s: float, real_time_factor: float, threads: int,
              timeout_s: float) -> dict[str, Any]:
    """Pendulum swing-up over real ROS 2: sim_node in a subprocess, the planner in this process.

    The planner node subscribes ``/joint_states`` (by name), plans once per model step of simulated time (the
    message stamps) and publishes ``/effort_controller/commands``; sim_node holds each command until the next.

    Raises
    ------
    RuntimeError
        If sim_node does not start or publishes nothing within ``timeout_s``.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from hamwm_ros.closedloop.swingup import CONFIGS, EpisodeLog, SwingUpController, judge
    from hamwm_ros.jointmap import JointMap, JointMapError
    from hamwm_ros.sim.cli import SimProcess

    config = CONFIGS['pendulum'].replace(duration_s=duration_s)
    controller = SwingUpController(config, model_dir, threads=threads)
    controller.reset(0)
    jmap = JointMap(controller.joint_names)
    record = RosRecord()
    done = threading.Event()
    params = {'camera_rate': 0.0, 'real_time': True, 'real_time_factor': float(real_time_factor),
              'joint_states_rate': 500.0, 'command_timeout': 0.5}
    started = time.perf_counter()
    context = rclpy.Context()
    rclpy.init(context=context)
    sim = SimProcess('pendulum', params)
    node = executor = None
    try:
        node = Node('hamwm_demo_planner', context=context)
        publisher = node.create_publisher(Float64MultiArray, 'effort_controller/commands', 10)
        state = {'next_plan': None, 'first': None}
        actuated_names = [controller.joint_names[i] for i in controller.actuated]

        def on_joint_state(msg: JointState) -> None:
            received = time.perf_counter()
            record.joint_states += 1
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if state['first'] is None:
                state['first'] = stamp
                state['next_plan'] = stamp
            if done.is_set() or stamp + 1e-6 < state['next_plan']:
                return
            try:
                q = jmap.reorder(msg.name, msg.position, field='position')
                v = jmap.reorder(msg.name, msg.velocity, field='velocity')
            except JointMapError:
                return
            tick = controller.step(q, v)
            publisher.publish(Float64MultiArray(data=[float(tick.command[controller.joint_names.index(j)])
                                                      for j in actuated_names]))
            record.latency_ms.append((time.perf_counter() - received) * 1e3)
            record.commands += 1
            record.stamps.append(stamp - state['first'])
            record.positions.append(q)
            record.velocities.append(v)
            record.plan_ms.append(tick.plan_ms)
            record.valid.append(tick.valid)
            state['next_plan'] += controller.dt
            if stamp - state['first'] >= duration_s:
                done.set()

        node.create_subscription(JointState, 'joint_states', on_joint_state, qos_profile_sensor_data)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout_s + duration_s / real_time_factor
        while not done.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if not sim.alive():
                raise RuntimeError(f'sim_node exited early:\n{sim.log()[-2000:]}')
            if record.joint_states == 0 and time.perf_counter() - started > timeout_s:
                raise RuntimeError(f'no /joint_states from sim_node within {timeout_s:.0f} s:\n{sim.log()[-2000:]}')
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        sim_code = sim.stop()
        sim.close()
    log = EpisodeLog('pendulum', 0, controller.dt, controller.joint_names)
    log.time, log.position = record.stamps, record.positions
    log.velocity, log.valid, log.plan_ms = record.velocities, record.valid, record.plan_ms
    log.command = log.energy = log.model_energy = log.predicted = log.tick_ms = []
    log.finish()
    complete = bool(done.is_set())
    if complete and len(log.time) > 1:
        judge(log, config, controller.position_limits)
    latency = np.asarray(record.latency_ms)
    return {
        'transport': 'sim_node (separate process) -> /joint_states -> planner node (this process, MPPI on the '
                     'learned pendulum model) -> /effort_controller/commands -> sim_node',
        'real_time_factor': real_time_factor,
        'duration_s': duration_s,
        'completed': complete,
        'success': bool(log.success) if complete else False,
        'success_definition': f'|angle - pi| <= {config.tolerance} rad over the final {config.window_s} s',
        'final_error_rad': float(log.final_error),
        'time_to_upright_s': float(log.time_to_upright),
        'joint_states_received': record.joint_states,
        'commands_published': record.commands,
        'fallback_ticks': int(len(record.valid) - sum(record.valid)),
        'latency_ms_p50': float(np.percentile(latency, 50)) if latency.size else None,
        'latency_ms_p99': float(np.percentile(latency, 99)) if latency.size else None,
        'sim_node_exit_code': sim_code,
        'wall_s': round(time.perf_counter() - started, 1),
        '_latency': latency,
        '_log': log,
    }


GRAPH_GOALS = (0.35, -0.35)       # rad; the 5 N m hinge holds at most asin(5 / 9.81) = 0.53 rad against gravity


def graph_stage(model_dir: Path, seconds_per_goal: float, timeout_s: float) -> dict[str, Any]:
    """The product's own node graph over real ROS 2: ``sim_node`` + ``mpc_node`` processes, goals set by parameter.

    ``mpc_node`` (lifecycle, autostart) plans with MPPI on the shipped pendulum model and drives ``sim_node`` through
    ``/effort_controller/commands``; this process only changes ``goal_position`` through the parameter service and
    records ``/joint_states``, the mode and ``/diagnostics``.

    Raises
    ------
    RuntimeError
        If a process dies or mpc_node never reaches PLANNING within ``timeout_s``.
    """
    import subprocess

    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from hamwm_ros.sim.cli import SimProcess, TopicProbe, node_command

    started = time.perf_counter()
    params = {'model_dir': str(model_dir), 'autostart': True, 'use_sim_time': True, 'goal_position': [GRAPH_GOALS[0]],
              'control_rate': 500.0, 'planner_rate': 50.0, 'joint_state_timeout': 0.1, 'recovery_time': 0.1,
              'max_plan_age': 0.2, 'max_future_stamp': 0.5}
    command = node_command('mpc_node', params)
    sim = SimProcess('pendulum', {'camera_rate': 0.0, 'real_time': True, 'joint_states_rate': 500.0,
                                  'command_timeout': 0.5})
    log = Path(sim.log_path).with_name(Path(sim.log_path).stem + '_mpc.log')
    mpc = probe = None
    segments: list[dict[str, Any]] = []
    try:   # everything after the first process starts is inside, so a failure never leaves a node running
        with open(log, 'w') as handle:
            mpc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED='1'), start_new_session=True)
        probe = TopicProbe({'/joint_states': JointState, '/hamwm/mpc/mode': String,
                            '/diagnostics': DiagnosticArray},
                           name='hamwm_demo_graph', keep=int(600 * seconds_per_goal * len(GRAPH_GOALS)))
        planning = probe.wait_for('/hamwm/mpc/mode', lambda m: m.data.startswith('PLANNING'), timeout=timeout_s)
        if planning is None:
            raise RuntimeError('mpc_node never reached PLANNING:\n' + log.read_text()[-2000:])
        client = probe.node.create_client(SetParameters, '/mpc_node/set_parameters')
        for k, goal in enumerate(GRAPH_GOALS):
            if k:
                goal_msg = Parameter('goal_position', value=[goal]).to_parameter_msg()
                request = SetParameters.Request(parameters=[goal_msg])
                future = client.call_async(request)
                deadline = time.monotonic() + 10.0
                while not future.done() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not (future.done() and future.result().results[0].successful):
                    raise RuntimeError(f'goal_position {goal} not accepted')
            first = probe.seq('/joint_states')
            time.sleep(seconds_per_goal)
            new = probe.seq('/joint_states') - first
            states = probe.recent('/joint_states')[-new:] if new else []
            if mpc.poll() is not None or not sim.alive():
                raise RuntimeError('a node process exited:\n' + log.read_text()[-2000:] + sim.log()[-2000:])
            t = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in states])
            q = np.array([m.position[0] for m in states])
            if t.size < 10:
                raise RuntimeError(f'only {t.size} joint states while tracking {goal} rad')
            t -= t[0]
            error = np.abs(q - goal)
            inside = np.flatnonzero(error < 0.05)
            settled = t >= t[-1] - 1.0
            segments.append({'goal_rad': goal, 'start_rad': float(q[0]),
                             'time_to_0_05_rad_s': float(t[inside[0]]) if inside.size else None,
                             'final_error_rad': float(np.median(error[settled])),
                             'final_rms_error_rad': float(np.sqrt(np.mean(error[settled] ** 2)))})
        diagnostics = probe.wait_for('/diagnostics', lambda m: m.status and m.status[0].name.startswith('mpc_node'),
                                     timeout=5.0, after=probe.seq('/diagnostics'))
    finally:
        if probe is not None:
            probe.close()
        mpc_code = None
        if mpc is not None and mpc.poll() is None:
            mpc.send_signal(2)
            try:
                mpc_code = mpc.wait(15.0)
            except subprocess.TimeoutExpired:
                mpc.kill()
                mpc_code = mpc.wait(5.0)
        elif mpc is not None:
            mpc_code = mpc.returncode
        sim.stop()
        sim.close()
        log.unlink(missing_ok=True)
    values = {kv.key: kv.value for kv in diagnostics.status[0].values} if diagnostics is not None else {}
    ticks = int(values.get('control_ticks', 0)) or 1
    return {
        'transport': 'sim_node process -> /joint_states -> mpc_node process (lifecycle, MPPI on the shipped '
                     'pendulum model) -> /effort_controller/commands -> sim_node; goals by the parameter service',
        'segments': segments,
        'success': all(s['final_error_rad'] < 0.05 for s in segments),
        'success_definition': 'median |angle - goal| < 0.05 rad over the last 1 s of every goal',
        'planned_fraction': int(values.get('planned_ticks', 0)) / ticks,
        'control_ticks': ticks,
        'missed_deadlines': int(values.get('missed_deadlines', 0)),
        'period_error_p99_ms': float(values.get('period_error_p99_ms', 'nan')),
        'planner_ms_p50': float(values.get('planner_ms_p50', 'nan')),
        'state_to_command_ms_p50': float(values.get('state_to_command_ms_p50', 'nan')),
        'state_to_command_ms_p99': float(values.get('state_to_command_ms_p99', 'nan')),
        'mpc_node_exit_code': mpc_code,
        'wall_s': round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------------------------------------------- output
def _fmt(value: Any, spec: str = '.2f') -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    return format(value, spec)


def summary_table(figures: dict[str, Any]) -> str:
    """The printed summary: one row per stage."""
    rows = [('stage', 'result', 'details')]
    for robot in ('pendulum', 'cartpole'):
        s = figures.get(robot)
        if s is None:
            continue
        if 'error' in s:
            rows.append((f'{robot} swing-up', 'not run', s['error']))
            continue
        rows.append((f'{robot} swing-up', f"{s['successes']}/{s['episodes']} "
                     f"({100 * s['success_rate']:.0f}%)",
                     f"median upright at {_fmt(s['time_to_upright_s_median'])} s; plan p50 "
                     f"{_fmt(s['plan_ms_p50'], '.1f')} ms ({s['settings']['num_samples']} samples x "
                     f"{figures.get('horizons', {}).get(robot, '?')} steps); fallback "
                     f"{100 * s['fallback_fraction']:.1f}% of ticks; {s['wall_s']} s"))
    h = figures.get('humanoid')
    if h is not None:
        if 'error' in h:
            rows.append(('humanoid pushes', 'not run', h['error']))
        else:
            for name, label in (('pd', 'PD-only'), ('mppi', 'MPPI+WM+balance')):
                c = h['controllers'].get(name)
                if c is None:
                    continue
                per = ', '.join(f"{d} deg {v['impulse_ns']:.1f}" for d, v in c['per_direction'].items())
                rows.append((f'humanoid {label}', f"{c['min_impulse_ns']:.1f} N s",
                             f'largest survived push per direction (N s): {per}' +
                             (f"; plan p50 {_fmt(c['plan_ms_p50'], '.1f')} ms" if c['plan_ms_p50'] else '')))
    r = figures.get('ros')
    if r is not None:
        if 'error' in r:
            rows.append(('ROS 2 pendulum', 'not run', r['error']))
        else:
            rows.append(('ROS 2 pendulum', 'upright' if r['success'] else 'FAILED',
                         f"{r['commands_published']} commands over DDS; state->command latency p50 "
                         f"{_fmt(r['latency_ms_p50'], '.1f')} ms, p99 {_fmt(r['latency_ms_p99'], '.1f')} ms; "
                         f"real-time factor {r['real_time_factor']:g}"))
    g = figures.get('graph')
    if g is not None:
        if 'error' in g:
            rows.append(('ROS 2 mpc_node', 'not run', g['error']))
        else:
            goals = ', '.join(f"{s['goal_rad']:+.2f} rad: error {_fmt(s['final_error_rad'], '.3f')}"
                              for s in g['segments'])
            rows.append(('ROS 2 mpc_node', 'on goal' if g['success'] else 'OFF GOAL',
                         f"{goals}; planned {100 * g['planned_fraction']:.0f}% of {g['control_ticks']} ticks; "
                         f"period error p99 {_fmt(g['period_error_p99_ms'])} ms, {g['missed_deadlines']} missed; "
                         f"state->command p50 {_fmt(g['state_to_command_ms_p50'], '.1f')} ms"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(2)]
    lines = []
    for k, row in enumerate(rows):
        lines.append(f'{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}')
        if k == 0:
            lines.append('-' * (widths[0] + widths[1] + 40))
    return '\n'.join(lines)


def write_report(out: Path, figures: dict[str, Any], swing_logs: dict[str, list], push_traces: dict[str, Any],
                 ros: dict[str, Any] | None) -> list[str]:
    """Plots and figures.json into ``out``; returns the files written."""
    from hamwm_ros.closedloop import report

    out.mkdir(parents=True, exist_ok=True)
    written = []
    shown = {}
    for robot, logs in swing_logs.items():
        if logs:
            shown[f'{robot} seed {logs[0].seed} (closed loop on the learned model)'] = logs[0]
    pred_panels: dict[str, Any] = dict(shown)
    for title, trace in list(push_traces.items())[-1:]:
        names = list(trace['joint_names'])
        pred_panels[f'humanoid, {title}'] = {
            'time': trace['time'], 'position': trace['position'], 'predicted': trace['predicted'],
            'joint_names': names,
            'plot_joints': [names.index(j) for j in ('left_hip_pitch', 'left_knee', 'left_ankle_pitch')]}
    try:
        if pred_panels:
            written.append(report.plot_predictions(pred_panels, out).name)
        if shown:
            targets = {title: lg.upright_energy for title, lg in shown.items()}
            written.append(report.plot_energy(shown, targets, out).name)
        if push_traces:
            written.append(report.plot_zmp(push_traces, out).name)
        timing = {}
        for robot, logs in swing_logs.items():
            if logs:
                timing[f'{robot}: MPPI plan (ms)'] = np.concatenate([lg.plan_ms for lg in logs])
                timing[f'{robot}: whole control tick incl. physics (ms)'] = np.concatenate([lg.tick_ms for lg in logs])
        if ros is not None and '_latency' in ros:
            timing['ROS 2: /joint_states -> command (ms)'] = ros['_latency']
        if timing:
            written.append(report.plot_timing(timing, out).name)
    except ImportError as err:  # matplotlib missing: figures.json still carries every number
        figures['plots_error'] = f'no plots: {err}'
    report.write_json(figures, out / 'figures.json')
    written.append('figures.json')
    return written


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str]) -> int:
    """Run the demo; returns the process exit code (1 when a stage could not run or errored)."""
    parser = argparse.ArgumentParser(prog='hamwm demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='smoke-test size: 1 short episode per stage')
    parser.add_argument('--models', type=Path, default=None,
                        help="shipped models root (default: the checkout's or installed package's models/)")
    parser.add_argument('--out', type=Path, default=Path('reports/demo'), help='report folder (default: reports/demo)')
    parser.add_argument('--episodes', type=int, default=20, help='seeded episodes per swing-up robot (default: 20)')
    parser.add_argument('--only', nargs='+', choices=('pendulum', 'cartpole', 'humanoid', 'ros', 'graph'),
                        help='run only these stages')
    parser.add_argument('--threads', type=int, default=1, help='onnxruntime threads (default: 1)')
    parser.add_argument('--ros-rtf', type=float, default=0.5,
                        help='real-time factor of sim_node in the ROS 2 stage (default: 0.5, room for the planner '
                             'on 2 shared cores)')
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error('--episodes must be >= 1')
    stages = args.only or ['pendulum', 'cartpole', 'humanoid', 'ros', 'graph']
    if args.models is None:
        from hamwm_ros import share_path

        try:
            args.models = share_path('models')
        except FileNotFoundError:
            args.models = Path('models')
    os.environ.setdefault('MUJOCO_GL', 'egl')
    if 'ros' in stages or 'graph' in stages:
        from hamwm_ros.rosdomain import private_domain

        domain, chosen = private_domain()
        _log(f'ROS 2 domain {domain}' + (' (private, random; set ROS_DOMAIN_ID to choose it, e.g. to watch in rviz)'
                                          if chosen else ' (ROS_DOMAIN_ID)'))
    started = time.perf_counter()
    figures: dict[str, Any] = {
        'command': 'hamwm demo ' + ' '.join(argv),
        'quick': args.quick,
        'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(), 'platform': platform.platform()},
        'horizons': {},
    }
    swing_logs: dict[str, list] = {}
    push_traces: dict[str, Any] = {}
    ros = None
    status = EXIT_OK
    for robot in ('pendulum', 'cartpole'):
        if robot not in stages:
            continue
        _log(f'== {robot}: swing-up and balance on the learned model')
        try:
            episodes = 1 if args.quick else args.episodes
            duration = 5.0 if args.quick else None
            figures[robot], swing_logs[robot] = swingup_stage(robot, args.models / robot, episodes, duration,
                                                              args.threads)
            figures['horizons'][robot] = figures[robot]['model']['horizon']
        except Exception as err:  # noqa: BLE001 - one stage failing must not hide the others' figures
            figures[robot] = {'error': f'{type(err).__name__}: {err}'}
            status = EXIT_STAGE_FAILED
            _log(f'  {robot}: not run: {err}')
    if 'humanoid' in stages:
        _log('== humanoid: largest push survived, PD-only vs MPPI + world model + balance critics')
        try:
            figures['humanoid'], push_traces = push_stage(args.models / 'humanoid', args.quick, args.threads)
        except Exception as err:  # noqa: BLE001
            figures['humanoid'] = {'error': f'{type(err).__name__}: {err}'}
            status = EXIT_STAGE_FAILED
            _log(f'  humanoid: not run: {err}')
    if 'ros' in stages:
        _log('== pendulum over real ROS 2 (sim_node process <-> planner node)')
        try:
            ros = ros_stage(args.models / 'pendulum', 3.0 if args.quick else 8.0, args.ros_rtf, args.threads,
                            timeout_s=60.0)
            figures['ros'] = {k: v for k, v in ros.items() if not k.startswith('_')}
        except Exception as err:  # noqa: BLE001
            figures['ros'] = {'error': f'{type(err).__name__}: {err}'}
            status = EXIT_STAGE_FAILED
            _log(f'  ros: not run: {err}')
    if 'graph' in stages:
        _log('== the node graph over real ROS 2 (sim_node process <-> mpc_node process, goals by parameter)')
        try:
            figures['graph'] = graph_stage(args.models / 'pendulum', 2.0 if args.quick else 4.0, timeout_s=60.0)
        except Exception as err:  # noqa: BLE001
            figures['graph'] = {'error': f'{type(err).__name__}: {err}'}
            status = EXIT_STAGE_FAILED
            _log(f'  graph: not run: {err}')
    figures['wall_s'] = round(time.perf_counter() - started, 1)
    written = write_report(args.out, figures, swing_logs, push_traces, ros)
    _log('')
    _log(summary_table(figures))
    _log(f'\nreport: {args.out}/ ({", ".join(written)}); total {figures["wall_s"]} s')
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
