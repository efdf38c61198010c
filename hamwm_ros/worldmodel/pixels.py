"""The HNN paper's pixel pendulum (Greydanus et al. 2019, Task 5 and Table 1) in the ``hamwm eval`` harness (torch).

What the paper measured, from its text (Section 5, Appendix C) and its code (``experiment-pixels`` and the
``analyze-pixels`` notebook of github.com/greydanus/hamiltonian-nn):

- Data: 200 torque-free Pendulum-v0 episodes started within |theta| < pi/6, 100 observations each; an observation is
  two consecutive 28x28 frames (0.05 s apart) and its target the next observation. 20 % of the samples are held out
  for the test loss.
- Model: per method, an MLP autoencoder (four fully connected layers of 200 each way, relu, residual connections,
  2-D latent z = (z_q, z_p)) trained *jointly* with the latent dynamics for 10000 Adam steps (lr 1e-3, batch 200,
  weight decay 1e-5) on reconstruction + ||z_p - (z_q(t+1) - z_q(t))||^2 + 0.1 ||z(t+1) - (z(t) + f(z(t)))||^2, one
  frame being one unit of latent time. The HNN's f is J dH/dz; the baseline's f an MLP.
- Energy MSE: encode the first observation of a test episode, integrate the latent field (RK45) over 100 frames,
  decode every latent to pixels, *encode the decoded pixels again*, map the latents to the true canonical
  coordinates (theta, 0.25 theta') with a linear map fitted by regression on the training latents, and compare the
  energy 1.9 (1 - cos theta) + p^2 with the true energy of the test episode's states (MSE over the frames).

Ours (a method with its own integrator, :class:`Stepper`) trains its latent dynamics on a ``rollout_steps``-step loss
(the product's ``hamwm train`` trains on multi-step rollouts too): the dynamics term is the mean over k = 1..K of
||z(t+k) - step^k(z(t))||^2 on windows of K + 1 observations, with reconstruction and the canonical term on the
window's first pair as in the paper. The paper's baselines keep its one-step loss (K = 1 is exactly the paper's).

So the metric lives in the true (theta, 0.25 theta') space, reached from each method's own latent space through a
probe fitted on training data only: it is comparable across methods, and the probe's own error is part of it
(:func:`run_pixel_task` reports that floor: the same read-out applied to the true frames, with no dynamics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics
from .baselines import WeightAverage
from .systems import gym_pendulum_energy, gym_pixel_dataset, integrate_fixed, solve_ivp


@dataclass(frozen=True)
class PixelProtocol:
    """Sizes of the paper's pixel-pendulum protocol (defaults) or of a quick test run."""

    trajectories: int = 200
    frames: int = 102           # 102 frames -> 101 observations -> 100 (observation, next observation) pairs
    test_split: float = 0.2
    steps: int = 10000
    batch: int = 200
    lr: float = 1e-3
    weight_decay: float = 1e-5
    dynamics_weight: float = 0.1
    hidden: int = 200
    eval_trajectories: int = 15  # the paper integrates one test episode; 15 give a steadier mean
    eval_frames: int = 100
    rtol: float = 1e-9           # the paper's integration tolerance
    average: float = 0.0         # > 0: evaluate an exponential moving average of the weights with this decay
    rollout_steps: int = 4       # K of the latent loss of methods with their own integrator (ours); baselines: 1

    @classmethod
    def quick(cls) -> PixelProtocol:
        """Tiny sizes for tests; the numbers mean nothing."""
        return cls(trajectories=6, frames=12, steps=40, batch=32, hidden=32, eval_trajectories=3, eval_frames=10,
                   rtol=1e-5, rollout_steps=2)


def observations(frames: np.ndarray) -> np.ndarray:
    """Frames (N, T, H, W) -> observations (N, T - 1, 2, H, W): each frame stacked with its successor."""
    return np.stack([frames[:, :-1], frames[:, 1:]], axis=2)


