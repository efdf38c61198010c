"""``hamwm bench mpc``: one MPPI iteration (sample, roll out, score, weight, update) on CPU, ours against eager torch.

Ours is :class:`hamwm_ros.mpc.MPPIOptimizer` over the onnxruntime predictor (one batched session call per
iteration, numpy critics). The baseline is the same algorithm, written directly in eager torch: same noise model,
bounds, critics, control cost, weighting and update, and the same world model run as a torch module. The two run
interleaved, iteration by iteration, in one process with the same thread count, so load from other processes hits
both alike. Reported: p50 / p90 per iteration, the rollout's share, and the ratio of the medians.

Model: the shipped cart-pole model (``models/cartpole/``: ``predictor.onnx`` for ours, its ``model.pt`` checkpoint for
the baseline) when present; otherwise a latent port-Hamiltonian test model of cart-pole size built here with fixed
seeds and exported with ``torch.onnx.export`` (explicit-gradient leapfrog, no autograd in the graph).

torch is imported here only, for the baseline and the export; the library under test never imports it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import tempfile
import threading
import time
from typing import Any

import numpy as np

from hamwm_ros.cli import HelpFormatter
from hamwm_ros.mpc import (
    BatchedRollout,
    EffortCritic,
    EnergyCritic,
    JointLimitsCritic,
    MPPIOptimizer,
    MPPISettings,
    Rollout,
    SmoothnessCritic,
    TrackingCritic,
)

# Shared problem definition: both implementations read these, so they cannot drift apart.
TEMPERATURE = 0.1
NOISE_STD = 2.0
CONTROL_COST = 0.05
ACTION_LIMIT = 10.0
W_TRACK, W_ENERGY, W_EFFORT, W_SMOOTH, W_LIMITS = 1.0, 0.5, 0.01, 0.01, 1.0
BAND = 0.1
INFEASIBLE = 1.0e6
# The iteration-time target applies to the shipped cart-pole model at this size; other models get the figure.
P50_TARGET_MS = 10.0
P50_TARGET_CASE = ('cartpole', 1024, 32)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='hamwm bench mpc', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--samples', type=int, default=1024, help='MPPI samples B (default 1024)')
    p.add_argument('--horizon', type=int, default=32, help='planning steps H (default 32)')
    p.add_argument('--iterations', type=int, default=100, help='timed iterations per implementation (default 100)')
    p.add_argument('--warmup', type=int, default=20, help='untimed iterations first (default 20)')
    p.add_argument('--threads', type=int, default=2,
                   help='threads for both (default 2): torch intra-op threads; ours: MPPI workers (sample chunks '
                        'on their own threads, onnxruntime 1 intra-op thread each) unless --workers is given')
    p.add_argument('--workers', type=int, default=None,
                   help='ours: MPPI workers (MPPISettings.workers); default --threads. With 1 worker onnxruntime '
                        'gets --threads intra-op threads instead')
    p.add_argument('--model-dir', type=Path, default=Path('models/cartpole'), help='shipped model to use if present')
    p.add_argument('--test-model', action='store_true', help='use the built-in test model even if a shipped one exists')
    p.add_argument('--latent-dim', type=int, default=2, help='test model: q and p size each (default 2, cart-pole)')
    p.add_argument('--hidden', type=int, default=32, help='test model: potential MLP width (default 32)')
    p.add_argument('--max-seconds', type=float, default=120.0,
                   help='stop timing early after this long (at least 10 timed iterations); default 120')
    p.add_argument('--seed', type=int, default=0, help='seed of the test model (--test-model) and of the MPPI samples')
    p.add_argument('--json', type=Path, default=None, help='also write the figures as JSON here')
    p.add_argument('--no-gflops', dest='gflops', action='store_false',
                   help='skip the FLOP count and the measured-peak matmul (shipped models only)')
    p.add_argument('--loop-seconds', type=float, default=60.0,
                   help='control-loop part: seconds of mpc_node over DDS (default 60; 0 skips it)')
    p.add_argument('--loop-only', action='store_true', help='run only the control-loop part')
    p.add_argument('--rt-priority', type=int, default=50,
                   help="control-loop part: mpc_node's control_rt_priority and the bare loop's SCHED_FIFO priority "
                        '(default 50, mpc_node\'s default; 0: normal scheduling for both)')
    p.add_argument('--control-rate', type=float, default=500.0, help='control-loop part: Hz (default 500)')
    p.add_argument('--loop-samples', type=int, default=256,
                   help='control-loop part: MPPI samples of mpc_node (default 256, its default)')
    p.add_argument('--loop-model-dir', type=Path, default=Path('models/pendulum'),
                   help='control-loop part: model for mpc_node (default models/pendulum)')
    p.add_argument('--mpc-param', action='append', default=[], metavar='NAME:=VALUE',
                   help='control-loop part: extra mpc_node parameter (repeatable), e.g. gil_switch_interval:=0.005')
    return p


# ---------------------------------------------------------------------------------------------- models
def _test_model(torch: Any, latent_dim: int, obs_dim: int, action_dim: int, hidden: int, horizon: int, dt: float,
                seed: int) -> Any:
    """A port-Hamiltonian latent model of cart-pole size with fixed random weights (torch module)."""
    nn = torch.nn

    class LatentHamiltonian(nn.Module):
        """H = p^T M^-1 p / 2 + V(q), V a tanh MLP; damped, input-driven leapfrog; linear decoder.

        dV/dq is written out (explicit backward), as the exporter cannot trace autograd.
        """

        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            d = latent_dim
            self.w1 = nn.Parameter(torch.randn(d, hidden, generator=g) / math.sqrt(d))
            self.b1 = nn.Parameter(0.1 * torch.randn(hidden, generator=g))
            self.w2 = nn.Parameter(torch.randn(hidden, hidden, generator=g) / math.sqrt(hidden))
            self.b2 = nn.Parameter(0.1 * torch.randn(hidden, generator=g))
            self.w3 = nn.Parameter(torch.randn(hidden, generator=g) / math.sqrt(hidden))
            chol = torch.eye(d) + 0.1 * torch.randn(d, d, generator=g).tril(-1)
            self.register_buffer('inv_mass', chol @ chol.T)
            self.register_buffer('input_map', torch.randn(action_dim, d, generator=g) / math.sqrt(action_dim))
            self.register_buffer('decay', torch.full((d,), math.exp(-0.1 * dt / 2)))
            self.register_buffer('decoder', torch.randn(2 * d, obs_dim, generator=g) / math.sqrt(2 * d))
            self.d = d

        def potential(self, q: Any) -> tuple[Any, Any]:
            a1 = torch.tanh(q @ self.w1 + self.b1)
            a2 = torch.tanh(a1 @ self.w2 + self.b2)
            g2 = (1 - a2 * a2) * self.w3
            g1 = (1 - a1 * a1) * (g2 @ self.w2.T)
            return a2 @ self.w3, g1 @ self.w1.T

        def forward(self, z: Any, actions: Any) -> tuple[Any, Any, Any]:
            q, p = z[:, :self.d], z[:, self.d:]
            _, grad = self.potential(q)
            zs, es = [], []
            for t in range(actions.shape[1]):
                force = actions[:, t] @ self.input_map
                p = (p + (0.5 * dt) * (force - grad)) * self.decay
                q = q + dt * (p @ self.inv_mass)
                v, grad = self.potential(q)
                p = (p + (0.5 * dt) * (force - grad)) * self.decay
                zs.append(torch.cat([q, p], -1))
                es.append(0.5 * ((p @ self.inv_mass) * p).sum(-1) + v)
            z_seq = torch.stack(zs, 1)
            return z_seq, z_seq @ self.decoder, torch.stack(es, 1)

    return LatentHamiltonian().eval()


def _export(torch: Any, model: Any, n: int, horizon: int, m: int, path: Path) -> None:
    z = torch.zeros(4, n)
    actions = torch.zeros(4, horizon, m)
    axes = {'z': {0: 'batch'}, 'actions': {0: 'batch'}, 'z_seq': {0: 'batch'}, 'obs_seq': {0: 'batch'},
            'energy': {0: 'batch'}}
    kwargs = dict(input_names=['z', 'actions'], output_names=['z_seq', 'obs_seq', 'energy'], dynamic_axes=axes,
                  opset_version=17)
    import warnings
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            torch.onnx.export(model, (z, actions), str(path), dynamo=False, **kwargs)
        except TypeError:  # exporters without the dynamo switch
            torch.onnx.export(model, (z, actions), str(path), **kwargs)


def _ort_threads(args: argparse.Namespace) -> int:
    """Intra-op threads of onnxruntime on our side: 1 per MPPI worker when the samples are split, else --threads."""
    return 1 if _workers(args) > 1 else args.threads


def _workers(args: argparse.Namespace) -> int:
    return args.threads if args.workers is None else args.workers


class _SessionPredictor:
    """Zero-copy onnxruntime call for the test model: outputs bound to preallocated buffers (as the runtime does).

    Buffers and binding are per calling thread and batch size, so MPPI workers can call it concurrently.
    """

    def __init__(self, path: Path, threads: int, horizon: int, n: int, k: int) -> None:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry('session.intra_op.allow_spinning', '0')  # as the runtime: shared cores
        self.session = ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])
        self.horizon, self.n, self.k = horizon, n, k
        self._local = threading.local()

    def __call__(self, z: np.ndarray, actions: np.ndarray) -> Rollout:
        batch = int(actions.shape[0])
        bound = getattr(self._local, 'bound', None)
        if bound is None or bound[0] != batch:
            binding = self.session.io_binding()
            out = {'z_seq': np.empty((batch, self.horizon, self.n), np.float32),
                   'obs_seq': np.empty((batch, self.horizon, self.k), np.float32),
                   'energy': np.empty((batch, self.horizon), np.float32)}
            for name, buf in out.items():
                binding.bind_output(name, 'cpu', 0, np.float32, list(buf.shape), buf.ctypes.data)
            bound = self._local.bound = (batch, binding, out)
        _, binding, out = bound
        binding.bind_cpu_input('z', z)
        binding.bind_cpu_input('actions', actions)
        self.session.run_with_iobinding(binding)
        return Rollout(out['z_seq'], out['obs_seq'], out['energy'])


def _load_problem(args: argparse.Namespace, torch: Any, tmp: Path) -> dict[str, Any]:
    """The world model on both sides plus sizes; the shipped one when usable, else the test model."""
    shipped = args.model_dir / 'metadata.json'
    if not args.test_model and shipped.is_file() and (args.model_dir / 'model.pt').is_file():
        from hamwm_ros.runtime import SessionConfig, WorldModelRuntime
        from hamwm_ros.worldmodel.model import HamiltonianWorldModel
        config = SessionConfig(providers=('cpu',), intra_op_threads=_ort_threads(args), warmup_batch=(args.samples,))
        runtime = WorldModelRuntime.load(args.model_dir, config=config)
        meta = runtime.metadata
        twin = HamiltonianWorldModel.load(args.model_dir).eval()

        def torch_model(z: Any, actions: Any) -> tuple[Any, Any, Any]:
            z_seq = twin.rollout(z, actions)
            flat = z_seq.reshape(-1, z_seq.shape[-1])
            batch, horizon = actions.shape[:2]
            return z_seq, twin.decode(flat).reshape(batch, horizon, -1), twin.energy(flat).reshape(batch, horizon)

        if meta.horizon != args.horizon:
            print(f'note: the shipped predictor is exported for horizon {meta.horizon}; the runtime chains/pads to '
                  f'{args.horizon}')
        return dict(name=f'shipped {args.model_dir} (latent {meta.latent_dim}, obs {meta.obs_dim})',
                    robot=meta.robot, predict=lambda z, a: runtime.rollout(z, a, copy=False), torch_model=torch_model,
                    n=meta.latent_dim, k=meta.obs_dim, m=meta.action_dim, joints=len(meta.joint_names),
                    predictor_path=args.model_dir / meta.files['predictor'].path, export_horizon=meta.horizon)
    reason = 'asked for' if args.test_model else (
        f'no shipped model with a torch checkpoint in {args.model_dir}/ (need metadata.json, predictor.onnx, '
        'model.pt)')
    d, m, joints = args.latent_dim, 1, 2
    k = 2 * joints
    model = _test_model(torch, d, k, m, args.hidden, args.horizon, 0.02, args.seed)
    path = tmp / 'predictor.onnx'
    _export(torch, model, 2 * d, args.horizon, m, path)
    predict = _SessionPredictor(path, _ort_threads(args), args.horizon, 2 * d, k)
    return dict(name=f'test model ({reason}): latent 2x{d}, potential MLP {d}-{args.hidden}-{args.hidden}-1, '
                     f'obs {k}, exported to ONNX here', robot='test', predict=predict, torch_model=model, n=2 * d,
                k=k, m=m, joints=joints)


# ---------------------------------------------------------------------------------------------- the two MPPIs
def _problem_arrays(k: int, joints: int) -> dict[str, np.ndarray]:
    return dict(goal=np.zeros(k, np.float32), state_weights=np.ones(k, np.float32),
                pos_limits=np.tile(np.array([[-2.0, 2.0]], np.float32), (joints, 1)),
                vel_limits=np.full(joints, 8.0, np.float32))


def _ours(problem: dict[str, Any], args: argparse.Namespace) -> MPPIOptimizer:
    arrays = _problem_arrays(problem['k'], problem['joints'])
    joints = problem['joints']
    settings = MPPISettings(action_low=[-ACTION_LIMIT] * problem['m'], action_high=[ACTION_LIMIT] * problem['m'],
                            num_samples=args.samples, horizon=args.horizon, iterations=1, temperature=TEMPERATURE,
                            control_cost_weight=CONTROL_COST, noise_std=NOISE_STD, seed=args.seed,
                            workers=_workers(args))
    critics = [
        TrackingCritic(arrays['goal'], arrays['state_weights'], weight=W_TRACK),
        EnergyCritic(0.0, weight=W_ENERGY),
        EffortCritic(W_EFFORT, scale=ACTION_LIMIT),
        SmoothnessCritic(W_SMOOTH, scale=ACTION_LIMIT),
        JointLimitsCritic(range(joints), range(joints, 2 * joints), arrays['pos_limits'], arrays['vel_limits'],
                          weight=W_LIMITS, band=BAND),
    ]
    return MPPIOptimizer(settings, BatchedRollout(problem['predict']), critics)


class _TorchMPPI:
    """The same MPPI iteration in eager torch (the baseline)."""

    def __init__(self, torch: Any, problem: dict[str, Any], args: argparse.Namespace) -> None:
        self.t = torch
        self.model = problem['torch_model']
        self.batch, self.horizon, self.m = args.samples, args.horizon, problem['m']
        arrays = _problem_arrays(problem['k'], problem['joints'])
        self.goal = torch.from_numpy(arrays['goal'])
        self.sw = torch.from_numpy(arrays['state_weights'])
        lim = torch.from_numpy(arrays['pos_limits'])
        self.lo, self.hi = lim[:, 0], lim[:, 1]
        width = (self.hi - self.lo) * BAND
        self.soft_lo, self.soft_hi, self.inv_w = self.lo + width, self.hi - width, 1.0 / width
        self.vlim = torch.from_numpy(arrays['vel_limits'])
        self.joints = problem['joints']
        self.time_w = torch.full((self.horizon,), 1.0 / self.horizon)
        self.nominal = torch.zeros(self.horizon, self.m)
        self.prev = torch.zeros(self.m)
        self.gen = torch.Generator().manual_seed(args.seed)

    def iterate(self, z0: Any) -> Any:
        t, batch, horizon = self.t, self.batch, self.horizon
        with t.no_grad():
            self.nominal = t.cat([self.nominal[1:], self.nominal[-1:]])
            eps = t.randn(batch, horizon, self.m, generator=self.gen) * NOISE_STD
            eps[0] = 0.0
            actions = (self.nominal + eps).clamp(-ACTION_LIMIT, ACTION_LIMIT)
            eps = actions - self.nominal
            z_seq, obs, energy = self.model(z0.expand(batch, -1), actions)
            cost = (((obs - self.goal) ** 2) @ self.sw) @ self.time_w * W_TRACK
            cost = cost + (energy ** 2).mean(1) * W_ENERGY
            cost = cost + ((actions / ACTION_LIMIT) ** 2).sum(-1).mean(1) * W_EFFORT
            rate = t.cat([(actions[:, :1] - self.prev), actions.diff(dim=1)], 1) / ACTION_LIMIT
            cost = cost + (rate ** 2).sum(-1).mean(1) * W_SMOOTH
            q, v = obs[..., :self.joints], obs[..., self.joints:].abs()
            soft = (((self.soft_lo - q).clamp(min=0) + (q - self.soft_hi).clamp(min=0)) * self.inv_w) ** 2
            soft_v = ((v - self.vlim * (1 - BAND)).clamp(min=0) / (self.vlim * BAND)) ** 2
            violations = ((q < self.lo) | (q > self.hi)).sum((1, 2)) + (v > self.vlim).sum((1, 2))
            cost = cost + (soft.sum(-1) + soft_v.sum(-1)).mean(1) * W_LIMITS + INFEASIBLE * W_LIMITS * violations
            cost = cost + CONTROL_COST * (eps.reshape(batch, -1) @ (self.nominal / NOISE_STD ** 2).reshape(-1))
            finite = t.isfinite(cost) & t.isfinite(obs.sum((1, 2))) & t.isfinite(energy.sum(1)) \
                & t.isfinite(z_seq.sum((1, 2)))
            cost = t.where(finite, cost, t.full_like(cost, math.inf))
            w = t.softmax(-(cost - cost.min()) / TEMPERATURE, 0)
            self.nominal = (self.nominal + (w @ eps.reshape(batch, -1)).reshape(horizon, self.m)).clamp(
                -ACTION_LIMIT, ACTION_LIMIT)
            self.prev = self.nominal[0].clone()
            return self.prev


# ---------------------------------------------------------------------------------------------- main
def _stats(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {'p50_ms': float(np.percentile(ms, 50)), 'p90_ms': float(np.percentile(ms, 90)),
            'p99_ms': float(np.percentile(ms, 99)), 'mean_ms': float(ms.mean())}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the comparison and return the figures."""
    os.environ.setdefault('OMP_NUM_THREADS', str(args.threads))
    # Idle OpenMP workers sleep instead of spinning, as onnxruntime's do here (allow_spinning 0): on shared cores a
    # spinning partner thread makes every parallel op wait for a descheduled peer. Effective only if torch is not
    # imported yet in this process.
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    load_before = os.getloadavg()[0]
    import torch
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix='hamwm-bench-mpc-') as tmp:
        problem = _load_problem(args, torch, Path(tmp))
        ours = _ours(problem, args)
        base = _TorchMPPI(torch, problem, args)
        z0 = np.linspace(-0.5, 0.5, problem['n']).astype(np.float32)
        z0_t = torch.from_numpy(z0)[None]

        # Same model on both sides: check the rollouts agree before timing anything.
        probe = np.random.default_rng(args.seed).uniform(-1, 1, (args.samples, args.horizon, problem['m']))
        probe = probe.astype(np.float32)
        mine = ours.rollout_fn(z0, probe)
        with torch.no_grad():
            theirs = problem['torch_model'](z0_t.expand(args.samples, -1), torch.from_numpy(probe))
        agreement = max(float(np.max(np.abs(a - b.numpy()))) for a, b in zip(mine, theirs))

        rollout_time: list[float] = []
        inner = ours.rollout_fn

        def timed_rollout(z: np.ndarray, actions: np.ndarray) -> Any:
            start = time.perf_counter()
            out = inner(z, actions)
            rollout_time.append(time.perf_counter() - start)
            return out

        ours.rollout_fn = timed_rollout
        t_ours, t_base, c_ours, c_base, valid = [], [], [], [], 0
        clock, cpu = time.perf_counter, time.process_time
        began = clock()
        for i in range(args.warmup + args.iterations):
            if len(t_ours) >= 10 and clock() - began > args.max_seconds:
                break  # a loaded machine: report what was measured rather than run for ever
            start, cpu_start = clock(), cpu()
            result = ours.plan(z0)
            mid, cpu_mid = clock(), cpu()
            base.iterate(z0_t)
            end, cpu_end = clock(), cpu()
            if i >= args.warmup:
                t_ours.append(mid - start)
                t_base.append(end - mid)
                c_ours.append(cpu_mid - cpu_start)
                c_base.append(cpu_end - cpu_mid)
                valid += int(result.valid)
        ours.close()
    ours_stats, base_stats = _stats(t_ours), _stats(t_base)
    # CPU time (all threads of this process) is robust to other processes' load; with one thread it approximates the
    # wall time on a dedicated core. process_time ticks coarsely on some systems, so it is a median of many.
    ours_stats['cpu_p50_ms'] = float(np.median(c_ours) * 1e3)
    base_stats['cpu_p50_ms'] = float(np.median(c_base) * 1e3)
    # One rollout call per worker chunk per iteration (concurrent calls with several workers).
    chunk_calls = rollout_time[args.warmup * _workers(args):]
    ours_stats['rollout_p50_ms'] = float(np.percentile(np.asarray(chunk_calls) * 1e3, 50))
    throughput = {}
    if problem.get('predictor_path') is not None and args.gflops:
        # Achieved GFLOP/s of one iteration (the predictor's matmul/elementwise FLOPs; the numpy critics are not
        # counted) against the float32 peak measured here, as `hamwm bench predictor` does.
        from hamwm_ros.bench.predictor import _peak_gflops, count_flops

        calls = math.ceil(args.horizon / problem['export_horizon'])
        flops = calls * count_flops(problem['predictor_path'], args.samples)
        peak = _peak_gflops(args.threads, 3)
        best = max(peak['torch_matmul_gflops'], peak['ort_matmul_gflops'])
        throughput = {'gflop_per_iteration': flops / 1e9,
                      'iteration_gflops': flops / 1e9 / (ours_stats['p50_ms'] * 1e-3),
                      'peak_gflops': best, 'fraction_of_peak': flops / 1e9 / (ours_stats['p50_ms'] * 1e-3) / best}
    return {
        'throughput': throughput,
        'benchmark': 'mpc.optimizer', 'samples': args.samples, 'horizon': args.horizon, 'threads': args.threads,
        'workers': _workers(args), 'ort_intra_op_threads': _ort_threads(args),
        'iterations': len(t_ours), 'model': problem['name'], 'robot': problem['robot'],
        'p50_target_ms': P50_TARGET_MS if (problem['robot'], args.samples, args.horizon) == P50_TARGET_CASE else None,
        'rollout_max_abs_diff': agreement,
        'ours': ours_stats, 'eager_torch': base_stats, 'valid_fraction': valid / max(len(t_ours), 1),
        'speedup_p50': base_stats['p50_ms'] / ours_stats['p50_ms'], 'cpu_count': os.cpu_count(),
        'torch': torch.__version__, 'onnxruntime': __import__('onnxruntime').__version__,
        'load_average_1min': [load_before, os.getloadavg()[0]],
    }


