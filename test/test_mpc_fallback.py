"""PD hold fallback: holds the posture on a real pendulum, clamps, never emits non-finite effort."""

import numpy as np
import pytest

from hamwm_ros.mpc.analytic import Pendulum
from hamwm_ros.mpc.fallback import PDHoldFallback


def test_holds_a_nominal_posture_on_the_pendulum_with_gravity_feedforward():
    p = Pendulum(damping=0.1)
    target = 0.5
    ff = lambda q, v: np.array([p.upright_energy * np.sin(q[0])])  # noqa: E731 - gravity compensation
    hold = PDHoldFallback([target], kp=20.0, kd=5.0, effort_limits=[10.0], feedforward=ff)
    x = np.array([-0.4, 1.0])
    for _ in range(200):
        x = p.step(x, hold.command(x[:1], x[1:]))
    assert x[0] == pytest.approx(target, abs=1e-3) and abs(x[1]) < 1e-3


def test_clamped_to_effort_limits():
    hold = PDHoldFallback([0.0, 0.0], kp=[100.0, 1.0], kd=0.0, effort_limits=[5.0, 5.0])
    tau = hold.command(np.array([1.0, 1.0]), np.zeros(2))
    assert tau.tolist() == [-5.0, -1.0]


def test_non_finite_inputs_and_feedforward_never_reach_the_command():
    def broken_ff(q, v):
        raise RuntimeError('model file gone')

    hold = PDHoldFallback([0.0, 0.0], kp=10.0, kd=1.0, effort_limits=[3.0, 3.0], feedforward=broken_ff)
    tau = hold.command(np.array([np.nan, 0.1]), np.array([0.0, np.inf]))
    assert np.isfinite(tau).all()
    assert tau[0] == 0.0 and tau[1] == pytest.approx(-1.0)  # joint 1: PD on its finite position only
    hold.feedforward = lambda q, v: np.array([np.nan, 1.0])
    assert hold.command(np.zeros(2), np.zeros(2)).tolist() == [0.0, 1.0]


def test_bad_configuration_refused():
    with pytest.raises(ValueError, match='kp'):
        PDHoldFallback([0.0], kp=-1.0, kd=0.0, effort_limits=[1.0])
    with pytest.raises(ValueError, match='effort_limits'):
        PDHoldFallback([0.0], kp=1.0, kd=0.0, effort_limits=[0.0])
    with pytest.raises(ValueError, match='expected'):
        PDHoldFallback([0.0], kp=1.0, kd=0.0, effort_limits=[1.0]).command(np.zeros(2), np.zeros(2))
