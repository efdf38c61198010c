"""Evaluation metrics for world models (numpy only).

Single- and multi-step prediction error, energy error and drift for conservative systems, learned versus true damping
for dissipative ones, prediction-interval coverage (PICP) of ensembles, and the sample-efficiency ratio between two
learning curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

HORIZONS = (1, 10, 100, 1000)


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all entries.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f'shape mismatch: {pred.shape} vs {target.shape}')
    return float(np.mean((pred - target) ** 2))


def horizon_mse(pred: np.ndarray, target: np.ndarray, horizons: Sequence[int] = HORIZONS,
                scale: np.ndarray | None = None) -> dict[int, float]:
    """Multi-step MSE: for each horizon h, the MSE over predicted steps 1..h of (N, T, d) rollouts.

    Horizon 1 is the single-step MSE. Horizons beyond the rollout length are left out. ``scale`` (d,) divides each
    state dimension first (errors in normalised units). A diverged (non-finite) rollout gives ``inf``.

    Raises
    ------
    ValueError
        If the shapes differ or are not (N, T, d).
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f'expected two (N, T, d) arrays of one shape, got {pred.shape} and {target.shape}')
    err = (pred - target) if scale is None else (pred - target) / np.asarray(scale)
    out = {}
    for h in horizons:
        if h <= pred.shape[1]:
            with np.errstate(over='ignore', invalid='ignore'):
                value = float(np.mean(err[:, :h] ** 2))
            out[int(h)] = value if np.isfinite(value) else float('inf')
    return out


def energy_mse(energy_pred: np.ndarray, energy_true: np.ndarray) -> float:
    """The HNN paper's energy MSE: mean over starts and times of (H(x_model(t)) - H(x_true(t)))^2."""
    with np.errstate(over='ignore', invalid='ignore'):
        value = float(np.mean((np.asarray(energy_pred) - np.asarray(energy_true)) ** 2))
    return value if np.isfinite(value) else float('inf')


def relative_energy_drift(energy: np.ndarray) -> np.ndarray:
    """|H(t_end) - H(0)| / |H(0)| per trajectory, energy of shape (N, T); non-finite -> inf.

    Raises
    ------
    ValueError
        If energy is not 2-D.
    """
    energy = np.asarray(energy, dtype=np.float64)
    if energy.ndim != 2:
        raise ValueError('energy must be (N, T)')
    with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
        drift = np.abs(energy[:, -1] - energy[:, 0]) / np.abs(energy[:, 0])
    return np.where(np.isfinite(drift), drift, np.inf)


def learned_damping(grad_h: np.ndarray, field: np.ndarray, n_dof: int) -> float:
    """Effective damping gamma of a learned unforced field, measured through the true energy.

    For dx/dt = J dH/dx - gamma (0, dH/dp), the power is dH/dt = dH/dx . f = -gamma |dH/dp|^2, so the least-squares
    gamma from samples is -sum(dH/dx . f) / sum(|dH/dp|^2). It is exact for the true field and measures how much
    energy a learned model removes (or adds, if negative).

    Parameters
    ----------
    grad_h : ndarray (N, 2n)
        True dH/dx at the sample states.
    field : ndarray (N, 2n)
        The learned dx/dt (no input) at the same states.
    n_dof : int
        Number of coordinates q (the momenta are the last n_dof entries).

    Raises
    ------
    ValueError
        If the shapes differ or dH/dp vanishes on all samples.
    """
    grad_h, field = np.asarray(grad_h, dtype=np.float64), np.asarray(field, dtype=np.float64)
    if grad_h.shape != field.shape:
        raise ValueError(f'shape mismatch: {grad_h.shape} vs {field.shape}')
    denom = float(np.sum(grad_h[:, n_dof:] ** 2))
    if denom <= 0:
        raise ValueError('dH/dp is zero on every sample: damping is unobservable')
    return -float(np.sum(grad_h * field)) / denom


