"""``hamwm bench predictor``: onnxruntime rollout throughput against the same model in eager torch, in one run.

For each shipped model (default: cartpole and humanoid):

* state-steps/s of a ``batch x horizon`` rollout (default 1024 x 32, what MPPI asks for) through the runtime
  (``WorldModelRuntime.rollout``, IO-bound preallocated buffers) and through the eager torch model it was exported
  from (``predictor_graph``: the module that was exported, run eagerly), with the same thread count; medians and
  the ratio; and the exported graph's node count per step;
* per-call latency at batch 1 for both;
* achieved GFLOP/s of the onnxruntime rollout, with the FLOPs counted from the exported graph (onnx shape inference
  at the benchmark batch: 2 K per MatMul output element, 1 per elementwise or reduced element), beside the machine's
  measured float32 peak: a 2048^3 matmul in torch and in onnxruntime at the same thread count, in the same run;
* for the first model, a sweep of onnxruntime session options (optimisation level, threads, memory reuse) so the
  chosen defaults are justified by numbers from the same machine.

With ``--providers cuda`` or ``tensorrt`` (where a GPU is present) it also times a 4096 x 64 rollout.
Results are printed as a table and written as JSON (``--json``, default ``reports/bench_predictor.json``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import json
from pathlib import Path
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from hamwm_ros.cli import HelpFormatter
from hamwm_ros.runtime import SessionConfig, WorldModelRuntime

ELEMENTWISE = {'Add', 'Sub', 'Mul', 'Div', 'Neg', 'Tanh', 'Sigmoid', 'Softplus', 'Exp', 'Log', 'Sqrt', 'Pow', 'Clip',
               'Relu', 'Abs', 'Max', 'Min', 'Reciprocal', 'Where', 'Erf'}
REDUCTIONS = {'ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceSumSquare'}


def _median_seconds(fn: Callable[[], Any], repeats: int, min_time: float = 0.0) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls (after one untimed call), at least ``min_time`` in all."""
    fn()
    times = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 20 * repeats:
            break
    return statistics.median(times)


def _node_shapes(model, batch: int, nodes) -> dict[str, tuple[int, ...]]:
    """Run the graph once at ``batch`` with the operands of ``nodes`` exposed as outputs; their shapes by name."""
    import onnx
    from onnx import helper
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    present = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    wanted = []
    for node in nodes:
        for name in (*node.input[:1], *node.output[:1]):
            if name and name not in present and name in types:
                present.add(name)
                wanted.append(name)
    model.graph.output.extend(helper.make_tensor_value_info(n, types[n], None) for n in wanted)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node as exported
    options.enable_mem_reuse = False
    session = ort.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])
    feeds = {}
    for value in session.get_inputs():
        shape = [batch if not isinstance(d, int) else d for d in value.shape]
        feeds[value.name] = np.zeros(shape, np.uint8 if 'uint8' in value.type else np.float32)
    names = [o.name for o in session.get_outputs()]
    shapes = {n: tuple(a.shape) for n, a in zip(names, session.run(names, feeds))}
    shapes.update({n: tuple(a.shape) for n, a in feeds.items()})
    shapes.update({i.name: tuple(i.dims) for i in model.graph.initializer})
    return shapes


def count_flops(predictor_path: Path, batch: int) -> float:
    """Floating-point operations of one predictor call at ``batch``, counted on the exported graph.

    2 K per MatMul/Gemm output element, 1 per elementwise output element, 1 per reduced input element. Operand
    shapes are measured by running the graph at batch 1 and 2 (the count is affine in the batch size: per-sample
    work plus per-call work such as building the constant mass matrix), then extrapolated to ``batch``.
    """
    import onnx

    model = onnx.load(str(predictor_path))
    nodes = [n for n in model.graph.node if n.op_type in ('MatMul', 'Gemm') or n.op_type in ELEMENTWISE
             or n.op_type in REDUCTIONS]

    def total(b: int) -> float:
        shapes = _node_shapes(model, b, nodes)
        flops = 0.0
        for node in nodes:
            out, src = shapes.get(node.output[0]), shapes.get(node.input[0])
            if node.op_type in ('MatMul', 'Gemm') and out is not None and src is not None:
                transposed = any(a.name == 'transA' and a.i for a in node.attribute)
                flops += 2.0 * float(np.prod(out)) * (src[0] if transposed else src[-1])
            elif node.op_type in ELEMENTWISE and out is not None:
                flops += float(np.prod(out))
            elif node.op_type in REDUCTIONS and src is not None:
                flops += float(np.prod(src))
        return flops

    one, two = total(1), total(2)
    return one + (batch - 1) * (two - one)


