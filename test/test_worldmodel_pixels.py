"""The pixel-pendulum protocol of the HNN paper (``hamwm_ros.worldmodel.pixels``): its pieces on tiny inputs."""

import numpy as np
import pytest
import torch
from torch import nn

from hamwm_ros.worldmodel import evaluate, pixels
from hamwm_ros.worldmodel.baselines import HNN, FieldModel

torch.set_num_threads(1)


class Rotation(FieldModel):
    """dz/dt = (z_p, -z_q): the unit harmonic oscillator, whose flow is a rotation by the elapsed time."""

    state_dim, action_dim = 2, 0

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def field(self, x, u=None):  # noqa: D102
        return self.scale * torch.stack([x[..., 1], -x[..., 0]], -1)


class Drift(FieldModel):
    """dz/dt = (0, 0.1): the momentum grows at a constant rate."""

    state_dim, action_dim = 2, 0

    def field(self, x, u=None):  # noqa: D102
        return torch.stack([torch.zeros_like(x[..., 0]), torch.full_like(x[..., 1], 0.1)], -1)


class CoordinateAutoencoder(nn.Module):
    """A stand-in autoencoder whose latent is written into / read from the first two pixels of the first frame."""

    def encode(self, frames):  # noqa: D102
        return frames[:, 0, 0, :2]

    def decode(self, z):  # noqa: D102
        out = z.new_zeros(*z.shape[:-1], 2, 4, 4)
        out[..., 0, 0, :2] = z
        return out


def test_observations_stack_each_frame_with_its_successor():
    frames = np.arange(2 * 5 * 3 * 3, dtype=np.float32).reshape(2, 5, 3, 3)
    obs = pixels.observations(frames)
    assert obs.shape == (2, 4, 2, 3, 3)
    np.testing.assert_array_equal(obs[1, 2, 0], frames[1, 2])
    np.testing.assert_array_equal(obs[1, 2, 1], frames[1, 3])


def test_probe_recovers_an_affine_map():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 2))
    a, b = np.array([[0.5, -2.0], [1.5, 0.3]]), np.array([0.1, -0.7])
    w = pixels.fit_probe(z, z @ a + b)
    np.testing.assert_allclose(w[:2], a, atol=1e-10)
    np.testing.assert_allclose(w[2], b, atol=1e-10)
    np.testing.assert_allclose(pixels.apply_probe(w, z[:3]), z[:3] @ a + b, atol=1e-10)


def test_field_models_step_euler_in_training_and_integrate_rk45_in_evaluation():
    rot = Rotation()
    z = torch.tensor([[1.0, 0.0], [0.2, -0.5]])
    stepper = pixels.Stepper(rot)
    assert not stepper.own_integrator
    torch.testing.assert_close(stepper(z), z + rot.field(z))  # the paper's z + f(z), one frame = one time unit
    z0 = np.array([[1.0, 0.0]])
    traj = stepper.trajectory(z0, 8, rtol=1e-9)
    t = np.arange(8.0)
    np.testing.assert_allclose(traj[0], np.stack([np.cos(t), -np.sin(t)], -1), atol=1e-6)
    hnn = HNN(2, hidden=8)
    hnn.train()
    zg = z.clone().requires_grad_(True)
    torch.testing.assert_close(pixels.Stepper(hnn)(zg), zg + hnn.field(zg))


def test_ours_steps_with_its_own_integrator():
    ours = evaluate.make_method('ours', 2, 0, hidden=8, dt=1.0, substeps=4)
    stepper = pixels.Stepper(ours)
    assert stepper.own_integrator
    z = torch.tensor([[0.3, -0.1]])
    torch.testing.assert_close(stepper(z), ours.model.step(z))
    traj = stepper.trajectory(z.numpy().astype(np.float64), 5, rtol=1e-9)
    assert traj.shape == (1, 5, 2)
    np.testing.assert_allclose(traj[0, 1], ours.model.step(z)[0].detach().numpy(), rtol=1e-5)


def test_joint_loss_terms():
    ae = CoordinateAutoencoder()
    x = torch.zeros(3, 2, 4, 4)
    x_next = torch.zeros(3, 2, 4, 4)
    x[:, 0, 0, :2] = torch.tensor([[0.0, 0.5], [1.0, -0.2], [2.0, 0.0]])
    x_next[:, 0, 0, :2] = torch.tensor([[0.5, 0.5], [0.8, -0.2], [2.0, 0.0]])
    rot = Rotation(scale=0.0)  # a field that predicts no motion
    terms = pixels.joint_losses(ae, pixels.Stepper(rot), x, x_next)
    torch.testing.assert_close(terms['recon'], torch.zeros(3))
    torch.testing.assert_close(terms['canon'], torch.zeros(3))  # z_p = z_q(t+1) - z_q(t) holds exactly
    torch.testing.assert_close(terms['dynamics'], torch.tensor([0.125, 0.02, 0.0]))


