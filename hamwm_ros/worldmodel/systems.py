"""Analytic benchmark systems and datasets for world-model evaluation (numpy only).

Every system is written in canonical coordinates x = (q, p), with dx/dt = (J - R) dH/dx + B u, so a Hamiltonian world
model with an identity encoder can represent it exactly. The systems are the HNN paper's (Greydanus et al. 2019) ideal
mass-spring and pendulum in the paper code's convention (H = q^2 + p^2 and H = 3(1 - cos q) + p^2, i.e. no factor
1/2), a damped pendulum, a double pendulum, and cart-pole and acrobot with control inputs (analytic ODEs; the MuJoCo
robots live in ``hamwm_ros.sim``). A pixel pendulum renders 28x28 images of the pendulum in numpy.

There is no scipy in the training environment, so the adaptive Dormand-Prince RK45 integrator used for ground truth
and for the HNN protocol's learned-field integration is implemented here, batched over initial states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Field = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------------------------------
# Integrators
# ----------------------------------------------------------------------------------------------------------------------

def rk4_step(f: Field, x: np.ndarray, dt: float) -> np.ndarray:
    """One classical Runge-Kutta 4 step of dx/dt = f(x)."""
    k1 = f(x)
    k2 = f(x + 0.5 * dt * k1)
    k3 = f(x + 0.5 * dt * k2)
    k4 = f(x + dt * k3)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


# Dormand-Prince 5(4) tableau.
_DP_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_DP_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_DP_B5 = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
_DP_B4 = np.array([5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])


def solve_ivp(f: Field, x0: np.ndarray, t_eval: np.ndarray, rtol: float = 1e-10, atol: float = 1e-10,
              max_steps: int = 1_000_000) -> np.ndarray:
    """Adaptive Dormand-Prince RK45 for an autonomous field, batched over the leading axes of ``x0``.

    One step size is shared by the whole batch (the error norm is the batch maximum), which keeps the learned-field
    calls batched; outputs at ``t_eval`` come from stepping exactly onto each requested time.

    Parameters
    ----------
    f : callable
        dx/dt = f(x), x of shape (..., d).
    x0 : ndarray (..., d)
        Initial states.
    t_eval : ndarray (T,)
        Increasing output times; t_eval[0] is the time of x0.
    rtol, atol : float
        Error tolerances (as in scipy's solve_ivp).
    max_steps : int
        Bound on accepted plus rejected steps.

    Returns
    -------
    ndarray (..., T, d)
        The solution at ``t_eval``.

    Raises
    ------
    ValueError
        If ``t_eval`` is not increasing.
    RuntimeError
        If the step budget runs out or the state becomes non-finite.
    """
    t_eval = np.asarray(t_eval, dtype=np.float64)
    if t_eval.ndim != 1 or np.any(np.diff(t_eval) <= 0):
        raise ValueError('t_eval must be a strictly increasing 1-D array')
    x = np.asarray(x0, dtype=np.float64).copy()
    out = np.empty(x.shape[:-1] + (len(t_eval), x.shape[-1]))
    out[..., 0, :] = x
    t = float(t_eval[0])
    span = float(t_eval[-1] - t_eval[0])
    h = min(1e-3, span) if span > 0 else 1e-3
    k_first = f(x)
    steps = 0
    for i in range(1, len(t_eval)):
        target = float(t_eval[i])
        while t < target - 1e-14 * max(1.0, abs(target)):
            steps += 1
            if steps > max_steps:
                raise RuntimeError('solve_ivp: step budget exhausted')
            h_try = min(h, target - t)
            ks = [k_first]
            for stage in range(1, 7):
                xs = x + h_try * sum(a * k for a, k in zip(_DP_A[stage], ks))
                ks.append(f(xs))
            x5 = x + h_try * sum(b * k for b, k in zip(_DP_B5, ks) if b != 0.0)
            x4 = x + h_try * sum(b * k for b, k in zip(_DP_B4, ks) if b != 0.0)
            scale = atol + rtol * np.maximum(np.abs(x), np.abs(x5))
            err = float(np.sqrt(np.mean(((x5 - x4) / scale) ** 2, axis=-1)).max()) if x.size else 0.0
            if not np.isfinite(err):
                # A learned field can blow up: shrink the step, give up only when it is hopeless.
                if h_try < 1e-12:
                    raise RuntimeError('solve_ivp: non-finite state')
                h = h_try * 0.1
                continue
            if err <= 1.0:
                t += h_try
                x = x5
                k_first = ks[6]  # FSAL: the last stage is f at the accepted point
                factor = 5.0 if err == 0 else min(5.0, 0.9 * err ** -0.2)
                # Only grow from a full step, not from one clipped to land on the output time.
                h = max(h, h_try * factor) if h_try < h else h_try * factor
            else:
                h = h_try * max(0.2, 0.9 * err ** -0.2)
        out[..., i, :] = x
    return out


def integrate_fixed(f: Field, x0: np.ndarray, t_eval: np.ndarray, substeps: int = 10) -> np.ndarray:
    """Fixed-step RK4 with ``substeps`` steps between consecutive (evenly or unevenly spaced) output times."""
    x = np.asarray(x0, dtype=np.float64)
    out = [x]
    for t0, t1 in zip(t_eval[:-1], t_eval[1:]):
        dt = (t1 - t0) / substeps
        for _ in range(substeps):
            x = rk4_step(f, x, dt)
        out.append(x)
    return np.stack(out, axis=-2)


# ----------------------------------------------------------------------------------------------------------------------
# Systems
# ----------------------------------------------------------------------------------------------------------------------

class System:
    """A system in canonical coordinates, dx/dt = (J - R) dH/dx + B u.

    Attributes
    ----------
    name : str
    n_dof : int
        Number of generalised coordinates; the state is (q, p) of length 2 * n_dof.
    action_dim : int
        Size of u (0 for autonomous systems).
    damping : float
        The true damping coefficient gamma in R = diag(0, gamma * I) (0 for conservative systems).
    """

    name = 'system'
    n_dof = 1
    action_dim = 0
    damping = 0.0

    @property
    def state_dim(self) -> int:
        """Length of x = (q, p)."""
        return 2 * self.n_dof

    def hamiltonian(self, x: np.ndarray) -> np.ndarray:
        """H(x) for x of shape (..., 2n); returns (...)."""
        raise NotImplementedError

    def grad_hamiltonian(self, x: np.ndarray) -> np.ndarray:
        """dH/dx of shape (..., 2n)."""
        raise NotImplementedError

    def input_matrix(self) -> np.ndarray:
        """B of shape (2n, m), acting on dp/dt."""
        return np.zeros((self.state_dim, self.action_dim))

    def dynamics(self, x: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """dx/dt at x (..., 2n) under input u (..., m) (None: zero input).

        Raises
        ------
        ValueError
            If u has the wrong last dimension.
        """
        n = self.n_dof
        g = self.grad_hamiltonian(x)
        dq = g[..., n:]
        dp = -g[..., :n] - self.damping * g[..., n:]
        dx = np.concatenate([dq, dp], axis=-1)
        if u is not None and self.action_dim:
            u = np.asarray(u, dtype=np.float64)
            if u.shape[-1] != self.action_dim:
                raise ValueError(f'{self.name}: action has {u.shape[-1]} entries, expected {self.action_dim}')
            dx = dx + u @ self.input_matrix().T
        return dx

    def sample_initial(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Initial states, (n, 2 * n_dof)."""
        raise NotImplementedError


def _sample_radius(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    # The paper's protocol: a uniform direction in the (q, p) square, rescaled to a radius ~ U[low, high].
    y0 = rng.uniform(-1.0, 1.0, size=(n, 2))
    y0 /= np.linalg.norm(y0, axis=1, keepdims=True)
    return y0 * rng.uniform(low, high, size=(n, 1))


class MassSpring(System):
    """Ideal mass-spring, H = q^2 + p^2 (HNN paper code convention)."""

    name = 'mass_spring'
    radius = (0.1, 1.0)

    def hamiltonian(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        return x[..., 0] ** 2 + x[..., 1] ** 2

    def grad_hamiltonian(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        return 2.0 * x

    def sample_initial(self, rng: np.random.Generator, n: int) -> np.ndarray:  # noqa: D102
        return _sample_radius(rng, n, *self.radius)


class Pendulum(System):
    """Ideal pendulum, H = 3(1 - cos q) + p^2; ``damping`` > 0 gives the damped pendulum, ``actuated`` a torque."""

    name = 'pendulum'
    radius = (1.3, 2.3)

    def __init__(self, damping: float = 0.0, actuated: bool = False):
        self.damping = float(damping)
        self.action_dim = 1 if actuated else 0
        if damping:
            self.name = 'damped_pendulum'

    def hamiltonian(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        return 3.0 * (1.0 - np.cos(x[..., 0])) + x[..., 1] ** 2

    def grad_hamiltonian(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        return np.stack([3.0 * np.sin(x[..., 0]), 2.0 * x[..., 1]], axis=-1)

    def input_matrix(self) -> np.ndarray:  # noqa: D102
        return np.array([[0.0], [1.0]])[:, : self.action_dim]

    def sample_initial(self, rng: np.random.Generator, n: int) -> np.ndarray:  # noqa: D102
        return _sample_radius(rng, n, *self.radius)


class Mechanical(System):
    """H = 1/2 p^T M(q)^-1 p + V(q) for a rigid mechanism with configuration-dependent mass matrix."""

    def mass_matrix(self, q: np.ndarray) -> np.ndarray:
        """M(q) of shape (..., n, n)."""
        raise NotImplementedError

    def mass_matrix_grad(self, q: np.ndarray) -> np.ndarray:
        """dM/dq_k of shape (..., n(k), n, n)."""
        raise NotImplementedError

    def potential(self, q: np.ndarray) -> np.ndarray:
        """V(q) of shape (...)."""
        raise NotImplementedError

    def potential_grad(self, q: np.ndarray) -> np.ndarray:
        """dV/dq of shape (..., n)."""
        raise NotImplementedError

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """Joint velocity M(q)^-1 p."""
        n = self.n_dof
        return np.linalg.solve(self.mass_matrix(x[..., :n]), x[..., n:, None])[..., 0]

    def hamiltonian(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        n = self.n_dof
        v = self.velocity(x)
        return 0.5 * np.sum(x[..., n:] * v, axis=-1) + self.potential(x[..., :n])

    def grad_hamiltonian(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        n = self.n_dof
        q = x[..., :n]
        v = self.velocity(x)
        # d/dq (1/2 p^T M^-1 p) = -1/2 v^T (dM/dq_k) v
        dT = -0.5 * np.einsum('...i,...kij,...j->...k', v, self.mass_matrix_grad(q), v)
        return np.concatenate([dT + self.potential_grad(q), v], axis=-1)


class TwoLink(Mechanical):
    """Two point-mass links in relative joint angles (q1 from hanging down, q2 relative to link 1).

    With no input it is the double pendulum; with a torque on the second joint it is the acrobot.
    """

    n_dof = 2

    def __init__(self, actuated: bool = False, m1: float = 1.0, m2: float = 1.0, l1: float = 1.0, l2: float = 1.0,
                 g: float = 9.81, angle_range: float = 1.0, momentum_range: float = 1.0):
        self.m1, self.m2, self.l1, self.l2, self.g = m1, m2, l1, l2, g
        self.action_dim = 1 if actuated else 0
        self.name = 'acrobot' if actuated else 'double_pendulum'
        self.angle_range, self.momentum_range = angle_range, momentum_range

    def mass_matrix(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        m1, m2, l1, l2 = self.m1, self.m2, self.l1, self.l2
        c2 = np.cos(q[..., 1])
        m11 = (m1 + m2) * l1 ** 2 + m2 * l2 ** 2 + 2 * m2 * l1 * l2 * c2
        m12 = m2 * l2 ** 2 + m2 * l1 * l2 * c2
        m22 = np.full_like(c2, m2 * l2 ** 2)
        return np.stack([np.stack([m11, m12], -1), np.stack([m12, m22], -1)], -2)

    def mass_matrix_grad(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        a = self.m2 * self.l1 * self.l2 * np.sin(q[..., 1])
        zero = np.zeros_like(a)
        d2 = np.stack([np.stack([-2 * a, -a], -1), np.stack([-a, zero], -1)], -2)
        return np.stack([np.zeros_like(d2), d2], axis=-3)

    def potential(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        m1, m2, l1, l2, g = self.m1, self.m2, self.l1, self.l2, self.g
        # Zero at the hanging rest, so relative energy drift is well defined (H > 0 away from rest).
        return (m1 + m2) * g * l1 * (1 - np.cos(q[..., 0])) + m2 * g * l2 * (1 - np.cos(q[..., 0] + q[..., 1]))

    def potential_grad(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        m1, m2, l1, l2, g = self.m1, self.m2, self.l1, self.l2, self.g
        s12 = m2 * g * l2 * np.sin(q[..., 0] + q[..., 1])
        return np.stack([(m1 + m2) * g * l1 * np.sin(q[..., 0]) + s12, s12], axis=-1)

    def input_matrix(self) -> np.ndarray:  # noqa: D102
        return np.array([[0.0], [0.0], [0.0], [1.0]])[:, : self.action_dim]

    def sample_initial(self, rng: np.random.Generator, n: int) -> np.ndarray:  # noqa: D102
        q = rng.uniform(-self.angle_range, self.angle_range, size=(n, 2))
        p = rng.uniform(-self.momentum_range, self.momentum_range, size=(n, 2))
        return np.concatenate([q, p], axis=1)


class CartPole(Mechanical):
    """Cart-pole with a point-mass pole (angle from hanging down) and a horizontal force on the cart."""

    name = 'cartpole'
    n_dof = 2
    action_dim = 1

    def __init__(self, cart_mass: float = 1.0, pole_mass: float = 0.5, length: float = 0.5, g: float = 9.81):
        self.mc, self.mp, self.length, self.g = cart_mass, pole_mass, length, g

    def mass_matrix(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        c = self.mp * self.length * np.cos(q[..., 1])
        m11 = np.full_like(c, self.mc + self.mp)
        m22 = np.full_like(c, self.mp * self.length ** 2)
        return np.stack([np.stack([m11, c], -1), np.stack([c, m22], -1)], -2)

    def mass_matrix_grad(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        s = -self.mp * self.length * np.sin(q[..., 1])
        zero = np.zeros_like(s)
        d1 = np.stack([np.stack([zero, s], -1), np.stack([s, zero], -1)], -2)
        return np.stack([np.zeros_like(d1), d1], axis=-3)

    def potential(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        return self.mp * self.g * self.length * (1 - np.cos(q[..., 1]))

    def potential_grad(self, q: np.ndarray) -> np.ndarray:  # noqa: D102
        s = self.mp * self.g * self.length * np.sin(q[..., 1])
        return np.stack([np.zeros_like(s), s], axis=-1)

    def input_matrix(self) -> np.ndarray:  # noqa: D102
        return np.array([[0.0], [0.0], [1.0], [0.0]])

    def sample_initial(self, rng: np.random.Generator, n: int) -> np.ndarray:  # noqa: D102
        q = np.stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-1.0, 1.0, n)], axis=1)
        v = rng.uniform(-0.5, 0.5, size=(n, 2))
        p = np.einsum('nij,nj->ni', self.mass_matrix(q), v)
        return np.concatenate([q, p], axis=1)


SYSTEMS: dict[str, Callable[[], System]] = {
    'mass_spring': MassSpring,
    'pendulum': Pendulum,
    'damped_pendulum': lambda: Pendulum(damping=0.1, actuated=True),
    'double_pendulum': lambda: TwoLink(actuated=False),
    'cartpole': CartPole,
    'acrobot': lambda: TwoLink(actuated=True, angle_range=0.5, momentum_range=0.5),
}


def make_system(name: str) -> System:
    """A system by name (one of ``SYSTEMS``).

    Raises
    ------
    KeyError
        For an unknown name, listing the known ones.
    """
    if name not in SYSTEMS:
        raise KeyError(f'unknown system {name!r}; known: {sorted(SYSTEMS)}')
    return SYSTEMS[name]()


# ----------------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------------

@dataclass
class PaperProtocol:
    """The HNN paper's data protocol for one task."""

    t_end: float = 3.0
    n_points: int = 30
    n_trajectories: int = 50
    noise_std: float = 0.1
    test_split: float = 0.5


PAPER_PROTOCOLS = {
    'mass_spring': PaperProtocol(n_points=30),
    'pendulum': PaperProtocol(n_points=45),
}


def hnn_dataset(system: System, seed: int = 0, protocol: PaperProtocol | None = None,
                n_trajectories: int | None = None) -> dict[str, np.ndarray]:
    """Noisy (x, dx/dt) pairs per the HNN paper: trajectories from radius-sampled starts, 25/25 split.

    Noise N(0, noise_std) is added to (q, p) after integration; dx/dt is the clean field at the clean state (as in the
    paper's code). Train and test are split by trajectory (the first half of trajectories train).

    Returns
    -------
    dict
        ``x``, ``dx`` (N_train * T, d); ``test_x``, ``test_dx``; ``t`` (T,); ``clean`` (n_traj, T, d);
        ``x0`` (n_traj, d).
    """
    protocol = protocol or PAPER_PROTOCOLS.get(system.name, PaperProtocol())
    n_traj = n_trajectories or protocol.n_trajectories
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, protocol.t_end, protocol.n_points)
    x0 = system.sample_initial(rng, n_traj)
    clean = solve_ivp(system.dynamics, x0, t, rtol=1e-10, atol=1e-10)
    dx = system.dynamics(clean)
    noisy = clean + rng.normal(0.0, protocol.noise_std, size=clean.shape)
    split = int(round(n_traj * (1 - protocol.test_split)))
    d = system.state_dim
    return {
        'x': noisy[:split].reshape(-1, d), 'dx': dx[:split].reshape(-1, d),
        'test_x': noisy[split:].reshape(-1, d), 'test_dx': dx[split:].reshape(-1, d),
        't': t, 'clean': clean, 'x0': x0,
    }


def smooth_actions(rng: np.random.Generator, n: int, steps: int, action_dim: int, scale: float,
                   smoothing: float = 0.8) -> np.ndarray:
    """Exciting inputs: an AR(1)-filtered Gaussian sequence, (n, steps, m)."""
    u = np.zeros((n, steps, action_dim))
    noise = rng.normal(0.0, scale, size=(n, steps, action_dim))
    level = noise[:, 0] * 0
    for k in range(steps):
        level = smoothing * level + np.sqrt(1 - smoothing ** 2) * noise[:, k]
        u[:, k] = level
    return u


def rollout_dataset(system: System, n_trajectories: int, steps: int, dt: float, seed: int = 0,
                    action_scale: float = 1.0, substeps: int = 10) -> dict[str, np.ndarray]:
    """Trajectories sampled every ``dt`` under zero-order-hold exciting inputs (RK4 with ``substeps`` per step).

    Returns
    -------
    dict
        ``states`` (N, steps + 1, d), ``actions`` (N, steps, m), ``dt``.
    """
    rng = np.random.default_rng(seed)
    x = system.sample_initial(rng, n_trajectories)
    m = system.action_dim
    actions = (smooth_actions(rng, n_trajectories, steps, m, action_scale) if m
               else np.zeros((n_trajectories, steps, 0)))
    states = [x]
    h = dt / substeps
    for k in range(steps):
        u = actions[:, k] if m else None
        f = (lambda z, u=u: system.dynamics(z, u))  # noqa: E731 - hold u over the step
        for _ in range(substeps):
            x = rk4_step(f, x, h)
        states.append(x)
    return {'states': np.stack(states, axis=1), 'actions': actions, 'dt': np.float64(dt)}


# ----------------------------------------------------------------------------------------------------------------------
# Pixel pendulum
# ----------------------------------------------------------------------------------------------------------------------

PIXEL_SIZE = 28


def render_pendulum(q: np.ndarray, size: int = PIXEL_SIZE, length: float = 0.38, width: float = 1.2) -> np.ndarray:
    """Greyscale images of a pendulum rod at angles q (0 = hanging down), values in [0, 1], shape (..., size, size).

    The rod is drawn as a soft line from the centre (Gaussian falloff of distance to the segment), so images vary
    smoothly with the angle.
    """
    q = np.asarray(q, dtype=np.float64)
    c = (size - 1) / 2.0
    rod = length * size
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    ex, ey = np.sin(q)[..., None, None], np.cos(q)[..., None, None]  # image y points down: q=0 hangs down
    px, py = xs - c, ys - c
    along = np.clip(px * ex + py * ey, 0.0, rod)
    dist2 = (px - along * ex) ** 2 + (py - along * ey) ** 2
    return np.exp(-0.5 * dist2 / width ** 2)


def angle_from_image(img: np.ndarray) -> np.ndarray:
    """Estimate the rod angle from images (..., H, W) by the intensity-weighted centroid about the centre."""
    size = img.shape[-1]
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    w = np.clip(img, 0.0, None)
    mx = np.sum(w * (xs - c), axis=(-2, -1))
    my = np.sum(w * (ys - c), axis=(-2, -1))
    return np.arctan2(mx, my)


def pixel_pendulum_dataset(seed: int = 0, n_trajectories: int = 50, n_points: int = 16, frame_dt: float = 0.2,
                           frame_gap: float = 0.1, test_split: float = 0.5) -> dict[str, np.ndarray]:
    """Pixel pendulum: each observation is two stacked 28x28 frames, at t and t + frame_gap.

    Trajectories follow the paper's pendulum (H = 3(1 - cos q) + p^2, start radius U[1.3, 2.3]); observations are
    ``frame_dt`` apart (100 of them span the paper's [0, 20] evaluation window at the default 0.2 s).

    Returns
    -------
    dict
        ``frames`` (N, n_points, 2, 28, 28) float32, ``states`` (N, n_points, 2) at the first frame, ``split`` (number
        of training trajectories), ``frame_dt``, ``frame_gap``.
    """
    system = Pendulum()
    rng = np.random.default_rng(seed)
    x0 = system.sample_initial(rng, n_trajectories)
    states = pixel_states(system, x0, n_points, frame_dt)
    return {'frames': render_frames(system, states, frame_gap), 'states': states,
            'split': int(round(n_trajectories * (1 - test_split))), 'frame_dt': np.float64(frame_dt),
            'frame_gap': np.float64(frame_gap)}


def pixel_states(system: System, x0: np.ndarray, n_points: int, frame_dt: float) -> np.ndarray:
    """True states every ``frame_dt`` from x0 (N, 2): (N, n_points, 2)."""
    return solve_ivp(system.dynamics, x0, np.arange(n_points) * frame_dt)


def render_frames(system: System, states: np.ndarray, frame_gap: float) -> np.ndarray:
    """Two stacked frames per state (..., 2) -> (..., 2, 28, 28) float32: the state and ``frame_gap`` later."""
    later = integrate_fixed(system.dynamics, states, np.array([0.0, frame_gap]), substeps=20)[..., -1, :]
    return np.stack([render_pendulum(states[..., 0]), render_pendulum(later[..., 0])], axis=-3).astype(np.float32)


def pixel_energy(frames: np.ndarray, frame_gap: float) -> np.ndarray:
    """Pendulum energy 3(1 - cos q) + p^2 read from stacked frames (..., 2, H, W), at the frames' midpoint time.

    q is the mean of the two frames' centroid angles and p = (dq/dt) / 2 the wrapped central difference, both
    second-order accurate at t + gap/2. True and predicted frames go through the same estimator.
    """
    q0 = angle_from_image(frames[..., 0, :, :])
    q1 = angle_from_image(frames[..., 1, :, :])
    dq = np.angle(np.exp(1j * (q1 - q0)))
    q = q0 + 0.5 * dq
    p = dq / frame_gap / 2.0
    return 3.0 * (1.0 - np.cos(q)) + p ** 2
