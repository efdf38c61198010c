"""Export: real HamiltonianWorldModel -> ONNX, onnx.checker, torch-vs-onnxruntime parity, the CLI.

Tiny models with every block switched on and all weights perturbed away from their (partly zero) initialisation,
so each port of the dynamics contributes to the outputs being compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from hamwm_ros.runtime import SessionConfig, WorldModelRuntime, load_metadata
from hamwm_ros.worldmodel.export import (
    PARITY_RTOL,
    ExportError,
    LeanPredictorGraph,
    PredictorGraph,
    export_model,
    main,
    predictor_graph,
    relative_error,
)
from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig

torch.set_num_threads(1)
JOINTS = ['slider', 'hinge']
CPU = SessionConfig(providers=('cpu',), intra_op_threads=1)


def _model(**overrides) -> HamiltonianWorldModel:
    torch.manual_seed(0)
    kw = dict(obs_dim=4, action_dim=2, latent_dim=2, hidden=16, layers=1, dt=0.05, residual=True,
              mass_matrix='state', input_map='state')
    kw.update(overrides)
    model = HamiltonianWorldModel(ModelConfig(**kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.set_normalisation([0.1, -0.2, 0.0, 0.5], [0.5, 1.5, 2.0, 3.0], [2.0, 0.5])
    model.info = {'joint_names': JOINTS, 'data_sha256': 'ab' * 32, 'data_source': 'sim:cartpole'}
    return model.eval()


def _export(model, out, horizon=4):
    return export_model(model, out, robot='cartpole', joint_names=JOINTS, horizon=horizon,
                        training={'data_hash': 'sha256:test'}, metrics={'note': 'test'})


def test_export_passes_checker_and_parity(tmp_path):
    model = _model()
    meta = _export(model, tmp_path)
    for name in ('encoder.onnx', 'predictor.onnx'):
        onnx.checker.check_model(str(tmp_path / name), full_check=True)
        assert onnx.load(str(tmp_path / name)).opset_import[0].version == meta.opset
    parity = meta.metrics['export_parity']['rel_error']
    assert set(parity) == {'z', 'z_seq', 'obs_seq', 'energy'}
    assert max(parity.values()) <= PARITY_RTOL
    # the metadata on disk is what the runtime validates, with hashes of the files beside it
    assert load_metadata(tmp_path).files['predictor'].sha256 == meta.files['predictor'].sha256
    assert meta.latent_dim == 4 and meta.horizon == 4 and meta.joint_names == tuple(JOINTS)
    assert meta.normalisation['obs_std'] == pytest.approx([0.5, 1.5, 2.0, 3.0])


def test_symplectic_euler_model_exports_with_parity(tmp_path):
    # the generic (non-lean) graph: q-dependent input map, residual, symplectic Euler steps
    model = _model(mass_matrix='constant', integrator='symplectic_euler')
    meta = _export(model, tmp_path)
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= PARITY_RTOL


def test_parity_at_other_batch_sizes_and_chained_horizons(tmp_path):
    model = _model()
    _export(model, tmp_path, horizon=4)
    wm = WorldModelRuntime.load(tmp_path, joint_names=JOINTS, config=CPU)
    gen = torch.Generator().manual_seed(3)
    for batch, steps in ((1, 4), (33, 4), (5, 11)):
        obs = torch.randn(batch, 4, generator=gen) * model.obs_std + model.obs_mean
        actions = torch.randn(batch, steps, 2, generator=gen)
        with torch.no_grad():
            z_t = model.encode(obs)
            z_seq, obs_seq, energy = PredictorGraph(model)(z_t, actions)
        z = wm.encode(obs[:, :2].numpy(), obs[:, 2:].numpy())
        out = wm.rollout(z, actions.numpy())
        assert relative_error(z, z_t.numpy()) <= PARITY_RTOL
        assert relative_error(out.latent, z_seq.numpy()) <= PARITY_RTOL
        assert relative_error(out.observations, obs_seq.numpy()) <= PARITY_RTOL
        assert relative_error(out.energy, energy.numpy()) <= PARITY_RTOL


def test_ensemble_exports_as_one_graph_with_member_axis(tmp_path):
    model = _model(ensemble=3, residual=False)
    meta = _export(model, tmp_path)
    assert meta.ensemble == 3
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= PARITY_RTOL
    wm = WorldModelRuntime.load(tmp_path, config=CPU)
    z = wm.encode(np.zeros((5, 2)), np.ones((5, 2)))
    assert z.shape == (3, 5, 4)
    out = wm.rollout(z, np.zeros((5, 6, 2), np.float32))
    assert out.latent.shape == (3, 5, 6, 4) and out.energy.shape == (3, 5, 6)
    assert out.position.shape == (3, 5, 6, 2)
    assert not np.allclose(out.latent[0], out.latent[1])  # members differ


def test_image_encoder_takes_uint8_frames(tmp_path):
    model = _model(encoder='image', image_shape=(12, 12, 3), n_frames=2, residual=False, mass_matrix='constant')
    meta = _export(model, tmp_path, horizon=3)
    assert meta.images is not None and (meta.images.frames, meta.images.height) == (2, 12)
    assert not meta.uses_joints
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= PARITY_RTOL
    wm = WorldModelRuntime.load(tmp_path, config=CPU)
    frames = np.random.default_rng(0).integers(0, 255, (4, 2, 12, 12, 3), dtype=np.uint8)
    z = wm.encode(images=frames)
    with torch.no_grad():
        z_t = model.encode(None, torch.from_numpy(frames))
    assert relative_error(z, z_t.numpy()) <= PARITY_RTOL
    with pytest.raises(ValueError, match='uint8'):
        wm.encode(images=frames.astype(np.float32))


def test_export_refuses_inconsistent_requests(tmp_path):
    model = _model()
    with pytest.raises(ExportError, match='joints'):
        export_model(model, tmp_path, robot='x', joint_names=['only_one'], training={'data_hash': 'h'})
    with pytest.raises(ExportError, match='data_hash'):
        export_model(model, tmp_path, robot='x', joint_names=JOINTS, training={})


def test_cli_exports_a_saved_model(tmp_path, capsys):
    model = _model(residual=False, mass_matrix='constant')
    model.save(tmp_path / 'trained')
    metrics = tmp_path / 'metrics.json'
    metrics.write_text(json.dumps({'mse_h10': 0.01}))
    out = tmp_path / 'exported'
    assert main([str(tmp_path / 'trained'), '--out', str(out), '--horizon', '5', '--metrics', str(metrics)]) == 0
    assert 'parity' in capsys.readouterr().out
    meta = load_metadata(out)
    assert meta.robot == 'cartpole' and meta.horizon == 5 and meta.metrics['mse_h10'] == 0.01
    assert meta.training['data_hash'] == 'sha256:' + 'ab' * 32
    assert (out / 'model.pt').is_file()
    assert meta.action_source == 'applied'
    assert meta.energy_calibration is None            # a model saved without one exports without one
    assert main([str(tmp_path / 'nowhere'), '--out', str(out)]) == 1
    assert 'no world model' in capsys.readouterr().err
    # hamwm train --action-source feedforward leaves it in model.info; --action-source overrides it
    model.info['action_source'] = 'feedforward'
    model.save(tmp_path / 'feedforward')
    assert main([str(tmp_path / 'feedforward'), '--out', str(tmp_path / 'ff'), '--horizon', '5']) == 0
    assert load_metadata(tmp_path / 'ff').feedforward
    assert main([str(tmp_path / 'feedforward'), '--out', str(tmp_path / 'as_applied'), '--horizon', '5',
                 '--action-source', 'applied']) == 0
    assert not load_metadata(tmp_path / 'as_applied').feedforward
    # hamwm train's energy calibration travels through model.pt into metadata.json
    model.energy_calibration = {'nominal': 0.95, 'bias': 0.0, 'steps': [1, 10], 'limits': [0.01, 0.04], 'info': {}}
    model.save(tmp_path / 'calibrated')
    assert main([str(tmp_path / 'calibrated'), '--out', str(tmp_path / 'cal'), '--horizon', '5']) == 0
    assert load_metadata(tmp_path / 'cal').energy_calibration.limits == (0.01, 0.04)


def test_export_output_is_deterministic(tmp_path):
    model = _model(residual=False, mass_matrix='constant')
    a = _export(model, tmp_path / 'a')
    b = _export(model, tmp_path / 'b')
    assert a.files['predictor'].sha256 == b.files['predictor'].sha256
    assert Path(tmp_path / 'a' / 'encoder.onnx').read_bytes() == Path(tmp_path / 'b' / 'encoder.onnx').read_bytes()


def test_benchmark_flop_count_on_a_known_graph(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from hamwm_ros.bench.predictor import count_flops

    w = numpy_helper.from_array(np.ones((4, 6), np.float32), 'w')
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['x', 'w'], ['y']), helper.make_node('Tanh', ['y'], ['t']),
         helper.make_node('ReduceSum', ['t'], ['s'], keepdims=0)], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['batch', 4])],
        [helper.make_tensor_value_info('s', TensorProto.FLOAT, [])], [w])
    path = tmp_path / 'g.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8), path)
    batch = 100
    assert count_flops(path, batch) == pytest.approx(2 * batch * 6 * 4 + batch * 6 + batch * 6)


def _lean_model(**overrides) -> HamiltonianWorldModel:
    kw = dict(residual=False, mass_matrix='constant', input_map='constant', damping_map='constant', layers=2)
    kw.update(overrides)
    return _model(**kw)


@pytest.mark.parametrize('overrides', [dict(), dict(ensemble=2), dict(activation='softplus', substeps=2),
                                       dict(layers=1, dissipation=False)])
def test_lean_predictor_graph_matches_the_generic_one_and_onnxruntime(tmp_path, overrides):
    model = _lean_model(**overrides)
    assert model.lean
    meta = _export(model, tmp_path, horizon=5)
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= PARITY_RTOL
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(*((2,) if model.cfg.ensemble > 1 else ()), 6, 4, generator=gen)
    actions = torch.randn(6, 5, 2, generator=gen)
    with torch.no_grad():
        lean = LeanPredictorGraph(model)(z, actions)
        generic = PredictorGraph(model)(z, actions)
    for a, b in zip(lean, generic):
        assert a.shape == b.shape
        assert relative_error(a.numpy(), b.numpy()) <= 1e-5
    out = WorldModelRuntime.load(tmp_path, joint_names=JOINTS, config=CPU).rollout(z.numpy(), actions.numpy())
    for a, b in zip((out.latent, out.observations, out.energy), lean):
        assert relative_error(a, b.numpy()) <= PARITY_RTOL


@pytest.mark.parametrize('members', [1, 2])
def test_configuration_encoder_exports_as_affine_maps(tmp_path, members):
    """The encoder graph is z = obs @ W + b (no matrix inverse in ONNX) and the predictor decodes exactly."""
    model = _lean_model(encoder='configuration', ensemble=members)
    meta = _export(model, tmp_path, horizon=5)
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= PARITY_RTOL
    ops = {n.op_type for n in onnx.load(str(tmp_path / 'encoder.onnx')).graph.node}
    assert ops <= {'MatMul', 'Add', 'Gemm', 'Constant'}, ops
    gen = torch.Generator().manual_seed(6)
    obs = torch.randn(6, 4, generator=gen)
    wm = WorldModelRuntime.load(tmp_path, joint_names=JOINTS, config=CPU)
    z = wm.encode(obs[:, :2].numpy(), obs[:, 2:].numpy())
    with torch.no_grad():
        assert relative_error(z, model.encode(obs).numpy()) <= PARITY_RTOL
    out = wm.rollout(z, np.zeros((6, 5, 2), np.float32))
    decoded = out.observations if members == 1 else out.observations[0]
    with torch.no_grad():
        expected = model.decode(torch.as_tensor(out.latent)).numpy()
    assert relative_error(out.observations, expected) <= PARITY_RTOL
    assert decoded.shape == (6, 5, 4)


def test_rest_momentum_zero_exports_with_parity_and_encodes_rest_as_zero_momentum(tmp_path):
    model = _lean_model(rest_momentum='zero', ensemble=2)
    meta = _export(model, tmp_path, horizon=5)
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= PARITY_RTOL
    wm = WorldModelRuntime.load(tmp_path, joint_names=JOINTS, config=CPU)
    z = wm.encode(np.array([[0.2, -0.4], [1.0, 0.5]], np.float32), np.zeros((2, 2), np.float32))
    np.testing.assert_allclose(z[..., 2:], 0.0, atol=1e-6)


def test_action_source_is_written_and_checked(tmp_path):
    meta = export_model(_lean_model(), tmp_path, robot='cartpole', joint_names=JOINTS, horizon=4,
                        training={'data_hash': 'sha256:test'}, action_source='feedforward')
    assert meta.feedforward and load_metadata(tmp_path).action_source == 'feedforward'
    with pytest.raises(ExportError, match='action_source'):
        export_model(_lean_model(), tmp_path / 'bad', robot='cartpole', joint_names=JOINTS, horizon=4,
                     training={'data_hash': 'sha256:test'}, action_source='torque')


def test_lean_predictor_graph_is_short(tmp_path):
    """The unrolled constant-mass leapfrog step is a handful of GEMMs and elementwise ops, not ~130 nodes."""
    import onnxruntime as ort

    horizon = 16
    _export(_lean_model(), tmp_path, horizon=horizon)
    graph = onnx.load(str(tmp_path / 'predictor.onnx')).graph
    ops = [n.op_type for n in graph.node if n.op_type != 'Constant']
    assert len(ops) <= 20 * horizon
    assert sum(op in ('MatMul', 'Gemm') for op in ops) <= 9 * horizon + 12
    assert not {'Slice', 'Gather', 'Unsqueeze'} & set(ops[len(ops) // 4: len(ops) // 2])  # no churn inside the loop
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / 'optimized.onnx')
    ort.InferenceSession(str(tmp_path / 'predictor.onnx'), options, providers=['CPUExecutionProvider'])
    assert len(onnx.load(str(tmp_path / 'optimized.onnx')).graph.node) <= 15 * horizon + 40


def test_models_with_state_dependent_ports_keep_the_generic_graph(tmp_path):
    model = _model()
    assert not model.lean
    with pytest.raises(ExportError, match='lean'):
        LeanPredictorGraph(model)
    assert isinstance(predictor_graph(model), PredictorGraph)


@pytest.mark.parametrize('overrides', [dict(ignorable=(0,)), dict(ignorable=(0,), periodic=(1,)),
                                       dict(ignorable=(0,), periodic=(1,), mass_param='kinematic', ensemble=2),
                                       dict(ignorable=(0,), periodic=(1,), mass_param='chain'),
                                       dict(ignorable=(0,), periodic=(1,), mass_matrix='constant',
                                            input_map='constant', damping_map='constant', residual=False,
                                            layers=2, ensemble=2)])
def test_ignorable_and_periodic_coordinates_export_and_match_torch(tmp_path, overrides):
    model = _model(**overrides)
    assert model.lean == (overrides.get('mass_matrix') == 'constant')
    meta = _export(model, tmp_path, horizon=5)
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= PARITY_RTOL
    assert meta.training['model_config']['ignorable'] == [0]
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(*((2,) if model.cfg.ensemble > 1 else ()), 6, 4, generator=gen)
    actions = torch.randn(6, 5, 2, generator=gen)
    shift = torch.tensor([40.0, 2 * np.pi if model.cfg.periodic else 0.0, 0.0, 0.0])
    wm = WorldModelRuntime.load(tmp_path, joint_names=JOINTS, config=CPU)
    with torch.no_grad():
        expected = predictor_graph(model)(z, actions)
    for zz in (z, z + shift):  # a cart 40 m away (and a pole one turn on) predicts the same motion, shifted
        out = wm.rollout(zz.numpy(), actions.numpy())
        assert relative_error(out.latent - (zz - z).numpy()[..., None, :], expected[0].numpy()) <= PARITY_RTOL
        assert relative_error(out.energy, expected[2].numpy()) <= PARITY_RTOL
