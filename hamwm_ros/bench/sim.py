"""``hamwm bench sim``: how fast the simulation runs, bare and through ROS 2.

Per robot:

1. the bare library, lockstep: ``Simulation.step(1)`` calls per second with the default PD hold (what one call per
   physics step costs from Python; no ROS, no renderer);
2. sim_node free-running (``real_time:=false``, camera off): physics steps per second achieved while it publishes
   /joint_states at 500 Hz and /clock at 1 kHz of simulated time, measured from /clock stamps by a probe node in
   another process (ratio: against the bare library);
3. sim_node in real time with the camera off and on (30 Hz, 320x240): the /joint_states rate the probe receives
   (target 500 Hz), the image rate (target 30 Hz), the real-time factor (ratio: camera on / camera off), and the
   CPU seconds the node process spends per simulated second (from /proc; unlike the rates it hardly depends on
   what else runs on the machine, and below 1.0 / cores it means real time is possible on an idle machine).

Medians over ``--repeats`` windows. The node and the probe run on a random ROS domain with loopback-only discovery
so other ROS traffic on the machine cannot mix in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from typing import Any

from hamwm_ros.cli import HelpFormatter

ROBOTS = ('pendulum', 'cartpole', 'acrobot', 'humanoid')


def library_steps_per_second(robot: str, seconds: float, repeats: int) -> list[float]:
    """Bare ``Simulation.step(1)`` calls per second, one value per repeat."""
    from hamwm_ros.sim import Simulation

    sim = Simulation(robot)
    sim.reset()
    sim.step(200)   # warm-up
    values = []
    for _ in range(repeats):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(100):
                sim.step(1)
            count += 100
            now = time.perf_counter()
            if now >= deadline:
                break
        values.append(count / (now - start))
    return values


def node_windows(robot: str, parameters: dict[str, Any], window: float, repeats: int, domain_id: int,
                 warmup: float = 1.0) -> dict[str, Any]:
    """Run sim_node with ``parameters`` and measure ``repeats`` windows of ``window`` seconds each.

    Returns lists (one value per window) of ``joint_states_hz``, ``image_hz``, ``real_time_factor`` and
    ``cpu_per_sim_s`` (CPU seconds the node process used per simulated second), the node's last reported
    ``render_ms`` and its ``returncode``.
    """
    from hamwm_ros.sim.cli import SimProcess, TopicProbe, diagnostics_values, real_time_factor, sim_topics

    camera = float(parameters.get('camera_rate', 30.0)) > 0
    out: dict[str, Any] = {'joint_states_hz': [], 'image_hz': [], 'real_time_factor': [], 'cpu_per_sim_s': [],
                           'render_ms': None}
    with SimProcess(robot, parameters, params_file=False, env={'ROS_DOMAIN_ID': str(domain_id)}) as sim:
        probe = TopicProbe(sim_topics(robot, camera=camera, clock=True), domain_id=domain_id, keep=2)
        try:
            deadline = time.monotonic() + 60.0
            while probe.wait_for('/joint_states', timeout=0.5) is None:
                if not sim.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f'sim_node ({robot}) did not start:\n{sim.log()}')
            time.sleep(warmup)
            for _ in range(repeats):
                probe.reset()
                cpu_start = sim.cpu_seconds()
                time.sleep(window)
                cpu = sim.cpu_seconds() - cpu_start
                records = probe.snapshot()
                clock = records['/clock']
                if clock.count > 1:
                    out['cpu_per_sim_s'].append(cpu / (clock.last_stamp - clock.first_stamp))
                out['joint_states_hz'].append(records['/joint_states'].rate_wall())
                if camera:
                    out['image_hz'].append(records['/camera/image_raw'].rate_wall())
                out['real_time_factor'].append(real_time_factor(records))
            diagnostics = diagnostics_values(probe.latest('/diagnostics'))
            if camera and diagnostics.get('render_ms_mean', '-') != '-':
                out['render_ms'] = float(diagnostics['render_ms_mean'])
        finally:
            probe.close()
        out['returncode'] = sim.stop()
    return out


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:,.{digits}f}'


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns 0 when every node run exited cleanly."""
    parser = argparse.ArgumentParser(prog='hamwm bench sim', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--robots', nargs='+', choices=ROBOTS, default=list(ROBOTS), help='robots to measure')
    parser.add_argument('--repeats', type=int, default=3, help='measurement windows per configuration')
    parser.add_argument('--window', type=float, default=1.5, help='seconds per window')
    parser.add_argument('--no-ros', action='store_true', help='bare library only')
    parser.add_argument('--domain-id', type=int, default=None, help='ROS domain (default: random in 1..100)')
    parser.add_argument('--json', action='store_true', help='also print the raw results as JSON')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.window <= 0:
        parser.error('--repeats must be >= 1 and --window > 0')

    os.environ.setdefault('MUJOCO_GL', 'egl')
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    domain_id = args.domain_id if args.domain_id is not None else random.SystemRandom().randint(1, 100)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    code = 0
    for robot in args.robots:
        row: dict[str, Any] = {'library_steps_s': library_steps_per_second(robot, args.window, args.repeats)}
        if not args.no_ros:
            configurations = {
                'free': {'real_time': False, 'camera_rate': 0.0},
                'rt_nocam': {'real_time': True, 'camera_rate': 0.0},
                'rt_cam': {'real_time': True, 'camera_rate': 30.0},
            }
            for key, parameters in configurations.items():
                row[key] = node_windows(robot, parameters, args.window, args.repeats, domain_id)
                code = max(code, 1 if row[key]['returncode'] != 0 else 0)
        results[robot] = row
        print(f'  {robot}: done ({time.monotonic() - started:.0f} s)', flush=True)

    print(f'\nhamwm bench sim: medians of {args.repeats} x {args.window:g} s windows; physics 1 kHz; '
          f'node targets: /joint_states 500 Hz, camera 30 Hz 320x240 (fast quality); '
          f'{os.cpu_count()} CPUs, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after; '
          f'ROS_DOMAIN_ID {domain_id}')
    header = (f"{'robot':<9} {'library steps/s':>15} {'node free-run steps/s':>22} {'node/lib':>8} "
              f"{'js Hz (cam off)':>15} {'js Hz (cam on)':>14} {'on/off':>6} {'image Hz':>8} {'render ms':>9} "
              f"{'RTF off':>7} {'RTF on':>6} {'CPU/sim-s off':>13} {'CPU/sim-s on':>12}")
    print(header)
    print('-' * len(header))
    for robot, row in results.items():
        library = _median(row['library_steps_s'])
        if args.no_ros:
            print(f'{robot:<9} {_fmt(library):>15}')
            continue
        free = 1000.0 * _median(row['free']['real_time_factor'])
        js_off, js_on = _median(row['rt_nocam']['joint_states_hz']), _median(row['rt_cam']['joint_states_hz'])
        print(f"{robot:<9} {_fmt(library):>15} {_fmt(free):>22} {_fmt(free / library, 3):>8} "
              f"{_fmt(js_off, 1):>15} {_fmt(js_on, 1):>14} {_fmt(js_on / js_off, 3):>6} "
              f"{_fmt(_median(row['rt_cam']['image_hz']), 1):>8} {_fmt(row['rt_cam']['render_ms'], 1):>9} "
              f"{_fmt(_median(row['rt_nocam']['real_time_factor']), 3):>7} "
              f"{_fmt(_median(row['rt_cam']['real_time_factor']), 3):>6} "
              f"{_fmt(_median(row['rt_nocam']['cpu_per_sim_s']), 3):>13} "
              f"{_fmt(_median(row['rt_cam']['cpu_per_sim_s']), 3):>12}")
    print(f'total {time.monotonic() - started:.0f} s')
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return code
