"""hamwm_ros.monitor: is the world model still right? Prediction-error and energy-balance checks, no rclpy, no torch.

```python
from hamwm_ros.monitor import MonitorConfig, ValidityMonitor, StateHistory, InputHistory, predict_tick
monitor = ValidityMonitor(obs_scale=metadata.normalisation['obs_std'], config=MonitorConfig(error_step=10))
tick = predict_tick(runtime, state, u_hold, horizon, past_state=..., past_inputs=...)
monitor.add_prediction(t, tick.hindsight, state, start=past_state)
monitor.add_energy(t, tick.energy_now, tick.power_claimed, tick.power_unforced)
report = monitor.report()      # level OK / WARN / ERROR, message, values
```
"""

from hamwm_ros.monitor.history import Forecast, ForecastLog, InputHistory, StateHistory
from hamwm_ros.monitor.predict import TickPrediction, predict_tick
from hamwm_ros.monitor.tracker import ModelTracker, TickResult
from hamwm_ros.monitor.validity import (
    ERROR,
    LEVEL_NAMES,
    OK,
    STALE,
    WARN,
    Hysteresis,
    MonitorConfig,
    Report,
    ValidityMonitor,
)

__all__ = [
    'ERROR', 'LEVEL_NAMES', 'OK', 'STALE', 'WARN', 'Forecast', 'ForecastLog', 'Hysteresis', 'InputHistory',
    'ModelTracker', 'MonitorConfig', 'Report', 'StateHistory', 'TickPrediction', 'TickResult', 'ValidityMonitor',
    'predict_tick',
]