def main(argv: list[str]) -> int:
    """Entry point of ``hamwm bench mpc``."""
    args = _parser().parse_args(argv)
    for name in ('samples', 'horizon', 'iterations', 'threads', 'workers'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            print(f'hamwm bench mpc: --{name} must be >= 1')
            return 2
    fig: dict[str, Any] = {}
    if not args.loop_only:
        fig = run(args)
        _print_iteration(fig)
    if args.loop_seconds > 0:
        from hamwm_ros.bench.mpc_loop import print_loop, run_loop
        from hamwm_ros.rosdomain import private_domain

        private_domain()   # a second graph on the same domain would feed mpc_node foreign joint states

        fig['loop'] = run_loop(args.loop_seconds, args.control_rate, args.loop_model_dir, args.loop_samples,
                               extra=args.mpc_param, rt_priority=args.rt_priority)
        print_loop(fig['loop'])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(fig, indent=2))
        print(f'wrote {args.json}')
    return 0


def p50_verdict(fig: dict[str, Any]) -> str:
    """The iteration-time target's verdict for a figure of `run`, or where the target applies when it does not here."""
    target = fig.get('p50_target_ms')
    if target is None:
        robot, samples, horizon = P50_TARGET_CASE
        return f"the {P50_TARGET_MS:g} ms target is the {robot} model's at {samples} x {horizon}"
    return f"target <= {target:g} ms: {'met' if fig['ours']['p50_ms'] <= target else 'NOT met'}"


