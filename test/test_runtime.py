"""Runtime: metadata validation, the onnxruntime wrapper and the facade, on small graphs built with onnx.helper.

The graphs follow the runtime contract (see hamwm_ros/runtime/metadata.py) with a linear latent model, so expected
outputs are computed here in numpy. Real onnxruntime sessions throughout; no torch in this file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
import subprocess
import sys
import threading

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import pytest

from hamwm_ros.runtime import (
    MetadataError,
    ModelLoadError,
    ModelMetadata,
    OrtSession,
    SessionConfig,
    WorldModelRuntime,
    load_metadata,
    sha256_file,
)
from hamwm_ros.runtime.metadata import expected_signatures

ROOT = Path(__file__).resolve().parent.parent
JOINTS = ('slider', 'hinge')
OBS, LATENT, ACT, HORIZON = 4, 6, 2, 3
CPU = SessionConfig(providers=('cpu',), intra_op_threads=1, warmup_batch=(1, 5))


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        'We': rng.normal(size=(OBS, LATENT)).astype(np.float32),
        'A': (np.eye(LATENT) + 0.05 * rng.normal(size=(LATENT, LATENT))).astype(np.float32),
        'Bm': rng.normal(size=(ACT, LATENT)).astype(np.float32),
        'C': rng.normal(size=(LATENT, OBS)).astype(np.float32),
    }


def _reference(w: dict[str, np.ndarray], obs: np.ndarray, actions: np.ndarray):
    z = obs @ w['We']
    zs = []
    for k in range(actions.shape[1]):
        z = z @ w['A'] + actions[:, k] @ w['Bm']
        zs.append(z)
    z_seq = np.stack(zs, 1)
    return obs @ w['We'], z_seq, z_seq @ w['C'], (z_seq ** 2).sum(-1)


def _encoder_graph(w, obs_dtype=TensorProto.FLOAT, obs_dim=OBS, out_name='z') -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['obs', 'We'], [out_name])], 'encoder',
        [helper.make_tensor_value_info('obs', obs_dtype, ['batch', obs_dim])],
        [helper.make_tensor_value_info(out_name, obs_dtype, ['batch', LATENT])],
        [numpy_helper.from_array(w['We'].astype(helper.tensor_dtype_to_np_dtype(obs_dtype)), 'We')])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)


def _predictor_graph(w, horizon=HORIZON) -> onnx.ModelProto:
    nodes, inits = [], [numpy_helper.from_array(w[k], k) for k in ('A', 'Bm', 'C')]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), 'axis1'))
    prev, steps = 'z', []
    for k in range(horizon):
        inits.append(numpy_helper.from_array(np.array(k, np.int64), f'k{k}'))
        nodes += [
            helper.make_node('Gather', ['actions', f'k{k}'], [f'u{k}'], axis=1),
            helper.make_node('MatMul', [prev, 'A'], [f'za{k}']),
            helper.make_node('MatMul', [f'u{k}', 'Bm'], [f'zb{k}']),
            helper.make_node('Add', [f'za{k}', f'zb{k}'], [f'z{k}']),
            helper.make_node('Unsqueeze', [f'z{k}', 'axis1'], [f'zu{k}']),
        ]
        prev = f'z{k}'
        steps.append(f'zu{k}')
    nodes += [
        helper.make_node('Concat', steps, ['z_seq'], axis=1),
        helper.make_node('MatMul', ['z_seq', 'C'], ['obs_seq']),
        helper.make_node('Mul', ['z_seq', 'z_seq'], ['sq']),
        helper.make_node('ReduceSum', ['sq', 'axis_last'], ['energy'], keepdims=0),
    ]
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), 'axis_last'))
    graph = helper.make_graph(
        nodes, 'predictor',
        [helper.make_tensor_value_info('z', TensorProto.FLOAT, ['batch', LATENT]),
         helper.make_tensor_value_info('actions', TensorProto.FLOAT, ['batch', horizon, ACT])],
        [helper.make_tensor_value_info('z_seq', TensorProto.FLOAT, ['batch', horizon, LATENT]),
         helper.make_tensor_value_info('obs_seq', TensorProto.FLOAT, ['batch', horizon, OBS]),
         helper.make_tensor_value_info('energy', TensorProto.FLOAT, ['batch', horizon])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)


def _metadata_dict(directory: Path) -> dict:
    sigs = expected_signatures(OBS, LATENT, ACT, HORIZON, 1, True, None)
    files = {}
    for role in ('encoder', 'predictor'):
        inputs, outputs = sigs[role]
        files[role] = {'path': f'{role}.onnx', 'sha256': sha256_file(directory / f'{role}.onnx'),
                       'inputs': [t.to_dict() for t in inputs], 'outputs': [t.to_dict() for t in outputs]}
    return {
        'schema': 'hamwm_ros/model-metadata', 'schema_version': 1, 'robot': 'toy', 'joint_names': list(JOINTS),
        'dt': 0.02, 'observation': {'layout': ['position', 'velocity'], 'dim': OBS, 'joints': True, 'images': None},
        'latent_dim': LATENT, 'action_dim': ACT, 'horizon': HORIZON, 'ensemble': 1, 'opset': 17,
        'normalisation': {'obs_mean': [0.0] * OBS, 'obs_std': [1.0] * OBS, 'action_mean': [0.0] * ACT,
                          'action_std': [1.0] * ACT},
        'training': {'data_hash': 'sha256:toy', 'seed': 0}, 'metrics': {'mse_h10': 0.0}, 'files': files,
    }


@pytest.fixture
def toy_model(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    w = _weights()
    onnx.save(_encoder_graph(w), tmp_path / 'encoder.onnx')
    onnx.save(_predictor_graph(w), tmp_path / 'predictor.onnx')
    (tmp_path / 'metadata.json').write_text(json.dumps(_metadata_dict(tmp_path)))
    return tmp_path, w


def _rewrite(directory: Path, change) -> None:
    data = json.loads((directory / 'metadata.json').read_text())
    change(data)
    (directory / 'metadata.json').write_text(json.dumps(data))


# ---------------------------------------------------------------------- metadata


def test_valid_metadata_round_trips(toy_model):
    directory, _ = toy_model
    meta = load_metadata(directory)
    assert meta.joint_names == JOINTS and meta.horizon == HORIZON and meta.latent_dim == LATENT
    again = ModelMetadata.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    assert meta.action_source == 'applied' and not meta.feedforward     # absent: the effort acting on the joints
    assert 'action_source' not in meta.to_dict()                        # and files stay as they were


def test_feedforward_action_source_round_trips(toy_model):
    directory, _ = toy_model
    _rewrite(directory, lambda d: d.update(action_source='feedforward'))
    meta = load_metadata(directory)
    assert meta.action_source == 'feedforward' and meta.feedforward
    assert ModelMetadata.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


@pytest.mark.parametrize('change, reason', [
    (lambda d: d.update(schema='other'), 'schema'),
    (lambda d: d.update(schema_version=99), 'schema_version'),
    (lambda d: d.pop('joint_names'), "missing field 'joint_names'"),
    (lambda d: d.update(joint_names=['a', 'a']), 'repeat'),
    (lambda d: d.update(dt=0.0), 'dt'),
    (lambda d: d.update(dt=True), 'boolean'),
    (lambda d: d.update(latent_dim=-1), 'latent_dim'),
    (lambda d: d.update(opset=7), 'opset'),
    (lambda d: d['observation'].update(dim=5), 'observation.dim'),
    (lambda d: d['normalisation'].update(obs_std=[1.0, 0.0, 1.0, 1.0]), 'positive'),
    (lambda d: d['normalisation'].update(action_mean=[0.0]), 'action_mean'),
    (lambda d: d['training'].pop('data_hash'), 'data_hash'),
    (lambda d: d['files']['predictor'].update(sha256='xyz'), 'sha256'),
    (lambda d: d['files']['encoder'].update(path='../encoder.onnx'), 'inside the model directory'),
    # the header says one thing, the recorded graph signature another: wrong rank, dim, dtype, name
    (lambda d: d['files']['predictor']['inputs'][1].update(shape=['batch', HORIZON]), 'actions has shape'),
    (lambda d: d['files']['predictor']['inputs'][0].update(shape=['batch', LATENT + 1]), 'z has shape'),
    (lambda d: d['files']['encoder']['inputs'][0].update(dtype='float64'), 'dtype'),
    (lambda d: d['files']['encoder']['inputs'][0].update(dtype='complex64'), 'complex64'),
    (lambda d: d['files']['predictor']['outputs'][2].update(name='H'), 'outputs are'),
    (lambda d: d.update(action_source='torque'), 'action_source'),
])
def test_metadata_rejects(toy_model, change, reason):
    directory, _ = toy_model
    _rewrite(directory, change)
    with pytest.raises(MetadataError, match=reason):
        load_metadata(directory)


def test_missing_and_modified_files_are_refused(toy_model):
    directory, _ = toy_model
    (directory / 'predictor.onnx').write_bytes((directory / 'predictor.onnx').read_bytes() + b'\0')
    with pytest.raises(MetadataError, match='sha256'):
        load_metadata(directory)
    (directory / 'predictor.onnx').unlink()
    with pytest.raises(MetadataError, match='missing'):
        WorldModelRuntime.load(directory, config=CPU)
    (directory / 'metadata.json').write_text('{not json')
    with pytest.raises(MetadataError, match='not readable JSON'):
        load_metadata(directory)
    with pytest.raises(MetadataError, match='does not exist'):
        load_metadata(directory / 'nowhere')


def test_joint_order_is_checked(toy_model):
    directory, _ = toy_model
    with pytest.raises(MetadataError, match='order'):
        WorldModelRuntime.load(directory, joint_names=tuple(reversed(JOINTS)), config=CPU)
    with pytest.raises(MetadataError, match=r"missing from the model \['elbow'\]"):
        WorldModelRuntime.load(directory, joint_names=('slider', 'elbow'), config=CPU)


# ---------------------------------------------------------------------- session: files that lie about themselves


def _swap_graph(directory: Path, role: str, model: onnx.ModelProto | bytes) -> None:
    """Replace a graph and re-record its hash, so only the signature check can catch the lie."""
    path = directory / f'{role}.onnx'
    if isinstance(model, bytes):
        path.write_bytes(model)
    else:
        onnx.save(model, path)
    _rewrite(directory, lambda d: d['files'][role].update(sha256=sha256_file(path)))


@pytest.mark.parametrize('role, make, reason', [
    ('encoder', lambda w: _encoder_graph(w, obs_dtype=TensorProto.DOUBLE), 'type tensor\\(double\\)'),
    ('encoder', lambda w: _encoder_graph(w, obs_dim=OBS + 2).__class__(), 'refused the file'),  # empty model
    ('encoder', lambda w: _encoder_graph(w, out_name='latent'), "outputs are \\['latent'\\]"),
    ('predictor', lambda w: _predictor_graph(w, horizon=HORIZON + 1), 'shape'),
    ('predictor', lambda w: b'\x08\x07garbage-not-a-protobuf', 'refused the file'),
])
def test_session_refuses_graph_contradicting_metadata(toy_model, role, make, reason):
    directory, w = toy_model
    _swap_graph(directory, role, make(w))
    with pytest.raises(ModelLoadError, match=reason):
        WorldModelRuntime.load(directory, config=CPU)


def test_encoder_with_wrong_dim_is_refused(toy_model):
    directory, w = toy_model
    w2 = dict(w, We=np.ones((OBS + 2, LATENT), np.float32))
    _swap_graph(directory, 'encoder', _encoder_graph(w2, obs_dim=OBS + 2))
    with pytest.raises(ModelLoadError, match=r"input obs has shape \['batch', 6\]"):
        WorldModelRuntime.load(directory, config=CPU)


def test_unavailable_provider_falls_back_to_cpu_with_a_log(toy_model, caplog):
    directory, _ = toy_model
    meta = load_metadata(directory)
    config = SessionConfig(providers=('tensorrt', 'cuda', 'cpu'), intra_op_threads=1)
    # caplog's handler on the module's own logger too: where ROS 2's launch_pytest plugin is loaded, launch makes
    # every logger created after it non-propagating, so the root logger (caplog's) would never see the warning
    logger = logging.getLogger(OrtSession.__module__)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level('WARNING', logger=logger.name):
            session = OrtSession(directory / 'encoder.onnx', meta.files['encoder'], config)
    finally:
        logger.removeHandler(caplog.handler)
    assert session.providers[-1] == 'CPUExecutionProvider'
    import onnxruntime as ort
    if 'CUDAExecutionProvider' not in session.providers:  # a machine without a usable GPU: the fallback is logged
        assert any('CUDAExecutionProvider' in r.getMessage() for r in caplog.records), caplog.text
    assert ort.get_device() in ('CPU', 'GPU')


def test_a_provider_that_failed_is_not_tried_again_in_the_process(toy_model):
    """Several models on a machine without a usable GPU: onnxruntime's CUDA error appears once, not per file."""
    directory, _ = toy_model
    code = (
        'import logging, sys\n'
        'logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")\n'
        'import hamwm_ros.runtime as rt\n'
        'config = rt.SessionConfig(providers=("cuda", "cpu"), intra_op_threads=1)\n'
        f'for _ in range(3):\n    wm = rt.WorldModelRuntime.load({str(directory)!r}, config=config)\n'
        'print("PROVIDERS", wm.providers)\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    if 'CUDAExecutionProvider' in result.stdout.split('PROVIDERS')[-1]:
        pytest.skip('CUDA works here: nothing fails')
    failures = result.stdout.count('failed to initialise;')
    assert failures <= 1, result.stdout          # at most the first file tries (and fails); 6 files are loaded
    if 'CUDAExecutionProvider' in result.stdout.split('PROVIDERS')[0] and failures == 1:   # a GPU build, no GPU
        assert 'not tried again' in result.stdout
        assert result.stderr.count('Failed to create CUDAExecutionProvider') <= 1, result.stderr[-3000:]


def test_time_rollout_measures_a_rollout_and_refuses_bad_sizes(toy_model):
    directory, _ = toy_model
    wm = WorldModelRuntime.load(directory, config=CPU)
    seconds = wm.time_rollout(8, HORIZON + 3)         # longer than the export horizon: chained calls
    assert 0.0 < seconds < 10.0
    for bad in ((0, None, 3), (8, 0, 3), (8, None, 0)):
        with pytest.raises(ValueError, match='must be >= 1'):
            wm.time_rollout(*bad)


def test_session_config_rejects_unknown_values():
    with pytest.raises(ValueError, match='unknown providers'):
        SessionConfig(providers=('tpu',))
    with pytest.raises(ValueError, match='optimization'):
        SessionConfig(optimization='max')


# ---------------------------------------------------------------------- facade: numbers


def test_encode_and_rollout_match_reference(toy_model):
    directory, w = toy_model
    wm = WorldModelRuntime.load(directory, joint_names=JOINTS, config=CPU)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(5, OBS)).astype(np.float32)
    actions = rng.normal(size=(5, HORIZON, ACT)).astype(np.float32)
    z0, z_seq, obs_seq, energy = _reference(w, obs, actions)
    z = wm.encode(obs[:, :2], obs[:, 2:])
    np.testing.assert_allclose(z, z0, rtol=1e-5, atol=1e-5)
    out = wm.rollout(z, actions)
    np.testing.assert_allclose(out.latent, z_seq, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.observations, obs_seq, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.energy, energy, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out.position, out.observations[..., :2])
    np.testing.assert_array_equal(out.velocity, out.observations[..., 2:])


