"""MPPI settings: one frozen dataclass, validated on construction.

Every field has a documented range. An invalid combination raises :class:`SettingsError` whose message lists every
reason at once, so a ROS parameter callback can refuse the change with that text and keep the old settings. Changes
go through :meth:`MPPISettings.replace`, which validates the new copy and leaves the old one untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np

SMOOTHING_METHODS = ('none', 'savgol')
UPDATE_PERTURBATIONS = ('applied', 'sampled')


class SettingsError(ValueError):
    """Settings are invalid; the message lists every reason."""


def _as_tuple(value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float, np.floating, np.integer)):
        return (float(value),)
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class MPPISettings:
    """Settings of :class:`hamwm_ros.mpc.optimizer.MPPIOptimizer`.

    Attributes
    ----------
    action_low, action_high
        Per-dimension action bounds (physical units, e.g. N m); the action size ``m`` is their length.
    num_samples
        Sampled action sequences per iteration ``B``.
    horizon
        Planning steps ``H``; one step is one model step.
    iterations
        Sample-weight-update passes per :meth:`plan` call (each one batched rollout).
    temperature
        MPPI temperature ``lambda`` > 0: small -> greedy (best sample dominates), large -> averaging. In cost units,
        or relative to the cost spread with ``normalise_costs``.
    normalise_costs
        Divide the temperature's argument by the median excess cost over the best sample, so ``temperature`` is
        dimensionless (1: a sample of median cost weighs ``1/e`` of the best) and the weighting does not collapse
        onto one sample when critic weights make costs large. False: classic MPPI on raw costs.
    control_cost_weight
        ``gamma`` of the information-theoretic control cost ``gamma * sum_t u_t^T Sigma^-1 eps_t``; 0 disables it.
    noise_std
        Perturbation standard deviation, one value for all action dimensions or one per dimension.
    noise_correlation
        Lag-one correlation of the perturbation over time in [0, 1): 0 is white noise, near 1 is slowly varying.
    max_action_rate
        Largest change of the action between consecutive steps (and from the last command to the first step);
        ``inf`` disables the limit.
    smoothing
        ``'none'`` or ``'savgol'`` (Savitzky-Golay filter of the updated nominal sequence).
    smoothing_window, smoothing_order
        Odd window length and polynomial order of the Savitzky-Golay filter.
    update_perturbation
        What the nominal moves by: ``'applied'``, the softmin-weighted perturbations as applied, after the bounds and
        the rate limit (unless one sample takes nearly all the weight, a plan pressing against a bound is pulled back
        inside it: every sample beyond it counts as the bound while the ones inside pull the average in);
        ``'sampled'``, the perturbations as drawn (every sample is still rolled out and scored with its clipped
        actions), so a plan whose best samples lie at or beyond a bound sits on it (bang-bang effort, as an
        energy-pumping swing-up needs).
    max_retries
        How many times one :meth:`plan` call resets and retries after an iteration in which no sample was finite.
    include_nominal
        Keep sample 0 equal to the unperturbed nominal sequence, so the update can never lose the warm start's cost.
    seed
        Seed of the perturbation generator; ``None`` draws one from the operating system.
    workers
        Threads one iteration runs on: the samples are split into this many contiguous chunks, each sampled, rolled
        out and scored on its own thread (the rollout function and the critics must then be thread-safe; the
        runtime's and this package's are). Each chunk has its own noise stream (seeded from ``seed``), so plans are
        deterministic for a given ``workers`` but differ between worker counts; 1 keeps the single stream.
    """

    action_low: tuple[float, ...] = (-1.0,)
    action_high: tuple[float, ...] = (1.0,)
    num_samples: int = 1024
    horizon: int = 32
    iterations: int = 1
    temperature: float = 1.0
    normalise_costs: bool = False
    control_cost_weight: float = 0.0
    noise_std: tuple[float, ...] = (0.5,)
    noise_correlation: float = 0.0
    max_action_rate: float = math.inf
    smoothing: str = 'none'
    smoothing_window: int = 5
    smoothing_order: int = 2
    update_perturbation: str = 'applied'
    max_retries: int = 2
    include_nominal: bool = True
    seed: int | None = 0
    workers: int = 1
    # derived, set in __post_init__
    action_dim: int = field(init=False)

    def __post_init__(self) -> None:
        # Accept scalars and lists (ROS parameters arrive as lists) but store tuples, so instances stay hashable.
        for name in ('action_low', 'action_high', 'noise_std'):
            try:
                object.__setattr__(self, name, _as_tuple(getattr(self, name)))
            except (TypeError, ValueError) as exc:
                raise SettingsError(f'{name}: must be a number or a list of numbers ({exc})') from None
        object.__setattr__(self, 'action_dim', len(self.action_low))
        reasons = self.problems()
        if reasons:
            raise SettingsError('invalid MPPI settings: ' + '; '.join(reasons))

    def problems(self) -> list[str]:
        """Every reason these values are invalid (empty when valid)."""
        reasons: list[str] = []
        low, high = np.asarray(self.action_low), np.asarray(self.action_high)
        if low.size == 0:
            reasons.append('action_low: must name at least one action dimension')
        if low.size != high.size:
            reasons.append(f'action_low/action_high: lengths differ ({low.size} vs {high.size})')
        elif low.size and not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            reasons.append('action_low/action_high: must be finite')
        elif low.size and np.any(low >= high):
            reasons.append(f'action_low/action_high: need low < high in every dimension (got {low} and {high})')
        std = np.asarray(self.noise_std)
        if std.size not in (1, low.size):
            reasons.append(f'noise_std: need 1 or {low.size} values, got {std.size}')
        elif not (np.all(np.isfinite(std)) and np.all(std > 0)):
            reasons.append(f'noise_std: must be finite and > 0 (got {self.noise_std})')
        _int_range(reasons, 'num_samples', self.num_samples, 2, 1 << 20)
        _int_range(reasons, 'horizon', self.horizon, 1, 10000)
        _int_range(reasons, 'iterations', self.iterations, 1, 100)
        _int_range(reasons, 'max_retries', self.max_retries, 0, 100)
        _float_range(reasons, 'temperature', self.temperature, 0.0, math.inf, low_open=True)
        if not isinstance(self.normalise_costs, bool):
            reasons.append(f'normalise_costs: must be a bool (got {self.normalise_costs!r})')
        _float_range(reasons, 'control_cost_weight', self.control_cost_weight, 0.0, math.inf)
        _float_range(reasons, 'noise_correlation', self.noise_correlation, 0.0, 1.0, high_open=True)
        if not _is_number(self.max_action_rate) or math.isnan(self.max_action_rate) or self.max_action_rate <= 0:
            reasons.append(f'max_action_rate: must be > 0 or inf (got {self.max_action_rate!r})')
        if self.smoothing not in SMOOTHING_METHODS:
            reasons.append(f'smoothing: must be one of {SMOOTHING_METHODS} (got {self.smoothing!r})')
        if not _int_range(reasons, 'smoothing_window', self.smoothing_window, 3, 101):
            if self.smoothing_window % 2 == 0:
                reasons.append(f'smoothing_window: must be odd (got {self.smoothing_window})')
        if not _int_range(reasons, 'smoothing_order', self.smoothing_order, 0, 10):
            if _is_int(self.smoothing_window) and self.smoothing_order >= self.smoothing_window:
                reasons.append('smoothing_order: must be < smoothing_window')
        if self.update_perturbation not in UPDATE_PERTURBATIONS:
            reasons.append(f'update_perturbation: must be one of {UPDATE_PERTURBATIONS} '
                           f'(got {self.update_perturbation!r})')
        if not isinstance(self.include_nominal, bool):
            reasons.append('include_nominal: must be a bool')
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            reasons.append(f'seed: must be a non-negative int or None (got {self.seed!r})')
        if not _int_range(reasons, 'workers', self.workers, 1, 64) and _is_int(self.num_samples) \
                and self.workers > self.num_samples:
            reasons.append(f'workers: must not exceed num_samples ({self.workers} > {self.num_samples})')
        return reasons

    def replace(self, **changes: Any) -> MPPISettings:
        """A validated copy with ``changes`` applied.

        Raises
        ------
        SettingsError
            If a name is unknown or the result is invalid; ``self`` is unchanged either way.
        """
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise SettingsError(f'unknown MPPI settings: {unknown}')
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names accepted by the constructor (the derived ``action_dim`` excluded)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MPPISettings:
        """Build from a mapping (a parameter file section), refusing unknown keys.

        Raises
        ------
        SettingsError
            If a key is unknown or a value is invalid.
        """
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise SettingsError(f'unknown MPPI settings: {unknown}')
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), the inverse of :meth:`from_dict`."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in self.field_names()}

    @property
    def low(self) -> np.ndarray:
        """Lower action bounds as a float32 (m,) array."""
        return np.asarray(self.action_low, dtype=np.float32)

    @property
    def high(self) -> np.ndarray:
        """Upper action bounds as a float32 (m,) array."""
        return np.asarray(self.action_high, dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        """Noise standard deviation broadcast to a float32 (m,) array."""
        return np.broadcast_to(np.asarray(self.noise_std, dtype=np.float32), (self.action_dim,)).copy()


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _int_range(reasons: list[str], name: str, value: Any, low: int, high: int) -> bool:
    """Append a reason unless ``low <= value <= high`` for an int; True when a reason was added."""
    if not _is_int(value):
        reasons.append(f'{name}: must be an int (got {value!r})')
        return True
    if not low <= value <= high:
        reasons.append(f'{name}: must be in [{low}, {high}] (got {value})')
        return True
    return False


def _float_range(reasons: list[str], name: str, value: Any, low: float, high: float, *,
                 low_open: bool = False, high_open: bool = False) -> None:
    if not _is_number(value) or not math.isfinite(value):
        reasons.append(f'{name}: must be a finite number (got {value!r})')
        return
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = '(' if low_open else '[', ')' if high_open else ']'
        reasons.append(f'{name}: must be in {lo}{low}, {high}{hi} (got {value})')

