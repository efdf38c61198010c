"""Analytic benchmark systems and datasets for world-model evaluation (numpy only).

Every system is written in canonical coordinates x = (q, p), with dx/dt = (J - R) dH/dx + B u, so a Hamiltonian world
model with an identity encoder can represent it exactly. The systems are the HNN paper's (Greydanus et al. 2019) ideal
mass-spring and pendulum in the paper code's convention (H = q^2 + p^2 and H = 3(1 - cos q) + p^2, i.e. no factor
1/2), a damped pendulum, a double pendulum, and cart-pole and acrobot with control inputs (analytic ODEs; the MuJoCo
robots live in ``hamwm_ros.sim``). The pixel pendulum renders the Gym Pendulum-v0 scene as the HNN paper's
28x28 frames in numpy.

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
    ignorable : tuple of int
        Indices into q of ignorable (cyclic) coordinates: H does not depend on them (empty for most systems).
    periodic : tuple of int
        Indices into q of angles that a model is told H is 2 pi-periodic in (declared on the cart-pole and the damped
        pendulum; the ideal pendulum's and the two-links' angles are periodic too but left undeclared, which keeps
        the HNN reproduction's pendulum and their suites as they were).
    planar_chain : bool
        Whether q are the translations of a sliding base and the *absolute* angles (the periodic ones) of links
        moving in a plane, so that M(q) has the form of ``ModelConfig.mass_param='chain'`` (declared on the
        cart-pole; the two-link systems measure their second angle from the first link, and are not).
    """

    name = 'system'
    n_dof = 1
    action_dim = 0
    damping = 0.0
    ignorable: tuple[int, ...] = ()
    periodic: tuple[int, ...] = ()
    planar_chain = False

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
    """Ideal pendulum, H = 3(1 - cos q) + p^2; ``damping`` > 0 gives the damped pendulum, ``actuated`` a torque.

    ``periodic`` declares the angle 2 pi-periodic (:attr:`System.periodic`): the damped pendulum's suites give it to
    "ours" (session 17: driven over the top by the random torque, the test pendulums leave the training draws' range
    of angles, which a model that sees (cos q, sin q) need not extrapolate to).
    """

    name = 'pendulum'
    radius = (1.3, 2.3)

    def __init__(self, damping: float = 0.0, actuated: bool = False, periodic: bool = False):
        self.damping = float(damping)
        self.action_dim = 1 if actuated else 0
        if damping:
            self.name = 'damped_pendulum'
        if periodic:
            self.periodic = (0,)

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
    ignorable = (0,)  # a flat rail: H does not depend on the cart position x
    periodic = (1,)  # the pole angle
    planar_chain = True  # a cart on a rail and the pole's absolute angle

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
    'damped_pendulum': lambda: Pendulum(damping=0.1, actuated=True, periodic=True),
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
# Pixel pendulum: the HNN paper's Task 5 (OpenAI Gym Pendulum-v0 frames)
# ----------------------------------------------------------------------------------------------------------------------

PIXEL_SIZE = 28


# Pendulum-v0: g = 10, m = l = 1, a rod pivoted at one end, so theta'' = -(3 g / 2 l) sin(theta) = -15 sin(theta)
# (theta = 0 hanging down), stepped by semi-implicit Euler at dt = 0.05 s with the speed clipped to 8 rad/s.
GYM_DT = 0.05
GYM_OMEGA2 = 15.0
GYM_MAX_SPEED = 8.0
# The paper's canonical coordinates are (theta, 0.25 theta') and its energy 1.9 (1 - cos theta) + p^2; the exact
# ratio is 15 / 8 = 1.875 (H / 8 with H = theta'^2 / 2 + 15 (1 - cos theta)), the paper's code fitted 1.9.
GYM_P_SCALE = 0.25
GYM_ENERGY_K = 1.9
# The paper's crop of the 1000 x 1000 render of the [-2.2, 2.2]^2 viewport (rows 440:780, columns 330:670), in world
# units: x in [-0.748, 0.748], y from 0.264 above the pivot to 1.232 below it.
GYM_CROP = (-0.748, 0.748, 0.264, -1.232)  # x_min, x_max, y_top, y_bottom


