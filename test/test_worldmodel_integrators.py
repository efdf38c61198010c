"""Structure-preserving integrators on Hamiltonians with known closed forms."""

import math

import pytest
import torch

from hamwm_ros.worldmodel.integrators import dissipation_substep, leapfrog_step, midpoint_step, symplectic_euler_step

torch.set_num_threads(1)
DT = torch.float64


def pendulum_energy(q, p):
    """The HNN paper's ideal pendulum, H = 3 (1 - cos q) + p^2."""
    return 3.0 * (1.0 - torch.cos(q)) + p ** 2


def _run_leapfrog(q, p, h, steps, grad_q, grad_p, energy, separable, iters=1):
    energies = []
    for _ in range(steps):
        q, p = leapfrog_step(q, p, h, grad_q, grad_p, separable=separable, iters=iters)
        energies.append(energy(q, p))
    return torch.stack(energies)


def test_leapfrog_conserves_pendulum_energy_without_drift():
    q = torch.tensor([0.5, 1.5, 2.5], dtype=DT)
    p = torch.tensor([0.0, 0.3, -0.2], dtype=DT)
    h0 = pendulum_energy(q, p)
    e = _run_leapfrog(q, p, 0.05, 5000, lambda q, p: 3.0 * torch.sin(q), lambda q, p: 2.0 * p,
                      pendulum_energy, separable=True)  # about 60 periods
    rel = (e - h0) / h0
    assert rel.abs().max() < 5e-3  # bounded O(h^2) oscillation
    # no secular drift: the first and last stretches oscillate around the same level
    assert abs(rel[:1000].mean() - rel[-1000:].mean()) < 2e-4


def test_explicit_euler_would_drift_for_comparison():
    # The same problem with explicit Euler gains energy fast: the bound above is a real property of leapfrog.
    q, p = torch.tensor([1.5], dtype=DT), torch.tensor([0.3], dtype=DT)
    h0 = pendulum_energy(q, p)
    for _ in range(5000):
        q, p = q + 0.05 * 2.0 * p, p - 0.05 * 3.0 * torch.sin(q)
    assert (pendulum_energy(q, p) - h0) / h0 > 0.5


def _nonseparable():
    # H = 1/2 p^2 (1 + 0.5 sin^2 q) + (1 - cos q): configuration-dependent mass.
    def energy(q, p):
        return 0.5 * p ** 2 * (1 + 0.5 * torch.sin(q) ** 2) + 1 - torch.cos(q)

    def grad_q(q, p):
        return 0.5 * p ** 2 * torch.sin(q) * torch.cos(q) + torch.sin(q)

    def grad_p(q, p):
        return p * (1 + 0.5 * torch.sin(q) ** 2)

    return energy, grad_q, grad_p


def test_generalised_leapfrog_conserves_nonseparable_energy():
    energy, grad_q, grad_p = _nonseparable()
    q, p = torch.tensor([1.0, 2.0], dtype=DT), torch.tensor([0.5, -1.0], dtype=DT)
    h0 = energy(q, p)
    e = _run_leapfrog(q, p, 0.05, 3000, grad_q, grad_p, energy, separable=False, iters=4)
    rel = (e - h0) / h0
    assert rel.abs().max() < 5e-3
    assert abs(rel[:600].mean() - rel[-600:].mean()) < 5e-4


def test_midpoint_conserves_nonseparable_energy():
    energy, grad_q, grad_p = _nonseparable()
    z = torch.tensor([[1.0, 0.5], [2.0, -1.0]], dtype=DT)
    h0 = energy(z[:, 0], z[:, 1])

    def field(x):
        return torch.stack([grad_p(x[:, 0], x[:, 1]), -grad_q(x[:, 0], x[:, 1])], 1)

    energies = []
    for _ in range(3000):
        z = midpoint_step(z, 0.05, field, iters=6)
        energies.append(energy(z[:, 0], z[:, 1]))
    rel = (torch.stack(energies) - h0) / h0
    assert rel.abs().max() < 5e-3
    assert abs(rel[:600].mean() - rel[-600:].mean()) < 5e-4


def test_midpoint_is_exact_for_quadratic_energy():
    # The HNN mass-spring H = q^2 + p^2 is a quadratic invariant: implicit midpoint keeps it to solver precision.
    z = torch.tensor([[0.7, -0.2]], dtype=DT)
    h0 = (z ** 2).sum()
    for _ in range(500):
        z = midpoint_step(z, 0.1, lambda x: torch.stack([2 * x[:, 1], -2 * x[:, 0]], 1), iters=25)
    assert abs(float((z ** 2).sum() - h0)) < 1e-10


def test_dissipation_substep_never_adds_energy():
    gen = torch.Generator().manual_seed(0)
    d, n = 4, 512
    a_root = torch.randn(n, d, d, generator=gen, dtype=DT)
    A = a_root @ a_root.transpose(-1, -2) + 1e-3 * torch.eye(d, dtype=DT)  # inverse mass, PD
    d_root = torch.randn(n, d, d, generator=gen, dtype=DT)
    D = d_root @ d_root.transpose(-1, -2)  # damping, PSD
    p = torch.randn(n, d, generator=gen, dtype=DT)

    def kinetic(x):
        return 0.5 * (x * (A @ x.unsqueeze(-1)).squeeze(-1)).sum(-1)

    for tau in (1e-3, 0.1, 10.0, 1e3):  # far beyond the damping time constant too
        v = (A @ p.unsqueeze(-1)).squeeze(-1)
        p_new = dissipation_substep(p, tau, v, lambda x: (D @ x.unsqueeze(-1)).squeeze(-1),
                                    lambda x: (A @ x.unsqueeze(-1)).squeeze(-1))
        assert torch.all(kinetic(p_new) <= kinetic(p) + 1e-12)
    # and it actually dissipates for a small step: first-order decrease tau v^T D v
    v = (A @ p.unsqueeze(-1)).squeeze(-1)
    p_small = dissipation_substep(p, 1e-4, v, lambda x: (D @ x.unsqueeze(-1)).squeeze(-1),
                                  lambda x: (A @ x.unsqueeze(-1)).squeeze(-1))
    expected = 1e-4 * (v * (D @ v.unsqueeze(-1)).squeeze(-1)).sum(-1)
    assert torch.allclose(kinetic(p) - kinetic(p_small), expected, rtol=1e-2, atol=1e-12)


