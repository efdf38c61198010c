"""The port-Hamiltonian latent world model.

Observations are encoded into a latent phase space z = (q, p) (``latent_dim`` each) that evolves as

    dz/dt = (J - R(z)) dH/dz + G(z) u + r(z, u),      J = [[0, I], [-I, 0]],

with a learned Hamiltonian H, a positive semi-definite dissipation R acting on the momenta (Rayleigh damping D(q)),
an input map G(q) taking actions to generalised forces, and a small residual r for what the structure cannot explain
(zero-initialised, penalised in training, switchable off). Two Hamiltonians:

* ``'separable'`` (structured, mechanical): H = 1/2 p^T M(q)^-1 p + V(q). The *inverse* mass is parameterised as
  L L^T + eps I with L lower triangular with a softplus diagonal, so M is positive definite by construction and no
  matrix inverse appears in the graph. ``mass_matrix='constant'`` makes H truly separable (explicit leapfrog, the
  fastest predictor); ``'state'`` learns M(q) (generalised leapfrog with fixed-point iterations).
* ``'general'``: H = MLP(q, p) (HNN-style), integrated with implicit midpoint or generalised leapfrog.

dH/dz is computed in closed form by the explicit backward passes in :mod:`.networks`, so ``encode``, ``step``,
``rollout``, ``decode`` and ``energy`` trace to ONNX.

With constant mass, input map and damping (and no residual) the model is *lean* (:attr:`HamiltonianWorldModel.lean`):
each Strang half of the dissipation is the exact flow p @ expm(-tau A D) (one constant matrix, never adds energy for
any tau), and :meth:`HamiltonianWorldModel.rollout` runs :func:`lean_rollout`, the same map as repeated ``step`` calls
with every q-independent quantity hoisted out of the loop and one potential pass per substep. That is what MPPI's
1024 x 32 rollouts and the exported ``predictor.onnx`` use (about 15 nodes per step instead of ~130).
Ensemble members are a leading batch dimension of every weight.

Known symmetries enter as configuration (``ModelConfig.ignorable`` / ``periodic``): the q-dependent networks see q
with ignorable coordinates zeroed and periodic ones as (cos, sin), and the closed-form dH/dq chains back through that
map, so H is exactly invariant to shifts of the former and 2 pi-periodic in the latter on every path, ONNX included.

Shape conventions: with ``ensemble == 1`` the public methods take and return (B, ...) tensors; with ``ensemble > 1``
they return (E, B, ...) and accept either (E, B, ...) or (B, ...) (broadcast to every member). Observations and
actions are in physical units; the normalisation statistics are buffers of the model and are saved with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from hamwm_ros.runtime.metadata import EnergyCalibration, MetadataError, SpreadCalibration

from .integrators import (
    dissipation_substep,
    leapfrog_step,
    midpoint_step,
    symplectic_euler_step,
)
from .networks import (
    ChainJacobian,
    EnsembleLinear,
    EnsembleMLP,
    ImageDecoder,
    ImageEncoder,
    cholesky_solve_unrolled,
    cholesky_unrolled,
    tril_selector,
)

ENCODERS = ('mlp', 'identity', 'configuration', 'image', 'fused')
HAMILTONIANS = ('separable', 'general')
INTEGRATORS = ('leapfrog', 'midpoint', 'symplectic_euler')
DAMPING_PARAMS = ('softplus', 'square')
MASS_PARAMS = ('inverse', 'kinematic', 'chain')
# The mass parametrisations built from a Jacobian, M(q) = J(q) J(q)^T + eps I, with J affine in the q features.
JACOBIAN_MASS = ('kinematic', 'chain')
_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1: the mass starts at the identity


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`HamiltonianWorldModel` (saved as ``config.json``).

    Attributes
    ----------
    obs_dim, action_dim, latent_dim
        Observation size (joint positions then velocities for robots), action size, and the size of each of q and p.
    encoder
        ``'mlp'`` (joint states), ``'identity'`` (observations already are canonical (q, p); obs_dim == 2 latent_dim),
        ``'configuration'`` (joint positions then velocities, obs_dim == 2 latent_dim: q is the normalised joint
        positions and p = M dq/dt their canonical momentum under the model's own constant mass M, an exact linear map
        with no parameters of its own; needs the separable Hamiltonian with ``mass_matrix='constant'``),
        ``'image'`` (conv encoder over ``n_frames`` stacked frames) or ``'fused'`` (images and joint states).
    hamiltonian
        ``'separable'`` (1/2 p^T M(q)^-1 p + V(q)) or ``'general'`` (MLP).
    dissipation, control, residual
        Switch R, G u and r on or off.
    hidden, layers, activation
        Width, hidden-layer count and activation (``'tanh'``/``'softplus'``) of every MLP.
    ensemble
        Number of members.
    image_shape, n_frames
        (H, W, C) of camera frames and how many consecutive frames the image encoder stacks.
    integrator
        ``'leapfrog'`` (generalised Stormer-Verlet), ``'midpoint'`` (implicit midpoint) or ``'symplectic_euler'``
        (drift then kick, first order; separable H with a constant mass only: the map of semi-implicit Euler data).
    dt
        Model step in seconds (one ``step`` call).
    mass_matrix, input_map, damping_map
        ``'state'`` (M, G, D depend on q) or ``'constant'`` (cheaper: the predictor inside MPPI wants constants).
    mass_param
        How a state mass matrix is parameterised. ``'inverse'`` (default): M(q)^-1 = L(q) L(q)^T + eps I with L from an
        MLP of the q features. ``'kinematic'``: M(q) = J(q) J(q)^T + eps I with J (d x 2d) *affine* in the q features,
        M^-1 applied by a Cholesky solve. It is the form of a planar mechanism's mass matrix, a sum of m_i J_i^T J_i
        over point masses whose Jacobians are affine in the cos and sin of the joint angles (the cart-pole's M is
        exactly of this form), and with ``periodic`` angles it is bounded and smooth all the way round, where an
        MLP's M^-1 is free beyond the data. Training need not find the true J (on the cart-pole it did not, and
        still predicted better than the inverse form: the measurement log's record of sessions 27-30). Needs the
        separable Hamiltonian and ``mass_matrix='state'``; meant for small latents: the solve is unrolled per
        coordinate so that it exports to ONNX, and its cost grows as d^2 (4x the inverse one's rollout time at
        d = 12, the same record). ``'chain'``: the
        same M = J J^T + eps I with J restricted to a planar chain on a sliding base with absolute angles
        (:class:`~hamwm_ros.worldmodel.networks.ChainJacobian`): a non-periodic coordinate's row of J is constant
        (a base translation), a periodic angle's row turns with the angle and has no constant part. It is exact for
        the cart-pole and a double pendulum in absolute angles and identifies M from a narrow range of angles
        where ``'kinematic'`` cannot (README, "Sample efficiency, cart-pole"); it is wrong for relative joint angles
        and for a translation that rides on a link. Needs what ``'kinematic'`` needs and at least one periodic angle.
    damping_param
        How the damping D = C C^T (+ diag(d(q)) for a state damping map) is parameterised. ``'softplus'``: C has a
        softplus diagonal starting at softplus(-3) and d(q) = softplus(net(q) - 4); the damping starts near 2e-3
        (constant) or 2e-2 (state map) and can approach zero only slowly (softplus' vanishing slope). ``'square'``:
        C is an unconstrained lower-triangular factor starting at ``damping_init`` I and d(q) = s(q)^2 with s
        starting at ``damping_init``; D is PSD for any sign of the parameters and reaches exactly zero (or a large
        value) in a number of optimiser steps that does not depend on its size, so a lossless system can learn zero
        damping.
    damping_init
        Initial diagonal of C and initial s(q) for ``damping_param='square'`` (the damping starts at about its square).
    solver_iters
        Fixed-point iterations of the implicit integrators.
    substeps
        Integrator substeps per ``dt``.
    residual_scale
        Output scale of the residual network.
    mass_eps
        Lower bound added to the inverse mass (keeps it positive definite and bounded below).
    ignorable
        Indices into q of *ignorable* (cyclic) coordinates: H does not depend on them (a cart on a flat rail, a
        floating base's horizontal position or yaw). Every q-dependent network (potential, mass, damping and input
        maps, the general Hamiltonian's q part and the residual) sees those coordinates set to zero, so dH/dq is
        exactly zero along them and, with no force or damping acting on it, the conjugate momentum is conserved.
        Empty (default): no coordinate is ignorable and the model is unchanged.
    rest_momentum
        ``'free'`` (default) or ``'zero'``: with ``'zero'`` the ``mlp`` and ``fused`` encoders give p = 0 whenever the
        observed joint velocities are zero (p is the encoder's p-output minus its value at the same positions with
        zero velocity), as the momentum of a mechanical system at rest is. A model whose encoder maps a still robot to
        p != 0 claims motion, and so power, where there is none.
    periodic
        Indices into q of angles (revolute joints, a pendulum's angle): the q-dependent networks see (cos q_i, sin q_i)
        instead of q_i, so H and every port are 2 pi-periodic in them and an angle outside the training range maps
        onto the same circle the data lie on. Meant for latent q in radians (the identity encoder, where q holds the
        joint angles). Disjoint from ``ignorable``; empty (default): no change.
    """

    obs_dim: int
    action_dim: int
    latent_dim: int
    encoder: str = 'mlp'
    hamiltonian: str = 'separable'
    dissipation: bool = True
    control: bool = True
    residual: bool = True
    hidden: int = 64
    ensemble: int = 1
    image_shape: tuple[int, int, int] | None = None
    n_frames: int = 2
    integrator: str = 'leapfrog'
    dt: float = 0.01
    layers: int = 2
    activation: str = 'tanh'
    mass_matrix: str = 'state'
    mass_param: str = 'inverse'
    input_map: str = 'state'
    damping_map: str = 'state'
    damping_param: str = 'softplus'
    damping_init: float = 0.03
    solver_iters: int = 2
    substeps: int = 1
    residual_scale: float = 0.1
    mass_eps: float = 1e-3
    ignorable: tuple[int, ...] = ()
    periodic: tuple[int, ...] = ()
    rest_momentum: str = 'free'

    def validate(self) -> None:
        """Check the configuration.

        Raises
        ------
        ValueError
            On inconsistent or out-of-range values, naming the field.
        """
        if self.encoder not in ENCODERS:
            raise ValueError(f'encoder must be one of {ENCODERS}, got {self.encoder!r}')
        if self.hamiltonian not in HAMILTONIANS:
            raise ValueError(f'hamiltonian must be one of {HAMILTONIANS}, got {self.hamiltonian!r}')
        if self.integrator not in INTEGRATORS:
            raise ValueError(f'integrator must be one of {INTEGRATORS}, got {self.integrator!r}')
        explicit = self.hamiltonian == 'separable' and self.mass_matrix == 'constant'
        if self.integrator == 'symplectic_euler' and not explicit:
            raise ValueError("integrator 'symplectic_euler' needs hamiltonian 'separable' and mass_matrix "
                             "'constant' (it is explicit only for H = T(p) + V(q))")
        for name in ('mass_matrix', 'input_map', 'damping_map'):
            if getattr(self, name) not in ('state', 'constant'):
                raise ValueError(f"{name} must be 'state' or 'constant', got {getattr(self, name)!r}")
        for name in ('latent_dim', 'hidden', 'ensemble', 'n_frames', 'layers', 'solver_iters', 'substeps'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        if self.mass_param not in MASS_PARAMS:
            raise ValueError(f'mass_param must be one of {MASS_PARAMS}, got {self.mass_param!r}')
        if self.mass_param in JACOBIAN_MASS and (self.hamiltonian != 'separable' or self.mass_matrix != 'state'):
            raise ValueError(f"mass_param {self.mass_param!r} needs hamiltonian 'separable' and mass_matrix 'state'")
        if self.mass_param == 'chain' and not self.periodic:
            raise ValueError("mass_param 'chain' needs at least one periodic angle (without one J is constant: use "
                             "mass_matrix 'constant')")
        if self.damping_param not in DAMPING_PARAMS:
            raise ValueError(f'damping_param must be one of {DAMPING_PARAMS}, got {self.damping_param!r}')
        if not (math.isfinite(self.damping_init) and self.damping_init >= 0):
            raise ValueError(f'damping_init must be finite and >= 0, got {self.damping_init}')
        for name in ('ignorable', 'periodic'):
            idx = tuple(getattr(self, name))
            if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in idx):
                raise ValueError(f'{name} must hold integer indices into q, got {getattr(self, name)!r}')
            if len(set(idx)) != len(idx) or any(not 0 <= int(i) < int(self.latent_dim) for i in idx):
                raise ValueError(f'{name} must hold distinct indices in [0, {self.latent_dim}), got '
                                 f'{getattr(self, name)!r}')
        if set(self.ignorable) & set(self.periodic):
            raise ValueError(f'a coordinate cannot be both ignorable and periodic: {self.ignorable}, {self.periodic}')
        if self.obs_dim < 0 or self.action_dim < 0:
            raise ValueError('obs_dim and action_dim must be >= 0')
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f'dt must be positive and finite, got {self.dt}')
        if self.encoder in ('identity', 'configuration') and self.obs_dim != 2 * self.latent_dim:
            raise ValueError(f'{self.encoder} encoder needs obs_dim == 2 * latent_dim, got {self.obs_dim} and '
                             f'{self.latent_dim}')
        if self.encoder == 'configuration' and (self.hamiltonian != 'separable' or self.mass_matrix != 'constant'):
            raise ValueError("encoder 'configuration' needs hamiltonian 'separable' and mass_matrix 'constant' "
                             '(its momentum is p = M dq/dt with one constant M)')
        if self.encoder in ('image', 'fused'):
            if self.image_shape is None or len(self.image_shape) != 3 or min(self.image_shape) < 1:
                raise ValueError(f'encoder {self.encoder!r} needs image_shape (H, W, C), got {self.image_shape}')
        if self.rest_momentum not in ('free', 'zero'):
            raise ValueError(f"rest_momentum must be 'free' or 'zero', got {self.rest_momentum!r}")
        if self.rest_momentum == 'zero' and (self.encoder not in ('mlp', 'fused') or self.obs_dim % 2):
            raise ValueError("rest_momentum 'zero' needs the mlp or fused encoder over joint positions then "
                             'velocities (an even obs_dim)')
        if self.encoder in ('mlp', 'fused') and self.obs_dim < 1:
            raise ValueError(f'encoder {self.encoder!r} needs obs_dim >= 1')

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out['image_shape'] = list(self.image_shape) if self.image_shape is not None else None
        for name in ('ignorable', 'periodic'):  # written only when set: other models' files stay as they were
            if getattr(self, name):
                out[name] = [int(i) for i in getattr(self, name)]
            else:
                del out[name]
        if self.rest_momentum == 'free':
            del out['rest_momentum']
        if self.mass_param == 'inverse':
            del out['mass_param']
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected.

        Raises
        ------
        ValueError
            On unknown keys or an invalid configuration.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown model config keys: {unknown}')
        data = dict(data)
        if data.get('image_shape') is not None:
            data['image_shape'] = tuple(int(v) for v in data['image_shape'])
        for name in ('ignorable', 'periodic'):  # configs written before these fields existed load with ()
            if name in data:
                if not isinstance(data[name], (list, tuple)):
                    raise ValueError(f'{name} must be a list of indices, got {data[name]!r}')
                data[name] = tuple(data[name])
        cfg = cls(**data)
        cfg.validate()
        return cfg