def gym_pendulum_trajectories(rng: np.random.Generator, n_trajectories: int, n_frames: int,
                              max_angle: float = np.pi / 6) -> np.ndarray:
    """States (theta, theta') of torque-free Pendulum-v0 episodes, (N, n_frames, 2), theta = 0 hanging down.

    Starts as the paper's ``sample_gym``: the environment resets to theta uniform on the circle and theta' in U[-1, 1]
    and episodes are redrawn until |theta| < ``max_angle``, i.e. theta0 ~ U(-max_angle, max_angle), theta'0 ~
    U[-1, 1]. Frame k shows state k; the step is Gym's semi-implicit Euler, so the true energy oscillates by about
    +-dt * omega / 2 = +-10 % along an orbit (the step conserves a nearby modified energy, not H).
    """
    th = rng.uniform(-max_angle, max_angle, n_trajectories)
    om = rng.uniform(-1.0, 1.0, n_trajectories)
    out = np.empty((n_trajectories, n_frames, 2))
    for k in range(n_frames):
        out[:, k, 0], out[:, k, 1] = th, om
        om = np.clip(om - GYM_OMEGA2 * np.sin(th) * GYM_DT, -GYM_MAX_SPEED, GYM_MAX_SPEED)
        th = th + om * GYM_DT
    return out


def render_gym_pendulum(theta: np.ndarray, size: int = PIXEL_SIZE, supersample: int = 4) -> np.ndarray:
    """28x28 frames of the Pendulum-v0 scene as the paper preprocesses them, (..., size, size) float32 in [0, 1].

    The scene: a capsule rod of length 1 and width 0.2 from the pivot at angle theta (0 = down, positive to the right
    of the image) and a black axle of radius 0.05 on top of it. The paper keeps red minus green (the rod is (0.8, 0.3,
    0.3), the background white, the axle black, so only the rod survives), crops the region ``GYM_CROP`` and
    downsamples it to 28x28 with scaling to a maximum of 1; here each pixel is the rod's coverage of that pixel,
    estimated on a ``supersample`` x ``supersample`` grid with anti-aliased edges.
    """
    theta = np.asarray(theta, dtype=np.float64)
    flat = theta.reshape(-1)
    x0, x1, y0, y1 = GYM_CROP
    n = size * supersample
    xs = x0 + (np.arange(n) + 0.5) / n * (x1 - x0)
    ys = y0 + (np.arange(n) + 0.5) / n * (y1 - y0)
    gx, gy = np.meshgrid(xs, ys)  # row index = image row (top first)
    step = (x1 - x0) / n
    axle = np.clip((np.sqrt(gx ** 2 + gy ** 2) - 0.05) / step + 0.5, 0.0, 1.0)
    out = np.empty((flat.size, size, size), dtype=np.float32)
    for start in range(0, flat.size, 256):
        th = flat[start:start + 256]
        ex, ey = np.sin(th)[:, None, None], -np.cos(th)[:, None, None]
        along = np.clip(gx * ex + gy * ey, 0.0, 1.0)
        d2 = (gx - along * ex) ** 2 + (gy - along * ey) ** 2
        # Edges ramp over one sub-sample, so the coverage has no aliasing when the rod lines up with the grid.
        rod = np.clip((0.1 - np.sqrt(d2)) / step + 0.5, 0.0, 1.0) * axle
        cover = rod.reshape(-1, size, supersample, size, supersample).mean(axis=(2, 4))
        out[start:start + 256] = cover
    return out.reshape(theta.shape + (size, size))


def gym_pixel_dataset(seed: int = 0, n_trajectories: int = 200, n_frames: int = 101,
                      max_angle: float = np.pi / 6) -> dict[str, np.ndarray]:
    """The paper's pixel-pendulum data: Pendulum-v0 episodes rendered as 28x28 frames.

    The paper draws 200 episodes of 103 frames and keeps 100 observations per episode, each the concatenation of
    two consecutive frames (t, t + 1), paired with the next observation (t + 1, t + 2); 101 frames give the same 100
    observation pairs here.

    Returns
    -------
    dict
        ``frames`` (N, n_frames, 28, 28) float32, ``states`` (N, n_frames, 2) as (theta, theta'), ``coords`` (N,
        n_frames, 2) the paper's canonical coordinates (theta, 0.25 theta'), ``dt`` (0.05 s per frame).
    """
    rng = np.random.default_rng(seed)
    states = gym_pendulum_trajectories(rng, n_trajectories, n_frames, max_angle)
    coords = states * np.array([1.0, GYM_P_SCALE])
    return {'frames': render_gym_pendulum(states[..., 0]), 'states': states, 'coords': coords,
            'dt': np.float64(GYM_DT)}


def gym_pendulum_energy(coords: np.ndarray) -> np.ndarray:
    """The paper's pixel-pendulum energy 1.9 (1 - cos theta) + p^2 of canonical coordinates (theta, p = theta' / 4)."""
    coords = np.asarray(coords, dtype=np.float64)
    return GYM_ENERGY_K * (1.0 - np.cos(coords[..., 0])) + coords[..., 1] ** 2
