"""Critic base: weight validation and the horizon weighting helper."""

import math

import numpy as np
import pytest

from hamwm_ros.mpc.critics.base import Critic, CriticContext, CriticError, check_nonnegative, horizon_weights


class Constant(Critic):
    name = 'constant'

    def score(self, ctx: CriticContext) -> np.ndarray:
        return np.ones(ctx.actions.shape[0])


@pytest.mark.parametrize('bad', [-0.1, math.nan, math.inf])
def test_bad_weight_refused_and_old_kept(bad):
    critic = Constant(2.0)
    with pytest.raises(CriticError, match='weight'):
        critic.weight = bad
    assert critic.weight == 2.0
    with pytest.raises(CriticError):
        Constant(bad)


def test_horizon_weights_mean_plus_terminal():
    w = horizon_weights(4, 0.5)
    assert w.tolist() == pytest.approx([0.25, 0.25, 0.25, 0.75])


def test_check_nonnegative_names_the_value():
    with pytest.raises(CriticError, match='terminal_weight'):
        check_nonnegative('x', terminal_weight=-1.0)
    check_nonnegative('x', a=0.0, b=3.0)