def _skip_init(ensemble: int, n_in: int, n_out: int) -> torch.Tensor:
    """(E, n_in, n_out) identity where the sizes match (extra rows/columns zero), else a random projection."""
    if n_in == n_out:
        return torch.eye(n_in).expand(ensemble, n_in, n_out).clone()
    return torch.randn(ensemble, n_in, n_out) / math.sqrt(n_in)


class _Dynamics:
    """Per-call evaluator of the latent vector field with a small memo of configuration (q-only) quantities.

    Leapfrog evaluates dH/dq, M^-1(q), G(q), D(q) several times at the same q object (the last kick of one step and
    the first of the next share q), so those are memoised by tensor identity; a rollout then costs one potential
    gradient per step for a constant mass.
    """

    def __init__(self, model: HamiltonianWorldModel) -> None:
        self.m = model
        self._memo: dict[int, tuple[torch.Tensor, dict[str, Any]]] = {}
        self._general: tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._const_a: torch.Tensor | None = None
        self._const_d: torch.Tensor | None = None

    def _q(self, q: torch.Tensor) -> dict[str, Any]:
        hit = self._memo.get(id(q))
        if hit is not None and hit[0] is q:
            return hit[1]
        if len(self._memo) >= 6:
            self._memo.pop(next(iter(self._memo)))
        entry: dict[str, Any] = {}
        self._memo[id(q)] = (q, entry)
        return entry

    # -- structured Hamiltonian pieces ------------------------------------------------------------------------------
    def net_q(self, q: torch.Tensor) -> torch.Tensor:
        """What the q-dependent networks see (:meth:`HamiltonianWorldModel.q_features`, memoised per q)."""
        if self.m.q_mask is None:
            return q
        e = self._q(q)
        if 'qn' not in e:
            e['qn'], e['trig'] = self.m.q_features(q)
        return e['qn']

    def mask_grad(self, g: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Chain rule through :meth:`net_q`: a gradient w.r.t. the features -> w.r.t. q (zero along ignorable)."""
        if self.m.q_mask is None:
            return g
        self.net_q(q)
        return self.m.q_features_vjp(g, self._q(q)['trig'])

    def potential_grad(self, q: torch.Tensor) -> torch.Tensor:
        e = self._q(q)
        if 'dV' not in e:
            e['V'], dv = self.m.potential.scalar_and_grad(self.net_q(q))
            e['dV'] = self.mask_grad(dv, q)
        return e['dV']

    def mass_factor(self, q: torch.Tensor) -> dict[str, Any]:
        """L(q) (E, B, d, d) with packed outputs and MLP cache, or the constant inverse mass A (E, 1, d, d).

        For a Jacobian mass (``'kinematic'``, ``'chain'``): J(q) (E, B, d, 2d) and the Cholesky factor ``C`` of
        M(q) = J J^T + eps I.
        """
        e = self._q(q)
        if 'L' not in e:
            m = self.m
            if m.cfg.mass_param in JACOBIAN_MASS:
                d = m.cfg.latent_dim
                jac = m.mass_net(self.net_q(q)).unflatten(-1, (d, 2 * d))
                eye = torch.eye(d, dtype=jac.dtype, device=jac.device)
                e['J'], e['L'] = jac, None
                e['C'] = cholesky_unrolled(torch.matmul(jac, jac.transpose(-1, -2)) + m.cfg.mass_eps * eye)
            elif m.cfg.mass_matrix == 'constant':
                if self._const_a is None:
                    self._const_a = m.constant_inverse_mass()
                e['A'] = self._const_a
                e['L'] = None
            else:
                o, cache = m.mass_net.forward_cached(self.net_q(q))
                e['o'], e['cache'] = o, cache
                e['L'] = m.packed_to_tril(o, _SOFTPLUS_ONE)
        return e

    def apply_inverse_mass(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        e = self.mass_factor(q)
        if 'C' in e:
            return cholesky_solve_unrolled(e['C'], x)
        if e['L'] is None:  # one batched GEMM, (E, B, d) @ (E, d, d); A is symmetric
            return torch.matmul(x, e['A'])
        L = e['L']
        w = torch.matmul(x.unsqueeze(-2), L)  # (.., 1, d) = (L^T x)^T
        return torch.matmul(w, L.transpose(-1, -2)).squeeze(-2) + self.m.cfg.mass_eps * x

    def kinetic_grad_q(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """d/dq of 1/2 p^T L(q) L(q)^T p (or of 1/2 p^T M(q)^-1 p for a Jacobian mass).

        The cotangent on L is p w^T (w = L^T p), chained through the softplus diagonal and the mass network's explicit
        backward pass.
        """
        e = self.mass_factor(q)
        if 'C' in e:
            # T = 1/2 p^T M^-1 p with M = J J^T: dT/dM = -1/2 v v^T (v = M^-1 p = dq/dt), so the cotangent on J is
            # -v (J^T v)^T, and J is affine in the features: one transposed weight product.
            v = cholesky_solve_unrolled(e['C'], p)
            w = torch.matmul(v.unsqueeze(-2), e['J']).squeeze(-2)
            grad_j = -(v.unsqueeze(-1) * w.unsqueeze(-2)).flatten(-2)
            return self.mask_grad(torch.matmul(grad_j, self.m.mass_net.weight.transpose(-1, -2)), q)
        w = torch.matmul(p.unsqueeze(-2), e['L']).squeeze(-2)
        grad_l = (p.unsqueeze(-1) * w.unsqueeze(-2)).flatten(-2)
        g_packed = torch.matmul(grad_l, self.m.tril_select.transpose(0, 1))
        mask = self.m.tril_diag
        g_packed = g_packed * ((1.0 - mask) + mask * torch.sigmoid(e['o'] + _SOFTPLUS_ONE))
        return self.mask_grad(self.m.mass_net.vjp(e['cache'], g_packed), q)

    # -- gradients of H ---------------------------------------------------------------------------------------------
    def grad_q(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.m.cfg.hamiltonian == 'general':
            return self.general_grad(q, p)[0]
        g = self.potential_grad(q)
        if self.m.cfg.mass_matrix == 'state':
            g = g + self.kinetic_grad_q(q, p)
        return g

    def grad_p(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.m.cfg.hamiltonian == 'general':
            return self.general_grad(q, p)[1]
        return self.apply_inverse_mass(q, p)

    def general_grad(self, q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = self._general
        if last is not None and last[0] is q and last[1] is p:  # grad_q and grad_p of one point share a pass
            return last[2]
        _, g = self.m.hamiltonian_net.scalar_and_grad(torch.cat([self.net_q(q), p], -1))
        n = self.m.q_feature_dim
        out = (self.mask_grad(g[..., :n], q), g[..., n:])
        self._general = (q, p, out)
        return out

    def energy(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.m.cfg.hamiltonian == 'general':
            return self.m.hamiltonian_net(torch.cat([self.net_q(q), p], -1))[..., 0]
        v = self.m.potential(self.net_q(q))[..., 0]
        return v + 0.5 * (p * self.apply_inverse_mass(q, p)).sum(-1)

    # -- ports ------------------------------------------------------------------------------------------------------
    def damp(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """D(q) v with D = C C^T + diag(d(q)), d >= 0 (PSD by construction; no net for a constant D)."""
        if self._const_d is None:
            C = self.m.constant_damping_factor()
            self._const_d = torch.matmul(C, C.transpose(-1, -2))  # (E, d, d), symmetric PSD
        out = torch.matmul(v, self._const_d)
        if self.m.cfg.damping_map == 'state':
            e = self._q(q)
            if 'Ddiag' not in e:
                raw = self.m.damping_net(self.net_q(q))
                e['Ddiag'] = raw * raw if self.m.cfg.damping_param == 'square' else F.softplus(raw - 4.0)
            out = out + e['Ddiag'] * v
        return out

    def force(self, q: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """G(q) u, (E, B, d)."""
        m = self.m
        out = torch.matmul(u, m.input_const.transpose(-1, -2))
        if m.cfg.input_map == 'state':
            e = self._q(q)
            if 'G' not in e:
                e['G'] = 0.1 * m.input_net(self.net_q(q)).reshape(*q.shape[:-1], m.cfg.latent_dim, m.cfg.action_dim)
            out = out + torch.matmul(e['G'], u.unsqueeze(-1)).squeeze(-1)
        return out


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Affine map x @ weight + bias: one ``Gemm`` for 2-d operands, a batched matmul and an add for members."""
    if x.dim() == 2 and weight.dim() == 2:
        return torch.addmm(bias, x, weight)
    return torch.matmul(x, weight) + bias


def _lean_potential(k: dict[str, Any], q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Potential MLP at q: (last hidden activation, g) with dV/dq = g @ W_1^T (g: cotangent of the first layer).

    With periodic coordinates (``k['P']``) g is dV/dq itself (the feature map is not linear), and ``k['kick']`` is
    -h/2 I accordingly.
    """
    tanh = k['activation'] == 'tanh'
    trig = None
    x = q
    if k.get('P') is not None:  # periodic coordinates enter as (cos, sin) (HamiltonianWorldModel.q_features)
        a = torch.matmul(q, k['P'])
        trig = (torch.cos(a), torch.sin(a))
        x = torch.cat([q * k['q_mask'], trig[0], trig[1]], -1)
    pre, acts = [], []
    for w, b in zip(k['W'], k['b']):
        a = _affine(x, w, b)
        x = torch.tanh(a) if tanh else F.softplus(a)
        pre.append(a)
        acts.append(x)
    n = len(acts)
    if tanh and n >= 2:
        s = _affine(acts[-1] * acts[-1], k['s_weight'], k['s_bias'])  # cotangent of the second-to-last activation
        top = n - 2
    else:
        s = k['w_row']
        top = n - 1
    for i in range(top, -1, -1):
        if tanh:
            g = s - s * (acts[i] * acts[i])  # tanh' = 1 - t^2, reusing t
        else:
            g = s * torch.sigmoid(pre[i])
        if i > 0:
            s = torch.matmul(g, k['WT'][i - 1])
    if trig is not None:  # g -> dV/dq through the features (then k['kick'] is -h/2 I)
        gf = torch.matmul(g, k['W0T'])
        c, s_ = trig
        d, n = q.shape[-1], c.shape[-1]
        g = gf[..., :d] * k['q_mask'] + torch.matmul(gf[..., d + n:] * c - gf[..., d:d + n] * s_, k['PT'])
    return acts[-1], g


def lean_rollout(k: dict[str, Any], q: torch.Tensor, p: torch.Tensor, actions: torch.Tensor | None, horizon: int,
                 *, with_potential: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The structured rollout of a :attr:`HamiltonianWorldModel.lean` model with every constant hoisted.

    Per substep (Strang splitting, as :meth:`HamiltonianWorldModel.step`): dissipation half (p @ expm(-h/2 A D)),
    half kick p += h/2 (G u - dV/dq), drift q += h A p, half kick at the new q, dissipation half. The potential
    gradient of the new q serves both the closing kick of one step and the opening kick of the next (q does not
    change in between), so each substep evaluates the potential once. Input forces for all steps come from one
    matmul before the loop, q and p stay separate tensors through the loop, and the outputs are concatenated once.

    Parameters
    ----------
    k
        :meth:`HamiltonianWorldModel.lean_constants` (2-d matrices for one member, else member-batched).
    q, p
        (B, d), or (E, B, d) with members.
    actions
        Physical actions (B, H, m) (or (E, B, H, m) with members), or None without control.
    horizon
        H.
    with_potential
        Also return V(q) - b_out at each step, read from the potential pass the step already made (one small
        matmul per step), for :func:`lean_energy`.

    Returns
    -------
    tuple
        q after each step (B, H, d), p after each step (same), and the potential without its output bias (B, H) or
        None.
    """
    diss = k['E']
    d = q.shape[-1]

    forces = forces_e = None
    if k['G'] is not None and actions is not None:
        # Every step's input half-kick (and, with dissipation, its image under the closing dissipation half) from one
        # 2-d matmul before the loop, then one Split into per-step (.., B, d) tensors.
        w = k['G'] if diss is None else torch.cat([k['G'], k['GE']], -1)
        width = w.shape[-1]
        if w.dim() == 2:
            f_all = torch.matmul(actions.reshape(-1, actions.shape[-1]), w).reshape(-1, horizon * width)
        else:
            members = int(w.shape[0])
            a = actions.reshape(int(actions.shape[0]) if actions.dim() == 4 else 1, -1, actions.shape[-1])
            f_all = torch.matmul(a, w).reshape(members, -1, horizon * width)
        pieces = torch.split(f_all, d, -1)
        forces, forces_e = (pieces, None) if diss is None else (pieces[0::2], pieces[1::2])
    t_last, g = _lean_potential(k, q)
    qs, ps, vs = [], [], []
    for t in range(horizon):
        f = None if forces is None else forces[t]
        for _ in range(k['substeps']):
            if diss is not None:
                pre = _affine(p, diss, f) if f is not None else torch.matmul(p, diss)
            else:
                pre = p if f is None else p + f
            p = _affine(g, k['kick'], pre)
            q = _affine(p, k['hA'], q)
            t_last, g = _lean_potential(k, q)
            if diss is None:
                p = _affine(g, k['kick'], p if f is None else p + f)
            else:  # (p + f - h/2 dV) @ X  as  g @ (kick X) + (p @ X + f X)
                pe = torch.matmul(p, diss) if f is None else _affine(p, diss, forces_e[t])
                p = _affine(g, k['kickE'], pe)
        qs.append(q)
        ps.append(p)
        if with_potential:
            vs.append(torch.matmul(t_last, k['w_out']))  # (.., B, 1)
    return _steps(qs, horizon), _steps(ps, horizon), torch.cat(vs, -1) if with_potential else None


def _steps(xs: list[torch.Tensor], horizon: int) -> torch.Tensor:
    """H tensors (.., B, n) -> (.., B, H, n) with one Concat and one Reshape (batch left as -1: stays dynamic)."""
    n = xs[0].shape[-1]
    lead = () if xs[0].dim() == 2 else (int(xs[0].shape[0]),)
    return torch.cat(xs, -1).reshape(*lead, -1, horizon, n)


def lean_energy(k: dict[str, Any], p_seq: torch.Tensor, v_seq: torch.Tensor) -> torch.Tensor:
    """H = V(q) + 1/2 p A p, (.., B, H), from :func:`lean_rollout`'s potential values (``with_potential``)."""
    half_a = 0.5 * k['A']
    horizon, d = int(p_seq.shape[-2]), int(p_seq.shape[-1])
    if half_a.dim() == 2:  # a 2-d matmul over every (sample, step) row
        pa = torch.matmul(p_seq.reshape(-1, d), half_a).reshape(-1, horizon, d)
    else:
        members = int(half_a.shape[0])
        pa = torch.matmul(p_seq.reshape(members, -1, d), half_a).reshape(members, -1, horizon, d)
    return (v_seq + k['b_out']) + (p_seq * pa).sum(-1)


class HamiltonianWorldModel(nn.Module):
    """Port-Hamiltonian latent world model (see the module docstring).

    Parameters
    ----------
    cfg
        The configuration; validated here.

    Raises
    ------
    ValueError
        If ``cfg`` is invalid.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.info: dict[str, Any] = {}  # free-form provenance saved with the model (joint names, data hash, ...)
        # Ensemble spread calibration (the metadata's ``spread_calibration`` entry), fitted on validation data by
        # ``hamwm train``; None: raw member spread.
        self.spread_calibration: dict[str, Any] | None = None
        # How far the energy books missed on validation data (the metadata's ``energy_calibration`` entry); None: the
        # validity monitor counts every mismatch against the model.
        self.energy_calibration: dict[str, Any] | None = None
        E, d, m, hid = cfg.ensemble, cfg.latent_dim, cfg.action_dim, cfg.hidden
        mlp = dict(layers=cfg.layers, activation=cfg.activation)
        self.register_buffer('obs_mean', torch.zeros(cfg.obs_dim))
        self.register_buffer('obs_std', torch.ones(cfg.obs_dim))
        self.register_buffer('action_scale', torch.ones(m))
        select, diag = tril_selector(d)
        self.register_buffer('tril_select', select.float(), persistent=False)
        self.register_buffer('tril_diag', diag.float(), persistent=False)
        # Ignorable coordinates: 0 in this mask (see ModelConfig.ignorable); None (no op in any graph) when there are
        # none. Derived from the config, so not in the state dict.
        # Periodic coordinates: 0 in the mask too, and their (cos, sin) appended through the selection q @ S.
        q_mask = periodic = None
        if cfg.ignorable or cfg.periodic:
            q_mask = torch.ones(d)
            q_mask[list(int(i) for i in (*cfg.ignorable, *cfg.periodic))] = 0.0
        if cfg.periodic:
            periodic = torch.zeros(d, len(cfg.periodic))
            for j, i in enumerate(cfg.periodic):
                periodic[int(i), j] = 1.0
        self.register_buffer('q_mask', q_mask, persistent=False)
        self.register_buffer('periodic_select', periodic, persistent=False)
        nq = self.q_feature_dim

        if cfg.encoder in ('image', 'fused'):
            self.image_encoder = ImageEncoder(tuple(cfg.image_shape), cfg.n_frames, hid)
            self.image_decoder = ImageDecoder(tuple(cfg.image_shape), 2 * d)
        if cfg.encoder not in ('identity', 'configuration'):
            enc_in = {'mlp': cfg.obs_dim, 'image': hid, 'fused': hid + cfg.obs_dim}[cfg.encoder]
            self.encoder_net = EnsembleMLP(E, enc_in, hid, 2 * d, zero_last=cfg.encoder != 'image', **mlp)
            if cfg.encoder in ('mlp', 'fused'):
                # Linear skip from the joint observations, starting at (q, p) = (positions, velocities) when the
                # sizes allow: a physically sensible initial phase space that the MLP then corrects.
                self.encoder_skip = nn.Parameter(_skip_init(E, cfg.obs_dim, 2 * d))
            if cfg.obs_dim > 0:
                self.decoder_net = EnsembleMLP(E, 2 * d, hid, cfg.obs_dim, zero_last=True, **mlp)
                self.decoder_skip = nn.Parameter(_skip_init(E, 2 * d, cfg.obs_dim))

        n_tri = d * (d + 1) // 2
        if cfg.hamiltonian == 'separable':
            self.potential = EnsembleMLP(E, nq, hid, 1, **mlp)
            if cfg.mass_matrix == 'constant':
                self.mass_raw = nn.Parameter(torch.zeros(E, n_tri))
            elif cfg.mass_param == 'kinematic':
                # J starts at [I 0], so M starts at the identity as the inverse parametrisation's does.
                self.mass_net = EnsembleLinear(E, nq, 2 * d * d, zero=True)
                with torch.no_grad():
                    self.mass_net.bias.copy_(torch.eye(d, 2 * d).reshape(1, 1, -1))
            elif cfg.mass_param == 'chain':  # J J^T starts at the identity too
                self.mass_net = ChainJacobian(E, d, tuple(int(i) for i in cfg.periodic))
            else:
                self.mass_net = EnsembleMLP(E, nq, hid, n_tri, zero_last=True, **mlp)
        else:
            self.hamiltonian_net = EnsembleMLP(E, nq + d, hid, 1, **mlp)
        if cfg.dissipation:
            self.damping_raw = nn.Parameter(torch.zeros(E, n_tri))
            if cfg.damping_map == 'state':
                self.damping_net = EnsembleMLP(E, nq, max(hid // 2, 8), d, layers=1, activation=cfg.activation,
                                               zero_last=True)
            if cfg.damping_param == 'square':
                with torch.no_grad():
                    self.damping_raw.copy_(cfg.damping_init * diag.expand(E, n_tri))
                    if cfg.damping_map == 'state':  # s(q) starts at damping_init (a zero s would get no gradient)
                        self.damping_net.out.bias.fill_(cfg.damping_init)
        if cfg.control and m > 0:
            self.input_const = nn.Parameter(0.3 * torch.randn(E, d, m) / math.sqrt(max(m, 1)))
            if cfg.input_map == 'state':
                self.input_net = EnsembleMLP(E, nq, hid, d * m, layers=1, activation=cfg.activation, zero_last=True)
        if cfg.residual:
            self.residual_net = EnsembleMLP(E, nq + d + m, hid, 2 * d, layers=1, activation=cfg.activation,
                                            zero_last=True)

    # -- shape helpers -----------------------------------------------------------------------------------------------
    @property
    def has_control(self) -> bool:
        """Whether actions act on the model."""
        return self.cfg.control and self.cfg.action_dim > 0

    def _lift(self, x: torch.Tensor, base_dims: int) -> tuple[torch.Tensor, bool]:
        """Give ``x`` a member dimension; returns (E, ...) and whether to drop it on output."""
        E = self.cfg.ensemble
        if x.dim() == base_dims + 1:
            if x.shape[0] not in (1, E):
                raise ValueError(f'leading (member) dimension is {x.shape[0]}, model has {E} members')
            return x.expand(E, *x.shape[1:]), False
        if x.dim() != base_dims:
            raise ValueError(f'expected a {base_dims}-d tensor (or {base_dims + 1}-d with members), got {x.dim()}-d')
        return x.unsqueeze(0).expand(E, *x.shape), E == 1

    @staticmethod
    def _drop(x: torch.Tensor, squeeze: bool) -> torch.Tensor:
        return x[0] if squeeze else x

    @property
    def q_feature_dim(self) -> int:
        """Input size of the q-dependent networks: d (ignorable, periodic entries zeroed) + cos, sin of each angle."""
        return self.cfg.latent_dim + 2 * len(self.cfg.periodic)

    def q_features(self, q: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """What the q-dependent networks see, and (cos, sin) of the periodic coordinates (None without any).

        q itself with ignorable and periodic coordinates zeroed, then cos and sin of the periodic ones; q unchanged
        when the model has neither (see ``ModelConfig.ignorable`` / ``periodic``).
        """
        if self.q_mask is None:
            return q, None
        lin = q * self.q_mask
        if self.periodic_select is None:
            return lin, None
        a = torch.matmul(q, self.periodic_select)
        c, s = torch.cos(a), torch.sin(a)
        return torch.cat([lin, c, s], -1), (c, s)

    def q_features_vjp(self, g: torch.Tensor, trig: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Closed-form chain rule of :meth:`q_features`: cotangent on the features (.., nq) -> on q (.., d)."""
        if self.q_mask is None:
            return g
        if trig is None:
            return g * self.q_mask
        d, c, s = self.cfg.latent_dim, trig[0], trig[1]
        n = c.shape[-1]
        g_angle = g[..., d + n:] * c - g[..., d:d + n] * s  # d/da (cos a, sin a) = (-sin a, cos a)
        return g[..., :d] * self.q_mask + torch.matmul(g_angle, self.periodic_select.transpose(0, 1))

    def packed_to_tril(self, packed: torch.Tensor, diag_offset: float) -> torch.Tensor:
        """Packed (..., d(d+1)/2) -> lower-triangular (..., d, d) with a positive (softplus) diagonal."""
        d = self.cfg.latent_dim
        mask = self.tril_diag
        packed = packed * (1.0 - mask) + F.softplus(packed + diag_offset) * mask
        return torch.matmul(packed, self.tril_select).reshape(*packed.shape[:-1], d, d)

    def constant_inverse_mass(self) -> torch.Tensor:
        """(E, d, d) inverse mass L L^T + eps I for ``mass_matrix='constant'``."""
        L = self.packed_to_tril(self.mass_raw, _SOFTPLUS_ONE)
        eye = torch.eye(self.cfg.latent_dim, dtype=L.dtype, device=L.device)
        return torch.matmul(L, L.transpose(-1, -2)) + self.cfg.mass_eps * eye

    def configuration_maps(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``'configuration'`` encoder and decoder as affine maps of physical observations.

        With positions s and velocities v (obs = [s, v]), sigma and mu the positions' normalisation: q = (s - mu) /
        sigma, p = M (v / sigma) with M = A^-1 the inverse of the constant inverse mass; decoding is the exact inverse,
        s = sigma q + mu, v = sigma (A p). The velocities are not shifted by their mean: dq/dt = A p must be the
        time derivative of q itself.

        Returns
        -------
        tuple
            (W_enc, b_enc, W_dec, b_dec) with z = obs @ W_enc + b_enc and obs = z @ W_dec + b_dec; the matrices are
            (E, 2 d, 2 d), the biases (2 d,).
        """
        d = self.cfg.latent_dim
        sigma, mu = self.obs_std[:d], self.obs_mean[:d]
        inv_mass = self.constant_inverse_mass()  # (E, d, d), symmetric positive definite
        mass = torch.linalg.inv(inv_mass)
        zeros = torch.zeros_like(inv_mass)
        w_enc = torch.cat([torch.cat([torch.diag(1.0 / sigma).expand_as(mass), zeros], -1),
                           torch.cat([zeros, mass / sigma.unsqueeze(-1)], -1)], -2)
        w_dec = torch.cat([torch.cat([torch.diag(sigma).expand_as(mass), zeros], -1),
                           torch.cat([zeros, inv_mass * sigma], -1)], -2)
        b_enc = torch.cat([-mu / sigma, torch.zeros_like(mu)])
        b_dec = torch.cat([mu, torch.zeros_like(mu)])
        return w_enc, b_enc, w_dec, b_dec

    def constant_damping_factor(self) -> torch.Tensor:
        """(E, d, d) factor C of the constant part C C^T of the damping (see ``ModelConfig.damping_param``)."""
        if self.cfg.damping_param == 'square':
            d = self.cfg.latent_dim
            return torch.matmul(self.damping_raw, self.tril_select).reshape(*self.damping_raw.shape[:-1], d, d)
        return self.packed_to_tril(self.damping_raw, -3.0)

    @property
    def linear_dissipation(self) -> bool:
        """Constant inverse mass and constant damping: each Strang half of the dissipation is one exact matrix."""
        c = self.cfg
        return c.hamiltonian == 'separable' and c.mass_matrix == 'constant' and c.damping_map == 'constant'

    @property
    def lean(self) -> bool:
        """Whether :meth:`rollout` (and the exported predictor) take the lean path (see :func:`lean_rollout`).

        Needs an explicit separable leapfrog with every port q-independent: constant mass, constant input map,
        constant (or no) damping, no residual.
        """
        c = self.cfg
        return (c.hamiltonian == 'separable' and c.mass_matrix == 'constant' and c.integrator == 'leapfrog'
                and not c.residual and (not c.dissipation or c.damping_map == 'constant')
                and (not self.has_control or c.input_map == 'constant'))

    def dissipation_factor(self, tau: float) -> torch.Tensor:
        """(E, d, d) matrix X with p(tau) = p(0) @ X the exact flow of dp/dt = -D dH/dp = -D A p (rows).

        Only for :attr:`linear_dissipation` models. X = expm(-tau A D): with A, D symmetric and A positive definite,
        D positive semi-definite, the kinetic energy 1/2 p A p never increases along this flow (its rate is
        -(A p)^T D (A p) <= 0), for any tau.
        """
        C = self.constant_damping_factor()
        D = torch.matmul(C, C.transpose(-1, -2))
        A = self.constant_inverse_mass()
        return torch.linalg.matrix_exp(-tau * torch.matmul(A, D))

    def lean_constants(self, squeeze: bool = False) -> dict[str, Any]:
        """Every q-independent quantity of the lean rollout, precomputed once (differentiable in the parameters).

        Step size, 1/2 and action scaling are folded into the matrices; the potential's closed-form backward is
        rearranged so its first product is one GEMM with a constant bias (see :func:`lean_rollout`). With
        ``squeeze`` (one member) the member axis is dropped so the matrices are 2-d (ONNX ``Gemm``).
        """
        cfg = self.cfg
        h = cfg.dt / cfg.substeps
        net = self.potential
        Ws = [layer.weight for layer in net.hidden_layers]
        periodic = self.periodic_select is not None
        if self.q_mask is not None and not periodic:  # ignorable only: zero rows of the first layer (V ignores them)
            Ws[0] = Ws[0] * self.q_mask.unsqueeze(-1)
        bs = [layer.bias for layer in net.hidden_layers]
        w_out = net.out.weight  # (E, hid, 1)
        k: dict[str, Any] = {
            'activation': net.activation, 'substeps': cfg.substeps,
            'W': Ws, 'b': bs, 'WT': [w.transpose(-1, -2) for w in Ws[1:]],
            'w_out': w_out, 'b_out': net.out.bias, 'w_row': w_out.transpose(-1, -2),
            'A': self.constant_inverse_mass(),
            'hA': h * self.constant_inverse_mass(),
            'kick': -0.5 * h * Ws[0].transpose(-1, -2),  # p += g @ kick  is  p -= h/2 dV/dq
            'E': self.dissipation_factor(0.5 * h) if cfg.dissipation else None,
            'G': None,
        }
        if periodic:  # dV/dq is not linear in the first layer's cotangent: _lean_potential returns dV/dq itself
            E, d = cfg.ensemble, cfg.latent_dim
            eye = torch.eye(d, dtype=Ws[0].dtype, device=Ws[0].device)
            k['kick'] = (-0.5 * h * eye).expand(E, d, d)
            k['W0T'] = Ws[0].transpose(-1, -2)
            # Leading member axes so that ``squeeze`` (which drops axis 0 of every tensor) keeps their shapes.
            k['q_mask'] = self.q_mask.expand(E, 1, d)
            k['P'] = self.periodic_select.expand(E, d, len(cfg.periodic))
            k['PT'] = self.periodic_select.transpose(0, 1).expand(E, len(cfg.periodic), d)
        if net.activation == 'tanh' and len(Ws) >= 2:
            # s = (w * (1 - t^2)) @ W_L^T = w @ W_L^T - t^2 @ (diag(w) W_L^T): one GEMM with a constant bias
            wl_t = Ws[-1].transpose(-1, -2)
            k['s_bias'] = torch.matmul(k['w_row'], wl_t)
            k['s_weight'] = -(w_out * wl_t)
        if self.has_control:
            g_t = self.input_const.transpose(-1, -2) / self.action_scale.reshape(-1, 1)  # physical actions in
            k['G'] = 0.5 * h * g_t  # (E, m, d): half-kick of the input force
        if k['E'] is not None:  # the closing kick and the closing dissipation half as one product
            k['kickE'] = torch.matmul(k['kick'], k['E'])
            k['GE'] = torch.matmul(k['G'], k['E']) if k['G'] is not None else None
        if squeeze:
            def sq(v: Any) -> Any:
                if isinstance(v, list):
                    return [sq(x) for x in v]
                return v[0] if isinstance(v, torch.Tensor) else v
            k = {key: sq(v) for key, v in k.items()}
        return k

    # -- observation maps -------------------------------------------------------------------------------------------
    def normalise_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Physical observations -> the normalised units the networks and the losses use."""
        return (obs - self.obs_mean) / self.obs_std

    def set_normalisation(self, obs_mean: Any, obs_std: Any, action_scale: Any | None = None) -> None:
        """Set the statistics (physical units). Standard deviations below 1e-6 are raised to 1e-6.

        Raises
        ------
        ValueError
            On wrong sizes or non-finite values.
        """
        mean = torch.as_tensor(obs_mean, dtype=self.obs_mean.dtype).reshape(-1)
        std = torch.as_tensor(obs_std, dtype=self.obs_std.dtype).reshape(-1)
        if mean.numel() != self.cfg.obs_dim or std.numel() != self.cfg.obs_dim:
            raise ValueError(f'normalisation needs {self.cfg.obs_dim} entries, got {mean.numel()} and {std.numel()}')
        scale = torch.ones(self.cfg.action_dim) if action_scale is None else torch.as_tensor(
            action_scale, dtype=self.action_scale.dtype).reshape(-1)
        if scale.numel() != self.cfg.action_dim:
            raise ValueError(f'action_scale needs {self.cfg.action_dim} entries, got {scale.numel()}')
        if not all(torch.isfinite(t).all() for t in (mean, std, scale)):
            raise ValueError('normalisation statistics must be finite')
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(1e-6))
        self.action_scale.copy_(scale.clamp_min(1e-6))

    def encode(self, obs: torch.Tensor | None, images: torch.Tensor | None = None) -> torch.Tensor:
        """Observations (B, obs_dim) and/or frames (B, n_frames, H, W, C) -> latent z (B, 2 d) or (E, B, 2 d).

        Frames are float in [0, 1] or uint8 (scaled here).

        Raises
        ------
        ValueError
            If an input the encoder needs is missing or has the wrong shape.
        """
        cfg = self.cfg
        features = None
        if cfg.encoder in ('image', 'fused'):
            if images is None:
                raise ValueError(f'encoder {cfg.encoder!r} needs images (B, n_frames, H, W, C)')
            if images.dim() != 5 or tuple(images.shape[1:]) != (cfg.n_frames, *cfg.image_shape):
                raise ValueError(f'images must be (B, {cfg.n_frames}, {", ".join(map(str, cfg.image_shape))}), got '
                                 f'{tuple(images.shape)}')
            frames = images.float() / 255.0 if images.dtype == torch.uint8 else images
            features = self.image_encoder(frames.to(self.obs_mean.dtype))
        if cfg.encoder == 'image':
            x, squeeze = self._lift(features, 2)
            return self._drop(self.encoder_net(x), squeeze)
        if obs is None:
            raise ValueError(f'encoder {cfg.encoder!r} needs obs (B, {cfg.obs_dim})')
        if obs.shape[-1] != cfg.obs_dim:
            raise ValueError(f'obs last dimension must be {cfg.obs_dim}, got {obs.shape[-1]}')
        if cfg.encoder == 'configuration':
            w, b = self.configuration_maps()[:2]
            x, squeeze = self._lift(obs, 2)
            return self._drop(torch.matmul(x, w) + b, squeeze)
        x, squeeze = self._lift(self.normalise_obs(obs), 2)
        if cfg.encoder == 'identity':
            return self._drop(x, squeeze)
        def joint_encoder(x: torch.Tensor) -> torch.Tensor:
            skip = torch.matmul(x, self.encoder_skip)
            if cfg.encoder == 'fused':
                x = torch.cat([x, features.unsqueeze(0).expand(x.shape[0], *features.shape)], -1)
            return skip + self.encoder_net(x)

        z = joint_encoder(x)
        if cfg.rest_momentum == 'zero':  # p minus p at the same positions with zero velocity: p = 0 at rest
            half = cfg.obs_dim // 2
            still = torch.cat([x[..., :half], (-self.obs_mean[half:] / self.obs_std[half:]).expand_as(x[..., half:])],
                              -1)
            d = cfg.latent_dim
            z = torch.cat([z[..., :d], z[..., d:] - joint_encoder(still)[..., d:]], -1)
        return self._drop(z, squeeze)

    def decode_normalised(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> observations in normalised units (what the reconstruction loss compares); see :meth:`decode`."""
        if self.cfg.encoder == 'identity':
            return z
        if self.cfg.obs_dim == 0:
            raise ValueError('this model has no observation decoder (obs_dim == 0); use decode_image')
        E, n = self.cfg.ensemble, z.shape[-1]
        lead = z.shape[:-1]
        if self.cfg.encoder == 'configuration':
            w, b = self.configuration_maps()[2:]

            def dec(x: torch.Tensor) -> torch.Tensor:
                return (torch.matmul(x, w) + b - self.obs_mean) / self.obs_std
        else:
            def dec(x: torch.Tensor) -> torch.Tensor:
                return self.decoder_net(x) + torch.matmul(x, self.decoder_skip)

        if E == 1:  # decoding is pointwise, so any leading shape flattens into one batch
            return dec(z.reshape(1, -1, n)).reshape(*lead, self.cfg.obs_dim)
        if z.dim() >= 3 and z.shape[0] == E:
            return dec(z.reshape(E, -1, n)).reshape(*lead, self.cfg.obs_dim)
        flat = z.reshape(1, -1, n).expand(E, -1, n)  # no member dimension: every member decodes it
        return dec(flat).reshape(E, *lead, self.cfg.obs_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (..., 2 d) -> observations (..., obs_dim) in physical units.

        Decoding is pointwise: ``z`` may be (B, 2 d), (E, B, 2 d) or a rollout (E, B, H, 2 d). With several members a
        leading dimension equal to the member count (on a 3-d or larger tensor) is taken as the member dimension;
        otherwise every member decodes the input and the result gains a leading member dimension.
        """
        return self.decode_normalised(z) * self.obs_std + self.obs_mean

    def decode_image(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (..., 2 d) -> frame (..., H, W, C) in [0, 1] (image and fused encoders only).

        Raises
        ------
        ValueError
            If the model has no image decoder.
        """
        if not hasattr(self, 'image_decoder'):
            raise ValueError(f'encoder {self.cfg.encoder!r} has no image decoder')
        out = self.image_decoder(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], *out.shape[1:])

    # -- Hamiltonian ------------------------------------------------------------------------------------------------
    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        if z.shape[-1] != 2 * self.cfg.latent_dim:
            raise ValueError(f'z last dimension must be {2 * self.cfg.latent_dim}, got {z.shape[-1]}')
        z3, squeeze = self._lift(z, 2)
        d = self.cfg.latent_dim
        return z3[..., :d], z3[..., d:], squeeze

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """H(z): (B,) or (E, B)."""
        q, p, squeeze = self._split(z)
        return self._drop(_Dynamics(self).energy(q, p), squeeze)

    def grad_energy(self, z: torch.Tensor) -> torch.Tensor:
        """dH/dz = (dH/dq, dH/dp) in closed form (explicit backward pass, no autograd); shape of ``z``."""
        q, p, squeeze = self._split(z)
        dyn = _Dynamics(self)
        return self._drop(torch.cat([dyn.grad_q(q, p), dyn.grad_p(q, p)], -1), squeeze)

    def _inputs(self, u: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor | None:
        """Physical actions -> normalised inputs broadcast to ``shape`` (E, B[, H], m); None when uncontrolled."""
        if u is None or not self.has_control:
            return None
        if u.shape[-1] != self.cfg.action_dim:
            raise ValueError(f'actions last dimension must be {self.cfg.action_dim}, got {u.shape[-1]}')
        u = u / self.action_scale
        if u.dim() == len(shape) - 1:
            u = u.unsqueeze(0)
        return u.expand(*shape)

    def residual_term(self, z: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """r(z, u) (E, B, 2 d) for member-shaped ``z``; ``u`` normalised or None."""
        if not self.cfg.residual:
            return torch.zeros_like(z)
        if self.q_mask is not None:  # the residual is a field too: the same view of q as H and the ports
            d = self.cfg.latent_dim
            z = torch.cat([self.q_features(z[..., :d])[0], z[..., d:]], -1)
        x = z if self.cfg.action_dim == 0 else torch.cat(
            [z, u if u is not None else z.new_zeros(*z.shape[:-1], self.cfg.action_dim)], -1)
        return self.cfg.residual_scale * self.residual_net(x)

    def time_derivative(self, z: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """dz/dt = (J - R) dH/dz + G u + r, same shape as ``z``; ``u`` in physical units (B, m)."""
        q, p, squeeze = self._split(z)
        un = self._inputs(u, (*q.shape[:-1], self.cfg.action_dim))
        return self._drop(self._field(_Dynamics(self), q, p, un, with_residual=True), squeeze)

    def _field(self, dyn: _Dynamics, q: torch.Tensor, p: torch.Tensor, u: torch.Tensor | None, *,
               with_residual: bool) -> torch.Tensor:
        dq = dyn.grad_p(q, p)
        dp = -dyn.grad_q(q, p)
        if self.cfg.dissipation:
            dp = dp - dyn.damp(q, dq)
        if u is not None:
            dp = dp + dyn.force(q, u)
        out = torch.cat([dq, dp], -1)
        if with_residual and self.cfg.residual:
            out = out + self.residual_term(torch.cat([q, p], -1), u)
        return out

    def _step(self, dyn: _Dynamics, z: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """One model step of ``dt`` for member-shaped z (E, B, 2 d) and normalised u (E, B, m) or None."""
        cfg = self.cfg
        d = cfg.latent_dim
        h = cfg.dt / cfg.substeps
        q, p = z[..., :d], z[..., d:]
        separable = cfg.hamiltonian == 'separable' and cfg.mass_matrix == 'constant'
        force = (lambda qq: dyn.force(qq, u)) if u is not None else None
        structured = cfg.hamiltonian == 'separable'

        exact = self.linear_dissipation
        factor = self.dissipation_factor(0.5 * h) if cfg.dissipation and exact else None

        def dissipate(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            if factor is not None:  # constant A and D: the exact flow of dp/dt = -D A p, one matrix
                return torch.matmul(p, factor)
            metric = (lambda x: dyn.apply_inverse_mass(q, x)) if structured else None
            return dissipation_substep(p, 0.5 * h, dyn.grad_p(q, p), lambda v: dyn.damp(q, v), metric)

        for _ in range(cfg.substeps):
            if cfg.integrator == 'midpoint':
                zz = midpoint_step(torch.cat([q, p], -1), h,
                                   lambda x: self._field(dyn, x[..., :d], x[..., d:], u, with_residual=False),
                                   iters=cfg.solver_iters)
                q, p = zz[..., :d], zz[..., d:]
                continue
            # Strang splitting: half dissipation, symplectic forced step, half dissipation.
            if cfg.dissipation:
                p = dissipate(q, p)
            if cfg.integrator == 'symplectic_euler':
                q, p = symplectic_euler_step(q, p, h, dyn.grad_q, dyn.grad_p, force=force)
            else:
                q, p = leapfrog_step(q, p, h, dyn.grad_q, dyn.grad_p, force=force, separable=separable,
                                     iters=cfg.solver_iters)
            if cfg.dissipation:
                p = dissipate(q, p)
        z_new = torch.cat([q, p], -1)
        if cfg.residual:
            z_new = z_new + cfg.dt * self.residual_term(z, u)
        return z_new

    def step(self, z: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Advance ``z`` by ``dt`` under action ``u`` (B, m) (physical units, held over the step)."""
        q, p, squeeze = self._split(z)
        un = self._inputs(u, (*q.shape[:-1], self.cfg.action_dim))
        return self._drop(self._step(_Dynamics(self), torch.cat([q, p], -1), un), squeeze)

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor | None = None, horizon: int | None = None
                ) -> torch.Tensor:
        """Roll ``z0`` (B, 2 d) through ``actions`` (B, H, m) -> states after each action (B, H, 2 d).

        With members: (E, B, H, 2 d). Without control (or ``actions`` None) give ``horizon``. The loop over time is
        the only Python loop; every step is batched over members and samples.

        Raises
        ------
        ValueError
            On shape mismatches or a missing horizon.
        """
        q, p, squeeze = self._split(z0)
        z = torch.cat([q, p], -1)
        E, B = z.shape[:2]
        if actions is not None:
            if actions.dim() not in (3, 4):
                raise ValueError(f'actions must be (B, H, m) or (E, B, H, m), got {tuple(actions.shape)}')
            horizon = actions.shape[-2]
        if horizon is None:
            raise ValueError('rollout needs actions or a horizon')
        if self.lean:
            if actions is not None and actions.shape[-1] != self.cfg.action_dim:
                raise ValueError(f'actions last dimension must be {self.cfg.action_dim}, got {actions.shape[-1]}')
            consts = self.lean_constants(squeeze=E == 1)
            if E == 1:
                a = None if actions is None else (actions[0] if actions.dim() == 4 else actions)
                q_seq, p_seq, _ = lean_rollout(consts, q[0], p[0], a, horizon)
                return self._drop(torch.cat([q_seq, p_seq], -1).unsqueeze(0), squeeze)
            q_seq, p_seq, _ = lean_rollout(consts, q, p, actions, horizon)
            return self._drop(torch.cat([q_seq, p_seq], -1), squeeze)
        u_all = self._inputs(actions, (E, B, horizon, self.cfg.action_dim)) if actions is not None else None
        dyn = _Dynamics(self)
        states = []
        for t in range(horizon):
            z = self._step(dyn, z, None if u_all is None else u_all[:, :, t])
            states.append(z)
        return self._drop(torch.stack(states, 2), squeeze)

    def predict(self, obs: torch.Tensor | None, actions: torch.Tensor | None = None, *,
                images: torch.Tensor | None = None, horizon: int | None = None) -> torch.Tensor:
        """Encode, roll out and decode: observations after each action, (E, B, H, obs_dim) (always with members)."""
        z0 = self.encode(obs, images)
        if z0.dim() == 2:
            z0 = z0.unsqueeze(0)
        return self.decode(self.rollout(z0, actions, horizon))

    def predict_mean_std(self, obs: torch.Tensor | None, actions: torch.Tensor | None = None, *,
                         images: torch.Tensor | None = None, horizon: int | None = None, calibrated: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ensemble mean and standard deviation (zero for one member) of predicted observations, (B, H, obs_dim).

        With ``calibrated`` (default) and a fitted :attr:`spread_calibration`, the standard deviation at step k is
        multiplied by the calibration factor of step count k.
        """
        pred = self.predict(obs, actions, images=images, horizon=horizon)
        std = pred.std(0, unbiased=False) if pred.shape[0] > 1 else torch.zeros_like(pred[0])
        if calibrated and self.spread_calibration is not None:
            factor = SpreadCalibration.from_dict(self.spread_calibration).factor(np.arange(1, std.shape[-2] + 1))
            std = std * torch.as_tensor(factor, dtype=std.dtype, device=std.device).unsqueeze(-1)
        return pred.mean(0), std

    # -- physical read-outs (evaluation) ------------------------------------------------------------------------------
    def inverse_mass(self, z: torch.Tensor) -> torch.Tensor:
        """M(q)^-1 as (..., d, d) for the separable Hamiltonian.

        Raises
        ------
        ValueError
            For the general Hamiltonian.
        """
        if self.cfg.hamiltonian != 'separable':
            raise ValueError('inverse_mass exists only for the separable Hamiltonian')
        q, p, squeeze = self._split(z)
        eye = torch.eye(self.cfg.latent_dim, dtype=q.dtype, device=q.device)
        cols = _Dynamics(self)
        out = torch.stack([cols.apply_inverse_mass(q, eye[i].expand_as(q)) for i in range(q.shape[-1])], -1)
        return self._drop(out, squeeze)

    def damping_matrix(self, z: torch.Tensor) -> torch.Tensor:
        """D(q) (..., d, d), the momentum block of R(z); zeros when dissipation is off."""
        q, p, squeeze = self._split(z)
        d = self.cfg.latent_dim
        if not self.cfg.dissipation:
            return self._drop(q.new_zeros(*q.shape, d), squeeze)
        dyn = _Dynamics(self)
        eye = torch.eye(d, dtype=q.dtype, device=q.device)
        return self._drop(torch.stack([dyn.damp(q, eye[i].expand_as(q)) for i in range(d)], -1), squeeze)

    def input_matrix(self, z: torch.Tensor) -> torch.Tensor:
        """G(q) (..., d, m) in normalised-action units; zeros without control."""
        q, p, squeeze = self._split(z)
        m = self.cfg.action_dim
        if not self.has_control:
            return self._drop(q.new_zeros(*q.shape, m), squeeze)
        dyn = _Dynamics(self)
        eye = torch.eye(m, dtype=q.dtype, device=q.device)
        return self._drop(torch.stack([dyn.force(q, eye[i].expand(*q.shape[:-1], m)) for i in range(m)], -1),
                          squeeze)

    # -- persistence ------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``model.pt`` (weights), ``config.json``, ``normalisation.json`` and ``info.json`` into ``path``."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        blob = {'format': 'hamwm-world-model/1', 'config': self.cfg.to_dict(), 'state_dict': state, 'info': self.info}
        if self.spread_calibration is not None:
            blob['spread_calibration'] = self.spread_calibration
        if self.energy_calibration is not None:
            blob['energy_calibration'] = self.energy_calibration
        torch.save(blob, out / 'model.pt')
        (out / 'config.json').write_text(json.dumps(self.cfg.to_dict(), indent=2) + '\n')
        norm = {'obs_mean': self.obs_mean.tolist(), 'obs_std': self.obs_std.tolist(),
                'action_scale': self.action_scale.tolist()}
        (out / 'normalisation.json').write_text(json.dumps(norm, indent=2) + '\n')
        (out / 'info.json').write_text(json.dumps(self.info, indent=2, default=str) + '\n')
        return out

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = 'cpu') -> HamiltonianWorldModel:
        """Load a model written by :meth:`save` (a directory, or its ``model.pt``).

        Raises
        ------
        FileNotFoundError
            If there is no ``model.pt``.
        ValueError
            If the file is not a world model or its weights do not match its config.
        """
        p = Path(path)
        file = p / 'model.pt' if p.is_dir() else p
        if not file.is_file():
            raise FileNotFoundError(f'no world model at {file}')
        try:
            blob = torch.load(file, map_location=map_location, weights_only=True)
        except Exception as err:  # pickle/zip errors of many kinds
            raise ValueError(f'{file} is not a readable hamwm world model file: {err}') from err
        if not isinstance(blob, dict) or blob.get('format') != 'hamwm-world-model/1':
            raise ValueError(f'{file} is not a hamwm world model file')
        model = cls(ModelConfig.from_dict(blob['config']))
        try:
            model.load_state_dict(blob['state_dict'])
        except RuntimeError as err:
            raise ValueError(f'{file}: weights do not match the config: {err}') from err
        model.info = dict(blob.get('info') or {})
        for key, parser in (('spread_calibration', SpreadCalibration), ('energy_calibration', EnergyCalibration)):
            if blob.get(key) is not None:
                try:
                    parser.from_dict(blob[key])
                except MetadataError as err:
                    raise ValueError(f'{file}: {err}') from err
                setattr(model, key, dict(blob[key]))
        return model