def picp(mean: np.ndarray, std: np.ndarray, target: np.ndarray, nominal: float = 0.95) -> float:
    """Prediction-interval coverage probability of Gaussian intervals mean +- z * std at the ``nominal`` level.

    Raises
    ------
    ValueError
        If nominal is not in (0, 1) or the shapes differ.
    """
    if not 0.0 < nominal < 1.0:
        raise ValueError('nominal must be in (0, 1)')
    mean, std, target = (np.asarray(a, dtype=np.float64) for a in (mean, std, target))
    if not (mean.shape == std.shape == target.shape):
        raise ValueError('mean, std and target must have one shape')
    z = NormalDist().inv_cdf(0.5 + nominal / 2.0)
    return float(np.mean(np.abs(target - mean) <= z * std))


def calibration_steps(max_steps: int, per_decade: int = 6) -> list[int]:
    """Geometric grid of step counts 1 .. ``max_steps`` (about ``per_decade`` per factor of ten, always with both ends).

    Raises
    ------
    ValueError
        If ``max_steps`` < 1.
    """
    if max_steps < 1:
        raise ValueError('max_steps must be >= 1')
    n = max(2, int(np.ceil(per_decade * np.log10(max_steps))) + 1)
    return sorted({int(round(v)) for v in np.geomspace(1.0, max_steps, n)} | {1, int(max_steps)})


