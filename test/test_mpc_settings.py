"""MPPISettings: defaults valid, bad values refused with reasons, replace/from_dict keep the old settings."""

import dataclasses
import math

import pytest

from hamwm_ros.mpc.settings import MPPISettings, SettingsError


def test_defaults_are_valid_and_derive_action_dim():
    s = MPPISettings(action_low=[-1, -2], action_high=[1, 2], noise_std=0.3)
    assert s.action_dim == 2
    assert s.action_low == (-1.0, -2.0)
    assert s.std.tolist() == pytest.approx([0.3, 0.3])


@pytest.mark.parametrize('changes, field', [
    (dict(num_samples=1), 'num_samples'),
    (dict(num_samples=2.5), 'num_samples'),
    (dict(horizon=0), 'horizon'),
    (dict(iterations=0), 'iterations'),
    (dict(temperature=0.0), 'temperature'),
    (dict(temperature=math.nan), 'temperature'),
    (dict(control_cost_weight=-1.0), 'control_cost_weight'),
    (dict(noise_std=0.0), 'noise_std'),
    (dict(noise_std=[0.1, 0.2]), 'noise_std'),
    (dict(noise_correlation=1.0), 'noise_correlation'),
    (dict(max_action_rate=0.0), 'max_action_rate'),
    (dict(max_action_rate=math.nan), 'max_action_rate'),
    (dict(smoothing='kalman'), 'smoothing'),
    (dict(smoothing_window=4), 'smoothing_window'),
    (dict(smoothing_order=5), 'smoothing_order'),
    (dict(update_perturbation='clipped'), 'update_perturbation'),
    (dict(max_retries=-1), 'max_retries'),
    (dict(include_nominal=1), 'include_nominal'),
    (dict(seed=-3), 'seed'),
    (dict(action_low=[1.0], action_high=[1.0]), 'action_low/action_high'),
    (dict(action_low=[-1.0, -1.0], action_high=[1.0]), 'action_low/action_high'),
    (dict(action_low=[-math.inf], action_high=[1.0]), 'action_low/action_high'),
    (dict(action_low=['a'], action_high=[1.0]), 'action_low'),
])
def test_bad_values_are_refused_with_the_field_named(changes, field):
    with pytest.raises(SettingsError, match=field.replace('/', '.')):
        MPPISettings(**changes)


def test_every_reason_is_reported_at_once():
    with pytest.raises(SettingsError) as info:
        MPPISettings(horizon=0, temperature=-1.0)
    assert 'horizon' in str(info.value) and 'temperature' in str(info.value)


def test_replace_validates_and_keeps_the_original():
    s = MPPISettings()
    with pytest.raises(SettingsError, match='temperature'):
        s.replace(temperature=-2.0)
    with pytest.raises(SettingsError, match='unknown'):
        s.replace(tempreature=2.0)
    assert s.temperature == 1.0
    t = s.replace(temperature=2.0)
    assert t.temperature == 2.0 and s.temperature == 1.0


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MPPISettings().horizon = 3


def test_dict_round_trip_and_unknown_keys():
    s = MPPISettings(action_low=[-2.0], action_high=[3.0], horizon=16, smoothing='savgol')
    assert MPPISettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingsError, match='unknown'):
        MPPISettings.from_dict({'horizon': 8, 'action_dim': 2})

