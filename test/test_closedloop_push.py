"""Humanoid push trials: real MuJoCo, real Pinocchio balance, the shipped humanoid model through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hamwm_ros.closedloop.push import PushConfig, PushLoop

MODEL = Path(__file__).resolve().parent.parent / 'models' / 'humanoid'


def test_pd_baseline_survives_a_small_push_and_falls_under_a_large_one():
    loop = PushLoop(PushConfig(after_s=1.0), None)
    small = loop.trial('pd', 50.0, 0.0, seed=0, record=True)
    large = loop.trial('pd', 1500.0, 0.0, seed=0)
    assert small.survived and small.max_tilt_deg < 15.0
    # on flat feet the Pinocchio ZMP (push removed as a known external wrench) follows MuJoCo's contact CoP
    gap = np.asarray(small.trace['zmp']) - np.asarray(small.trace['cop'])
    assert np.sqrt(np.nanmean(gap ** 2)) < 0.015
    assert not large.survived
    found = PushLoop(PushConfig(after_s=1.0, bisection_steps=3, force_high=800.0), None).largest_push('pd', 0.0)
    assert 50.0 <= found['force_n'] < found['failed_force_n'] <= 800.0
    assert found['impulse_ns'] == pytest.approx(found['force_n'] * 0.1)
    with pytest.raises(ValueError):
        loop.trial('mppi', 10.0, 0.0)        # no model given


def test_mppi_trial_plans_on_the_world_model_and_records_balance():
    if not (MODEL / 'metadata.json').is_file():
        pytest.skip('models/humanoid is missing: run `hamwm models`')
    loop = PushLoop(PushConfig(settle_s=0.1, after_s=0.3, num_samples=32), MODEL)
    result = loop.trial('mppi', 60.0, 90.0, seed=1, record=True)
    assert result.survived
    assert result.ticks == 20 and len(result.plan_ms) == 20 and result.fallback_ticks == 0
    trace = result.trace
    correction = trace['correction']
    bound = loop.config.correction_fraction * loop.sim.effort_limits
    assert np.all(np.abs(correction) <= bound + 1e-5) and np.abs(correction).max() > 0.0
    assert np.all(np.isfinite(trace['predicted'])) and trace['predicted'].shape == (20, loop.runtime.horizon, 24)
    assert np.all(np.isfinite(trace['zmp'])) and np.all(trace['margin'][:5] > 0.0)