@pytest.mark.parametrize('steps', [1, 2, HORIZON + 1, 3 * HORIZON + 2])
def test_other_horizons_chain_or_truncate_exactly(toy_model, steps):
    directory, w = toy_model
    wm = WorldModelRuntime.load(directory, config=CPU)
    rng = np.random.default_rng(steps)
    obs = rng.normal(size=(4, OBS)).astype(np.float32)
    actions = rng.normal(size=(4, steps, ACT)).astype(np.float32)
    _, z_seq, obs_seq, energy = _reference(w, obs, actions)
    out = wm.rollout(wm.encode(obs[:, :2], obs[:, 2:]), actions)
    assert out.latent.shape == (4, steps, LATENT)
    np.testing.assert_allclose(out.latent, z_seq, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out.energy, energy, rtol=1e-3, atol=1e-3)


def test_hot_path_reuses_buffers_and_copy_detaches(toy_model):
    directory, _ = toy_model
    wm = WorldModelRuntime.load(directory, config=CPU)
    z = np.zeros((5, LATENT), np.float32)
    a1 = np.ones((5, HORIZON, ACT), np.float32)
    first = wm.rollout(z, a1, copy=False)
    kept = wm.rollout(z, a1, copy=True)
    second = wm.rollout(z, 2 * a1, copy=False)
    assert first.latent is second.latent  # same preallocated buffer, overwritten in place
    assert not np.allclose(kept.latent, second.latent)


