"""The world model running alongside a robot: histories in, forecasts and a validity verdict out.

:class:`ModelTracker` is everything ``world_model_node`` does between receiving messages and publishing them, with
no ROS in it: it keeps the joint-state and input histories (one time base: joint-state stamps), and at each tick
encodes the newest state, forecasts under the input in force, and feeds the validity monitor with a hindsight
prediction (joint-state models) or a logged forecast that has come due (camera models) and the energy balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np

from hamwm_ros.monitor.history import Forecast, ForecastLog, InputHistory, StateHistory
from hamwm_ros.monitor.predict import TickPrediction, model_energy_scale, predict_tick
from hamwm_ros.monitor.validity import MonitorConfig, Report, ValidityMonitor
from hamwm_ros.runtime import WorldModelRuntime

MAX_BETWEEN = 8  # earlier states per tick whose claimed power is sampled (a tick late by more keeps the latest)


@dataclass
class TickResult:
    """One tick: the stamp of the state it started from, the prediction, the monitor's report and the input held.

    ``prediction`` is None when the model's output was not finite (nothing of it may be published).
    """

    time: float
    prediction: TickPrediction | None
    report: Report
    input: np.ndarray


class ModelTracker:
    """Runs one loaded model against the robot's history.

    Parameters
    ----------
    runtime
        The loaded model.
    config
        Monitor thresholds.
    input_timeout
        Seconds an input holds before zero input is assumed.
    state_capacity
        Joint states kept (covers ``error_step`` model steps at the joint-state rate with room to spare).
    wrap_joints
        Joints (model order) whose angle is encoded shifted by whole turns into [-pi, pi) (see :func:`predict_tick`);
        forecasts, hindsight and the monitor stay in the robot's own (unwrapped) angles.

    Raises
    ------
    ValueError
        If the model's normalisation scales are unusable, ``input_timeout`` is not positive, or a ``wrap_joints``
        index is not a joint of the model.
    """

    def __init__(self, runtime: WorldModelRuntime, config: MonitorConfig | None = None, *, input_timeout: float = 0.5,
                 state_capacity: int = 4096, wrap_joints: Sequence[int] = ()) -> None:
        meta = runtime.metadata
        self.runtime = runtime
        self.n_joints = len(meta.joint_names)
        self.wrap_joints = tuple(int(j) for j in wrap_joints)
        if any(not 0 <= j < self.n_joints for j in self.wrap_joints):
            raise ValueError(f'wrap_joints {list(self.wrap_joints)} must index the model\'s {self.n_joints} joints')
        self.states = StateHistory(self.n_joints, state_capacity)
        self.inputs = InputHistory(meta.action_dim, input_timeout)
        self.forecasts = ForecastLog()
        self.monitor = ValidityMonitor(np.asarray(meta.normalisation['obs_std']), config,
                                       energy_scale=model_energy_scale(runtime),
                                       energy_calibration=meta.energy_calibration, model_dt=meta.dt)
        self._last_tick_time = -math.inf

    @property
    def config(self) -> MonitorConfig:
        """Current monitor thresholds."""
        return self.monitor.config

    def reconfigure(self, config: MonitorConfig, input_timeout: float | None = None) -> None:
        """New thresholds (and input timeout); histories and levels are kept."""
        self.monitor.reconfigure(config)
        if input_timeout is not None:
            if not input_timeout > 0:
                raise ValueError(f'input_timeout must be > 0, got {input_timeout}')
            self.inputs.timeout = float(input_timeout)

    def restart(self) -> None:
        """Forget all history and measurements (the time base jumped back: a restarted simulation or bag)."""
        self.states.clear()
        self.inputs.clear()
        self.forecasts.clear()
        self.monitor.reset()
        self._last_tick_time = -math.inf

    def observe_state(self, t: float, position: np.ndarray, velocity: np.ndarray) -> bool:
        """Record a joint state (model joint order) stamped ``t``; False when refused (out of order, not finite)."""
        return self.states.add(t, position, velocity)

    def observe_input(self, t: float, u: np.ndarray) -> bool:
        """Record an input applied from ``t``; False when refused (wrong size, not finite, out of order)."""
        return self.inputs.add(t, u)

    def _states_between(self, t: float, dt: float) -> tuple[list[float], tuple[np.ndarray, np.ndarray] | None]:
        """Observed states (and inputs in force) every model step between the last tick and ``t``."""
        found = [(w, self.states.at(w)) for w in _between_times(self._last_tick_time, t, dt, MAX_BETWEEN)]
        found = [(w, state) for w, state in found if state is not None]
        if not found:
            return [], None
        times = [w for w, _ in found]
        return times, (np.stack([state for _, state in found]), np.stack([self.inputs.at(w) for w in times]))

    def latest_time(self) -> float | None:
        """Stamp of the newest joint state, or None."""
        latest = self.states.latest()
        return None if latest is None else latest[0]

    def tick(self, horizon: int, images: np.ndarray | None = None) -> TickResult | None:
        """Forecast ``horizon`` steps from the newest state and update the monitor.

        Returns None when no joint state has been recorded yet (or, for a camera model, no frames are given).

        Raises
        ------
        ValueError
            If ``horizon`` < 2 or ``images`` do not fit the model.
        """
        meta = self.runtime.metadata
        latest = self.states.latest()
        if latest is None or (meta.images is not None and images is None):
            return None
        t, state = latest
        u_hold = self.inputs.current(t)
        k = self.monitor.config.error_step
        dt = meta.dt
        fresh = t > self._last_tick_time      # a tick on the same joint state adds no new evidence
        past_state = past_inputs = None
        between_times: list[float] = []
        between = None
        if fresh and meta.images is None:
            past_state = self.states.at(t - k * dt)
            if past_state is not None:
                past_inputs = self.inputs.sample(t - k * dt, dt, k)
            # The energy balance integrates the claimed power over time: sample it every model step since the last
            # tick, not once per tick (the power of a robot on a stiff PD hold swings faster than the tick rate).
            between_times, between = self._states_between(t, dt)
        prediction = predict_tick(self.runtime, state, u_hold, max(horizon, 2 if meta.images is None else k),
                                  past_state=past_state, past_inputs=past_inputs, images=images,
                                  wrap_joints=self.wrap_joints, between=between)
        monitor = self.monitor
        if not prediction.finite:
            monitor.model_fault(t, 'NaN or Inf in the forecast')
            self._last_tick_time = t
            return TickResult(t, None, monitor.report(), u_hold)
        monitor.model_ok()
        if fresh:
            if prediction.hindsight is not None:
                monitor.add_prediction(t, prediction.hindsight, state, start=past_state)
            elif meta.images is not None and k <= len(prediction.position):
                predicted = np.concatenate([prediction.position[k - 1], prediction.velocity[k - 1]])
                self.forecasts.add(Forecast(t0=t, target_time=t + k * dt, predicted=predicted, start=state))
            for forecast in self.forecasts.due(t):
                observed = self.states.at(forecast.target_time)
                if observed is not None:
                    monitor.add_prediction(forecast.target_time, forecast.predicted, observed, start=forecast.start)
            if prediction.between is not None:
                for when, (energy, claimed, unforced) in zip(between_times, prediction.between):
                    monitor.add_energy(when, float(energy), float(claimed), float(unforced))
            monitor.add_energy(t, prediction.energy_now, prediction.power_claimed, prediction.power_unforced)
        self._last_tick_time = t
        if len(prediction.position) > horizon:   # camera models forecast at least k steps for the log
            prediction = _truncate(prediction, horizon)
        return TickResult(t, prediction, monitor.report(), u_hold)


def _between_times(last_tick: float, t: float, dt: float, limit: int) -> list[float]:
    """Times every ``dt`` after ``last_tick`` and at least ``dt / 2`` before ``t``, the latest ``limit`` of them."""
    if not math.isfinite(last_tick) or t - last_tick < 1.5 * dt:
        return []
    count = int(math.floor((t - last_tick - 0.5 * dt) / dt))
    return [last_tick + i * dt for i in range(max(1, count - limit + 1), count + 1)]


def _truncate(prediction: TickPrediction, horizon: int) -> TickPrediction:
    return TickPrediction(
        latent=prediction.latent, latent_seq=prediction.latent_seq[:horizon], position=prediction.position[:horizon],
        velocity=prediction.velocity[:horizon], energy=prediction.energy[:horizon],
        energy_now=prediction.energy_now, power_claimed=prediction.power_claimed,
        power_unforced=prediction.power_unforced, hindsight=prediction.hindsight,
        ensemble_spread=prediction.ensemble_spread, finite=prediction.finite)
