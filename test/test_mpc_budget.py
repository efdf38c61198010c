"""hamwm_ros.mpc.budget: the start-up check of one predictor rollout against the planner period."""

import math

import pytest

from hamwm_ros.mpc.budget import MAX_TIMED_SAMPLES, WARN_FRACTION, planner_budget, timed_rollout


def test_a_rollout_well_inside_the_period_is_reported_not_warned():
    budget = planner_budget(0.005, 0.02, 128, 32)
    assert not budget.over and budget.fraction == pytest.approx(0.25)
    assert budget.message == ('planner budget: one predictor rollout of 128 samples x 32 steps takes 5.0 ms, 25 % '
                              'of the 20.0 ms planner period')


def test_over_budget_says_what_to_change():
    budget = planner_budget(0.019, 0.02, 512, 32, {'mass_matrix': 'constant', 'input_map': 'constant'})
    assert budget.over and budget.fraction > WARN_FRACTION
    assert 'lower mppi.num_samples or planner_rate' in budget.message
    assert 'hamwm train' not in budget.message          # already the lean kind of model: nothing to retrain


def test_over_budget_with_a_generic_model_names_the_flags_of_a_lean_one():
    budget = planner_budget(0.056, 0.02, 128, 32, {'mass_matrix': 'state', 'input_map': 'constant',
                                                   'damping_map': 'state'})
    assert budget.over and budget.fraction == pytest.approx(2.8)
    assert 'state-dependent mass_matrix, damping_map' in budget.message
    assert '`hamwm train --mass-matrix constant --damping-map constant`' in budget.message


def test_the_boundary_is_the_warn_fraction():
    assert not planner_budget(WARN_FRACTION * 0.02, 0.02, 1, 1).over
    assert planner_budget(WARN_FRACTION * 0.02 * 1.01, 0.02, 1, 1).over


@pytest.mark.parametrize('rollout, period, samples, horizon', [
    (0.0, 0.02, 1, 1), (math.nan, 0.02, 1, 1), (0.01, math.inf, 1, 1), (0.01, -0.02, 1, 1), (0.01, 0.02, 0, 1),
    (0.01, 0.02, 1, 0)])
def test_bad_figures_are_refused(rollout, period, samples, horizon):
    with pytest.raises(ValueError):
        planner_budget(rollout, period, samples, horizon)


def test_a_small_rollout_is_timed_as_it_is():
    plan = timed_rollout(128, 32, 32)
    assert (plan.samples, plan.steps, plan.scale, plan.estimated) == (128, 32, 1.0, False)
    plan = timed_rollout(512, 20, 32)            # shorter than the export horizon: one padded call, exactly
    assert (plan.samples, plan.steps, plan.scale) == (512, 20, 1.0)


def test_a_large_rollout_is_timed_small_and_scaled():
    plan = timed_rollout(65536, 1000, 32)
    assert (plan.samples, plan.steps) == (MAX_TIMED_SAMPLES, 32)
    assert plan.scale == pytest.approx(65536 / MAX_TIMED_SAMPLES * 32)   # 1000 steps = 32 chained calls of 32
    assert plan.estimated
    budget = planner_budget(0.004 * plan.scale, 0.02, 65536, 1000, timed=plan)
    assert budget.over and f'(scaled from a timed rollout of {MAX_TIMED_SAMPLES} samples x 32 steps)' in budget.message
    assert 'scaled' not in planner_budget(0.004, 0.02, 128, 32, timed=timed_rollout(128, 32, 32)).message


@pytest.mark.parametrize('sizes', [(0, 32, 32), (128, 0, 32), (128, 32, 0), (128, 32, 32, 0)])
def test_bad_sizes_are_refused(sizes):
    with pytest.raises(ValueError, match='sizes must be >= 1'):
        timed_rollout(*sizes)

