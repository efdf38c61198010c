"""``hamwm bench <name>``: benchmarks that print medians and ratios against a baseline run side by side.

Each benchmark is a module ``hamwm_ros.bench.<name>`` with ``main(argv) -> int``. ``hamwm bench all`` runs every
one present in this build.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

BENCHMARKS = {
    'sim': 'physics steps/s and /joint_states rate per robot, with and without camera',
    'wholebody': 'CoM + ZMP + margin per tick against the bare Pinocchio calls; batched states/s',
    'predictor': 'onnxruntime rollout throughput against eager torch; GFLOP/s against measured peak',
    'mpc': 'MPPI iteration against eager torch; control-loop period error; end-to-end latency',
    'graph': 'the simulated humanoid graph (4 processes, config/hamwm.yaml): share of ticks planned, CPU, pushes',
    'soak': 'closed loop (sim_node + mpc_node) for --minutes: RSS growth, threads, missed deadlines, mode changes',
}


def _present() -> list[str]:
    return [name for name in BENCHMARKS if importlib.util.find_spec(f'{__name__}.{name}') is not None]


def main(argv: list[str]) -> int:
    """Dispatch ``hamwm bench <name> [options]``."""
    present = _present()
    if not argv or argv[0] in ('-h', '--help'):
        print('usage: hamwm bench {' + ','.join([*present, 'all']) + '} [options]\n')
        for name in present:
            print(f'  {name:<10} {BENCHMARKS[name]}')
        return 0
    name, rest = argv[0], argv[1:]
    if name == 'all':
        codes = [importlib.import_module(f'{__name__}.{bench}').main(list(rest)) for bench in present]
        return max(codes, default=0)
    if name not in present:
        print(f"hamwm bench: unknown benchmark '{name}' (have: {', '.join(present)})", file=sys.stderr)
        return 2
    return int(importlib.import_module(f'{__name__}.{name}').main(rest) or 0)