def test_concurrent_rollouts_from_two_threads_keep_their_own_buffers(toy_model):
    # MPPI workers call the zero-copy path concurrently with the same batch size: each thread must get its own
    # output buffers, and every result must equal the reference for that thread's own inputs.
    directory, w = toy_model
    wm = WorldModelRuntime.load(directory, config=CPU)
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(2):
        obs = rng.normal(size=(6, OBS)).astype(np.float32)
        actions = rng.normal(size=(6, HORIZON, ACT)).astype(np.float32)
        cases.append((wm.encode(obs[:, :2], obs[:, 2:]), actions, _reference(w, obs, actions)[1]))
    barrier = threading.Barrier(2)
    errors, buffers = [], []

    def worker(index: int) -> None:
        z, actions, expected = cases[index]
        barrier.wait()
        for _ in range(200):
            out = wm.rollout(z, actions, copy=False)
            if not np.allclose(out.latent, expected, rtol=1e-4, atol=1e-4):
                errors.append(index)
                return
        buffers.append(out.latent)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(buffers) == 2 and buffers[0] is not buffers[1]


def test_bad_inputs_raise_clear_errors(toy_model):
    directory, _ = toy_model
    wm = WorldModelRuntime.load(directory, config=CPU)
    with pytest.raises(ValueError, match='position and velocity'):
        wm.encode(np.zeros(2))
    with pytest.raises(ValueError, match='not finite'):
        wm.encode(np.array([np.nan, 0.0]), np.zeros(2))
    with pytest.raises(ValueError, match=r'\(B, 2\)'):
        wm.encode(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match='actions must be'):
        wm.rollout(np.zeros((1, LATENT), np.float32), np.zeros((1, HORIZON, ACT + 1), np.float32))
    with pytest.raises(ValueError, match='z must be'):
        wm.rollout(np.zeros((2, LATENT), np.float32), np.zeros((1, HORIZON, ACT), np.float32))
    with pytest.raises(ValueError, match='do not match'):
        wm.predictor.run({'z': np.zeros((1, LATENT), np.float32)})


# ---------------------------------------------------------------------- torch never on the runtime path


def test_runtime_imports_no_torch(toy_model):
    directory, _ = toy_model
    code = (
        'import sys\n'
        'import numpy as np\n'
        'import hamwm_ros.runtime as rt\n'
        'import hamwm_ros.runtime.metadata, hamwm_ros.runtime.session, hamwm_ros.runtime.predictor\n'
        f'wm = rt.WorldModelRuntime.load({str(directory)!r}, config=rt.SessionConfig(providers=("cpu",)))\n'
        'z = wm.encode(np.zeros(2), np.zeros(2))\n'
        f'wm.rollout(z, np.zeros((1, {HORIZON}, {ACT})))\n'
        'bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "rclpy", "onnx"))\n'
        'print("LOADED", bad)\n'
        'sys.exit(1 if bad else 0)\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'LOADED []' in result.stdout
