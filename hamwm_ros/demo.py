"""``hamwm demo``: the README's main command, the closed loop on the shipped learned models.

Stages (each on the shipped model in ``models/<robot>``, run through onnxruntime; no torch):

1. pendulum and 2. cart-pole swing-up and balance, planned by MPPI on the learned world model: success rate over
   seeded episodes (in-process, deterministic: ``hamwm_ros.closedloop.swingup``);
3. the humanoid standing under pushes: MPPI + world model + balance critics against the PD-only baseline, largest
   push impulse survived per direction by bisection (``hamwm_ros.closedloop.push``);
4. over real ROS 2: the pendulum's and the cart-pole's swing-up by the product's nodes, ``sim_node`` and
   ``mpc_node`` (task swingup, ``config/swingup_<robot>.yaml``) each in its own process, joint states in and effort
   commands out over DDS topics (``/joint_states`` -> ``/effort_controller/commands``), seeded episodes;
5. the product's node graph over real ROS 2: ``sim_node`` and ``mpc_node`` (lifecycle, autostart) in their own
   processes, the pendulum held at goals set through mpc_node's parameter service.

Prints a summary table and writes a report folder (default ``reports/demo/``): PNG plots and ``figures.json`` with
every figure. ``--quick`` runs a smoke-test-sized version of every stage.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
import platform
import sys
import tempfile
import time
from typing import Any

import numpy as np

from hamwm_ros.cli import HelpFormatter

EXIT_OK, EXIT_STAGE_FAILED = 0, 1


def _log(*parts: Any) -> None:
    print(*parts, flush=True)


# ---------------------------------------------------------------------------------------------------- stages
def swingup_stage(robot: str, model_dir: Path, episodes: int, duration_s: float | None, threads: int,
                  first_seed: int = 0, delay_s: float = 0.0, committed: int = -1) -> tuple[dict[str, Any], list]:
    """Seeded episodes of one robot; returns the summary and the logs.

    ``delay_s`` and ``committed`` (-1: ceil(delay / model dt), mpc_node's rule) model a state-to-actuation latency
    and its compensation (:meth:`SwingUpLoop.run`).

    Raises
    ------
    hamwm_ros.runtime.MetadataError
        If the model is missing or invalid.
    """
    from hamwm_ros.closedloop.swingup import CONFIGS, SwingUpLoop, summarise

    config = CONFIGS[robot] if duration_s is None else CONFIGS[robot].replace(duration_s=duration_s)
    started = time.perf_counter()
    loop = SwingUpLoop(config, model_dir, threads=threads)
    if committed < 0:
        committed = int(math.ceil(delay_s / loop.dt - 1e-3))
    logs = []
    for seed in range(first_seed, first_seed + episodes):
        lg = loop.run(seed, delay_s=delay_s, committed=committed)
        logs.append(lg)
        _log(f'  {robot} seed {seed}: {"upright" if lg.success else "FAILED"} (final-window error '
             f'{lg.final_error:.3f} rad, upright at {lg.time_to_upright:.2f} s, fallback ticks '
             f'{int(np.count_nonzero(~lg.valid.astype(bool)))})')
    summary = summarise(logs, config)
    summary.update(delay_s=delay_s, committed_steps=committed)
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

    config = PushConfig(directions_deg=(0.0,), bisection_steps=2, after_s=0.8, force_high=400.0, seeds=(0,)) \
        if quick else PushConfig()
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
    # How much each controller moves the robot standing unpushed (rad/s, mean over the first two seeds).
    figures['standing_joint_speed_rms'] = {
        controller: round(float(np.mean([loop.standing_joint_speed(controller, seed) for seed in config.seeds[:2]])), 4)
        for controller in ('pd', 'mppi')}
    mppi_trace = next(t for k, t in traces.items() if k.startswith('mppi'))
    # how hard the planner actually worked: mean |feed-forward correction| as a fraction of the effort limits
    figures['mppi_mean_correction_fraction'] = float(np.mean(np.abs(mppi_trace['correction'])
                                                             / loop.sim.effort_limits))
    figures['wall_s'] = round(time.perf_counter() - started, 1)
    figures['model'] = _model_facts(model_dir)
    hold = ('the model includes the PD hold in its plant (action_source feedforward), learned from data'
            if loop.model_feedforward else 'the PD effort is frozen over the predicted horizon')
    figures['limits_of_this_comparison'] = (
        f'the humanoid model observes joints only (no floating base); {hold}; the ZMP margin is scored in the current '
        'support polygon (no stepping)')
    return figures, traces


ROS_SWINGUP_ROBOTS = ('pendulum', 'cartpole')


def _diagnostics(probe: Any, timeout: float) -> dict[str, str]:
    """mpc_node's next /diagnostics key/values (empty when none came within ``timeout`` s)."""
    msg = probe.wait_for('/diagnostics', lambda m: m.status and m.status[0].name.startswith('mpc_node'),
                         timeout=timeout, after=probe.seq('/diagnostics'))
    return {kv.key: kv.value for kv in msg.status[0].values} if msg is not None else {}


def ros_swingup_robot(robot: str, model_dir: Path, seeds: list[int], duration_s: float,
                      timeout_s: float, mpc_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Seeded swing-up episodes of one robot by the product's nodes over real ROS 2.

    ``mpc_node`` (task swingup, ``config/swingup_<robot>.yaml``, lifecycle with autostart) runs for all episodes;
    each episode starts a fresh ``sim_node`` from the same file with ``initial_seed`` = the episode seed (the
    in-process episodes' initial state) and ``mppi.seed`` = the seed, and is judged like the in-process ones on the
    ``/joint_states`` this process records (simulated time from the node's start). Between episodes mpc_node is
    deactivated and activated again (fresh warm start and supervisor). ``mpc_params`` override mpc_node parameters
    (A/B runs).

    Raises
    ------
    RuntimeError
        If a node dies, mpc_node never activates, or sim_node publishes nothing within ``timeout_s``.
    """
    import subprocess

    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from hamwm_ros import share_path
    from hamwm_ros.closedloop.swingup import CONFIGS, EpisodeLog, judge, wrap_angle
    from hamwm_ros.sim import parse_urdf_joints, robot_urdf_path
    from hamwm_ros.sim.cli import SimProcess, TopicProbe, interrupt_process, node_command

    started = time.perf_counter()
    config = CONFIGS[robot].replace(duration_s=duration_s)
    urdf = parse_urdf_joints(robot_urdf_path(robot))
    actuated = np.flatnonzero(urdf.effort_limits > 0)
    params_file = share_path('config', f'swingup_{robot}.yaml')
    command = node_command('mpc_node', {'model_dir': str(model_dir), 'autostart': True, 'use_sim_time': True,
                                        'mppi.seed': int(seeds[0]), 'diagnostics_rate': 10.0, **(mpc_params or {})},
                           params_file)
    descriptor, name = tempfile.mkstemp(prefix=f'hamwm_demo_mpc_{robot}_', suffix='.log')
    os.close(descriptor)
    log_file = Path(name)
    mpc = probe = sim = None
    episodes: list[dict[str, Any]] = []
    diagnostics: dict[str, str] = {}

    def node_log() -> str:
        return log_file.read_text(errors='replace')[-2000:]

    try:   # everything after the first process starts is inside, so a failure never leaves a node running
        with open(log_file, 'w') as handle:
            mpc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED='1'), start_new_session=True)
        probe = TopicProbe({'/joint_states': JointState, '/hamwm/mpc/mode': String,
                            '/diagnostics': DiagnosticArray}, name=f'hamwm_demo_swingup_{robot}',
                           keep=int(600 * duration_s) + 2000)
        for k, seed in enumerate(seeds):
            mark = 0 if k == 0 else probe.seq('/hamwm/mpc/mode')    # mode is latched: the first one counts
            if k:    # fresh warm start, supervisor and noise seed for the next episode
                change = ChangeState.Request()
                change.transition.id = Transition.TRANSITION_DEACTIVATE
                if not probe.call(ChangeState, '/mpc_node/change_state', change).success:
                    raise RuntimeError('mpc_node refused to deactivate:\n' + node_log())
                seed_msg = Parameter('mppi.seed', value=int(seed)).to_parameter_msg()
                result = probe.call(SetParameters, '/mpc_node/set_parameters',
                                       SetParameters.Request(parameters=[seed_msg]))
                if not result.results[0].successful:
                    raise RuntimeError(f'mppi.seed {seed} refused: {result.results[0].reason}')
                change.transition.id = Transition.TRANSITION_ACTIVATE
                if not probe.call(ChangeState, '/mpc_node/change_state', change).success:
                    raise RuntimeError('mpc_node refused to activate:\n' + node_log())
            if probe.wait_for('/hamwm/mpc/mode', lambda m: m.data.startswith('WAITING_FOR_STATE'),
                              timeout=timeout_s, after=mark) is None:
                raise RuntimeError('mpc_node never became active:\n' + node_log())
            # wait_for_subscribers: mpc_node and this recorder, so both see the episode from its first step; the file
            # waits for mpc_node's /clock subscription and its two command publishers too (stamps judged against a
            # clock it lacks were ignored, commands from a publisher sim_node lacked were lost: 0-4 of 40 episodes
            # started late per run without, none of 80 with); then 0.5 s for the other side of each match (3 of 12
            # first episodes lost 0.25 s without that)
            sim = SimProcess(robot, {'initial_seed': int(seed), 'wait_for_subscribers': 2,
                                     'subscriber_settle_time': 0.5}, params_file=params_file)
            first = probe.seq('/joint_states')
            episode_start = time.monotonic()
            counters = ('planned_ticks', 'fallback_ticks', 'hold_ticks', 'invalid_plans')
            start_values: dict[str, str] | None = None
            while True:
                msg = probe.wait_for('/joint_states', timeout=0.5)
                if mpc.poll() is not None or not sim.alive():
                    raise RuntimeError('a node process exited:\n' + node_log() + sim.log()[-2000:])
                if time.monotonic() - episode_start > timeout_s + 3.0 * duration_s:
                    raise RuntimeError(f'episode {seed} did not finish within {timeout_s + 3 * duration_s:.0f} s '
                                       f'(wall):\n' + sim.log()[-2000:])
                if msg is None:
                    continue
                if start_values is None:     # the episode's counters start here (within one diagnostics period)
                    start_values = _diagnostics(probe, 1.0)
                if msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec >= duration_s:
                    break
            values = _diagnostics(probe, 1.0)     # before sim_node stops: the counters at the episode's end
            new = probe.seq('/joint_states') - first
            states = probe.recent('/joint_states')[-new:] if new else []
            sim_code = sim.stop()
            sim.close()
            sim = None
            t = np.array([m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in states])
            keep = t <= duration_s + 1e-9
            effort = np.array([np.asarray(m.effort) for m in states])[keep]
            lg = EpisodeLog(robot, int(seed), config.duration_s, urdf.names)
            lg.time = t[keep]
            lg.position = np.array([np.asarray(m.position) for m in states])[keep]
            lg.velocity = np.array([np.asarray(m.velocity) for m in states])[keep]
            lg.finish()
            judge(lg, config, urdf.position_limits)
            driven = np.flatnonzero(np.any(np.abs(effort[:, actuated]) > 1e-9, axis=1))
            delta = {key: int(values.get(key, 0)) - int(start_values.get(key, 0)) for key in counters}
            episodes.append({
                'seed': int(seed), 'success': bool(lg.success), 'final_error_rad': round(float(lg.final_error), 4),
                'time_to_upright_s': float(lg.time_to_upright),
                # largest swing from hanging (rad): beyond asin(effort / m g l) it took pumping energy in
                'max_swing_rad': round(float(np.max(np.abs(wrap_angle(lg.position[:, config.angle_joint])))), 3)
                if len(lg.time) else None,
                # simulated time of the first non-zero effort sim_node applied: when control really started
                'first_effort_s': round(float(lg.time[driven[0]]), 3) if driven.size else None,
                'joint_states': int(len(lg.time)),
                **delta, 'planner_ms_p50': float(values.get('planner_ms_p50', 'nan')),
                'missed_deadlines': int(values.get('missed_deadlines', 0)),
                'sim_node_exit_code': sim_code, 'wall_s': round(time.monotonic() - episode_start, 1),
            })
            _log(f'  {robot} seed {seed} over ROS: {"upright" if lg.success else "FAILED"} (final-window error '
                 f'{lg.final_error:.3f} rad, upright at {lg.time_to_upright:.2f} s, first effort at '
                 f'{_fmt(episodes[-1]["first_effort_s"], ".2f")} s; planned {delta["planned_ticks"]}, fallback '
                 f'{delta["fallback_ticks"]}, hold {delta["hold_ticks"]} ticks; {episodes[-1]["wall_s"]} s)')
        diagnostics = values
    finally:
        if sim is not None:
            sim.close()
        if probe is not None:
            probe.close()
        mpc_code = interrupt_process(mpc) if mpc is not None else None
        log_file.unlink(missing_ok=True)
    ticks = {key: sum(e[key] for e in episodes) for key in ('planned_ticks', 'fallback_ticks', 'hold_ticks')}
    total = max(1, sum(ticks.values()))
    return {
        'episodes': len(episodes),
        'successes': int(sum(e['success'] for e in episodes)),
        'success_definition': f'|angle - pi| <= {config.tolerance} rad (wrapped) over the final {config.window_s} s '
                              f'of {duration_s:g} s of simulated time from sim_node\'s start'
                              + (', cart inside its rail throughout' if robot == 'cartpole' else ''),
        'seeds': [e['seed'] for e in episodes],
        'per_episode': episodes,
        'planned_fraction': ticks['planned_ticks'] / total,
        'fallback_fraction': ticks['fallback_ticks'] / total,
        'hold_fraction': ticks['hold_ticks'] / total,
        'invalid_plans': int(sum(e['invalid_plans'] for e in episodes)),
        # mpc_node's own figures over its last 2000 plans (all of this robot's episodes at the demo's sizes)
        'state_to_command_ms_p50': float(diagnostics.get('state_to_command_ms_p50', 'nan')),
        'state_to_command_ms_p99': float(diagnostics.get('state_to_command_ms_p99', 'nan')),
        'planner_ms_p50': float(np.nanmedian([e['planner_ms_p50'] for e in episodes])) if episodes else math.nan,
        'missed_deadlines': int(sum(e['missed_deadlines'] for e in episodes)),
        'params_file': str(params_file),
        'mpc_node_exit_code': mpc_code,
        'wall_s': round(time.perf_counter() - started, 1),
    }


def ros_stage(model_root: Path, episodes: int, duration_s: float, timeout_s: float,
              robots: tuple[str, ...] = ROS_SWINGUP_ROBOTS, first_seed: int = 0,
              durations: dict[str, float] | None = None, mpc_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pendulum and cart-pole swing-up by the product's nodes over real ROS 2 (:func:`ros_swingup_robot`).

    ``sim_node`` and ``mpc_node`` (task swingup) each in their own process, joint states in and effort commands out
    over DDS; this process only seeds the episodes, drives mpc_node's lifecycle and judges the recorded states.
    ``durations`` overrides ``duration_s`` per robot.
    """
    started = time.perf_counter()
    result: dict[str, Any] = {
        'transport': 'sim_node process -> /joint_states -> mpc_node process (lifecycle, task swingup: MPPI on the '
                     'learned model with the swing-up schedule) -> /effort_controller/commands -> sim_node',
    }
    seeds = list(range(first_seed, first_seed + episodes))
    for robot in robots:
        duration = (durations or {}).get(robot, duration_s)
        try:
            result[robot] = ros_swingup_robot(robot, model_root / robot, seeds, duration, timeout_s, mpc_params)
        except Exception as err:  # noqa: BLE001 - one robot failing must not hide the other's figures
            result[robot] = {'error': f'{type(err).__name__}: {err}'}
            _log(f'  {robot} over ROS: not run: {err}')
    result['wall_s'] = round(time.perf_counter() - started, 1)
    return result


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

    from hamwm_ros.sim.cli import SimProcess, TopicProbe, interrupt_process, node_command

    started = time.perf_counter()
    params = {'model_dir': str(model_dir), 'autostart': True, 'use_sim_time': True, 'goal_position': [GRAPH_GOALS[0]],
              'control_rate': 500.0, 'planner_rate': 50.0, 'recovery_time': 0.1, 'max_plan_age': 0.2,
              'max_future_stamp': 0.5,
              # A 2-core machine running the simulator, both nodes and this recorder in real time next to other jobs
              # stalls sim_node for 100 ms and more: with the 0.1 s watchdog this stage spent 22 % of its ticks in
              # safe hold under a parallel test run and the pendulum dropped. The watchdog still holds within one
              # control period of its (longer) deadline.
              'joint_state_timeout': 0.25,
              # as the swing-up files: under load plans take 15-30 ms against the 20 ms period yet stay fresh
              # (max_plan_age guards staleness)
              'overrun_limit': 25}
    command = node_command('mpc_node', params)
    # rates pinned: hamwm.yaml's sim_node section is the humanoid graph's (250 Hz joint states, 200 Hz clock)
    sim = SimProcess('pendulum', {'camera_rate': 0.0, 'real_time': True, 'joint_states_rate': 500.0,
                                  'clock_rate': 1000.0, 'command_timeout': 0.5})
    log = Path(sim.log_path).with_name(Path(sim.log_path).stem + '_mpc.log')
    mpc = probe = None
    segments: list[dict[str, Any]] = []
    modes: list[str] = []
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
        # This process's own discovery of sim_node can lag mpc_node's by seconds (seen after the swing-up stage's
        # nodes had come and gone on the domain): record only once states arrive here.
        if probe.wait_for('/joint_states', timeout=timeout_s) is None:
            raise RuntimeError('no /joint_states reached this process:\n' + sim.log()[-2000:])
        for k, goal in enumerate(GRAPH_GOALS):
            if k:
                goal_msg = Parameter('goal_position', value=[goal]).to_parameter_msg()
                response = probe.call(SetParameters, '/mpc_node/set_parameters',
                                      SetParameters.Request(parameters=[goal_msg]))
                if not response.results[0].successful:
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
        # every mode change mpc_node announced (the topic is latched and published on each transition)
        modes = [m.data for m in probe.recent('/hamwm/mpc/mode')]
    finally:
        if probe is not None:
            probe.close()
        mpc_code = interrupt_process(mpc) if mpc is not None else None
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
        'fallback_fraction': int(values.get('fallback_ticks', 0)) / ticks,
        'hold_fraction': int(values.get('hold_ticks', 0)) / ticks,
        'mode_changes': modes[-20:],
        'control_ticks': ticks,
        'missed_deadlines': int(values.get('missed_deadlines', 0)),
        'period_error_p99_ms': float(values.get('period_error_p99_ms', 'nan')),
        # the command relay process (command_relay): when the commands went out; nan without it
        'relay_period_error_p99_ms': float(values.get('relay_period_error_p99_ms', 'nan')),
        'planner_ms_p50': float(values.get('planner_ms_p50', 'nan')),
        'state_to_command_ms_p50': float(values.get('state_to_command_ms_p50', 'nan')),
        'state_to_command_ms_p99': float(values.get('state_to_command_ms_p99', 'nan')),
        'mpc_node_exit_code': mpc_code,
        'wall_s': round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------------------------------------------- output
def _prediction_errors(rmse: dict[str, float] | None) -> str:
    """Closed-loop prediction RMSE by horizon, 'h1 0.020 / h10 0.052 / ...' ('n/a' when not measured)."""
    if not rmse:
        return 'n/a'
    return ' / '.join(f'h{k} {v:.3f}' for k, v in sorted(rmse.items(), key=lambda kv: int(kv[0])))


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
                     f"{100 * s['fallback_fraction']:.1f}% of ticks; model error on the visited states "
                     f"{_prediction_errors(s.get('closed_loop_prediction_rmse'))}; {s['wall_s']} s"))
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
                still = h.get('standing_joint_speed_rms', {}).get(name)
                rows.append((f'humanoid {label}', f"{c['min_impulse_ns']:.1f} N s",
                             f"largest survived push per direction, mean over seeds {h.get('seeds', [0])} (N s): "
                             f'{per}' + (f"; plan p50 {_fmt(c['plan_ms_p50'], '.1f')} ms" if c['plan_ms_p50'] else '')
                             + (f'; joint speed standing unpushed {still:.3f} rad/s' if still is not None else '')))
            for pair, p in h.get('paired', {}).items():
                rows.append((f'humanoid {pair}', f"{p['mean_difference_ns']:+.2f} N s",
                             f"same direction and seed: won {p['won']}, tied {p['tied']}, lost {p['lost']} of "
                             f"{p['pairs']} (bisection step {h['resolution_ns']:.2f} N s)"))
    r = figures.get('ros')
    for robot in ROS_SWINGUP_ROBOTS:
        s = (r or {}).get(robot)
        if s is None:
            continue
        label = f'ROS 2 {robot} swing-up (mpc_node)'
        if 'error' in s:
            rows.append((label, 'not run', s['error']))
            continue
        ups = [e['time_to_upright_s'] for e in s['per_episode'] if math.isfinite(e['time_to_upright_s'])]
        rows.append((label, f"{s['successes']}/{s['episodes']}",
                     f"median upright at {_fmt(float(np.median(ups)) if ups else None)} s; planned "
                     f"{100 * s['planned_fraction']:.0f}% / fallback {100 * s['fallback_fraction']:.1f}% / hold "
                     f"{100 * s['hold_fraction']:.1f}% of ticks; state->command p50 "
                     f"{_fmt(s['state_to_command_ms_p50'], '.1f')} ms, p99 {_fmt(s['state_to_command_ms_p99'], '.1f')}"
                     f" ms; plan p50 {_fmt(s['planner_ms_p50'], '.1f')} ms; {s['wall_s']} s"))
    g = figures.get('graph')
    if g is not None:
        if 'error' in g:
            rows.append(('ROS 2 mpc_node', 'not run', g['error']))
        else:
            goals = ', '.join(f"{s['goal_rad']:+.2f} rad: error {_fmt(s['final_error_rad'], '.3f')}"
                              for s in g['segments'])
            rows.append(('ROS 2 mpc_node', 'on goal' if g['success'] else 'OFF GOAL',
                         f"{goals}; planned {100 * g['planned_fraction']:.0f}% of {g['control_ticks']} ticks; "
                         f"period error p99 {_fmt(g['period_error_p99_ms'])} ms, {g['missed_deadlines']} missed"
                         + (f" (published by the relay: {_fmt(g['relay_period_error_p99_ms'])} ms); "
                            if math.isfinite(g.get('relay_period_error_p99_ms', math.nan)) else '; ')
                         + f"state->command p50 {_fmt(g['state_to_command_ms_p50'], '.1f')} ms"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(2)]
    lines = []
    for k, row in enumerate(rows):
        lines.append(f'{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}')
        if k == 0:
            lines.append('-' * (widths[0] + widths[1] + 40))
    return '\n'.join(lines)


def write_report(out: Path, figures: dict[str, Any], swing_logs: dict[str, list],
                 push_traces: dict[str, Any]) -> list[str]:
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
    parser = argparse.ArgumentParser(prog='hamwm demo', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--quick', action='store_true', help='smoke-test size: 1 short episode per stage')
    parser.add_argument('--models', type=Path, default=None,
                        help="shipped models root (default: the checkout's or installed package's models/)")
    parser.add_argument('--out', type=Path, default=Path('reports/demo'), help='report folder (default: reports/demo)')
    parser.add_argument('--episodes', type=int, default=20, help='seeded episodes per swing-up robot (default: 20)')
    parser.add_argument('--only', nargs='+', choices=('pendulum', 'cartpole', 'humanoid', 'ros', 'graph'),
                        help='run only these stages')
    parser.add_argument('--threads', type=int, default=1, help='onnxruntime threads (default: 1)')
    parser.add_argument('--delay-ms', type=float, default=0.0,
                        help='in-process swing-up stages: state-to-actuation latency in ms (default: 0)')
    parser.add_argument('--committed', type=int, default=-1,
                        help='in-process swing-up stages: plan steps kept from the previous plan (delay compensation; '
                             'default -1: ceil(delay / model dt), 0: off)')
    parser.add_argument('--first-seed', type=int, default=0, help='first episode seed (default: 0)')
    parser.add_argument('--mpc-param', action='append', default=[], metavar='NAME:=VALUE',
                        help='ROS swing-up stage: an mpc_node parameter override (repeatable; A/B runs)')
    parser.add_argument('--ros-episodes', type=int, default=3,
                        help='seeded swing-up episodes per robot over ROS 2 (sim_node + mpc_node; default: 3)')
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.ros_episodes < 1:
        parser.error('--episodes and --ros-episodes must be >= 1')
    if args.delay_ms < 0.0 or args.first_seed < 0:
        parser.error('--delay-ms and --first-seed must be >= 0')
    mpc_params: dict[str, str] = {}
    for item in args.mpc_param:
        name, sep, value = item.partition(':=')
        if not sep or not name or not value:
            parser.error(f'--mpc-param wants NAME:=VALUE, got {item!r}')
        mpc_params[name] = value
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
    status = EXIT_OK
    for robot in ('pendulum', 'cartpole'):
        if robot not in stages:
            continue
        _log(f'== {robot}: swing-up and balance on the learned model')
        try:
            episodes = 1 if args.quick else args.episodes
            duration = 5.0 if args.quick else None
            figures[robot], swing_logs[robot] = swingup_stage(robot, args.models / robot, episodes, duration,
                                                              args.threads, args.first_seed, 1e-3 * args.delay_ms,
                                                              args.committed)
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
        _log('== pendulum and cart-pole swing-up over real ROS 2 (sim_node process <-> mpc_node process, task '
             'swingup)')
        # quick: one short episode each (the pendulum needs about 4 s to come up, the cart-pole about 2.5 s)
        figures['ros'] = ros_stage(args.models, 1 if args.quick else args.ros_episodes, 8.0, timeout_s=60.0,
                                   first_seed=args.first_seed,
                                   durations={'pendulum': 5.0, 'cartpole': 3.0} if args.quick else None,
                                   mpc_params=mpc_params)
        if any('error' in figures['ros'][robot] for robot in ROS_SWINGUP_ROBOTS):
            status = EXIT_STAGE_FAILED
    if 'graph' in stages:
        _log('== the node graph over real ROS 2 (sim_node process <-> mpc_node process, goals by parameter)')
        try:
            figures['graph'] = graph_stage(args.models / 'pendulum', 2.0 if args.quick else 4.0, timeout_s=60.0)
        except Exception as err:  # noqa: BLE001
            figures['graph'] = {'error': f'{type(err).__name__}: {err}'}
            status = EXIT_STAGE_FAILED
            _log(f'  graph: not run: {err}')
    figures['wall_s'] = round(time.perf_counter() - started, 1)
    written = write_report(args.out, figures, swing_logs, push_traces)
    _log('')
    _log(summary_table(figures))
    _log(f'\nreport: {args.out}/ ({", ".join(written)}); total {figures["wall_s"]} s')
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
