"""Ensemble-batched network blocks with hand-written backward passes.

Every learned function of the world model is an :class:`EnsembleMLP`: the weights of all ``E`` ensemble members are
stacked along a leading dimension and evaluated with one batched matmul, so an ensemble costs one kernel per layer and
exports to ONNX as plain ``MatMul``/``Add`` nodes. Inputs are ``(E, B, in)``.

:meth:`EnsembleMLP.vjp` is the explicit vector-Jacobian product of the network with respect to its *input*, written out
layer by layer from the cached pre-activations. The Hamiltonian gradient dH/dz is built from it, so neither encode,
step, rollout nor energy ever calls ``torch.autograd.grad`` (which ONNX export cannot trace). The backward formulas
are ordinary differentiable torch ops, so training still backpropagates through them to the parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

ACTIVATIONS = ('tanh', 'softplus')


def _activation(name: str, a: torch.Tensor) -> torch.Tensor:
    if name == 'tanh':
        return torch.tanh(a)
    return F.softplus(a)


def _activation_grad(name: str, a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Derivative of the activation at pre-activation ``a`` (``h`` is its value, reused for tanh)."""
    if name == 'tanh':
        return 1.0 - h * h
    return torch.sigmoid(a)


class EnsembleLinear(nn.Module):
    """``E`` independent affine maps applied with one batched matmul.

    Parameters
    ----------
    ensemble, in_features, out_features
        Sizes. Each member gets its own random initialisation (the source of ensemble diversity).
    zero
        Initialise weights and bias to zero (used for residual heads that must start switched off).
    """

    def __init__(self, ensemble: int, in_features: int, out_features: int, *, zero: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, out_features))
        if zero:
            nn.init.zeros_(self.weight)
        else:
            # Glorot-uniform: keeps tanh layers out of saturation at init for any width.
            bound = math.sqrt(6.0 / (in_features + out_features))
            nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (E, B, in) -> (E, B, out)."""
        return torch.matmul(x, self.weight) + self.bias


class ChainJacobian(nn.Module):
    """J(q) of a planar chain on a sliding base, as an affine map of the q features (``mass_param='chain'``).

    The mass matrix of rigid bodies moving in a plane is M(q) = J(q) J(q)^T, where row i of J says how dq_i/dt moves
    the bodies' points (mass-weighted velocity components in the plane). With generalised coordinates that are
    translations of the base and *absolute* link angles (each measured from a fixed direction, like the cart-pole's
    pole angle), the row of a translation is constant and the row of an angle is its link's points turning with it:
    ``R(theta_i) b_i``, a fixed vector whose column pairs are rotated by theta_i, with no constant part. Then
    M_ij of two angles depends on theta_i - theta_j only, M_ii is constant, and M of a translation and an angle is a
    first harmonic of the angle: the exact form of such a chain (the cart-pole, a double pendulum in absolute angles),
    with 2 d^2 parameters per member. The general affine form (``'kinematic'``) has more freedom, which data from a
    narrow range of angles cannot pin down.

    The module has :class:`EnsembleLinear`'s interface (``forward``, ``weight`` (E, nq, d 2d) and ``bias``
    (E, 1, d 2d)), with weight and bias built from the rows, so the model's closed-form gradient and the ONNX graph
    treat it as any affine J. The features are those of :meth:`HamiltonianWorldModel.q_features`: d (linear part),
    then cos and sin of each periodic coordinate.

    Parameters
    ----------
    ensemble
        Number of members E.
    latent_dim
        d, the number of generalised coordinates; J is d x 2d.
    periodic
        Indices of the angles among the d coordinates (the others are base translations).

    Raises
    ------
    ValueError
        If ``periodic`` is empty (J would be constant: use a constant mass matrix) or holds an index outside
        [0, d) or a repeated one.
    """

    def __init__(self, ensemble: int, latent_dim: int, periodic: tuple[int, ...]) -> None:
        super().__init__()
        d, n = latent_dim, len(periodic)
        if n == 0:
            raise ValueError('a chain Jacobian needs at least one periodic angle')
        if len(set(periodic)) != n or not all(0 <= int(i) < d for i in periodic):
            raise ValueError(f'periodic indices must be distinct and in [0, {d}), got {tuple(periodic)}')
        # Each coordinate starts on its own column pair, so J J^T starts at the identity for every angle.
        rows = torch.zeros(ensemble, d, 2 * d)
        for i in range(d):
            rows[:, i, 2 * i] = 1.0
        self.rows = nn.Parameter(rows)
        translation = torch.ones(d, 1)
        select_cos, select_sin = torch.zeros(d + 2 * n, d), torch.zeros(d + 2 * n, d)
        for k, i in enumerate(periodic):
            translation[int(i)] = 0.0
            select_cos[d + k, int(i)] = 1.0
            select_sin[d + n + k, int(i)] = 1.0
        turn = torch.zeros(2 * d, 2 * d)  # b @ turn: each column pair (u, v) -> (-v, u), a quarter turn
        for j in range(d):
            turn[2 * j + 1, 2 * j], turn[2 * j, 2 * j + 1] = -1.0, 1.0
        self.register_buffer('translation', translation, persistent=False)
        self.register_buffer('select_cos', select_cos, persistent=False)
        self.register_buffer('select_sin', select_sin, persistent=False)
        self.register_buffer('turn', turn, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """(E, nq, d 2d): an angle's row b on its cosine feature and b turned a quarter on its sine feature."""
        rows = self.rows
        w = (torch.einsum('fi,eij->efij', self.select_cos, rows)
             + torch.einsum('fi,eij->efij', self.select_sin, torch.matmul(rows, self.turn)))
        return w.flatten(-2)

    @property
    def bias(self) -> torch.Tensor:
        """(E, 1, d 2d): the translations' constant rows (an angle's row has no constant part)."""
        return (self.rows * self.translation).flatten(-2).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (E, B, nq) features -> (E, B, d 2d), J flattened row by row."""
        return torch.matmul(x, self.weight) + self.bias


class EnsembleMLP(nn.Module):
    """Multi-layer perceptron for ``E`` members at once, with an explicit input-gradient (VJP).

    Parameters
    ----------
    ensemble
        Number of members ``E``.
    in_features, hidden, out_features
        Layer sizes.
    layers
        Number of hidden layers (>= 1).
    activation
        ``'tanh'`` or ``'softplus'`` (smooth, so the Hamiltonian vector field is smooth).
    zero_last
        Zero-initialise the output layer.

    Raises
    ------
    ValueError
        On an unknown activation or ``layers < 1``.
    """

    def __init__(self, ensemble: int, in_features: int, hidden: int, out_features: int, *, layers: int = 2,
                 activation: str = 'tanh', zero_last: bool = False) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f'activation must be one of {ACTIVATIONS}, got {activation!r}')
        if layers < 1:
            raise ValueError(f'layers must be >= 1, got {layers}')
        self.activation = activation
        sizes = [in_features] + [hidden] * layers
        self.hidden_layers = nn.ModuleList(EnsembleLinear(ensemble, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = EnsembleLinear(ensemble, hidden, out_features, zero=zero_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (E, B, in) -> (E, B, out)."""
        for layer in self.hidden_layers:
            x = _activation(self.activation, layer(x))
        return self.out(x)

    def forward_cached(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Forward pass that also returns ``[(pre_activation, activation), ...]`` for :meth:`vjp`."""
        cache = []
        for layer in self.hidden_layers:
            a = layer(x)
            x = _activation(self.activation, a)
            cache.append((a, x))
        return self.out(x), cache

    def vjp(self, cache: list[tuple[torch.Tensor, torch.Tensor]], grad_out: torch.Tensor) -> torch.Tensor:
        """Closed-form ``grad_out^T d(out)/d(input)``, i.e. the gradient of ``<grad_out, mlp(x)>`` w.r.t. ``x``.

        Parameters
        ----------
        cache
            From :meth:`forward_cached` at the same input.
        grad_out
            (E, B, out) cotangent.

        Returns
        -------
        torch.Tensor
            (E, B, in).
        """
        g = torch.matmul(grad_out, self.out.weight.transpose(-1, -2))
        for layer, (a, h) in zip(reversed(self.hidden_layers), reversed(cache)):
            g = torch.matmul(g * _activation_grad(self.activation, a, h), layer.weight.transpose(-1, -2))
        return g

    def scalar_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For a scalar-output MLP: value (E, B) and closed-form gradient (E, B, in)."""
        y, cache = self.forward_cached(x)
        # For a scalar output the cotangent is 1; the output layer's weight column is the first backward factor.
        return y[..., 0], self.vjp(cache, torch.ones_like(y))


def tril_selector(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Constant matrices that place ``d(d+1)/2`` packed entries into a flattened lower-triangular ``d x d`` matrix.

    Returns
    -------
    selector
        (d(d+1)/2, d*d) 0/1 matrix: ``packed @ selector`` is the row-major flattened matrix. A matmul exports to
        ONNX everywhere, unlike index_put/scatter.
    diag_mask
        (d(d+1)/2,) 1.0 where the packed entry is on the diagonal.
    """
    rows, cols = torch.tril_indices(d, d)
    n = rows.numel()
    selector = torch.zeros(n, d * d, dtype=torch.float64)
    selector[torch.arange(n), rows * d + cols] = 1.0
    return selector, (rows == cols).to(torch.float64)


def cholesky_unrolled(m: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    """Lower Cholesky factor of symmetric positive definite ``m`` (..., d, d), one column per step.

    Written with elementwise ops and sums only, so it traces to ONNX (which has no Cholesky operator) and exports
    as O(d) small nodes: meant for the few coordinates of a latent configuration. Each pivot is floored at
    ``floor`` so that a matrix at the edge of definiteness gives a finite factor rather than NaN.
    """
    d = m.shape[-1]
    below = torch.tril(torch.ones(d, d, dtype=m.dtype, device=m.device))  # column j keeps rows >= j
    cols: list[torch.Tensor] = []
    for j in range(d):
        v = m[..., :, j]
        if cols:
            done = torch.stack(cols, -1)  # (..., d, j)
            v = v - (done * done[..., j:j + 1, :]).sum(-1)
        pivot = torch.sqrt(torch.clamp(v[..., j:j + 1], min=floor))
        cols.append(v / pivot * below[:, j])
    return torch.stack(cols, -1)


def cholesky_solve_unrolled(factor: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve (L L^T) x = b for a lower factor ``L`` (..., d, d) from :func:`cholesky_unrolled` and ``b`` (..., d).

    Forward then back substitution, one coordinate per step (exports to ONNX as elementwise ops).
    """
    d = factor.shape[-1]
    y: list[torch.Tensor] = []
    for i in range(d):
        acc = b[..., i]
        for k in range(i):
            acc = acc - factor[..., i, k] * y[k]
        y.append(acc / factor[..., i, i])
    x: dict[int, torch.Tensor] = {}
    for i in reversed(range(d)):
        acc = y[i]
        for k in range(i + 1, d):
            acc = acc - factor[..., k, i] * x[k]
        x[i] = acc / factor[..., i, i]
    return torch.stack([x[i] for i in range(d)], -1)


class ImageEncoder(nn.Module):
    """Convolutional encoder over ``n_frames`` stacked frames (shared by all ensemble members).

    Frames are (B, n_frames, H, W, C) in [0, 1]; they are stacked along channels so the network sees motion as in
    pixel Hamiltonian models, and reduced to a feature vector of size ``features``.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_frames: int, features: int, channels: int = 32) -> None:
        super().__init__()
        h, w, c = image_shape
        self.conv = nn.Sequential(
            nn.Conv2d(c * n_frames, channels, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=1, padding=1), nn.SiLU(),
        )
        self.grid = (math.ceil(h / 4), math.ceil(w / 4))
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, c * n_frames, h, w)).numel()
        self.head = nn.Sequential(nn.Linear(n_flat, features), nn.SiLU())

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, n_frames, H, W, C) -> (B, features)."""
        b, n, h, w, c = frames.shape
        x = frames.permute(0, 1, 4, 2, 3).reshape(b, n * c, h, w)
        return self.head(self.conv(x).flatten(1))


class ImageDecoder(nn.Module):
    """Decodes a latent state to one frame (B, H, W, C) in [0, 1] with transposed convolutions."""

    def __init__(self, image_shape: tuple[int, int, int], in_features: int, channels: int = 32) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        h, w, c = image_shape
        self.h0, self.w0 = math.ceil(h / 4), math.ceil(w / 4)
        self.channels = channels
        self.fc = nn.Sequential(nn.Linear(in_features, 128), nn.SiLU(), nn.Linear(128, channels * self.h0 * self.w0),
                                nn.SiLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(channels, c, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, H, W, C)."""
        h, w, c = self.image_shape
        x = self.fc(z).reshape(-1, self.channels, self.h0, self.w0)
        x = torch.sigmoid(self.deconv(x))[:, :, :h, :w]
        return x.permute(0, 2, 3, 1)
