"""Structure-preserving one-step maps for (port-)Hamiltonian systems.

All maps use a fixed number of fixed-point iterations, so they trace to a static ONNX graph. Gradients of H come in as
callables (closed form in the world model, analytic in tests), never from autograd.

* :func:`leapfrog_step` -- (generalised) Stormer-Verlet. Symplectic and time-reversible for any H; explicit and exact
  in one iteration when H = T(p) + V(q) is separable. External forces enter the momentum kicks (discrete
  Lagrange-d'Alembert), so with zero force the map conserves H up to a bounded oscillation (no drift).
* :func:`midpoint_step` -- implicit midpoint rule for a general vector field; symplectic for Hamiltonian fields and
  exact for quadratic invariants.
* :func:`dissipation_substep` -- the dissipative flow dp/dt = -D dH/dp at fixed q, used as the outer halves of a Strang
  splitting. For kinetic energy quadratic in p it is guaranteed never to add energy (see the function).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Grad = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def leapfrog_step(q: torch.Tensor, p: torch.Tensor, h: float, grad_q: Grad, grad_p: Grad, *,
                  force: Callable[[torch.Tensor], torch.Tensor] | None = None, separable: bool = False,
                  iters: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """One generalised Stormer-Verlet step of size ``h``.

    p_half = p - h/2 (dH/dq(q, p_half) - F(q));  q' = q + h/2 (dH/dp(q, p_half) + dH/dp(q', p_half));
    p' = p_half - h/2 (dH/dq(q', p_half) - F(q')).

    Parameters
    ----------
    q, p
        Positions and momenta, same shape (..., d).
    h
        Step size.
    grad_q, grad_p
        ``(q, p) -> dH/dq`` and ``(q, p) -> dH/dp``.
    force
        Optional external generalised force ``q -> F(q)`` (input and residual), held constant over the step.
    separable
        H = T(p) + V(q): both implicit equations are explicit and one evaluation is exact.
    iters
        Fixed-point iterations for the implicit equations when not separable (>= 1).

    Returns
    -------
    tuple of torch.Tensor
        ``(q', p')``.

    Raises
    ------
    ValueError
        If ``iters < 1``.
    """
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    n_iter = 1 if separable else iters
    f0 = force(q) if force is not None else None
    p_half = p
    for _ in range(n_iter):
        kick = grad_q(q, p_half)
        p_half = p - 0.5 * h * (kick if f0 is None else kick - f0)
    v0 = grad_p(q, p_half)
    q_new = q + h * v0
    for _ in range(n_iter - 1):
        q_new = q + 0.5 * h * (v0 + grad_p(q_new, p_half))
    kick = grad_q(q_new, p_half)
    if force is not None:
        kick = kick - force(q_new)
    return q_new, p_half - 0.5 * h * kick


def symplectic_euler_step(q: torch.Tensor, p: torch.Tensor, h: float, grad_q: Grad, grad_p: Grad, *,
                          force: Callable[[torch.Tensor], torch.Tensor] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """One drift-then-kick symplectic Euler step of size ``h`` for a separable H = T(p) + V(q).

    q' = q + h dH/dp(p);  p' = p - h (dH/dq(q') - F(q')).

    First order, but exactly symplectic, and it is the map some data come from: Gym's pendulum steps
    theta' then theta (semi-implicit Euler), which, with the momentum read as the next frame's displacement (the
    pixel protocol's latent), is this map. Its modified Hamiltonian is not separable, so a separable H stepped by
    leapfrog cannot represent such data exactly, while this family contains them.

    Parameters
    ----------
    q, p, h, grad_q, grad_p, force
        As for :func:`leapfrog_step`; H must be separable (``grad_p`` is read at the old q, ``grad_q`` at the old p)
        and the force is applied with the kick.

    Returns
    -------
    tuple of torch.Tensor
        ``(q', p')``.
    """
    q_new = q + h * grad_p(q, p)
    kick = grad_q(q_new, p)
    if force is not None:
        kick = kick - force(q_new)
    return q_new, p - h * kick


def midpoint_step(z: torch.Tensor, h: float, field: Callable[[torch.Tensor], torch.Tensor], *,
                  iters: int = 3) -> torch.Tensor:
    """Implicit midpoint z' = z + h f((z + z') / 2), solved by ``iters`` fixed-point iterations from Euler.

    Raises
    ------
    ValueError
        If ``iters < 1``.
    """
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    z_new = z + h * field(z)
    for _ in range(iters):
        z_new = z + h * field(0.5 * (z + z_new))
    return z_new


def dissipation_substep(p: torch.Tensor, tau: float, velocity: torch.Tensor,
                        damping: Callable[[torch.Tensor], torch.Tensor],
                        metric: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """Apply dp/dt = -D dH/dp over ``tau`` at fixed q, never adding energy when T is quadratic in p.

    The Euler increment delta = -tau D v (v = dH/dp) lowers the energy to first order by tau v^T D v >= 0. When
    T = 1/2 p^T A p (``metric`` applies A), the energy along p + a delta is an exact quadratic in a; a is capped at
    its minimiser, so T(p') <= T(p) for any step size and any PSD D -- the cap only binds where an explicit step would
    overshoot (tau much larger than the damping time). Without a metric (general H) this is the plain Euler step.

    Parameters
    ----------
    p
        Momenta (..., d).
    tau
        Substep length.
    velocity
        dH/dp at (q, p), (..., d).
    damping
        ``v -> D v`` with D positive semi-definite.
    metric
        ``x -> A x`` (the inverse mass) or None.

    Returns
    -------
    torch.Tensor
        Damped momenta.
    """
    delta = -tau * damping(velocity)
    if metric is None:
        return p + delta
    decrease = -(velocity * delta).sum(-1, keepdim=True)  # = tau v^T D v >= 0
    curvature = (delta * metric(delta)).sum(-1, keepdim=True)
    alpha = torch.clamp(decrease / (curvature + 1e-12), max=1.0)
    return p + alpha * delta
