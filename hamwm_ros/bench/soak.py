"""``hamwm bench soak``: the closed loop (sim_node + mpc_node over real DDS) for minutes; does anything creep?

sim_node simulates the pendulum in real time (camera off) and publishes ``/joint_states`` and ``/clock``; mpc_node
(autostart, sim time, the project's parameter file with the shipped ``models/pendulum``) plans on them and sends
efforts back on ``/effort_controller/commands``. Both are separate processes on a random ROS domain with
loopback-only discovery. This process only listens: to mpc_node's ``/diagnostics`` (one sample per message: rss_kb,
threads, missed_deadlines, control_ticks, commands_published, period_error_p99_ms, mode) and to
``/hamwm/mpc/mode`` (transient local, one message per mode change).

Printed (one ``key: value`` line each, so scripts and tests can parse them):

* ``rss_growth_kib``: median RSS over the last minute minus the median over the first minute (windows of a third of
  the run for runs shorter than three minutes);
* ``threads``: min and max over the samples;
* ``missed_deadline_rate``: missed control periods over all periods (ticks + missed), mpc_node's own count;
* ``period_error_p99_ms``: mpc_node's rolling p99 of |tick interval - period| (its last 5000 ticks): the last value,
  the median and the maximum of the samples;
* ``commands_published`` and ``mode_changes`` (with the count per mode entered);
* ``relay`` (with ``command_relay``, the default): what the relay process published, how many commands the control
  thread published instead, the relay's rolling p99 period error and its RSS growth (bounded like mpc_node's).

Exit code 1 when the RSS growth exceeds ``--max-growth-mib`` (20 MiB by default), when either node died or stopped
reporting, or when no sample came in; 0 otherwise.
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
import math
import os
from pathlib import Path
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from hamwm_ros.cli import HelpFormatter

ROOT = Path(__file__).resolve().parents[2]
SILENCE_S = 10.0        # no mpc_node diagnostics for this long counts as a dead node


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='hamwm bench soak', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--minutes', type=float, default=10.0, help='soak duration in minutes (default 10)')
    p.add_argument('--control-rate', type=float, default=500.0, help='mpc_node control_rate, Hz (default 500)')
    p.add_argument('--planner-rate', type=float, default=50.0, help='mpc_node planner_rate, Hz (default 50)')
    p.add_argument('--samples', type=int, default=256, help='mpc_node mppi.num_samples (default 256)')
    p.add_argument('--model-dir', type=Path, default=ROOT / 'models' / 'pendulum',
                   help='pendulum world model for mpc_node (default models/pendulum)')
    p.add_argument('--max-growth-mib', type=float, default=20.0,
                   help='RSS growth (last minute against the first) that fails the run, MiB (default 20)')
    p.add_argument('--domain-id', type=int, default=None, help='ROS domain (default: random in 1..100)')
    p.add_argument('--json', type=Path, default=None, help='also write the figures as JSON here')
    p.add_argument('--show-log', action='store_true', help="print mpc_node's output at the end")
    return p


def _mpc_command(args: argparse.Namespace) -> list[str]:
    from hamwm_ros.sim.cli import find_params_file, node_command

    # The file's mpc_node section is tuned for the humanoid (trajectory interface, PD residual, nominal hold, looser
    # watchdog); the soak keeps measuring the pendulum's effort loop with the node's own safety settings.
    return node_command('mpc_node', {'model_dir': str(args.model_dir), 'autostart': True, 'use_sim_time': True,
                                     'control_rate': float(args.control_rate),
                                     'planner_rate': float(args.planner_rate),
                                     'mppi.num_samples': int(args.samples), 'command_interface': 'effort',
                                     'pd_residual': False, 'safe_hold': 'zero_effort', 'mppi.noise_std': 0.3,
                                     'joint_state_timeout': 0.02, 'max_future_stamp': 0.05, 'overrun_limit': 5},
                        find_params_file())


def _sample(msg: Any) -> dict[str, Any] | None:
    """mpc_node's diagnostics key/values (numbers parsed) from one DiagnosticArray, or None if not its status."""
    for status in getattr(msg, 'status', []):
        if status.name.startswith('mpc_node'):
            values = {kv.key: kv.value for kv in status.values}
            if 'control_ticks' not in values:          # not active yet (configuring)
                return None
            out: dict[str, Any] = {'mode': values.get('mode', '')}
            for key in ('rss_kb', 'threads', 'missed_deadlines', 'control_ticks', 'commands_published',
                        'period_error_p99_ms', 'control_elapsed_s', 'stale_to_hold_ms_max',
                        'relay_period_error_p99_ms', 'relay_commands_published', 'relay_bypassed', 'relay_rss_kb'):
                try:
                    out[key] = float(values[key])
                except (KeyError, ValueError):
                    out[key] = math.nan
            return out
    return None


