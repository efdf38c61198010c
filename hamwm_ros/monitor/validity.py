"""Model-validity monitor: is the world model still right about this robot, and is it physically honest?

Two kinds of evidence, each turned into an OK / WARN / ERROR level with hysteresis so the verdict does not flap:

**Prediction error.** A prediction of the state k model steps ahead is compared with the state that was then
observed. The error is the RMS over joint positions and velocities, each divided by the model's normalisation scale
(``obs_std`` from the model metadata), so 1.0 means "off by one standard deviation of the training data". It is
smoothed with an exponential moving average (time constant in seconds, so the verdict does not depend on the tick
rate). The error of a hold-still forecast (the state k steps ago) is kept beside it as a yardstick: a model worse than
that predicts nothing. While the robot moves enough to tell (the averaged hold-still error above ``hold_still_floor``)
the ratio of the two is a check of its own, so a model whose absolute error stays under the thresholds but which
forecasts worse than "nothing moves" is not passed.

**Energy balance.** A port-Hamiltonian model claims dH/dt = -dH^T R dH + dH^T G u (+ a small residual). Over a
sliding window the change of H along the *observed* (encoded) states is compared with the integral of the claimed
power, and the power the model claims without any input (-dH^T R dH + residual) must not be positive (passivity).
The claimed power of each sample is held until the next (the input is held over a model step, so this is the
model's own one-step claim when samples are a model step apart). Both are reported as scale-free fractions in
[0, 1), relative to the energy moving through the window and the energy in the system (``level``: mean H over the
window above the lowest H seen since the model was loaded; H has an arbitrary offset, so its minimum stands in for
the ground state):

* ``balance_error = excess / (|dH_obs| + |int P_claimed| + level + floor * window)``, where the mismatch is
  ``dH_obs - int P_claimed`` and ``excess`` is all of it, or, for a model whose metadata has an
  ``energy_calibration``, the part beyond what its books missed on held-out data: ``max(|mismatch - bias * n| -
  limit(n), 0)`` over the window's n model steps. A learned H is only as exact as the latent prediction it is
  evaluated on, and a stiff one (a robot on a PD hold) turns small latent errors into large energy errors; the
  calibration makes the check ask "worse than on held-out data?" rather than "exact?".
* ``passivity_violation = int max(P_unforced, 0) / (int |P_unforced| + |dH_obs| + level + floor * window)``

So a conservative model of a swinging pendulum whose energy wobbles by 2 % scores about 0.02, while a model that
claims the energy grows (or shrinks) when it does not scores close to 1. ``floor`` is ``energy_floor`` (a fraction
per second) times the model's energy scale (the spread of H over its training distribution, see
:func:`hamwm_ros.monitor.predict.model_energy_scale`; 1 model energy unit when unknown); it keeps both near zero
when nothing moves and the only differences are tiny drifts and float noise.

Pure numpy; no rclpy, no torch. Levels use the values of diagnostic_msgs/DiagnosticStatus (OK 0, WARN 1, ERROR 2,
STALE 3) so a node can copy them straight into a message.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
import math

import numpy as np

from hamwm_ros.runtime.metadata import EnergyCalibration

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds and time constants of :class:`ValidityMonitor`.

    Attributes
    ----------
    error_step
        k: how many model steps ahead the prediction error is measured.
    error_time_constant
        Seconds; time constant of the moving average of the prediction error.
    error_warn, error_error
        Thresholds on the averaged normalised prediction error.
    hold_still_warn, hold_still_error
        Thresholds on the averaged prediction error divided by the averaged error of holding still.
    hold_still_floor
        That ratio is judged only while the averaged hold-still error is above this (normalised units: the robot
        moves enough for a forecast to matter); below it the ratio counts as good.
    energy_window
        Seconds of history the energy checks integrate over.
    energy_floor
        Per second, as a fraction of the model's energy scale: the noise floor of the energy checks.
    balance_warn, balance_error
        Thresholds on ``balance_error`` (a fraction in [0, 1)).
    passivity_warn, passivity_error
        Thresholds on ``passivity_violation`` (a fraction in [0, 1)).
    raise_after
        Consecutive evaluations above a threshold before the level goes up.
    energy_raise_time
        Seconds the energy checks must stay above a threshold before their level goes up. Longer than
        ``energy_window`` by default, so one push (an external force the model cannot know about, whose energy stays
        in the window for ``energy_window`` seconds) does not condemn the model; a persistent mismatch does.
    clear_after
        Consecutive evaluations below ``clear_ratio`` x the threshold before the level comes down.
    clear_ratio
        In (0, 1]: how far under a threshold a value must fall to count towards clearing.
    """

    error_step: int = 10
    error_time_constant: float = 0.5
    error_warn: float = 0.25
    error_error: float = 0.5
    hold_still_warn: float = 1.0
    hold_still_error: float = 2.0
    hold_still_floor: float = 0.1
    energy_window: float = 1.0
    energy_floor: float = 0.02
    balance_warn: float = 0.2
    balance_error: float = 0.4
    passivity_warn: float = 0.15
    passivity_error: float = 0.3
    raise_after: int = 3
    energy_raise_time: float = 2.0
    clear_after: int = 10
    clear_ratio: float = 0.8

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check ranges and threshold order.

        Raises
        ------
        ValueError
            Naming the first bad value.
        """
        if self.error_step < 1:
            raise ValueError(f'error_step must be >= 1, got {self.error_step}')
        for name in ('error_time_constant', 'energy_window', 'energy_floor'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a positive finite number, got {value}')
        if not (math.isfinite(self.hold_still_floor) and self.hold_still_floor >= 0):
            raise ValueError(f'hold_still_floor must be a finite number >= 0, got {self.hold_still_floor}')
        for check, top in (('error', math.inf), ('hold_still', math.inf), ('balance', 1.0), ('passivity', 1.0)):
            warn, error = getattr(self, f'{check}_warn'), getattr(self, f'{check}_error')
            if not (0 < warn <= error) or not math.isfinite(error) or error > top:
                limit = '' if top == math.inf else f' <= {top:g}'
                raise ValueError(f'{check}_warn ({warn}) and {check}_error ({error}) must satisfy '
                                 f'0 < warn <= error{limit}')
        if not (math.isfinite(self.energy_raise_time) and self.energy_raise_time >= 0):
            raise ValueError(f'energy_raise_time must be >= 0, got {self.energy_raise_time}')
        if self.raise_after < 1 or self.clear_after < 1:
            raise ValueError('raise_after and clear_after must be >= 1')
        if not 0 < self.clear_ratio <= 1:
            raise ValueError(f'clear_ratio must be in (0, 1], got {self.clear_ratio}')

    def with_changes(self, **changes) -> MonitorConfig:
        """A validated copy with ``changes`` applied (ValueError when the result is invalid)."""
        return replace(self, **changes)


class Hysteresis:
    """OK / WARN / ERROR from a scalar with two thresholds, slow to change its mind.

    The level goes up only after ``raise_after`` consecutive values above a higher threshold, spanning at least
    ``raise_time`` seconds when times are given (it goes straight to the highest level those values all reach), and
    comes down only after ``clear_after`` consecutive values below ``clear_ratio`` times the threshold of the current
    level. Non-finite values count as above every threshold.
    """

    def __init__(self, warn: float, error: float, raise_after: int, clear_after: int, clear_ratio: float,
                 raise_time: float = 0.0) -> None:
        self.level = OK
        self.configure(warn, error, raise_after, clear_after, clear_ratio, raise_time)
        self._up: list[int] = []
        self._up_since = math.nan
        self._down: list[int] = []

    def configure(self, warn: float, error: float, raise_after: int, clear_after: int, clear_ratio: float,
                  raise_time: float = 0.0) -> None:
        """New thresholds; the current level and counts are kept."""
        self.warn, self.error = float(warn), float(error)
        self.raise_after, self.clear_after, self.clear_ratio = int(raise_after), int(clear_after), float(clear_ratio)
        self.raise_time = float(raise_time)

    def _classify(self, value: float, scale: float) -> int:
        if not math.isfinite(value) or value > self.error * scale:
            return ERROR
        return WARN if value > self.warn * scale else OK

    def update(self, value: float, t: float = math.nan) -> int:
        """Feed one value (observed at time ``t``, seconds, when ``raise_time`` is used); return the level."""
        raw = self._classify(value, 1.0)
        if raw > self.level:
            if not self._up:
                self._up_since = t
            self._up.append(raw)
            self._down.clear()
            lasted = not self.raise_time > 0 or (t - self._up_since >= self.raise_time)
            if len(self._up) >= self.raise_after and lasted:
                self.level = min(self._up[-self.raise_after:])
                self._up.clear()
            return self.level
        self._up.clear()
        cleared = self._classify(value, self.clear_ratio)
        if cleared < self.level:
            self._down.append(cleared)
            if len(self._down) >= self.clear_after:
                self.level = max(self._down[-self.clear_after:])
                self._down.clear()
        else:
            self._down.clear()
        return self.level

    def reset(self) -> None:
        """Back to OK with no pending counts."""
        self.level = OK
        self._up.clear()
        self._down.clear()


@dataclass
class Report:
    """The monitor's verdict and the numbers behind it.

    ``values`` holds floats (NaN where a number is not available yet) keyed by name; ``checks`` the level of each
    check (``prediction``, ``hold_still``, ``energy_balance``, ``passivity``, ``model_output``).
    """

    level: int
    message: str
    values: dict[str, float] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)

    @property
    def level_name(self) -> str:
        """'OK', 'WARN', 'ERROR' or 'STALE'."""
        return LEVEL_NAMES[self.level]


@dataclass(frozen=True)
class _EnergySample:
    t: float
    energy: float            # H at the observed (encoded) state
    claimed: float           # claimed dH/dt under the input in force
    unforced: float          # claimed dH/dt with zero input


class ValidityMonitor:
    """Judges a world model against what the robot does next; see the module docstring for the measures.

    Parameters
    ----------
    obs_scale
        (2 n,) positive scales of positions then velocities (the model's ``obs_std``).
    config
        Thresholds; defaults when None.
    energy_scale
        The model's typical spread of H (model energy units); scales ``energy_floor``.
    energy_calibration
        How far the model's energy books missed on held-out data (its metadata's entry); None counts every mismatch.
    model_dt
        Seconds per model step: turns a window's span into the step count of ``energy_calibration``.

    Raises
    ------
    ValueError
        If ``obs_scale`` is empty, not finite or not positive, ``energy_scale`` is not positive, or
        ``energy_calibration`` comes without a positive ``model_dt``.
    """

    CHECKS = ('prediction', 'hold_still', 'energy_balance', 'passivity', 'model_output')

    def __init__(self, obs_scale: np.ndarray, config: MonitorConfig | None = None, energy_scale: float = 1.0,
                 energy_calibration: EnergyCalibration | None = None, model_dt: float | None = None) -> None:
        scale = np.asarray(obs_scale, np.float64).reshape(-1)
        if scale.size == 0 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError('obs_scale must be non-empty, finite and positive')
        if not (math.isfinite(energy_scale) and energy_scale > 0):
            raise ValueError(f'energy_scale must be positive and finite, got {energy_scale}')
        if energy_calibration is not None and not (model_dt is not None and math.isfinite(model_dt) and model_dt > 0):
            raise ValueError(f'energy_calibration needs a positive model_dt, got {model_dt}')
        self.energy_calibration = energy_calibration
        self.model_dt = model_dt
        self.energy_scale = float(energy_scale)
        self.obs_scale = scale
        self.config = config or MonitorConfig()
        c = self.config
        self._levels = {
            'prediction': Hysteresis(c.error_warn, c.error_error, c.raise_after, c.clear_after, c.clear_ratio),
            'hold_still': Hysteresis(c.hold_still_warn, c.hold_still_error, c.raise_after, c.clear_after,
                                     c.clear_ratio),
            'energy_balance': Hysteresis(c.balance_warn, c.balance_error, c.raise_after, c.clear_after,
                                         c.clear_ratio, c.energy_raise_time),
            'passivity': Hysteresis(c.passivity_warn, c.passivity_error, c.raise_after, c.clear_after, c.clear_ratio,
                                    c.energy_raise_time),
            # a model emitting NaN/Inf is wrong at once; it must then stay finite for clear_after ticks
            'model_output': Hysteresis(0.5, 0.5, 1, c.clear_after, 1.0),
        }
        self.reset()

    # ------------------------------------------------------------------ configuration
    def reconfigure(self, config: MonitorConfig) -> None:
        """Apply new thresholds without losing the history or the current levels."""
        self.config = config
        for name, warn, error, lasting in (
                ('prediction', config.error_warn, config.error_error, 0.0),
                ('hold_still', config.hold_still_warn, config.hold_still_error, 0.0),
                ('energy_balance', config.balance_warn, config.balance_error, config.energy_raise_time),
                ('passivity', config.passivity_warn, config.passivity_error, config.energy_raise_time)):
            self._levels[name].configure(warn, error, config.raise_after, config.clear_after, config.clear_ratio,
                                         lasting)
        self._levels['model_output'].configure(0.5, 0.5, 1, config.clear_after, 1.0)

    def reset(self) -> None:
        """Forget every measurement and return all checks to OK (a new model was loaded)."""
        for level in self._levels.values():
            level.reset()
        self._error_ema = math.nan
        self._baseline_ema = math.nan
        self._last_error_time = math.nan
        self._last_error = math.nan
        self._hold_still_ratio = math.nan
        self._hold_still_judged = math.nan      # the last ratio judged (the message's number)
        self._energy: deque[_EnergySample] = deque()
        self._energy_values = {'balance_error': math.nan, 'passivity_violation': math.nan,
                               'energy_change_observed': math.nan, 'energy_change_claimed': math.nan,
                               'energy_mismatch_allowed': math.nan, 'energy_level': math.nan}
        self._last_energy: _EnergySample | None = None
        self._lowest_energy = math.inf
        self._evaluations = 0
        self._faults = 0
        self._fault_reason = ''

    # ------------------------------------------------------------------ evidence
    def normalised_error(self, predicted: np.ndarray, observed: np.ndarray) -> float:
        """RMS of (predicted - observed) / obs_scale over all entries; inf when either is not finite."""
        diff = (np.asarray(predicted, np.float64) - np.asarray(observed, np.float64)) / self.obs_scale
        value = float(np.sqrt(np.mean(diff * diff)))
        return value if math.isfinite(value) else math.inf

    def add_prediction(self, t: float, predicted: np.ndarray, observed: np.ndarray,
                       start: np.ndarray | None = None) -> float:
        """Record a k-step prediction of the state at time ``t`` against the state observed then.

        Parameters
        ----------
        t
            Time (seconds, joint-state time base) the prediction is for.
        predicted, observed
            (2 n,) positions then velocities.
        start
            (2 n,) the state the prediction started from (k steps earlier); gives the hold-still baseline.

        Returns
        -------
        float
            The normalised error of this prediction.

        Raises
        ------
        ValueError
            If the shapes do not match ``obs_scale``.
        """
        for name, value in (('predicted', predicted), ('observed', observed), ('start', start)):
            if value is not None and np.shape(value) != self.obs_scale.shape:
                raise ValueError(f'{name} must have shape {self.obs_scale.shape}, got {np.shape(value)}')
        error = self.normalised_error(predicted, observed)
        baseline = self.normalised_error(start, observed) if start is not None else math.nan
        if math.isnan(self._error_ema) or not math.isfinite(self._error_ema):
            self._error_ema, self._baseline_ema = error, baseline
        else:
            gap = t - self._last_error_time
            alpha = 1.0 - math.exp(-max(gap, 0.0) / self.config.error_time_constant) if math.isfinite(gap) else 1.0
            self._error_ema += alpha * (error - self._error_ema) if math.isfinite(error) else math.inf
            if math.isfinite(baseline):
                self._baseline_ema = baseline if math.isnan(self._baseline_ema) else (
                    self._baseline_ema + alpha * (baseline - self._baseline_ema))
        self._last_error_time = t
        self._last_error = error
        self._levels['prediction'].update(self._error_ema)
        moving = math.isfinite(self._baseline_ema) and self._baseline_ema > self.config.hold_still_floor
        # NaN while the robot is too still to tell: it then counts as good (below every threshold)
        self._hold_still_ratio = self._error_ema / self._baseline_ema if moving else math.nan
        if moving:
            self._hold_still_judged = self._hold_still_ratio
        self._levels['hold_still'].update(self._hold_still_ratio if moving else 0.0)
        self._evaluations += 1
        return error

    def add_energy(self, t: float, energy: float, power_claimed: float, power_unforced: float) -> None:
        """Record the model's energy at the observed state at time ``t`` and the power it claims there.

        Parameters
        ----------
        t
            Time of the observed state (seconds, joint-state time base); samples not after the last are ignored.
        energy
            H of the encoded observed state.
        power_claimed
            The model's dH/dt there under the input in force (-dH^T R dH + dH^T G u + residual).
        power_unforced
            The model's dH/dt there with zero input (-dH^T R dH + residual); positive means it creates energy.
        """
        if self._energy and t <= self._energy[-1].t:
            return
        values = (energy, power_claimed, power_unforced)
        if not all(math.isfinite(v) for v in values):
            self.model_fault(t, 'energy or power is not finite')
            return
        sample = _EnergySample(float(t), float(energy), float(power_claimed), float(power_unforced))
        self._lowest_energy = min(self._lowest_energy, sample.energy)
        self._energy.append(sample)
        self._last_energy = sample
        window = self.config.energy_window
        while len(self._energy) > 2 and self._energy[1].t <= t - window:
            self._energy.popleft()
        samples = list(self._energy)
        span = samples[-1].t - samples[0].t
        if len(samples) < 3 or span < 0.5 * window:
            return       # too little history to integrate over yet
        times = np.array([s.t for s in samples])
        claimed = np.array([s.claimed for s in samples])
        unforced = np.array([s.unforced for s in samples])
        observed = samples[-1].energy - samples[0].energy
        claimed_change = _held(claimed, times)
        level = float(np.mean([s.energy for s in samples])) - self._lowest_energy
        floor = self.config.energy_floor * self.energy_scale * span + level
        mismatch, allowed = observed - claimed_change, 0.0
        calibration = self.energy_calibration
        if calibration is not None:    # count only what the model's held-out books did not already miss
            steps = span / self.model_dt
            mismatch -= calibration.bias * steps
            allowed = calibration.limit(steps)
        balance = max(abs(mismatch) - allowed, 0.0) / (abs(observed) + abs(claimed_change) + floor)
        gained = _trapezoid(np.maximum(unforced, 0.0), times)
        passivity = gained / (_trapezoid(np.abs(unforced), times) + abs(observed) + floor)
        self._energy_values = {'balance_error': balance, 'passivity_violation': passivity,
                               'energy_change_observed': observed, 'energy_change_claimed': claimed_change,
                               'energy_mismatch_allowed': allowed, 'energy_level': level}
        self._levels['energy_balance'].update(balance, t)
        self._levels['passivity'].update(passivity, t)

    def model_fault(self, t: float, reason: str) -> None:
        """The model produced something unusable (NaN/Inf) at time ``t``: ERROR at once."""
        self._faults += 1
        self._fault_reason = reason
        self._levels['model_output'].update(1.0)

    def model_ok(self) -> None:
        """The model's outputs were finite this tick (counts towards clearing a fault)."""
        self._levels['model_output'].update(0.0)

    # ------------------------------------------------------------------ verdict
    def report(self) -> Report:
        """Current level, a one-line reason and the numbers."""
        c = self.config
        checks = {name: level.level for name, level in self._levels.items()}
        last = self._last_energy
        values = {
            'prediction_error': self._error_ema,
            'prediction_error_last': self._last_error,
            'hold_still_error': self._baseline_ema,
            'prediction_vs_hold_still': self._hold_still_ratio,
            'error_step': float(c.error_step),
            'evaluations': float(self._evaluations),
            'energy': last.energy if last else math.nan,
            'power_claimed': last.claimed if last else math.nan,
            'power_unforced': last.unforced if last else math.nan,
            'power_input': (last.claimed - last.unforced) if last else math.nan,
            'model_faults': float(self._faults),
            'energy_scale': self.energy_scale,
            **self._energy_values,
        }
        level = max(checks.values())
        reasons = []
        if checks['model_output']:
            reasons.append(f'model output not finite ({self._fault_reason})')
        if checks['prediction']:
            limit = c.error_error if checks['prediction'] == ERROR else c.error_warn
            reasons.append(f'{c.error_step}-step prediction error {self._error_ema:.3g} (normalised; limit {limit:g})')
        if checks['hold_still']:
            limit = c.hold_still_error if checks['hold_still'] == ERROR else c.hold_still_warn
            reasons.append(f'{c.error_step}-step prediction {self._hold_still_judged:.3g}x the error of holding still '
                           f'(limit {limit:g})')
        if checks['energy_balance']:
            limit = c.balance_error if checks['energy_balance'] == ERROR else c.balance_warn
            reasons.append(f"energy balance error {values['balance_error']:.3g} (limit {limit:g})")
        if checks['passivity']:
            limit = c.passivity_error if checks['passivity'] == ERROR else c.passivity_warn
            reasons.append(f"model creates energy without input: {values['passivity_violation']:.3g} (limit {limit:g})")
        if reasons:
            message = '; '.join(reasons)
        elif self._evaluations == 0 and last is None:
            message = 'waiting for predictions to compare'
        else:
            message = 'model consistent with observations'
        return Report(level=level, message=message, values=values, checks=checks)


def _held(y: np.ndarray, x: np.ndarray) -> float:
    """Integral of samples ``y`` over ``x``, each held until the next (the last sample starts no interval)."""
    if len(x) < 2:
        return 0.0
    return float(np.sum(y[:-1] * np.diff(x)))


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal integral of samples ``y`` over ``x`` (numpy renamed trapz; this works on every version)."""
    if len(x) < 2:
        return 0.0
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))