class Stepper:
    """One latent step of one frame (one unit of latent time) for a dynamics model.

    Field models (the MLP baseline, the HNN) take the paper's explicit Euler step z + f(z) in training and are
    integrated with RK45 in evaluation, as in the paper; ours steps with its own integrator in both.
    """

    def __init__(self, dyn: nn.Module):
        self.dyn = dyn
        self.own_integrator = hasattr(dyn, 'model') and hasattr(dyn.model, 'step')

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.own_integrator:
            return self.dyn.model.step(z)
        return z + self.dyn.field(z)

    def trajectory(self, z0: np.ndarray, n: int, rtol: float) -> np.ndarray:
        """Latents at frames 0..n-1 from z0 (B, 2): (B, n, 2) float64."""
        self.dyn.eval()
        if self.own_integrator:
            with torch.no_grad():
                z = self.dyn.model.rollout(torch.as_tensor(z0, dtype=torch.float32), None, horizon=n - 1)
            return np.concatenate([z0[:, None], z.double().numpy()], axis=1)
        t = np.arange(n, dtype=np.float64)
        f = self.dyn.numpy_field()
        try:
            return solve_ivp(f, z0, t, rtol=rtol, atol=rtol, max_steps=200_000)
        except RuntimeError:  # a field that blows up: fixed-step RK4, so the failure shows as a large or inf error
            with np.errstate(all='ignore'):
                return integrate_fixed(f, z0, t, substeps=10)


