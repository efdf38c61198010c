"""Baselines the Hamiltonian world model is measured against, in one harness (torch).

- ``DerivativeMLP``: the HNN paper's baseline, an MLP that predicts dx/dt (plus the input u when there is one).
- ``HNN``: Hamiltonian Neural Network (Greydanus et al. 2019), a scalar H(x) network whose field J dH/dx comes from
  autograd, integrated with RK4 (or the adaptive RK45 in ``systems.solve_ivp`` for the paper protocol).
- ``GRUWorldModel``: a deterministic recurrent latent model (the deterministic path of a recurrent world model),
  encoding x0 into a hidden state that a GRU cell advances under the actions; it never sees later observations.

All three expose ``rollout(x0, actions, dt) -> (B, H, d)`` so multi-step training and evaluation treat them alike, and
the field models expose ``field(x, u)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn


def mlp(n_in: int, n_out: int, hidden: int = 200, layers: int = 2, activation: type[nn.Module] = nn.Tanh,
        ) -> nn.Sequential:
    """A fully connected network with ``layers`` hidden layers (the HNN paper uses 2 x 200, tanh)."""
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        lin = nn.Linear(width, hidden)
        nn.init.orthogonal_(lin.weight)  # as in the paper's code
        mods += [lin, activation()]
        width = hidden
    mods.append(nn.Linear(width, n_out, bias=n_out != 1))
    nn.init.orthogonal_(mods[-1].weight)
    return nn.Sequential(*mods)


def rk4(field: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], x: torch.Tensor,
        u: torch.Tensor | None, dt: float, substeps: int = 1) -> torch.Tensor:
    """RK4 with the input held over the step (zero-order hold)."""
    h = dt / substeps
    for _ in range(substeps):
        k1 = field(x, u)
        k2 = field(x + 0.5 * h * k1, u)
        k3 = field(x + 0.5 * h * k2, u)
        k4 = field(x + h * k3, u)
        x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


class FieldModel(nn.Module):
    """A learned vector field dx/dt = f(x, u), rolled out with RK4."""

    state_dim: int
    action_dim: int
    substeps = 1

    def field(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """dx/dt at x (B, d) under u (B, m)."""
        raise NotImplementedError

    def rollout(self, x0: torch.Tensor, actions: torch.Tensor, dt: float) -> torch.Tensor:
        """States after each action, (B, H, d); actions (B, H, m), m may be 0."""
        xs = []
        x = x0
        for k in range(actions.shape[1]):
            u = actions[:, k] if self.action_dim else None
            x = rk4(self.field, x, u, dt, self.substeps)
            xs.append(x)
        return torch.stack(xs, dim=1)

    def numpy_field(self) -> Callable[[np.ndarray], np.ndarray]:
        """The autonomous field as a numpy function, for ``systems.solve_ivp``."""
        def f(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return self.field(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
        return f


class DerivativeMLP(FieldModel):
    """The paper's baseline: an MLP from (x, u) straight to dx/dt."""

    def __init__(self, state_dim: int, action_dim: int = 0, hidden: int = 200, layers: int = 2):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.net = mlp(state_dim + action_dim, state_dim, hidden, layers)

    def field(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        if self.action_dim:
            if u is None:
                u = x.new_zeros(x.shape[:-1] + (self.action_dim,))
            x = torch.cat([x, u], dim=-1)
        return self.net(x)


class HNN(FieldModel):
    """Hamiltonian Neural Network: dx/dt = J dH/dx (+ B u, a learned constant input map) with H an MLP.

    The paper's "solenoidal" field only; its field is divergence-free by construction (a test checks it).
    """

    def __init__(self, state_dim: int, action_dim: int = 0, hidden: int = 200, layers: int = 2):
        super().__init__()
        if state_dim % 2:
            raise ValueError('HNN needs an even state dimension (q, p)')
        self.state_dim, self.action_dim = state_dim, action_dim
        self.net = mlp(state_dim, 1, hidden, layers)
        self.input_map = nn.Parameter(torch.zeros(state_dim, action_dim)) if action_dim else None

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """H(x), (B,)."""
        return self.net(x).squeeze(-1)

    def field(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        with torch.enable_grad():  # the field needs autograd even inside an evaluation's no_grad block
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            grad = torch.autograd.grad(self.energy(x).sum(), x, create_graph=self.training)[0]
        n = self.state_dim // 2
        dx = torch.cat([grad[..., n:], -grad[..., :n]], dim=-1)
        if self.action_dim and u is not None:
            dx = dx + u @ self.input_map.T
        return dx


class GRUWorldModel(nn.Module):
    """Deterministic recurrent latent model: h0 = enc(x0); h_{k+1} = GRU([u_k, dt-free], h_k); x_{k+1} = dec(h_{k+1}).

    Size-matched to the MLP baselines by its hidden width; the prediction is a residual on the decoded previous state
    so that a freshly initialised model starts near "nothing moves".
    """

    def __init__(self, state_dim: int, action_dim: int = 0, hidden: int = 128):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.encoder = mlp(state_dim, hidden, hidden, 1)
        self.cell = nn.GRUCell(max(action_dim, 1) + state_dim, hidden)
        self.decoder = mlp(hidden, state_dim, hidden, 1)

    def rollout(self, x0: torch.Tensor, actions: torch.Tensor, dt: float) -> torch.Tensor:
        """States after each action, (B, H, d); ``dt`` is implicit in the training data."""
        h = torch.tanh(self.encoder(x0))
        x = x0
        xs = []
        for k in range(actions.shape[1]):
            u = actions[:, k] if self.action_dim else x0.new_zeros(x0.shape[0], 1)
            h = self.cell(torch.cat([u, x], dim=-1), h)
            x = x + self.decoder(h)
            xs.append(x)
        return torch.stack(xs, dim=1)


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------

class WeightAverage:
    """Exponential moving average of parameters (Polyak averaging), loaded into them at the end of training.

    The decay ramps up as min(decay, (1 + k) / (10 + k)) after k updates, so the average forgets the initialisation
    within the first few hundred steps instead of keeping ``decay ** steps`` of it. Averaging the last ~1 / (1 - decay)
    iterates removes the step-to-step optimisation noise that a single final iterate carries.

    Parameters
    ----------
    params
        The parameters being trained.
    decay
        Final decay (e.g. 0.999: an average over roughly the last 1000 steps).
    """

    def __init__(self, params: Iterable[nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f'decay must be in (0, 1), got {decay}')
        self.params = list(params)
        self.decay = decay
        self.count = 0
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current parameters into the average."""
        beta = min(self.decay, (1.0 + self.count) / (10.0 + self.count))
        for avg, p in zip(self.shadow, self.params):
            avg.mul_(beta).add_(p.detach(), alpha=1.0 - beta)
        self.count += 1

    @torch.no_grad()
    def load(self) -> None:
        """Copy the averaged values into the parameters."""
        for avg, p in zip(self.shadow, self.params):
            p.copy_(avg)


def fit_derivatives(model: nn.Module, field: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, dx: np.ndarray,
                    steps: int = 2000, lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0,
                    batch_size: int | None = None, cosine: bool = False, average: float = 0.0) -> list[float]:
    """The HNN paper's training: regress ``field(x)`` onto dx/dt with Adam, full batch by default.

    ``cosine`` decays the learning rate to 5 % over the run (the paper keeps it constant). ``average`` > 0 keeps an
    exponential moving average of the weights with that decay (:class:`WeightAverage`) and leaves the model with the
    averaged weights (the paper uses the last iterate).

    Returns
    -------
    list of float
        The training loss every step.

    Raises
    ------
    ValueError
        If x and dx differ in shape.
    """
    if x.shape != dx.shape:
        raise ValueError(f'x {x.shape} and dx {dx.shape} differ')
    torch.manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    dxt = torch.as_tensor(dx, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05) if cosine else None
    gen = torch.Generator().manual_seed(seed)
    avg = WeightAverage(model.parameters(), average) if average > 0 else None
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(xt), (batch_size,), generator=gen) if batch_size else slice(None)
        loss = ((field(xt[idx]) - dxt[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if avg is not None:
            avg.update()
        losses.append(float(loss.detach()))
    if avg is not None:
        avg.load()
    model.eval()
    return losses


def trajectory_bootstrap(n_trajectories: int, members: int, seed: int = 0) -> torch.Tensor:
    """Bayesian-bootstrap weights (members, n_trajectories) of whole trajectories, mean 1 per member.

    Each member weighs the trajectories with its own draw of Dirichlet(1, ..., 1) weights (normalised Exp(1)
    variables, Rubin's Bayesian bootstrap) scaled by ``n_trajectories``: like resampling with replacement it gives the
    members different views of the data, but every trajectory keeps a positive weight, so no member loses data.
    Drawn from a generator seeded by ``seed`` alone (reproducible across ranks and resumes).
    """
    gen = np.random.default_rng([seed, 7919])
    w = gen.exponential(size=(members, n_trajectories))
    return torch.as_tensor(w * n_trajectories / w.sum(1, keepdims=True), dtype=torch.float32)


def windows(states: np.ndarray, actions: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All length-``horizon`` windows: x0 (W, d), actions (W, horizon, m), targets (W, horizon, d)."""
    n, t1, _ = states.shape
    starts = range(t1 - horizon)
    x0 = np.concatenate([states[:, s] for s in starts])
    act = np.concatenate([actions[:, s:s + horizon] for s in starts])
    tgt = np.concatenate([states[:, s + 1:s + 1 + horizon] for s in starts])
    return x0, act, tgt


def fit_rollouts(rollout: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], params: Iterable[nn.Parameter],
                 states: np.ndarray,
                 actions: np.ndarray, horizon: int = 4, steps: int = 1500, lr: float = 1e-3, batch_size: int = 256,
                 seed: int = 0, weight_decay: float = 0.0, bootstrap: int = 0, average: float = 0.0,
                 penalty: Callable[[], torch.Tensor] | None = None) -> list[float]:
    """Multi-step training on trajectories: MSE of ``rollout(x0, actions)`` over windows of ``horizon`` steps.

    Parameters
    ----------
    rollout : callable
        (x0 (B, d), actions (B, H, m)) -> predicted states (B, H, d).
    params : iterable of torch parameters
        What the optimiser updates.
    states, actions : ndarray
        (N, T + 1, d) and (N, T, m).
    horizon, steps, lr, batch_size, seed, weight_decay
        Window length, optimiser steps, Adam settings (cosine-decayed lr), windows per batch, RNG seed.
    bootstrap : int
        Ensemble size E for per-member bootstrap weights on whole trajectories (0: off; see
        :func:`trajectory_bootstrap`), fixed weights on each window of member e's loss; the rollout must then return
        (E, B, H, d). With independent initialisations this gives the members' spread.
    average : float
        Decay of an exponential moving average of the parameters (:class:`WeightAverage`; 0: off), which are left
        holding the average at the end.
    penalty : callable, optional
        A scalar prior term added to every step's loss (e.g. a sparsity prior on a model's damping).

    Returns
    -------
    list of float
        Training loss per step.

    Raises
    ------
    ValueError
        If the trajectories are shorter than the horizon.
    """
    if states.shape[1] <= horizon:
        raise ValueError(f'trajectories of {states.shape[1]} states are too short for horizon {horizon}')
    torch.manual_seed(seed)
    x0, act, tgt = (torch.as_tensor(a, dtype=torch.float32) for a in windows(states, actions, horizon))
    weights = None
    if bootstrap > 0:
        per_trajectory = trajectory_bootstrap(len(states), bootstrap, seed)
        weights = per_trajectory[:, np.arange(len(x0)) % len(states)]  # windows() stacks trajectories per start offset
    params = list(params)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    gen = torch.Generator().manual_seed(seed)
    # Per-dimension scale so that small coordinates (e.g. momenta of a light pole) count as much as large ones.
    scale = tgt.reshape(-1, tgt.shape[-1]).std(0).clamp_min(1e-3)
    avg = WeightAverage(params, average) if average > 0 else None
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(x0), (min(batch_size, len(x0)),), generator=gen)
        pred = rollout(x0[idx], act[idx])
        err = ((pred - tgt[idx]) / scale) ** 2
        if weights is None:
            loss = err.mean()
        else:
            if err.dim() != 4 or err.shape[0] != len(weights):
                raise ValueError(f'bootstrap={len(weights)} needs (E, B, H, d) rollouts, got {tuple(err.shape)}')
            w = weights[:, idx]
            loss = ((err.mean((2, 3)) * w).sum(1) / w.sum(1).clamp_min(1e-6)).mean()
        if penalty is not None:
            loss = loss + penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if avg is not None:
            avg.update()
        losses.append(float(loss.detach()))
    if avg is not None:
        avg.load()
    return losses
