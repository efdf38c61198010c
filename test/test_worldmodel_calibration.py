"""Calibrations fitted on validation data: the ensemble spread (its fit, its use in PICP) and the energy books.

Both are persisted with the model and exported as optional metadata fields.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hamwm_ros.runtime.metadata import (
    EnergyCalibration,
    MetadataError,
    ModelMetadata,
    SpreadCalibration,
    load_metadata,
)
from hamwm_ros.worldmodel import metrics
from hamwm_ros.worldmodel.baselines import fit_rollouts, trajectory_bootstrap
from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig

torch.set_num_threads(1)


def overconfident(rng, n=200, horizon=30, d=3, members=4, spread=0.1):
    """Members scattered ``spread`` around a mean whose error grows like sqrt(step): raw intervals far too narrow."""
    truth = rng.normal(size=(n, horizon, d))
    err_scale = np.sqrt(np.arange(1, horizon + 1))[None, :, None]
    mean = truth + err_scale * rng.normal(size=truth.shape)
    samples = mean[None] + spread * err_scale * rng.normal(size=(members, *truth.shape))
    return samples, truth


def test_overconfident_ensemble_gets_factor_above_one_and_coverage_near_nominal():
    rng = np.random.default_rng(0)
    val_members, val_target = overconfident(rng)
    cal = metrics.fit_spread_calibration(val_members, val_target)
    assert cal['steps'][0] == 1 and cal['steps'][-1] == 30
    assert min(cal['factors']) > 3.0  # spread 0.1 x the error: about 10x too narrow
    assert cal['info']['picp_calibrated'][0] == pytest.approx(0.95, abs=0.01)  # in-sample by construction
    # Fresh test data from the same process: the calibrated coverage is near nominal, the raw one far below.
    test_members, test_target = overconfident(rng)
    factors = SpreadCalibration.from_dict(cal).factor(np.arange(1, 31))
    for h in (1, 10, 30):
        raw = metrics.calibrated_picp(test_members[:, :, h - 1], test_target[:, h - 1], 1.0)
        calibrated = metrics.calibrated_picp(test_members[:, :, h - 1], test_target[:, h - 1], factors[h - 1])
        assert raw < 0.5
        assert 0.88 <= calibrated <= 0.99


def test_underconfident_ensemble_gets_factor_below_one():
    rng = np.random.default_rng(1)
    members, target = overconfident(rng, spread=5.0, members=20)
    cal = metrics.fit_spread_calibration(members, target, steps=[1, 5, 30])
    assert cal['steps'] == [1, 5, 30]
    assert max(cal['factors']) < 1.0


def test_fit_handles_zero_spread_and_divergence():
    target = np.zeros((5, 4, 2))
    members = np.ones((3, 5, 4, 2))  # every member agrees and is wrong: zero spread
    cal = metrics.fit_spread_calibration(members, target)
    assert cal['factors'][0] == 1e6  # clipped at the upper bound, not inf
    members = np.zeros((3, 5, 4, 2))
    members[:, 0, 3] = np.nan
    cal = metrics.fit_spread_calibration(members, target)
    assert all(np.isfinite(cal['factors']))
    with pytest.raises(ValueError, match='at least 2'):
        metrics.fit_spread_calibration(np.zeros((1, 5, 4, 2)), target)
    with pytest.raises(ValueError, match='members must be'):
        metrics.fit_spread_calibration(np.zeros((2, 5, 4)), target)
    assert metrics.calibration_steps(1) == [1]
    grid = metrics.calibration_steps(1000)
    assert grid[0] == 1 and grid[-1] == 1000 and 10 in grid and 100 in grid


def test_spread_calibration_interpolates_and_scales():
    cal = SpreadCalibration(steps=(1, 10, 100), factors=(1.0, 10.0, 100.0))
    np.testing.assert_allclose(cal.factor([1, 10, 100, 1000, 3]), [1, 10, 100, 100, 3], rtol=1e-12)
    members = np.stack([np.zeros((2, 10, 3)), 2 * np.ones((2, 10, 3))])  # (E=2, B, H, d): std 1 everywhere
    mean, std = cal.spread(members, step_axis=-2)
    np.testing.assert_allclose(mean, 1.0)
    np.testing.assert_allclose(std[0, :, 0], np.arange(1, 11), rtol=1e-12)
    mean, std = cal.spread(members[..., 0], step_axis=-1, first_step=10)  # energy-like (E, B, H)
    np.testing.assert_allclose(std[0, 0], 10.0)
    with pytest.raises(ValueError):
        cal.spread(members, step_axis=0)


def _meta_dict(**extra):
    files = {}
    for role, inputs, outputs in (
            ('encoder', [{'name': 'obs', 'dtype': 'float32', 'shape': ['batch', 2]}],
             [{'name': 'z', 'dtype': 'float32', 'shape': [2, 'batch', 2]}]),
            ('predictor', [{'name': 'z', 'dtype': 'float32', 'shape': [2, 'batch', 2]},
                           {'name': 'actions', 'dtype': 'float32', 'shape': ['batch', 4, 1]}],
             [{'name': 'z_seq', 'dtype': 'float32', 'shape': [2, 'batch', 4, 2]},
              {'name': 'obs_seq', 'dtype': 'float32', 'shape': [2, 'batch', 4, 2]},
              {'name': 'energy', 'dtype': 'float32', 'shape': [2, 'batch', 4]}])):
        files[role] = {'path': f'{role}.onnx', 'sha256': '0' * 64, 'inputs': inputs, 'outputs': outputs}
    data = {'schema': 'hamwm_ros/model-metadata', 'schema_version': 1, 'robot': 'toy', 'joint_names': ['hinge'],
            'dt': 0.05, 'observation': {'layout': ['position', 'velocity'], 'dim': 2, 'joints': True, 'images': None},
            'latent_dim': 2, 'action_dim': 1, 'horizon': 4, 'ensemble': 2, 'opset': 17,
            'normalisation': {'obs_mean': [0.0, 0.0], 'obs_std': [1.0, 1.0], 'action_mean': [0.0],
                              'action_std': [1.0]},
            'training': {'data_hash': 'sha256:x'}, 'metrics': {}, 'files': files, 'producer': {}}
    data.update(extra)
    return data


def test_metadata_optional_field_round_trips(tmp_path):
    plain = ModelMetadata.from_dict(_meta_dict())
    assert plain.spread_calibration is None
    assert 'spread_calibration' not in plain.to_dict()  # files without it stay as they were
    entry = {'method': 'residual-quantile', 'nominal': 0.95, 'steps': [1, 10, 100], 'factors': [1.5, 3.0, 7.25],
             'info': {'samples': [10, 20, 30]}}
    meta = ModelMetadata.from_dict(_meta_dict(spread_calibration=entry))
    assert meta.spread_calibration.steps == (1, 10, 100)
    assert meta.spread_calibration.factors == (1.5, 3.0, 7.25)
    assert meta.to_dict()['spread_calibration'] == entry
    meta.save(tmp_path)
    again = load_metadata(tmp_path, check_files=False)
    assert again.spread_calibration == meta.spread_calibration
    assert json.loads((tmp_path / 'metadata.json').read_text())['spread_calibration'] == entry


@pytest.mark.parametrize('bad, reason', [
    ({'steps': [1, 1], 'factors': [1.0, 2.0]}, 'increasing'),
    ({'steps': [0], 'factors': [1.0]}, 'increasing'),
    ({'steps': [1, 2], 'factors': [1.0]}, 'one length'),
    ({'steps': [1], 'factors': [-1.0]}, 'positive'),
    ({'steps': [1], 'factors': [float('inf')]}, 'positive'),
    ({'steps': [1], 'factors': [1.0], 'nominal': 1.5}, 'nominal'),
    ({'steps': [1], 'factors': [1.0], 'nominal': 0.9, 'info': 3}, 'info'),
])
def test_metadata_rejects_bad_calibration(bad, reason):
    entry = {'nominal': 0.95, **bad}
    with pytest.raises(MetadataError, match=reason):
        ModelMetadata.from_dict(_meta_dict(spread_calibration=entry))


def test_model_checkpoint_keeps_calibration(tmp_path):
    torch.manual_seed(0)
    model = HamiltonianWorldModel(ModelConfig(obs_dim=2, action_dim=1, latent_dim=1, hidden=8, layers=1,
                                              ensemble=2, dt=0.05))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs, acts = torch.randn(3, 2), torch.randn(3, 5, 1)
    _, raw = model.predict_mean_std(obs, acts)
    model.spread_calibration = {'method': 'residual-quantile', 'nominal': 0.95, 'steps': [1, 5],
                                'factors': [2.0, 4.0], 'info': {}}
    _, scaled = model.predict_mean_std(obs, acts)
    torch.testing.assert_close(scaled[:, 0], 2.0 * raw[:, 0])
    torch.testing.assert_close(scaled[:, 4], 4.0 * raw[:, 4])
    _, same = model.predict_mean_std(obs, acts, calibrated=False)
    torch.testing.assert_close(same, raw)
    model.save(tmp_path)
    loaded = HamiltonianWorldModel.load(tmp_path)
    assert loaded.spread_calibration == model.spread_calibration
    bare = HamiltonianWorldModel(model.cfg)
    bare.save(tmp_path / 'bare')
    assert HamiltonianWorldModel.load(tmp_path / 'bare').spread_calibration is None


def test_export_writes_calibration_into_metadata(tmp_path):
    pytest.importorskip('onnxruntime')
    from hamwm_ros.worldmodel.export import export_model
    torch.manual_seed(0)
    model = HamiltonianWorldModel(ModelConfig(obs_dim=2, action_dim=1, latent_dim=1, hidden=8, layers=1,
                                              ensemble=2, dt=0.05, residual=False))
    entry = {'method': 'residual-quantile', 'nominal': 0.95, 'steps': [1, 3], 'factors': [1.25, 2.5],
             'info': {'data': 'validation trajectories'}}
    model.spread_calibration = entry
    meta = export_model(model.eval(), tmp_path, robot='pendulum', joint_names=['hinge'], horizon=3,
                        training={'data_hash': 'sha256:test'}, include_checkpoint=False)
    assert meta.spread_calibration == SpreadCalibration.from_dict(entry)
    expected = 1.25 * 2.0 ** (np.log(2) / np.log(3))  # log-log interpolation between steps 1 and 3
    assert load_metadata(tmp_path).spread_calibration.factor([2])[0] == pytest.approx(expected)


def test_trajectory_bootstrap_weights_members_differently():
    counts = trajectory_bootstrap(8, 4, seed=0)
    assert counts.shape == (4, 8)
    torch.testing.assert_close(counts.sum(1), torch.full((4,), 8.0))
    assert torch.all(counts > 0)  # every member keeps every trajectory
    assert len({tuple(c.tolist()) for c in counts}) == 4
    torch.testing.assert_close(counts, trajectory_bootstrap(8, 4, seed=0))
    # Each member fits its own weighting: a constant prediction per member converges to the weighted mean of
    # constant trajectories (values 0..4), not to the plain mean.
    values = np.arange(5.0)
    states = np.repeat(values[:, None, None], 8, axis=1)
    level = torch.nn.Parameter(torch.zeros(3, 1, 1, 1))

    def roll(x0, act):
        return level.expand(3, x0.shape[0], act.shape[1], 1)

    fit_rollouts(roll, [level], states, np.zeros((5, 7, 0)), horizon=2, steps=300, lr=0.05, batch_size=512,
                 bootstrap=3, seed=4)
    counts = trajectory_bootstrap(5, 3, seed=4).numpy()
    np.testing.assert_allclose(level.detach().numpy().ravel(), counts @ values / counts.sum(1), atol=0.1)
    with pytest.raises(ValueError, match='bootstrap'):
        fit_rollouts(lambda x0, a: x0[:, None].expand(-1, a.shape[1], -1) * level.sum(), [level],
                     states, np.zeros((5, 7, 0)), horizon=2, steps=1, bootstrap=3)


# ---------------------------------------------------------------------------------------------------- energy books
ENERGY_ENTRY = {'nominal': 0.95, 'bias': 0.01, 'steps': [1, 4, 16], 'limits': [0.1, 0.3, 0.5],
                'info': {'data': 'validation trajectories'}}


def test_energy_calibration_round_trips_and_interpolates(tmp_path):
    plain = ModelMetadata.from_dict(_meta_dict())
    assert plain.energy_calibration is None and 'energy_calibration' not in plain.to_dict()
    meta = ModelMetadata.from_dict(_meta_dict(energy_calibration=ENERGY_ENTRY))
    cal = meta.energy_calibration
    assert cal == EnergyCalibration((1, 4, 16), (0.1, 0.3, 0.5), 0.01, 0.95, {'data': 'validation trajectories'})
    meta.save(tmp_path)
    assert load_metadata(tmp_path, check_files=False).energy_calibration == cal
    assert json.loads((tmp_path / 'metadata.json').read_text())['energy_calibration'] == ENERGY_ENTRY
    assert [cal.limit(k) for k in (1, 4, 16)] == pytest.approx([0.1, 0.3, 0.5])
    assert cal.limit(2) == pytest.approx(0.1 * 3.0 ** 0.5)            # log-log between 1 (0.1) and 4 (0.3)
    assert cal.limit(64) == pytest.approx(0.5 * 2.0)                   # a random walk beyond the fitted range
    assert cal.limit(0.25) == pytest.approx(0.05) and cal.limit(0) == 0.0


@pytest.mark.parametrize('bad, reason', [
    ({'steps': [2, 1]}, 'increasing'),
    ({'limits': [0.1, 0.3]}, 'one length'),
    ({'limits': [0.1, -0.3, 0.5]}, 'non-negative'),
    ({'limits': [0.1, float('nan'), 0.5]}, 'non-negative'),
    ({'bias': float('inf')}, 'bias'),
    ({'bias': None}, 'bias'),
    ({'nominal': 1.0}, 'nominal'),
    ({'info': [1]}, 'info'),
])
def test_metadata_rejects_bad_energy_calibration(bad, reason):
    entry = {**ENERGY_ENTRY, **bad}
    if len(entry['steps']) != 3 and 'limits' not in bad:
        entry['limits'] = [0.1, 0.3]
    with pytest.raises(MetadataError, match=reason):
        ModelMetadata.from_dict(_meta_dict(energy_calibration=entry))


def _trained_pendulum(tmp_path):
    from test_train import damped_pendulum

    from hamwm_ros.worldmodel.data import load_npz
    from hamwm_ros.worldmodel.train import TrainOptions, build_model, fit
    np.savez(tmp_path / 'pendulum.npz', **damped_pendulum(n=12, steps=80))
    data = load_npz(tmp_path / 'pendulum.npz')
    train, val = data.split(0.25, 9, seed=0)
    torch.manual_seed(0)
    model = build_model(train, dict(hidden=16, mass_matrix='constant', input_map='constant'))
    metrics = fit(model, train, val, TrainOptions(epochs=3, batch_size=32, horizon=6, stride=3, lr=1e-2,
                                                  progress=False), tmp_path / 'model')
    return model, val, metrics


def test_energy_books_are_calibrated_on_validation_and_match_what_the_monitor_measures(tmp_path):
    from hamwm_ros.monitor.predict import predict_tick
    from hamwm_ros.runtime import SessionConfig, WorldModelRuntime
    from hamwm_ros.worldmodel.export import export_model
    from hamwm_ros.worldmodel.train import calibrate_energy
    model, val, metrics = _trained_pendulum(tmp_path)
    cal = model.energy_calibration
    assert cal is not None and metrics['energy_calibration'] == cal
    assert cal == calibrate_energy(model, val) and cal['info']['trajectories'] == len(val.obs)
    assert cal['steps'][0] == 1 and np.all(np.diff(cal['limits']) >= 0)
    assert HamiltonianWorldModel.load(tmp_path / 'model').energy_calibration == cal

    # The same residuals through the exported graphs, as the monitor computes them: encoded energies and the
    # one-step claimed power at every validation state (predict_tick's ``between`` rows).
    meta = export_model(model.eval(), tmp_path / 'onnx', robot='pendulum', joint_names=['hinge'], horizon=4,
                        training={'data_hash': 'sha256:test'}, include_checkpoint=False)
    assert meta.energy_calibration == EnergyCalibration.from_dict(cal)
    runtime = WorldModelRuntime.load(tmp_path / 'onnx', config=SessionConfig(providers=('cpu',)))
    residuals = []
    for obs, actions in zip(val.obs, val.actions):
        rows = predict_tick(runtime, obs[0], actions[0], 2, between=(obs[:-1], actions[:len(obs) - 1])).between
        energy, claimed = rows[:, 0], rows[:, 1]
        residuals.append(np.diff(energy) - claimed[:-1] * val.dt)
    residuals = np.concatenate(residuals)
    assert np.mean(residuals) == pytest.approx(cal['bias'], abs=0.05 * cal['limits'][0])
    # 95 % of single steps stay within the one-step limit: the fit is the 95 % quantile of these very residuals
    inside = np.mean(np.abs(residuals - cal['bias']) <= cal['limits'][0])
    assert 0.93 <= inside <= 0.97


def test_energy_calibration_is_skipped_where_it_cannot_be_fitted(tmp_path):
    from hamwm_ros.worldmodel.data import TrajectoryData
    from hamwm_ros.worldmodel.train import calibrate_energy
    model = HamiltonianWorldModel(ModelConfig(obs_dim=2, action_dim=1, latent_dim=1, hidden=8, layers=1, dt=0.05))
    short = TrajectoryData(obs=[np.zeros((5, 2))], actions=[np.zeros((4, 1))], dt=0.05, joint_names=['hinge'],
                           source='test')
    cal = calibrate_energy(model, short)   # 4 one-step windows only: fewer than the minimum for a quantile
    assert cal is None
    image_model = HamiltonianWorldModel(ModelConfig(obs_dim=2, action_dim=1, latent_dim=1, hidden=8, layers=1,
                                                    dt=0.05, encoder='image', image_shape=(8, 8, 3), n_frames=2))
    assert calibrate_energy(image_model, short) is None     # no frames to encode


def test_camera_model_energy_books_start_once_its_frame_history_exists():
    from test_train import damped_pendulum

    from hamwm_ros.worldmodel.data import TrajectoryData
    from hamwm_ros.worldmodel.train import calibrate_energy
    arrays = damped_pendulum(n=3, steps=30, images=True)
    obs = np.concatenate([arrays['position'], arrays['velocity']], -1)
    data = TrajectoryData(obs=list(obs), actions=list(arrays['action']), dt=float(arrays['dt']),
                          joint_names=['hinge'], images=list(arrays['images']), source='test')
    torch.manual_seed(0)
    model = HamiltonianWorldModel(ModelConfig(obs_dim=2, action_dim=1, latent_dim=1, hidden=8, layers=1, dt=0.05,
                                              encoder='image', image_shape=(12, 12, 1), n_frames=3))
    cal = calibrate_energy(model, data)
    assert cal is not None and cal['info']['trajectories'] == 3
    # 31 frames per trajectory, the first two complete no frame stack: 29 encoded states, 28 one-step residuals
    assert cal['steps'][0] == 1 and cal['info']['windows'][0] == 3 * 28
    assert cal['limits'][0] > 0 and math.isfinite(cal['bias'])