def joint_losses(ae: nn.Module, step: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 x_next: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample terms of the paper's loss: reconstruction, canonical coordinates ("p = dq/dt") and dynamics."""
    z, z_next = ae.encode(x), ae.encode(x_next)
    recon = ((ae.decode(z) - x) ** 2).flatten(1).mean(1)
    canon = (z[:, 1] - (z_next[:, 0] - z[:, 0])) ** 2
    dyn = ((z_next - step(z)) ** 2).mean(1)
    return {'recon': recon, 'canon': canon, 'dynamics': dyn}


def rollout_losses(ae: nn.Module, step: Callable[[torch.Tensor], torch.Tensor],
                   windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-window terms with a K-step dynamics loss; ``windows`` (B, K + 1, 2, H, W) are consecutive observations.

    Reconstruction and the canonical term are the paper's, on the window's first observation and pair; the dynamics
    term is the mean over k = 1..K of ||z(t+k) - step^k(z(t))||^2 (K = 1 gives :func:`joint_losses`' terms).
    """
    batch, length = windows.shape[:2]
    z = ae.encode(windows.reshape(-1, *windows.shape[2:])).reshape(batch, length, -1)
    recon = ((ae.decode(z[:, 0]) - windows[:, 0]) ** 2).flatten(1).mean(1)
    canon = (z[:, 0, 1] - (z[:, 1, 0] - z[:, 0, 0])) ** 2
    predicted, errors = z[:, 0], []
    for k in range(1, length):
        predicted = step(predicted)
        errors.append(((z[:, k] - predicted) ** 2).mean(1))
    return {'recon': recon, 'canon': canon, 'dynamics': torch.stack(errors).mean(0)}


def _total(terms: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
    return terms['recon'] + terms['canon'] + weight * terms['dynamics']


def fit_joint(ae: nn.Module, dyn: nn.Module, x: torch.Tensor, x_next: torch.Tensor, proto: PixelProtocol,
              seed: int, episodes: torch.Tensor | None = None) -> list[float]:
    """Train the autoencoder and the latent dynamics together (the paper's 10000 Adam steps); losses every 100.

    ``x`` / ``x_next`` are the training pairs; ``episodes`` (N, T, 2, H, W) the same observations by episode, which a
    method with its own integrator trains on in windows of ``proto.rollout_steps`` + 1 when that is above 1.

    Raises
    ------
    ValueError
        If windows are asked for without ``episodes`` or do not fit in them.
    """
    step = Stepper(dyn)
    steps_ahead = proto.rollout_steps if step.own_integrator else 1
    if steps_ahead > 1 and (episodes is None or episodes.shape[1] <= steps_ahead):
        raise ValueError(f'a {steps_ahead}-step loss needs episodes of more than {steps_ahead} observations')
    params = list(ae.parameters()) + list(dyn.parameters())
    opt = torch.optim.Adam(params, lr=proto.lr, weight_decay=proto.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    avg = WeightAverage(params, proto.average) if proto.average > 0 else None
    ae.train()
    dyn.train()
    history = []
    for k in range(proto.steps):
        if steps_ahead > 1:
            episode = torch.randint(0, episodes.shape[0], (proto.batch,), generator=gen)
            start = torch.randint(0, episodes.shape[1] - steps_ahead, (proto.batch,), generator=gen)
            windows = episodes[episode[:, None], start[:, None] + torch.arange(steps_ahead + 1)]
            terms = rollout_losses(ae, step, windows)
        else:
            idx = torch.randperm(len(x), generator=gen)[:proto.batch]
            terms = joint_losses(ae, step, x[idx], x_next[idx])
        loss = _total(terms, proto.dynamics_weight).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if avg is not None:
            avg.update()
        if k % 100 == 0 or k == proto.steps - 1:
            history.append(float(loss.detach()))
    if avg is not None:
        avg.load()
    ae.eval()
    dyn.eval()
    return history


def _mean_loss(ae: nn.Module, dyn: nn.Module, x: torch.Tensor, x_next: torch.Tensor, weight: float) -> float:
    """The paper's loss over a whole set, in chunks (the HNN's field needs autograd, so no no_grad here)."""
    step = Stepper(dyn)
    total, n = 0.0, 0
    for i in range(0, len(x), 2000):
        terms = joint_losses(ae, step, x[i:i + 2000], x_next[i:i + 2000])
        total += float(_total(terms, weight).detach().sum())
        n += len(terms['recon'])
    return total / max(n, 1)


def fit_probe(z: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Least-squares affine map latents (n, 2) -> canonical coordinates (n, 2); returns W (3, 2) with the bias last."""
    a = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    w, *_ = np.linalg.lstsq(a, coords, rcond=None)
    return w


def apply_probe(w: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Canonical coordinates (..., 2) from latents (..., 2)."""
    return z @ w[:2] + w[2]


def _encode(ae: nn.Module, obs: np.ndarray | torch.Tensor) -> np.ndarray:
    x = torch.as_tensor(obs, dtype=torch.float32)
    with torch.no_grad():
        return ae.encode(x.reshape(-1, *x.shape[-3:])).double().numpy().reshape(*x.shape[:-3], 2)


def evaluate_method(ae: nn.Module, dyn: nn.Module, probe: np.ndarray, test_obs: np.ndarray, test_coords: np.ndarray,
                    rtol: float) -> dict[str, Any]:
    """The paper's energy MSE on test episodes, plus the read-out floor with no dynamics."""
    n = test_obs.shape[1]
    e_true = gym_pendulum_energy(test_coords)
    z0 = _encode(ae, test_obs[:, 0])
    z = Stepper(dyn).trajectory(z0, n, rtol)
    finite = np.all(np.isfinite(z), axis=-1)
    with torch.no_grad():
        decoded = ae.decode(torch.as_tensor(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0),
                                            dtype=torch.float32))
    size = test_obs.shape[-1]
    z_again = _encode(ae, decoded.reshape(*z.shape[:-1], 2, size, size))
    e_pred = np.where(finite, gym_pendulum_energy(apply_probe(probe, z_again)), np.inf)
    e_latent = np.where(finite, gym_pendulum_energy(apply_probe(probe, z)), np.inf)
    e_floor = gym_pendulum_energy(apply_probe(probe, _encode(ae, test_obs)))
    per_traj = np.mean((e_pred - e_true) ** 2, axis=1)
    quarters = np.array_split(np.arange(n), 4)
    return {
        'energy_mse_x1e3': 1e3 * metrics.energy_mse(e_pred, e_true),
        'energy_mse_x1e3_sem': 1e3 * float(np.std(per_traj) / np.sqrt(len(per_traj))),
        'energy_mse_x1e3_no_reencode': 1e3 * metrics.energy_mse(e_latent, e_true),
        'readout_floor_x1e3': 1e3 * metrics.energy_mse(e_floor, e_true),
        'energy_mse_x1e3_t0': 1e3 * metrics.energy_mse(e_pred[:, 0], e_true[:, 0]),
        'energy_mse_x1e3_by_quarter': [1e3 * metrics.energy_mse(e_pred[:, i], e_true[:, i]) for i in quarters],
        'energy_mse_x1e3_per_trajectory': (1e3 * per_traj).tolist(),
    }


def run_pixel_task(proto: PixelProtocol, seed: int, make_autoencoder: Callable[[], nn.Module],
                   make_dynamics: Callable[[str], nn.Module], methods: Sequence[str],
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every method the paper's way (its own autoencoder, jointly) and measure the paper's energy MSE.

    Every method starts from the same seed, so the autoencoders start from the same weights and see the same batches;
    only the latent dynamics differ (and, through the joint loss, what the autoencoders learn).
    """
    data = gym_pixel_dataset(seed=seed, n_trajectories=proto.trajectories, n_frames=proto.frames)
    obs = observations(data['frames'])                        # (N, T - 1, 2, 28, 28)
    coords = data['coords'][:, :-1]                           # state of each observation's first frame
    n_test = max(1, int(round(proto.trajectories * proto.test_split)))
    split = proto.trajectories - n_test
    x_all = torch.as_tensor(obs[:, :-1])
    xn_all = torch.as_tensor(obs[:, 1:])
    x, x_next = x_all[:split].reshape(-1, *obs.shape[2:]), xn_all[:split].reshape(-1, *obs.shape[2:])
    x_test, xn_test = x_all[split:].reshape(-1, *obs.shape[2:]), xn_all[split:].reshape(-1, *obs.shape[2:])
    probe_coords = coords[:split, :-1].reshape(-1, 2)

    test = gym_pixel_dataset(seed=seed + 2000, n_trajectories=proto.eval_trajectories, n_frames=proto.eval_frames + 1)
    test_obs, test_coords = observations(test['frames']), test['coords'][:, :-1]
    e_true = gym_pendulum_energy(test_coords)
    out: dict[str, Any] = {'protocol': {**asdict(proto), 'train_samples': len(x), 'test_samples': len(x_test),
                                        'frame_dt': float(data['dt']),
                                        'true_energy_mean': float(e_true.mean()),
                                        'true_energy_oscillation_rms': float(np.sqrt(np.mean(
                                            (e_true - e_true.mean(1, keepdims=True)) ** 2))),
                                        'energy': 'paper: decode, re-encode, linear probe to (theta, 0.25 theta'
                                                  "'), H = 1.9 (1 - cos theta) + p^2"}}
    for method in methods:
        t0 = time.time()
        torch.manual_seed(seed)
        np.random.seed(seed % (2 ** 32))
        ae, dyn = make_autoencoder(), make_dynamics(method)
        history = fit_joint(ae, dyn, x, x_next, proto, seed, episodes=torch.as_tensor(obs[:split]))
        probe = fit_probe(_encode(ae, x), probe_coords)
        res = evaluate_method(ae, dyn, probe, test_obs, test_coords, proto.rtol)
        res['train_loss_x1e3'] = 1e3 * _mean_loss(ae, dyn, x, x_next, proto.dynamics_weight)
        res['test_loss_x1e3'] = 1e3 * _mean_loss(ae, dyn, x_test, xn_test, proto.dynamics_weight)
        res['loss_history'] = history
        res['seconds'] = time.time() - t0
        out[method] = res
        log(f'pixel_pendulum   {method:4s} energy MSE x1e3 = {res["energy_mse_x1e3"]:.4g} '
            f'(read-out floor {res["readout_floor_x1e3"]:.3g}, test loss x1e3 {res["test_loss_x1e3"]:.3g}, '
            f'{res["seconds"]:.0f} s)')
    return out