def fit_spread_calibration(members: np.ndarray, target: np.ndarray, nominal: float = 0.95,
                           steps: Sequence[int] | None = None, window: float = 1.25,
                           bounds: tuple[float, float] = (1e-3, 1e6)) -> dict[str, object]:
    """Per-step-count spread multipliers that make mean +- z * factor * std cover ``nominal`` of the targets.

    For each step count k of the grid, the normalised residuals |target - mean| / std of every sample and dimension
    at steps within a factor ``window`` of k (steps k / window .. k * window) are pooled, and the factor is their
    ``nominal`` quantile over the Gaussian z of that level: on the data it is fitted on, the calibrated interval then
    covers exactly ``nominal``. Over-confident ensembles (too little spread) get factors above 1. Fit on held-out
    validation trajectories, never on the data the coverage is reported on.

    Parameters
    ----------
    members : ndarray (E, N, H, d)
        Member predictions of N rollouts over H steps (step index 0 = step count 1).
    target : ndarray (N, H, d)
        What happened.
    nominal : float
        Coverage level.
    steps : sequence of int, optional
        Step counts to fit at (default :func:`calibration_steps` up to H).
    window : float
        Pooling half-width as a ratio (>= 1; 1 pools only step k).
    bounds : (float, float)
        Clip range of the factors (a zero-spread ensemble would otherwise get an infinite one).

    Returns
    -------
    dict
        ``steps``, ``factors`` (lists), ``nominal``, ``method`` and ``info`` (samples pooled per step, raw and
        calibrated in-sample coverage): the ``spread_calibration`` entry of the model metadata.

    Raises
    ------
    ValueError
        On shape mismatches, fewer than 2 members, nominal outside (0, 1) or window < 1.
    """
    if not 0.0 < nominal < 1.0:
        raise ValueError('nominal must be in (0, 1)')
    if window < 1.0:
        raise ValueError('window must be >= 1')
    members, target = np.asarray(members, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if members.ndim != 4 or members.shape[1:] != target.shape:
        raise ValueError(f'members must be (E, N, H, d) and target (N, H, d), got {members.shape}, {target.shape}')
    if members.shape[0] < 2:
        raise ValueError('spread calibration needs an ensemble of at least 2 members')
    horizon = members.shape[2]
    grid = sorted({int(k) for k in (steps if steps is not None else calibration_steps(horizon)) if 1 <= k <= horizon})
    if not grid:
        raise ValueError(f'no step count of {steps} within the {horizon} predicted steps')
    z = NormalDist().inv_cdf(0.5 + nominal / 2.0)
    mean, std = members.mean(0), members.std(0)
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        ratio = np.abs(target - mean) / std
    ratio = np.where(np.isnan(ratio), 0.0, ratio)  # 0/0: a prediction exactly right with no spread
    ratio = np.where(np.isfinite(mean) & np.isfinite(std), ratio, np.inf)  # a diverged rollout is never covered
    factors, counts, raw, cal = [], [], [], []
    for k in grid:
        lo, hi = int(np.ceil(k / window - 1e-9)), int(np.floor(k * window + 1e-9))
        pooled = ratio[:, max(lo, 1) - 1:min(hi, horizon)].ravel()
        q = float(np.quantile(pooled, nominal, method='higher'))
        f = float(np.clip(q / z if np.isfinite(q) else bounds[1], *bounds))
        factors.append(f)
        counts.append(int(pooled.size))
        raw.append(float(np.mean(pooled <= z)))
        cal.append(float(np.mean(pooled <= z * f)))
    return {'method': 'residual-quantile', 'nominal': float(nominal), 'steps': grid, 'factors': factors,
            'info': {'window': window, 'samples': counts, 'picp_raw': raw, 'picp_calibrated': cal}}


def calibrated_picp(members: np.ndarray, target: np.ndarray, factors: np.ndarray | float,
                    nominal: float = 0.95) -> float:
    """PICP of mean +- z * factor * std from members (E, ...) against target (...); ``factors`` broadcasts."""
    members = np.asarray(members, dtype=np.float64)
    mean, std = members.mean(0), members.std(0)
    return picp(mean, std * np.asarray(factors, dtype=np.float64), target, nominal)


def picp_samples(samples: np.ndarray, target: np.ndarray, nominal: float = 0.95) -> float:
    """PICP of the central empirical interval of ensemble members, samples (M, ...) against target (...).

    Raises
    ------
    ValueError
        If nominal is not in (0, 1) or the shapes do not match.
    """
    if not 0.0 < nominal < 1.0:
        raise ValueError('nominal must be in (0, 1)')
    samples, target = np.asarray(samples, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if samples.shape[1:] != target.shape:
        raise ValueError('samples must be (M, *target.shape)')
    lo = np.quantile(samples, 0.5 - nominal / 2.0, axis=0)
    hi = np.quantile(samples, 0.5 + nominal / 2.0, axis=0)
    return float(np.mean((target >= lo) & (target <= hi)))


def trajectories_needed(n_trajectories: Sequence[float], errors: Sequence[float], target_error: float) -> float:
    """Fewest trajectories reaching ``target_error`` on a learning curve, log-log interpolated between grid points.

    Returns ``inf`` if no point of the curve reaches the target; the first grid point if it already does.
    """
    n = np.asarray(n_trajectories, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    for i in range(len(n)):
        if np.isfinite(e[i]) and e[i] <= target_error:
            if i == 0 or not np.isfinite(e[i - 1]):
                return float(n[i])
            # Interpolate log n linearly in log error between the last miss and the first hit.
            le0, le1 = np.log(e[i - 1]), np.log(e[i])
            frac = (le0 - np.log(target_error)) / (le0 - le1) if le0 != le1 else 1.0
            return float(np.exp(np.log(n[i - 1]) + frac * (np.log(n[i]) - np.log(n[i - 1]))))
    return float('inf')


def sample_efficiency_ratio(n_trajectories: Sequence[float], errors_model: Sequence[float],
                            errors_baseline: Sequence[float]) -> dict[str, float]:
    """How many times fewer trajectories the model needs for the baseline's best error.

    The reference error is the baseline's error at its largest budget; the ratio is that budget over the model's
    (interpolated) trajectories for the same error. When the model beats the reference already at the smallest
    budget, the ratio is a lower bound (``lower_bound`` = 1).
    """
    n = list(n_trajectories)
    target = float(errors_baseline[-1])
    need_model = trajectories_needed(n, errors_model, target)
    need_base = trajectories_needed(n, errors_baseline, target)
    ratio = need_base / need_model if np.isfinite(need_model) else 0.0
    lower = float(np.isfinite(need_model) and need_model <= n[0] and errors_model[0] < target)
    return {'reference_error': target, 'trajectories_model': need_model, 'trajectories_baseline': need_base,
            'ratio': float(ratio), 'lower_bound': lower}