def summarise(samples: list[tuple[float, dict[str, Any]]], modes: list[str], bound_kib: float) -> dict[str, Any]:
    """The soak figures from (seconds since start, diagnostics sample) pairs and the mode texts seen, in order."""
    if not samples:
        return {'samples': 0}
    t_end = samples[-1][0]
    t_start = samples[0][0]
    window = min(60.0, max((t_end - t_start) / 3.0, 1e-9))
    first = [s['rss_kb'] for t, s in samples if t <= t_start + window]
    last = [s['rss_kb'] for t, s in samples if t >= t_end - window]
    threads = [s['threads'] for _, s in samples]
    p99 = [s['period_error_p99_ms'] for _, s in samples if math.isfinite(s['period_error_p99_ms'])]
    final = samples[-1][1]
    periods = final['control_ticks'] + final['missed_deadlines']
    entered = Counter(m.split(':', 1)[0] for m in modes)
    growth = statistics.median(last) - statistics.median(first)
    relay: dict[str, Any] = {'relay': False}
    if math.isfinite(final.get('relay_commands_published', math.nan)):
        relay_p99 = [s['relay_period_error_p99_ms'] for _, s in samples
                     if math.isfinite(s.get('relay_period_error_p99_ms', math.nan))]
        relay_first = [s['relay_rss_kb'] for t, s in samples if t <= t_start + window and s.get('relay_rss_kb', -1) > 0]
        relay_last = [s['relay_rss_kb'] for t, s in samples if t >= t_end - window and s.get('relay_rss_kb', -1) > 0]
        relay = {'relay': True, 'relay_commands_published': final['relay_commands_published'],
                 'relay_bypassed': final['relay_bypassed'],
                 'relay_period_error_p99_ms_last': final['relay_period_error_p99_ms'],
                 'relay_period_error_p99_ms_median': statistics.median(relay_p99) if relay_p99 else math.nan,
                 'relay_period_error_p99_ms_max': max(relay_p99) if relay_p99 else math.nan,
                 'relay_rss_growth_kib': statistics.median(relay_last) - statistics.median(relay_first)
                 if relay_first and relay_last else math.nan}
    return {
        **relay,
        'samples': len(samples), 'span_s': t_end - t_start, 'window_s': window,
        'rss_first_kib': statistics.median(first), 'rss_last_kib': statistics.median(last),
        'rss_growth_kib': growth, 'rss_max_kib': max(s['rss_kb'] for _, s in samples), 'rss_bound_kib': bound_kib,
        'threads_min': min(threads), 'threads_max': max(threads),
        'missed_deadlines': final['missed_deadlines'], 'control_ticks': final['control_ticks'],
        'missed_deadline_rate': final['missed_deadlines'] / periods if periods > 0 else math.nan,
        'period_error_p99_ms_last': final['period_error_p99_ms'],
        'period_error_p99_ms_median': statistics.median(p99) if p99 else math.nan,
        'period_error_p99_ms_max': max(p99) if p99 else math.nan,
        'commands_published': final['commands_published'],
        'commands_per_s': final['commands_published'] / final['control_elapsed_s']
        if final['control_elapsed_s'] > 0 else math.nan,
        'mode_changes': max(0, len(modes) - 1), 'modes_entered': dict(entered),
        'final_mode': final['mode'], 'stale_to_hold_ms_max': final['stale_to_hold_ms_max'],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; the figures of :func:`summarise` plus ``died`` (reasons) and the processes' exit codes."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from hamwm_ros.sim.cli import SimProcess, TopicProbe, interrupt_process

    domain_id = args.domain_id if args.domain_id is not None else random.SystemRandom().randint(1, 100)
    env = {'ROS_DOMAIN_ID': str(domain_id), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'PYTHONUNBUFFERED': '1'}
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    duration = 60.0 * args.minutes
    died: list[str] = []
    samples: list[tuple[float, dict[str, Any]]] = []
    probe = TopicProbe({}, domain_id=domain_id, name='hamwm_soak_probe')
    received: dict[str, list] = {'diagnostics': [], 'mode': []}     # appended by the probe's executor thread
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
    probe.node.create_subscription(DiagnosticArray, '/diagnostics',
                                   lambda m: received['diagnostics'].append((time.monotonic(), m)), qos)
    # The mode topic is latched (transient local): subscribe the same way, or a mode published before discovery
    # completes is never seen.
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.node.create_subscription(String, '/hamwm/mpc/mode', lambda m: received['mode'].append(m.data), latched)
    log = tempfile.NamedTemporaryFile(prefix='hamwm_soak_mpc_', suffix='.log', delete=False)  # noqa: SIM115
    mpc = subprocess.Popen(_mpc_command(args), stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **env),
                           start_new_session=True)
    sim = SimProcess('pendulum', {'camera_rate': 0.0, 'joint_states_rate': 500.0, 'clock_rate': 1000.0},
                     params_file=False, env=env)
    result: dict[str, Any] = {'domain_id': domain_id}
    try:
        # Start-up: wait for mpc_node to plan on the simulated pendulum (model load and DDS discovery take seconds).
        deadline = time.monotonic() + 90.0
        while not any(m.startswith('PLANNING') for m in received['mode']):
            if time.monotonic() > deadline or mpc.poll() is not None or not sim.alive():
                died.append('mpc_node never reached PLANNING within 90 s; sim_node log tail:\n' + sim.log()[-1500:])
                break
            time.sleep(0.1)
        first = next((i for i, m in enumerate(received['mode']) if m.startswith('PLANNING')), 0)
        start = time.monotonic()
        last_sample = start
        done = 0
        while not died and time.monotonic() - start < duration:
            time.sleep(0.25)
            now = time.monotonic()
            fresh, done = received['diagnostics'][done:], len(received['diagnostics'])
            for t, msg in fresh:
                sample = _sample(msg)
                if sample is not None and t >= start:
                    samples.append((t - start, sample))
                    last_sample = t
            if mpc.poll() is not None:
                died.append(f'mpc_node exited with code {mpc.returncode}')
            if not sim.alive():
                died.append(f'sim_node exited with code {sim.process.returncode}')
            if now - last_sample > SILENCE_S:
                died.append(f'mpc_node sent no diagnostics for {now - last_sample:.0f} s')
        modes = list(received['mode'][first:])
        result.update(summarise(samples, modes, 1024.0 * args.max_growth_mib))
        result['duration_s'] = time.monotonic() - start
    finally:
        probe.close()
        result['mpc_exit_code'] = interrupt_process(mpc)
        result['sim_exit_code'] = sim.stop()
        log.close()
        result['mpc_log'] = Path(log.name).read_text(errors='replace')
        Path(log.name).unlink(missing_ok=True)
        sim.close()
    if result['mpc_exit_code'] not in (0, None) and not died:
        died.append(f'mpc_node exit code {result["mpc_exit_code"]} after SIGINT')
    result['died'] = died
    return result


