"""Wrapped joints in the monitor: the shipped cart-pole model, real MuJoCo data, a pole turned over by whole turns.

The shipped swing-up models were trained on pole angles that start in [-pi, pi); their encoders are not periodic, so
a pole turned over once is, to them, an unseen state. ``wrap_joints`` encodes it shifted back by the turns and shifts
the forecast forward again: the robot's own angles in, the robot's own angles out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hamwm_ros.monitor import ModelTracker, MonitorConfig, predict_tick
from hamwm_ros.runtime import SessionConfig, WorldModelRuntime

MODEL = Path(__file__).resolve().parent.parent / 'models' / 'cartpole'
POLE = 1
TURN = np.array([0.0, 2.0 * math.pi])


@pytest.fixture(scope='module')
def runtime():
    if not (MODEL / 'metadata.json').is_file():
        pytest.skip(f'{MODEL} is missing: run `hamwm models` (make models)')
    return WorldModelRuntime.load(MODEL, config=SessionConfig(providers=('cpu',), intra_op_threads=1))


@pytest.fixture(scope='module')
def trajectory():
    """One simulated cart-pole trajectory under exciting effort: (positions, velocities, efforts), 0.02 s apart."""
    from hamwm_ros.sim.rollouts import generate_rollouts

    data = generate_rollouts('cartpole', 1, 30, 0.02, seed=21)
    return data['position'][0], data['velocity'][0], data['action'][0]


def _state(position, velocity, turns=0):
    return np.concatenate([position + turns * TURN, velocity])


def test_turned_pole_forecasts_the_same_motion_one_turn_on(runtime, trajectory):
    position, velocity, effort = trajectory
    k, now = 3, 20
    past_inputs = effort[now - k:now]
    kwargs = {'past_inputs': past_inputs, 'wrap_joints': (POLE,)}
    plain = predict_tick(runtime, _state(position[now], velocity[now]), effort[now], 10,
                         past_state=_state(position[now - k], velocity[now - k]), **kwargs)
    turned = predict_tick(runtime, _state(position[now], velocity[now], 1), effort[now], 10,
                          past_state=_state(position[now - k], velocity[now - k], -2), **kwargs)
    np.testing.assert_allclose(turned.position, plain.position + TURN, atol=1e-6)
    np.testing.assert_allclose(turned.velocity, plain.velocity, atol=1e-6)
    np.testing.assert_allclose(turned.latent, plain.latent, atol=1e-6)
    # the hindsight is in the past state's own angles (two turns back), compared with the state k steps later
    np.testing.assert_allclose(turned.hindsight, plain.hindsight - np.concatenate([2 * TURN, [0.0, 0.0]]), atol=1e-6)
    # it is a good forecast: one step ahead within a few hundredths of the simulated pole
    assert abs(plain.position[0, POLE] - position[now + 1, POLE]) < 0.05
    # encoded as received, the turned pole is far outside what the encoder saw
    raw = predict_tick(runtime, _state(position[now], velocity[now], 1), effort[now], 10)
    raw_error = abs(raw.position[0, POLE] - 2 * math.pi - position[now + 1, POLE])
    assert raw_error > 10 * abs(plain.position[0, POLE] - position[now + 1, POLE]), raw_error


def test_tracker_judges_a_turned_pole_as_it_judges_the_same_motion(runtime, trajectory):
    position, velocity, effort = trajectory

    def run(turns, wrap):
        tracker = ModelTracker(runtime, MonitorConfig(error_step=3), input_timeout=0.5, wrap_joints=wrap)
        for i in range(len(effort)):
            t = 0.02 * i
            tracker.observe_input(t, effort[i])
            tracker.observe_state(t, position[i] + turns * TURN, velocity[i])
            result = tracker.tick(8)
        return result.report.values

    wrapped, plain, raw = run(1, (POLE,)), run(0, (POLE,)), run(1, ())
    assert wrapped['evaluations'] == plain['evaluations'] > 20
    assert wrapped['prediction_error'] == pytest.approx(plain['prediction_error'], rel=1e-4)
    assert raw['prediction_error'] > 10 * plain['prediction_error']


def test_wrap_joints_must_be_joints_of_the_model(runtime, trajectory):
    position, velocity, effort = trajectory
    with pytest.raises(ValueError, match='wrap_joints'):
        predict_tick(runtime, _state(position[0], velocity[0]), effort[0], 4, wrap_joints=(2,))
    with pytest.raises(ValueError, match='wrap_joints'):
        ModelTracker(runtime, wrap_joints=(-1,))