def test_rollout_loss_averages_the_errors_of_k_chained_steps():
    ae = CoordinateAutoencoder()
    windows = torch.zeros(2, 3, 2, 4, 4)          # two windows of K + 1 = 3 observations
    for k in range(3):
        windows[0, k, 0, 0, :2] = torch.tensor([0.1 * k, 0.1])      # moving at z_p = 0.1 per frame
        windows[1, k, 0, 0, :2] = torch.tensor([0.5, 0.0])          # at rest
    terms = pixels.rollout_losses(ae, pixels.Stepper(Rotation(scale=0.0)), windows)   # a step predicting no motion
    torch.testing.assert_close(terms['recon'], torch.zeros(2))
    torch.testing.assert_close(terms['canon'], torch.zeros(2))
    # window 0: the k-step prediction is off by 0.1 k in z_q: mean over k = 1, 2 of (0.1 k)^2 / 2
    torch.testing.assert_close(terms['dynamics'], torch.tensor([(0.01 / 2 + 0.04 / 2) / 2, 0.0]))
    # one step ahead it is the paper's loss on the window's first pair
    pair = pixels.rollout_losses(ae, pixels.Stepper(Rotation(scale=0.3)), windows[:, :2])
    paper = pixels.joint_losses(ae, pixels.Stepper(Rotation(scale=0.3)), windows[:, 0], windows[:, 1])
    for name in ('recon', 'canon', 'dynamics'):
        torch.testing.assert_close(pair[name], paper[name])


def test_a_multi_step_loss_needs_episodes_long_enough():
    proto = pixels.PixelProtocol.quick()            # rollout_steps 2
    ae = evaluate.PixelAutoencoder(proto.hidden)
    ours = evaluate.make_method('ours', 2, 0, hidden=8, dt=1.0, substeps=1)
    x = torch.rand(4, 2, 28, 28)
    with pytest.raises(ValueError, match='a 2-step loss needs episodes of more than 2 observations'):
        pixels.fit_joint(ae, ours, x, x, proto, 0)
    with pytest.raises(ValueError, match='a 2-step loss needs episodes'):
        pixels.fit_joint(ae, ours, x, x, proto, 0, episodes=torch.rand(3, 2, 2, 28, 28))
    # a baseline keeps the paper's one-step loss and needs no episodes
    history = pixels.fit_joint(ae, Rotation(), x, x, pixels.PixelProtocol(steps=2, batch=4, rollout_steps=2), 0)
    assert len(history) == 2 and all(np.isfinite(history))


def test_energy_metric_decodes_reencodes_and_probes():
    # Pendulums at rest: the true energy is constant, so a field predicting no motion scores exactly 0 and one that
    # rotates the latents scores the energy it invents; the probe (here the identity) maps latents to (theta, p).
    theta = np.array([0.1, -0.3, 0.5])
    coords = np.zeros((3, 6, 2))
    coords[..., 0] = theta[:, None]
    obs = np.zeros((3, 6, 2, 4, 4), dtype=np.float32)
    obs[:, :, 0, 0, :2] = coords
    probe = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    ae = CoordinateAutoencoder()
    still = pixels.evaluate_method(ae, Rotation(0.0), probe, obs, coords, rtol=1e-9)
    assert still['energy_mse_x1e3'] == pytest.approx(0.0, abs=1e-9)
    assert still['readout_floor_x1e3'] == pytest.approx(0.0, abs=1e-9)
    moving = pixels.evaluate_method(ae, Drift(), probe, obs, coords, rtol=1e-9)
    t = np.arange(6.0)
    expected = 1e3 * np.mean((0.1 * t) ** 4)  # p = 0.1 t appears from nowhere: the energy error is p^2
    assert moving['energy_mse_x1e3'] == pytest.approx(expected, rel=1e-4)
    assert moving['energy_mse_x1e3_no_reencode'] == pytest.approx(expected, rel=1e-4)
    assert moving['energy_mse_x1e3_t0'] == pytest.approx(0.0, abs=1e-9)


def test_quick_protocol_end_to_end():
    proto = pixels.PixelProtocol.quick()
    res = pixels.run_pixel_task(proto, 0, make_autoencoder=lambda: evaluate.PixelAutoencoder(proto.hidden),
                                make_dynamics=lambda m: evaluate.make_method(m, 2, 0, hidden=proto.hidden, dt=1.0,
                                                                             substeps=2),
                                methods=('hnn', 'ours'), log=lambda msg: None)
    assert res['protocol']['train_samples'] == 5 * (proto.frames - 2)
    assert res['protocol']['rollout_steps'] == 2          # ours trained on 2-step windows, the HNN on pairs
    assert res['protocol']['test_samples'] == 1 * (proto.frames - 2)
    for method in ('hnn', 'ours'):
        row = res[method]
        assert np.isfinite(row['energy_mse_x1e3']) and row['energy_mse_x1e3'] >= 0.0
        assert np.isfinite(row['readout_floor_x1e3']) and row['test_loss_x1e3'] > 0.0
        assert len(row['loss_history']) >= 1
    ae = evaluate.PixelAutoencoder(16)
    x = torch.rand(4, 2, 28, 28)
    assert ae.encode(x).shape == (4, 2) and ae.decode(ae.encode(x)).shape == (4, 2, 28, 28)