def graph_ops(predictor_path: Path, horizon: int) -> dict[str, float]:
    """Executed nodes of the exported predictor (``Constant`` nodes excluded) and GEMMs, in all and per step."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(predictor_path)).graph.node if n.op_type != 'Constant']
    gemms = sum(op in ('MatMul', 'Gemm') for op in ops)
    return {'graph_nodes': len(ops), 'nodes_per_step': len(ops) / horizon, 'gemms_per_step': gemms / horizon}


def _peak_gflops(threads: int, repeats: int, n: int = 2048) -> dict[str, float]:
    """float32 n x n x n matmul GFLOP/s in torch and in onnxruntime at ``threads`` threads."""
    from onnx import TensorProto, helper
    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    flops = 2.0 * n ** 3
    t_torch = _median_seconds(lambda: torch.matmul(a, b), repeats)
    graph = helper.make_graph([helper.make_node('MatMul', ['a', 'b'], ['c'])], 'mm',
                              [helper.make_tensor_value_info('a', TensorProto.FLOAT, [n, n]),
                               helper.make_tensor_value_info('b', TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info('c', TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(model.SerializeToString(), options, providers=['CPUExecutionProvider'])
    feeds = {'a': a.numpy(), 'b': b.numpy()}
    t_ort = _median_seconds(lambda: session.run(None, feeds), repeats)
    return {'torch_matmul_gflops': flops / t_torch / 1e9, 'ort_matmul_gflops': flops / t_ort / 1e9, 'n': n}


def _inputs(runtime: WorldModelRuntime, batch: int, horizon: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    meta = runtime.metadata
    rng = np.random.default_rng(seed)
    n = len(meta.joint_names)
    mean, std = np.asarray(meta.normalisation['obs_mean']), np.asarray(meta.normalisation['obs_std'])
    obs = (mean + std * rng.normal(size=(batch, meta.obs_dim))).astype(np.float32)
    frames = None
    if meta.images is not None:
        i = meta.images
        frames = rng.integers(0, 256, (batch, i.frames, i.height, i.width, i.channels), dtype=np.uint8)
    z = runtime.encode(obs[:, :n], obs[:, n:], frames)
    actions = (rng.normal(size=(batch, horizon, meta.action_dim)) * np.asarray(meta.normalisation['action_std'])
               ).astype(np.float32)
    return z, actions


def bench_model(model_dir: Path, *, batch: int, horizon: int, threads: int, repeats: int,
                providers: Sequence[str], torch_baseline: bool = True) -> dict[str, Any]:
    """Time one model through onnxruntime and eager torch; see the module docstring."""
    config = SessionConfig(providers=tuple(providers), intra_op_threads=threads, warmup_batch=(1, batch))
    t0 = time.perf_counter()
    runtime = WorldModelRuntime.load(model_dir, config=config)
    load_s = time.perf_counter() - t0
    z, actions = _inputs(runtime, batch, horizon)
    t_ort = _median_seconds(lambda: runtime.rollout(z, actions, copy=False), repeats, min_time=0.5)
    z1, a1 = z[..., :1, :], actions[:1]
    t_ort1 = _median_seconds(lambda: runtime.rollout(z1, a1, copy=False), repeats * 5, min_time=0.5)
    result: dict[str, Any] = {
        'model': model_dir.name, 'providers': list(runtime.providers), 'batch': batch, 'horizon': horizon,
        'threads': threads, 'load_s': load_s, 'ort_rollout_ms': t_ort * 1e3,
        'ort_state_steps_per_s': batch * horizon / t_ort, 'ort_batch1_ms': t_ort1 * 1e3,
    }
    result.update(graph_ops(model_dir / runtime.metadata.files['predictor'].path, runtime.horizon))
    flops = None
    if horizon == runtime.horizon:
        flops = count_flops(model_dir / runtime.metadata.files['predictor'].path, batch)
        result['gflop_per_call'] = flops / 1e9
        result['ort_gflops'] = flops / t_ort / 1e9
    if torch_baseline and (model_dir / 'model.pt').is_file():
        import torch

        from hamwm_ros.worldmodel.export import predictor_graph
        from hamwm_ros.worldmodel.model import HamiltonianWorldModel

        torch.set_num_threads(threads)
        # the very module that was exported (lean or generic), run eagerly: the same algorithm on both sides
        graph = predictor_graph(HamiltonianWorldModel.load(model_dir).eval())
        zt, at = torch.from_numpy(np.ascontiguousarray(z)), torch.from_numpy(actions)
        with torch.inference_mode():
            t_torch = _median_seconds(lambda: graph(zt, at), max(3, repeats // 2))
            t_torch1 = _median_seconds(lambda: graph(zt[..., :1, :], at[:1]), repeats, min_time=0.5)
            reference = graph(zt, at)[2].numpy()
        check = runtime.rollout(z, actions).energy
        result.update({
            'torch_rollout_ms': t_torch * 1e3, 'torch_state_steps_per_s': batch * horizon / t_torch,
            'torch_batch1_ms': t_torch1 * 1e3, 'speedup': t_torch / t_ort, 'speedup_batch1': t_torch1 / t_ort1,
            'energy_rel_diff': float(np.max(np.abs(check - reference)) / max(np.max(np.abs(reference)), 1e-12)),
        })
        if flops is not None:
            result['torch_gflops'] = flops / t_torch / 1e9
    return result


def sweep_options(model_dir: Path, batch: int, horizon: int, repeats: int, max_threads: int) -> list[dict[str, Any]]:
    """1024 x 32 rollout time under several onnxruntime session settings, CPU provider."""
    rows = []
    settings = [dict(optimization=level, intra_op_threads=max_threads) for level in ('disable', 'basic', 'all')]
    settings += [dict(optimization='all', intra_op_threads=1), dict(optimization='all', intra_op_threads=max_threads,
                                                                     memory_reuse=True)]
    for kw in settings:
        t0 = time.perf_counter()
        runtime = WorldModelRuntime.load(model_dir, config=SessionConfig(providers=('cpu',), warmup_batch=(batch,),
                                                                         **kw))
        load_s = time.perf_counter() - t0
        z, actions = _inputs(runtime, batch, horizon)
        t = _median_seconds(lambda rt=runtime, z=z, a=actions: rt.rollout(z, a, copy=False), repeats, min_time=0.5)
        rows.append({**kw, 'load_s': load_s, 'rollout_ms': t * 1e3})
    return rows


def _fmt_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':<16}{'ORT ms':>9}{'torch ms':>10}{'ratio':>7}{'ORT Msteps/s':>14}{'torch Msteps/s':>16}"
            f"{'ORT b1 ms':>11}{'torch b1 ms':>13}{'GFLOP/s':>9}{'nodes/step':>12}")
    lines = [head, '-' * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<16}{r['ort_rollout_ms']:>9.2f}{r.get('torch_rollout_ms', float('nan')):>10.2f}"
                     f"{r.get('speedup', float('nan')):>7.1f}{r['ort_state_steps_per_s'] / 1e6:>14.2f}"
                     f"{r.get('torch_state_steps_per_s', float('nan')) / 1e6:>16.2f}{r['ort_batch1_ms']:>11.3f}"
                     f"{r.get('torch_batch1_ms', float('nan')):>13.3f}{r.get('ort_gflops', float('nan')):>9.2f}"
                     f"{r.get('nodes_per_step', float('nan')):>12.1f}")
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns 0, or 1 when no model could be benchmarked."""
    parser = argparse.ArgumentParser(prog='hamwm bench predictor', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--models', type=Path, default=Path('models'), help='shipped models root')
    parser.add_argument('--robots', nargs='+', default=['cartpole', 'humanoid'], help='model directory names')
    parser.add_argument('--batch', type=int, default=1024, help='rollouts per predictor call')
    parser.add_argument('--horizon', type=int, default=32, help='steps per rollout')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op and torch threads')
    parser.add_argument('--repeats', type=int, default=15, help='timed calls per figure (medians)')
    parser.add_argument('--providers', nargs='+', default=['cpu'], choices=['tensorrt', 'cuda', 'cpu'],
                        help='onnxruntime providers to time (cuda/tensorrt also time a 4096 x 64 rollout)')
    parser.add_argument('--no-sweep', action='store_true', help='skip the session-option sweep')
    parser.add_argument('--json', type=Path, default=Path('reports/bench_predictor.json'),
                        help='where the figures are written')
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    rows = []
    for name in args.robots:
        model_dir = args.models / name
        if not (model_dir / 'metadata.json').is_file():
            print(f'skipping {name}: no model at {model_dir} (run `hamwm models`)', file=sys.stderr)
            continue
        rows.append(bench_model(model_dir, batch=args.batch, horizon=args.horizon, threads=args.threads,
                                repeats=args.repeats, providers=args.providers))
        on_gpu = rows[-1]['providers'][0] != 'CPUExecutionProvider'
        if on_gpu:
            gpu = bench_model(model_dir, batch=4096, horizon=64, threads=args.threads, repeats=args.repeats,
                              providers=args.providers, torch_baseline=False)
            rows[-1]['gpu_4096x64_ms'] = gpu['ort_rollout_ms']
    if not rows:
        print('hamwm bench predictor: no models to benchmark', file=sys.stderr)
        return 1
    peak = _peak_gflops(args.threads, 5)
    sweep = [] if args.no_sweep else sweep_options(args.models / rows[0]['model'], args.batch, args.horizon,
                                                   max(5, args.repeats // 3), args.threads)
    print(f'predictor rollout {args.batch} x {args.horizon}, {args.threads} threads, providers {rows[0]["providers"]}'
          f' ({platform.processor() or platform.machine()})')
    print(_fmt_table(rows))
    print(f"float32 peak ({peak['n']}^3 matmul): torch {peak['torch_matmul_gflops']:.1f} GFLOP/s, onnxruntime "
          f"{peak['ort_matmul_gflops']:.1f} GFLOP/s")
    for r in rows:
        if 'ort_gflops' in r:
            best = max(peak['torch_matmul_gflops'], peak['ort_matmul_gflops'])
            print(f"{r['model']}: {r['gflop_per_call']:.3f} GFLOP per call, onnxruntime {r['ort_gflops']:.2f} GFLOP/s "
                  f"= {100 * r['ort_gflops'] / best:.1f}% of the measured peak (torch eager "
                  f"{r.get('torch_gflops', float('nan')):.2f} GFLOP/s)")
        if 'gpu_4096x64_ms' in r:
            print(f"{r['model']}: 4096 x 64 on {r['providers'][0]}: {r['gpu_4096x64_ms']:.2f} ms")
    if sweep:
        print(f'\nonnxruntime session options ({rows[0]["model"]}, {args.batch} x {args.horizon}, CPU):')
        for s in sweep:
            print(f"  optimization={s['optimization']:<8} threads={s['intra_op_threads']} "
                  f"memory_reuse={s.get('memory_reuse', False)!s:<5}  load {s['load_s']:6.2f} s  "
                  f"rollout {s['rollout_ms']:8.2f} ms")
    report = {'rows': rows, 'peak': peak, 'sweep': sweep, 'argv': list(argv or []), 'machine': platform.platform()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + '\n')
    print(f'\nwritten {args.json}')
    return 0
