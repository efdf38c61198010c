"""SmoothnessCritic: penalises action changes only (level-independent), including the jump from the last command."""

import numpy as np
import pytest

from hamwm_ros.mpc.critics.base import CriticContext, CriticError
from hamwm_ros.mpc.critics.smoothness import SmoothnessCritic


def test_constant_sequence_at_previous_command_is_free_at_any_level():
    critic = SmoothnessCritic()
    for level in (0.0, 3.0, -7.0):
        u = np.full((1, 6, 1), level, np.float32)
        assert critic.score(CriticContext.from_arrays(actions=u, previous_action=[level]))[0] == 0.0


def test_jump_from_previous_command_and_within_sequence_cost():
    critic = SmoothnessCritic(scale=2.0)
    u = np.zeros((2, 4, 1), np.float32)
    u[0] = 1.0               # one jump of 1 from the previous command 0
    u[1, 2:] = 1.0           # one jump of 1 inside the sequence
    cost = critic.score(CriticContext.from_arrays(actions=u, previous_action=[0.0]))
    assert cost[0] == pytest.approx(cost[1])
    assert cost[0] == pytest.approx((1.0 / 2.0) ** 2 / 4)


def test_bang_bang_costs_more_than_ramp():
    critic = SmoothnessCritic()
    bang = np.array([1, -1, 1, -1], np.float32)
    ramp = np.linspace(0, 1, 4, dtype=np.float32)
    cost = critic.score(CriticContext.from_arrays(actions=np.stack([bang, ramp])[..., None]))
    assert cost[0] > 10 * cost[1]
    with pytest.raises(CriticError):
        SmoothnessCritic(scale=-1.0)