def _print_iteration(fig: dict[str, Any]) -> None:
    o, b = fig['ours'], fig['eager_torch']
    print(f"MPPI iteration, {fig['samples']} samples x {fig['horizon']} steps, CPU, {fig['threads']} threads "
          f"(os.cpu_count {fig['cpu_count']}), {fig['iterations']} timed iterations, interleaved")
    print(f"ours: {fig['workers']} MPPI worker(s) x {fig['ort_intra_op_threads']} onnxruntime intra-op thread(s); "
          f"eager torch: {fig['threads']} intra-op thread(s)")
    print(f"model: {fig['model']}; onnxruntime vs torch rollout max |diff| {fig['rollout_max_abs_diff']:.1e}")
    load = fig['load_average_1min']
    print(f'1-min load average before/after: {load[0]:.1f}/{load[1]:.1f} on {fig["cpu_count"]} cores (other processes '
          'share them: eager torch with >1 thread degrades most under load)')
    print(f"{'implementation':<44} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'CPU p50 ms':>11}")
    print(f"{'hamwm_ros.mpc (onnxruntime + numpy)':<44} {o['p50_ms']:8.2f} {o['p90_ms']:8.2f} {o['p99_ms']:8.2f} "
          f"{o['cpu_p50_ms']:11.2f}   (rollout call p50 {o['rollout_p50_ms']:.2f}"
          f"{', per worker chunk' if fig['workers'] > 1 else ''})")
    print(f"{'same algorithm, eager torch ' + fig['torch']:<44} {b['p50_ms']:8.2f} {b['p90_ms']:8.2f} "
          f"{b['p99_ms']:8.2f} {b['cpu_p50_ms']:11.2f}")
    fig['speedup_cpu_p50'] = b['cpu_p50_ms'] / max(o['cpu_p50_ms'], 1e-9)
    ratio_ok = fig['speedup_p50'] >= 3.0
    print(f"speed-up (p50): {fig['speedup_p50']:.2f}x [target >= 3x: {'met' if ratio_ok else 'NOT met'}]; "
          f"p50 {o['p50_ms']:.2f} ms [{p50_verdict(fig)}]; "
          f"CPU-time ratio {fig['speedup_cpu_p50']:.2f}x; valid plans {100 * fig['valid_fraction']:.0f}%")
    t = fig.get('throughput') or {}
    if t:
        print(f"achieved {t['iteration_gflops']:.2f} GFLOP/s over the whole iteration ({t['gflop_per_iteration']:.3f} "
              f"GFLOP of predictor work) = {100 * t['fraction_of_peak']:.1f}% of the measured float32 peak "
              f"{t['peak_gflops']:.1f} GFLOP/s")
