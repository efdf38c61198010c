"""A linear port-Hamiltonian reference model, written as a runtime model directory.

For joints with inertia M, stiffness K, damping D and input map B, the latent state is z = (q, p) with p = M v and

    H(z) = 1/2 q^T K q + 1/2 p^T M^-1 p,      dz/dt = (J - R) dH/dz + G u,

J the canonical symplectic matrix, R = diag(0, D) and G = (0, B). Its exact zero-order-hold discretisation (matrix
exponential) is unrolled into ``predictor.onnx`` exactly like exported models; ``encoder.onnx`` maps (q, v) to (q, M v).
Because the answer is known in closed form, this model is what the validity monitor and ``world_model_node`` are
checked against: with the true parameters it is consistent with the system it describes, with wrong ones (or negative
damping, which creates energy) it is not. It also serves as a linearised stand-in model for a robot near rest
(for the shipped pendulum, q = 0 hanging down: M = m l^2, K = m g l).

Needs the ``onnx`` package (development and tests); nothing on a robot imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
from pathlib import Path

import numpy as np

from hamwm_ros.mpc.lqr import discretise
from hamwm_ros.runtime.metadata import METADATA_FILE, ModelMetadata, expected_signatures, sha256_file

OPSET = 17


def linear_system(mass: Sequence[float], stiffness: Sequence[float], damping: Sequence[float],
                  input_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous-time (F, G, Q): dz/dt = F z + G u with F = (J - R) Q, and H = 1/2 z^T Q z.

    Raises
    ------
    ValueError
        If sizes disagree, a mass is not positive, or a stiffness is negative.
    """
    m, k, d = (np.asarray(x, np.float64).reshape(-1) for x in (mass, stiffness, damping))
    n = m.size
    b = np.asarray(input_map, np.float64).reshape(n, -1)
    if k.size != n or d.size != n:
        raise ValueError('mass, stiffness and damping must have one entry per joint')
    if np.any(m <= 0) or np.any(k < 0):
        raise ValueError('mass must be positive and stiffness non-negative')
    eye, zero = np.eye(n), np.zeros((n, n))
    j = np.block([[zero, eye], [-eye, zero]])
    r = np.block([[zero, zero], [zero, np.diag(d)]])
    q = np.block([[np.diag(k), zero], [zero, np.diag(1.0 / m)]])
    g = np.vstack([np.zeros_like(b), b])
    return (j - r) @ q, g, q