def report(result: dict[str, Any]) -> str:
    """The printed lines (``key: value``)."""
    if not result.get('samples'):
        return 'samples: 0\nresult: FAIL (' + ('; '.join(result.get('died', [])) or 'no diagnostics') + ')'
    r = result
    modes = ', '.join(f'{k} {v}' for k, v in sorted(r['modes_entered'].items()))
    lines = [
        f"samples: {r['samples']} diagnostics over {r['span_s']:.1f} s",
        f"rss_growth_kib: {r['rss_growth_kib']:.0f} (median of the first {r['window_s']:.0f} s "
        f"{r['rss_first_kib']:.0f} KiB, of the last {r['window_s']:.0f} s {r['rss_last_kib']:.0f} KiB, "
        f"max {r['rss_max_kib']:.0f} KiB; bound {r['rss_bound_kib']:.0f} KiB)",
        f"threads: min {r['threads_min']:.0f} max {r['threads_max']:.0f}",
        f"missed_deadline_rate: {r['missed_deadline_rate']:.4f} ({r['missed_deadlines']:.0f} missed of "
        f"{r['missed_deadlines'] + r['control_ticks']:.0f} periods)",
        f"period_error_p99_ms: {r['period_error_p99_ms_last']:.3f} (last; median {r['period_error_p99_ms_median']:.3f}"
        f", max {r['period_error_p99_ms_max']:.3f} over the samples)",
        f"commands_published: {r['commands_published']:.0f} ({r['commands_per_s']:.1f} /s)",
        f"mode_changes: {r['mode_changes']} (entered: {modes}; final {r['final_mode']})",
        f"stale_to_hold_ms_max: {r['stale_to_hold_ms_max']:.3f}",
        *([f"relay: {r['relay_commands_published']:.0f} commands published by the relay process, "
           f"{r['relay_bypassed']:.0f} by the control thread instead; period_error_p99_ms "
           f"{r['relay_period_error_p99_ms_last']:.3f} (last; median {r['relay_period_error_p99_ms_median']:.3f}, max "
           f"{r['relay_period_error_p99_ms_max']:.3f}); rss_growth_kib {r['relay_rss_growth_kib']:.0f}"]
          if r.get('relay') else []),
        f"exit_codes: mpc_node {r['mpc_exit_code']}, sim_node {r['sim_exit_code']} (SIGINT at the end)",
    ]
    failures = list(r['died'])
    if r['rss_growth_kib'] > r['rss_bound_kib']:
        failures.append(f"RSS grew {r['rss_growth_kib']:.0f} KiB > {r['rss_bound_kib']:.0f} KiB")
    if r.get('relay') and r['relay_rss_growth_kib'] > r['rss_bound_kib']:
        failures.append(f"the relay's RSS grew {r['relay_rss_growth_kib']:.0f} KiB > {r['rss_bound_kib']:.0f} KiB")
    lines.append('result: ' + ('PASS' if not failures else 'FAIL (' + '; '.join(failures) + ')'))
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """``hamwm bench soak``: print the soak figures; 1 on growth beyond the bound, a dead node or no samples."""
    args = _parser().parse_args(argv)
    if not args.minutes > 0:
        _parser().error('--minutes must be > 0')
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = math.nan
    print(f'hamwm bench soak: {args.minutes:g} min, pendulum (sim_node, real time, camera off) + mpc_node '
          f'({args.model_dir}, control {args.control_rate:g} Hz, planner {args.planner_rate:g} Hz, '
          f'{args.samples} samples), load {load:.2f}, {os.cpu_count()} cores', flush=True)
    result = run(args)
    text = report(result)
    print(text, flush=True)
    failed = text.rsplit('\n', 1)[-1] != 'result: PASS'
    if args.show_log or failed:
        lines = result['mpc_log'].splitlines()
        print(f"mpc_node output{'' if args.show_log else ' (last 60 lines)'}:")
        print('\n'.join(lines if args.show_log else lines[-60:]))
    if args.json is not None:
        args.json.write_text(json.dumps({k: v for k, v in result.items() if k != 'mpc_log'}, indent=2,
                                        default=str))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