def test_forced_leapfrog_matches_analytic_oscillator():
    # q'' = -q + 1 (constant force): solution q = 1 + (q0 - 1) cos t.
    q, p = torch.tensor([0.0], dtype=DT), torch.tensor([0.0], dtype=DT)
    h, steps = 0.001, 3000
    for _ in range(steps):
        q, p = leapfrog_step(q, p, h, lambda q, p: q, lambda q, p: p, force=lambda q: torch.ones_like(q),
                             separable=True)
    assert abs(float(q) - (1 - math.cos(h * steps))) < 1e-5


def test_generalised_leapfrog_needs_substeps_at_high_momentum():
    # H = 1/2 p^2 / m(q) + (1 - cos q) with m(q) = 1 + 0.8 cos q. Fast motion makes the implicit half-steps (2
    # fixed-point iterations) inaccurate at h = 0.05: why the horizons suite gives the cart-pole 4 substeps.
    def energy(q, p):
        return 0.5 * p ** 2 / (1 + 0.8 * torch.cos(q)) + 1 - torch.cos(q)

    def grad_q(q, p):
        return 0.4 * p ** 2 * torch.sin(q) / (1 + 0.8 * torch.cos(q)) ** 2 + torch.sin(q)

    def grad_p(q, p):
        return p / (1 + 0.8 * torch.cos(q))

    worst = {}
    for substeps in (1, 4):
        q, p = torch.tensor([0.3], dtype=DT), torch.tensor([10.0], dtype=DT)
        h0 = energy(q, p)
        e = _run_leapfrog(q, p, 0.05 / substeps, 1000 * substeps, grad_q, grad_p, energy, separable=False, iters=2)
        worst[substeps] = float(((e - h0) / h0).abs().max())
    assert worst[1] > 0.2 and worst[4] < 0.05, worst
    # at low momentum one step is fine
    q, p = torch.tensor([0.3], dtype=DT), torch.tensor([2.0], dtype=DT)
    h0 = energy(q, p)
    e = _run_leapfrog(q, p, 0.05, 1000, grad_q, grad_p, energy, separable=False, iters=2)
    assert float(((e - h0) / h0).abs().max()) < 1e-3


def test_symplectic_euler_reproduces_semi_implicit_euler_data_exactly():
    # Gym's pendulum: thdot_{n+1} = thdot_n - h 15 sin(th_n); th_{n+1} = th_n + h thdot_{n+1}. Its latent pairs th_n
    # with the rate of the displacement to the next frame, thdot_{n+1}: on that state the data's map is drift-then-kick
    # symplectic Euler on H = 1/2 v^2 + 15 (1 - cos q), exactly.
    h, steps = 0.05, 200
    th, thdot = [torch.tensor([0.3, 2.0], dtype=DT)], [torch.tensor([0.5, -1.0], dtype=DT)]
    for _ in range(steps + 1):
        thdot.append(thdot[-1] - h * 15.0 * torch.sin(th[-1]))
        th.append(th[-1] + h * thdot[-1])
    q, v = th[0], thdot[1]
    for n in range(1, steps):
        q, v = symplectic_euler_step(q, v, h, lambda q, p: 15.0 * torch.sin(q), lambda q, p: p)
        assert torch.allclose(q, th[n], atol=1e-12) and torch.allclose(v, thdot[n + 1], atol=1e-12), n
    # leapfrog on the same H does not reproduce them: its map differs at O(h^2) per step
    q, v = th[0], thdot[1]
    for _ in range(1, steps):
        q, v = leapfrog_step(q, v, h, lambda q, p: 15.0 * torch.sin(q), lambda q, p: p, separable=True)
    assert (q - th[steps - 1]).abs().max() > 1e-3


def test_symplectic_euler_is_symplectic_and_keeps_energy_bounded():
    grad_q, grad_p = (lambda q, p: 3.0 * torch.sin(q)), (lambda q, p: 2.0 * p)
    # unit Jacobian determinant of the one-step map (area preserving), by autograd
    z = torch.tensor([1.2, 0.4], dtype=DT)
    jac = torch.autograd.functional.jacobian(
        lambda x: torch.stack(symplectic_euler_step(x[0:1], x[1:2], 0.1, grad_q, grad_p)).reshape(2), z)
    assert torch.linalg.det(jac).item() == pytest.approx(1.0, abs=1e-12)
    # first order, yet no secular energy drift over ~60 periods (unlike explicit Euler above)
    q, p = torch.tensor([1.5], dtype=DT), torch.tensor([0.3], dtype=DT)
    h0 = pendulum_energy(q, p)
    energies = []
    for _ in range(5000):
        q, p = symplectic_euler_step(q, p, 0.05, grad_q, grad_p)
        energies.append(pendulum_energy(q, p))
    rel = (torch.cat(energies) - h0) / h0
    assert rel.abs().max() < 0.1
    assert abs(rel[:1000].mean() - rel[-1000:].mean()) < 5e-3