def write_linear_model(out_dir: str | Path, joint_names: Sequence[str], *, mass: Sequence[float],
                       stiffness: Sequence[float], damping: Sequence[float], input_map: np.ndarray | None = None,
                       dt: float = 0.01, horizon: int = 16, robot: str = 'linear',
                       obs_std: Sequence[float] | None = None) -> ModelMetadata:
    """Write ``encoder.onnx``, ``predictor.onnx`` and ``metadata.json`` of the linear model into ``out_dir``.

    Parameters
    ----------
    out_dir
        Created if needed.
    joint_names
        Joint order (positions then velocities).
    mass, stiffness, damping
        Per joint; negative damping makes a model that creates energy.
    input_map
        (joints, action_dim); identity (one effort per joint) when None.
    dt, horizon
        Model step and the steps unrolled in the predictor graph.
    robot
        Name recorded in the metadata.
    obs_std
        (2 joints,) normalisation scales recorded in the metadata (ones when None).

    Raises
    ------
    ValueError
        On inconsistent sizes or values.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = list(joint_names)
    n = len(names)
    b = np.eye(n) if input_map is None else np.asarray(input_map, np.float64).reshape(n, -1)
    action_dim = b.shape[1]
    f, g, q = linear_system(mass, stiffness, damping, b)
    ad, bd = discretise(f, g, dt)
    m = np.asarray(mass, np.float64).reshape(-1)
    encode = np.block([[np.eye(n), np.zeros((n, n))], [np.zeros((n, n)), np.diag(m)]])   # row vectors: z = x E
    decode = np.linalg.inv(encode)
    root = np.sqrt(q)     # Q is diagonal here, so S = sqrt(Q) gives Q = S S^T
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f32 = np.float32

    def tensor(name: str, value: np.ndarray):
        return numpy_helper.from_array(np.asarray(value, f32), name)

    encoder = helper.make_graph(
        [helper.make_node('MatMul', ['obs', 'E'], ['z'])], 'encoder',
        [helper.make_tensor_value_info('obs', TensorProto.FLOAT, ['batch', 2 * n])],
        [helper.make_tensor_value_info('z', TensorProto.FLOAT, ['batch', 2 * n])],
        [tensor('E', encode)])
    nodes = []
    inits = [tensor('At', ad.T), tensor('Bt', bd.T), tensor('C', decode), tensor('S', root),
             numpy_helper.from_array(np.array([1], np.int64), 'axis1'),
             numpy_helper.from_array(np.array([-1], np.int64), 'axis_last'),
             numpy_helper.from_array(np.array(0.5, f32), 'half')]
    previous, steps = 'z', []
    for k in range(horizon):
        inits.append(numpy_helper.from_array(np.array(k, np.int64), f'k{k}'))
        nodes += [
            helper.make_node('Gather', ['actions', f'k{k}'], [f'u{k}'], axis=1),
            helper.make_node('MatMul', [previous, 'At'], [f'za{k}']),
            helper.make_node('MatMul', [f'u{k}', 'Bt'], [f'zb{k}']),
            helper.make_node('Add', [f'za{k}', f'zb{k}'], [f'z{k}']),
            helper.make_node('Unsqueeze', [f'z{k}', 'axis1'], [f'zu{k}']),
        ]
        previous = f'z{k}'
        steps.append(f'zu{k}')
    nodes += [
        helper.make_node('Concat', steps, ['z_seq'], axis=1),
        helper.make_node('MatMul', ['z_seq', 'C'], ['obs_seq']),
        helper.make_node('MatMul', ['z_seq', 'S'], ['zs']),      # H = 1/2 |z S|^2 with Q = S S^T
        helper.make_node('Mul', ['zs', 'zs'], ['sq']),
        helper.make_node('ReduceSum', ['sq', 'axis_last'], ['twice'], keepdims=0),
        helper.make_node('Mul', ['twice', 'half'], ['energy']),
    ]
    predictor = helper.make_graph(
        nodes, 'predictor',
        [helper.make_tensor_value_info('z', TensorProto.FLOAT, ['batch', 2 * n]),
         helper.make_tensor_value_info('actions', TensorProto.FLOAT, ['batch', horizon, action_dim])],
        [helper.make_tensor_value_info('z_seq', TensorProto.FLOAT, ['batch', horizon, 2 * n]),
         helper.make_tensor_value_info('obs_seq', TensorProto.FLOAT, ['batch', horizon, 2 * n]),
         helper.make_tensor_value_info('energy', TensorProto.FLOAT, ['batch', horizon])],
        inits)
    for name, graph in (('encoder', encoder), ('predictor', predictor)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)], ir_version=8)
        onnx.checker.check_model(model)
        onnx.save(model, out / f'{name}.onnx')
    signatures = expected_signatures(2 * n, 2 * n, action_dim, horizon, 1, True, None)
    files = {role: {'path': f'{role}.onnx', 'sha256': sha256_file(out / f'{role}.onnx'),
                    'inputs': [t.to_dict() for t in signatures[role][0]],
                    'outputs': [t.to_dict() for t in signatures[role][1]]} for role in ('encoder', 'predictor')}
    std = [1.0] * (2 * n) if obs_std is None else [float(s) for s in obs_std]
    parameters = {'mass': m.tolist(), 'stiffness': list(map(float, stiffness)), 'damping': list(map(float, damping)),
                  'input_map': b.tolist()}
    data = {
        'schema': 'hamwm_ros/model-metadata', 'schema_version': 1, 'robot': robot, 'joint_names': names,
        'dt': float(dt), 'observation': {'layout': ['position', 'velocity'], 'dim': 2 * n, 'joints': True,
                                         'images': None},
        'latent_dim': 2 * n, 'action_dim': action_dim, 'horizon': int(horizon), 'ensemble': 1, 'opset': OPSET,
        'normalisation': {'obs_mean': [0.0] * (2 * n), 'obs_std': std, 'action_mean': [0.0] * action_dim,
                          'action_std': [1.0] * action_dim},
        'training': {'data_hash': 'analytic:linear-port-hamiltonian', 'parameters': parameters},
        'metrics': {}, 'files': files,
        'producer': {'tool': 'hamwm_ros.monitor.reference', 'kind': 'linear port-Hamiltonian, exact ZOH'},
    }
    meta = ModelMetadata.from_dict(data)
    (out / METADATA_FILE).write_text(json.dumps(data, indent=1) + '\n')
    return meta


class LinearSystem:
    """The same linear system simulated exactly in numpy (the "robot" a reference model is checked against).

    Parameters mirror :func:`write_linear_model`.
    """

    def __init__(self, mass: Sequence[float], stiffness: Sequence[float], damping: Sequence[float],
                 input_map: np.ndarray | None = None) -> None:
        m = np.asarray(mass, np.float64).reshape(-1)
        n = m.size
        b = np.eye(n) if input_map is None else np.asarray(input_map, np.float64).reshape(n, -1)
        self.n = n
        self.mass = m
        self.f, self.g, self.q = linear_system(mass, stiffness, damping, b)

    def to_latent(self, position: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """Latent state (q, M v) of a joint state."""
        return np.concatenate([position, self.mass * velocity])

    def to_state(self, z: np.ndarray) -> np.ndarray:
        """(q, v) from z."""
        return np.concatenate([z[:self.n], z[self.n:] / self.mass])

    def energy(self, z: np.ndarray) -> float:
        """H(z)."""
        return float(0.5 * z @ self.q @ z)

    def step(self, z: np.ndarray, u: np.ndarray, dt: float) -> np.ndarray:
        """Exact state after ``dt`` with ``u`` held."""
        ad, bd = discretise(self.f, self.g, dt)
        return ad @ z + bd @ np.asarray(u, np.float64).reshape(-1)
