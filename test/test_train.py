"""``hamwm train``: loss goes down, outputs, resume, DDP (world size 1), npz formats, ensembles, images."""

import json

import numpy as np
import pytest
import torch

from hamwm_ros.worldmodel.data import DataError, WindowDataset, load_npz
from hamwm_ros.worldmodel.model import HamiltonianWorldModel
from hamwm_ros.worldmodel.train import TrainOptions, build_model, evaluate_windows, fit, main

torch.set_num_threads(1)


def damped_pendulum(n=16, steps=60, dt=0.05, seed=0, images=False):
    """Driven damped pendulum rollouts (fine semi-implicit integration), as a robot would log them."""
    rng = np.random.default_rng(seed)
    q = np.zeros((n, steps + 1))
    v = np.zeros((n, steps + 1))
    a = np.repeat(rng.normal(0, 1.0, (n, steps // 5 + 1)), 5, axis=1)[:, :steps]
    qq, vv = rng.uniform(-2, 2, n), rng.uniform(-1, 1, n)
    q[:, 0], v[:, 0] = qq, vv
    for t in range(steps):
        for _ in range(10):
            vv = vv + dt / 10 * (-9.81 * np.sin(qq) - 0.4 * vv + a[:, t])
            qq = qq + dt / 10 * vv
        q[:, t + 1], v[:, t + 1] = qq, vv
    out = dict(dt=dt, position=q[..., None], velocity=v[..., None], action=a[..., None],
               joint_names=np.array(['hinge']))
    if images:  # a dot on a 12x12 canvas at the pendulum tip
        img = np.zeros((n, steps + 1, 12, 12, 1), np.uint8)
        x = np.clip((6 + 4.5 * np.sin(q)).round().astype(int), 0, 11)
        y = np.clip((6 + 4.5 * np.cos(q)).round().astype(int), 0, 11)
        for i in range(n):
            img[i, np.arange(steps + 1), y[i], x[i], 0] = 255
        out['images'] = img
    return out


@pytest.fixture
def pendulum_npz(tmp_path):
    path = tmp_path / 'pendulum.npz'
    np.savez(path, **damped_pendulum())
    return path


@pytest.mark.parametrize('encoder', ['mlp', 'configuration'])
def test_training_reduces_rollout_loss(pendulum_npz, encoder):
    data = load_npz(pendulum_npz)
    train, val = data.split(0.2, 9, seed=0)
    torch.manual_seed(0)
    model = build_model(train, dict(hidden=16, mass_matrix='constant', input_map='constant', encoder=encoder))
    opts = TrainOptions(epochs=6, batch_size=32, horizon=6, stride=2, lr=1e-2, progress=False)
    val_ds = WindowDataset(val, 6, 2)
    before = evaluate_windows(model, val_ds)
    metrics = fit(model, train, val, opts)
    after = evaluate_windows(model, val_ds)
    losses = [e['train_loss'] for e in metrics['epochs']]
    assert losses[-1] < 0.5 * losses[0]
    assert after < 0.5 * before
    assert metrics['best_score'] == pytest.approx(after, rel=1e-4)  # the best weights are the ones kept


def test_cli_outputs_and_resume(pendulum_npz, tmp_path):
    out = tmp_path / 'run'
    common = ['--data', f'npz:{pendulum_npz}', '--out', str(out), '--hidden', '8', '--horizon', '4',
              '--stride', '4', '--batch-size', '32', '--quiet', '--mass-matrix', 'constant']
    assert main(common + ['--epochs', '2']) == 0
    for name in ('model.pt', 'config.json', 'normalisation.json', 'info.json', 'metrics.json', 'checkpoint.pt'):
        assert (out / name).is_file(), name
    first = json.loads((out / 'metrics.json').read_text())
    assert len(first['epochs']) == 2
    norm = json.loads((out / 'normalisation.json').read_text())
    assert len(norm['obs_mean']) == 2 and norm['obs_std'][0] > 0.1
    assert main(common + ['--epochs', '3', '--resume']) == 0
    resumed = json.loads((out / 'metrics.json').read_text())
    assert len(resumed['epochs']) == 3
    assert resumed['epochs'][:2] == first['epochs'][:2]  # history carried over, not retrained
    model = HamiltonianWorldModel.load(out)
    assert model.info['joint_names'] == ['hinge']
    assert 'action_source' not in model.info            # the default: the effort acting on the joints
    # the energy books are calibrated on the validation split unless told not to
    assert model.energy_calibration is not None and model.energy_calibration == resumed['energy_calibration']
    assert main(common[:2] + ['--out', str(tmp_path / 'raw'), *common[4:], '--epochs', '1', '--no-calibration']) == 0
    assert HamiltonianWorldModel.load(tmp_path / 'raw').energy_calibration is None
    assert main(common[:2] + ['--out', str(tmp_path / 'ff'), *common[4:], '--epochs', '1',
                              '--action-source', 'feedforward']) == 0
    assert HamiltonianWorldModel.load(tmp_path / 'ff').info['action_source'] == 'feedforward'
    assert model.cfg.dt == pytest.approx(0.05)
    # resuming with a different model is refused
    assert main(common + ['--epochs', '4', '--resume', '--hidden', '12']) == 2


def test_seeded_training_is_reproducible(pendulum_npz, tmp_path):
    args = ['--data', f'npz:{pendulum_npz}', '--hidden', '8', '--horizon', '4', '--stride', '4', '--epochs', '1',
            '--quiet', '--seed', '3']
    assert main(args + ['--out', str(tmp_path / 'a')]) == 0
    assert main(args + ['--out', str(tmp_path / 'b')]) == 0
    la = json.loads((tmp_path / 'a' / 'metrics.json').read_text())['epochs'][0]['train_loss']
    lb = json.loads((tmp_path / 'b' / 'metrics.json').read_text())['epochs'][0]['train_loss']
    assert la == lb


def test_ddp_single_process_gloo(pendulum_npz, tmp_path, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    for k, v in dict(WORLD_SIZE='1', RANK='0', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port)).items():
        monkeypatch.setenv(k, v)
    rc = main(['--data', f'npz:{pendulum_npz}', '--out', str(tmp_path / 'ddp'), '--hidden', '8', '--horizon', '4',
               '--stride', '4', '--epochs', '1', '--quiet', '--device', 'cpu'])
    assert rc == 0
    metrics = json.loads((tmp_path / 'ddp' / 'metrics.json').read_text())
    assert metrics['world_size'] == 1
    assert np.isfinite(metrics['epochs'][0]['train_loss'])
    assert not torch.distributed.is_initialized()


def test_ensemble_training_gives_spread(pendulum_npz):
    data = load_npz(pendulum_npz)
    torch.manual_seed(0)
    model = build_model(data, dict(hidden=8, ensemble=3, mass_matrix='constant', input_map='constant'))
    fit(model, data, None, TrainOptions(epochs=1, batch_size=32, horizon=4, stride=4, progress=False))
    obs = torch.as_tensor(data.obs[0][:5], dtype=torch.float32)
    acts = torch.as_tensor(np.stack([data.actions[0][i:i + 6] for i in range(5)]), dtype=torch.float32)
    mean, std = model.predict_mean_std(obs, acts)
    assert mean.shape == (5, 6, 2)
    assert torch.all(std > 0)


def test_identity_encoder_with_derivative_loss(tmp_path):
    # HNN protocol: canonical (q, p) observations with their time derivatives, H = 3(1 - cos q) + p^2.
    rng = np.random.default_rng(0)
    n, steps, dt = 10, 30, 0.1
    z = np.zeros((n, steps + 1, 2))
    z[:, 0, 0], z[:, 0, 1] = rng.uniform(-2, 2, n), rng.uniform(-1, 1, n)
    for t in range(steps):
        q, p = z[:, t, 0].copy(), z[:, t, 1].copy()
        for _ in range(20):
            p = p - dt / 20 * 3 * np.sin(q)
            q = q + dt / 20 * 2 * p
        z[:, t + 1] = np.stack([q, p], -1)
    zdot = np.stack([2 * z[..., 1], -3 * np.sin(z[..., 0])], -1)
    np.savez(tmp_path / 'hnn.npz', dt=dt, obs=z, obs_dot=zdot)
    data = load_npz(tmp_path / 'hnn.npz')
    assert data.action_dim == 0 and data.obs_dot is not None
    torch.manual_seed(0)
    model = build_model(data, dict(encoder='identity', hidden=16, control=False, dissipation=False,
                                   residual=False, hamiltonian='general', integrator='leapfrog'))
    metrics = fit(model, data, None, TrainOptions(epochs=5, batch_size=32, horizon=2, lr=1e-2, progress=False))
    first, last = metrics['epochs'][0], metrics['epochs'][-1]
    assert last['train_derivative'] < 0.5 * first['train_derivative']
    assert torch.equal(model.obs_std, torch.ones(2))  # canonical coordinates are not rescaled


def test_fused_image_training_runs(tmp_path):
    np.savez(tmp_path / 'pix.npz', **damped_pendulum(n=6, steps=20, images=True))
    rc = main(['--data', f'npz:{tmp_path / "pix.npz"}', '--out', str(tmp_path / 'm'), '--encoder', 'fused',
               '--hidden', '8', '--horizon', '3', '--stride', '3', '--epochs', '2', '--quiet'])
    assert rc == 0
    metrics = json.loads((tmp_path / 'm' / 'metrics.json').read_text())
    assert 'train_image' in metrics['epochs'][0]
    model = HamiltonianWorldModel.load(tmp_path / 'm')
    assert model.cfg.image_shape == (12, 12, 1)


def test_bad_npz_and_short_data(tmp_path):
    np.savez(tmp_path / 'bad.npz', position=np.zeros((2, 5, 1)))
    with pytest.raises(DataError, match='dt'):
        load_npz(tmp_path / 'bad.npz')
    np.savez(tmp_path / 'short.npz', **damped_pendulum(n=2, steps=3))
    assert main(['--data', f'npz:{tmp_path / "short.npz"}', '--out', str(tmp_path / 'm'), '--horizon', '8',
                 '--quiet']) == 2
    assert main(['--data', 'ftp:x', '--out', str(tmp_path / 'm'), '--quiet']) == 2


def test_cli_square_damping_is_saved_and_reloaded(pendulum_npz, tmp_path):
    rc = main(['--data', f'npz:{pendulum_npz}', '--out', str(tmp_path / 'sq'), '--hidden', '8', '--horizon', '4',
               '--stride', '4', '--epochs', '1', '--damping-param', 'square', '--damping-map', 'constant',
               '--quiet'])
    assert rc == 0
    assert json.loads((tmp_path / 'sq' / 'config.json').read_text())['damping_param'] == 'square'
    model = HamiltonianWorldModel.load(tmp_path / 'sq')
    assert model.cfg.damping_param == 'square'
    D = model.damping_matrix(torch.zeros(1, 2 * model.cfg.latent_dim))
    assert torch.linalg.eigvalsh(D[0]).min() >= -1e-7


def test_simulated_robot_data_trains(tmp_path):
    pytest.importorskip('hamwm_ros.sim.rollouts')
    rc = main(['--data', 'sim:pendulum', '--trajectories', '4', '--steps', '40', '--out', str(tmp_path / 'sim'),
               '--hidden', '8', '--horizon', '4', '--stride', '4', '--epochs', '1', '--quiet'])
    assert rc == 0
    info = json.loads((tmp_path / 'sim' / 'info.json').read_text())
    assert info['data_source'] == 'sim:pendulum' and info['joint_names']


def test_ensemble_spread_is_calibrated_on_validation_trajectories(pendulum_npz, tmp_path, monkeypatch):
    from hamwm_ros.worldmodel import train as train_mod
    seen = []
    real = train_mod.fit_spread_calibration

    def spy(members, target, *args, **kwargs):
        seen.append(target)
        return real(members, target, *args, **kwargs)

    monkeypatch.setattr(train_mod, 'fit_spread_calibration', spy)
    data = load_npz(pendulum_npz)
    train, val = data.split(0.25, 9, seed=0)
    torch.manual_seed(0)
    model = build_model(train, dict(hidden=8, ensemble=2, mass_matrix='constant', input_map='constant'))
    metrics = fit(model, train, val, TrainOptions(epochs=1, batch_size=32, horizon=4, stride=4, progress=False,
                                                  calibration_horizon=20), tmp_path / 'm')
    assert len(seen) == 1 and seen[0].shape[1] == 20
    rows = {tuple(np.float32(r)) for r in seen[0].reshape(-1, 2)}
    val_rows = {tuple(r) for o in val.obs for r in o.astype(np.float32)}
    train_rows = {tuple(r) for o in train.obs for r in o.astype(np.float32)}
    assert rows <= val_rows and not rows & train_rows  # fitted on validation data only
    cal = model.spread_calibration
    assert cal['info']['trajectories'] == len(val.obs) and cal['steps'][-1] == 20
    assert metrics['spread_calibration'] == cal
    assert HamiltonianWorldModel.load(tmp_path / 'm').spread_calibration == cal
    # No validation data, or a single model: nothing to calibrate on.
    single = build_model(train, dict(hidden=8, mass_matrix='constant', input_map='constant'))
    fit(single, train, val, TrainOptions(epochs=1, batch_size=32, horizon=4, stride=4, progress=False))
    assert single.spread_calibration is None
