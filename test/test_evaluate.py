"""``hamwm eval`` end to end on tiny budgets, plus the adapter around the project's world model."""

import json

import numpy as np
import pytest
import torch

from hamwm_ros import cli
from hamwm_ros.worldmodel import evaluate
from hamwm_ros.worldmodel.baselines import fit_derivatives, fit_rollouts
from hamwm_ros.worldmodel.systems import hnn_dataset, make_system

torch.set_num_threads(1)


def test_hnn_table_quick_writes_json_and_table(tmp_path):
    out = tmp_path / 'hnn'
    assert cli.main(['eval', 'hnn-table', '--quick', '--seed', '3', '--out', str(out)]) == 0
    report = json.loads((out / 'results.json').read_text())
    assert report['suite'] == 'hnn-table' and report['quick'] is True and report['seed'] == 3
    summary = report['results']['summary']
    assert set(summary) == {'mass_spring', 'pendulum', 'pixel_pendulum', 'double_pendulum'}
    for task, row in summary.items():
        assert row['paper_hnn'] == evaluate.PAPER[task]['hnn']
        for method in ('mlp', 'hnn', 'ours'):
            assert isinstance(row[method], (float, str))
    assert summary['double_pendulum']['metric'] == 'median_relative_drift'
    tasks = report['results']['tasks']
    assert len(tasks['double_pendulum']['ours']['drifts']) == evaluate.Budget.quick().eval_trials
    assert '| mass_spring |' in (out / 'table.md').read_text()


def test_other_suites_quick(tmp_path):
    assert evaluate.main(['sample-efficiency', '--quick', '--tasks', 'damped_pendulum', '--out',
                          str(tmp_path / 'se')]) == 0
    se = json.loads((tmp_path / 'se' / 'results.json').read_text())['results']['damped_pendulum']
    assert se['trajectories'] == list(evaluate.Budget.quick().se_budgets)
    assert len(se['error']['mlp']) == len(se['error']['ours']) == len(se['trajectories'])
    assert se['learned_damping']['true'] == pytest.approx(0.1)
    assert se['ours_substeps'] == 1
    assert se['rollout_horizon'] == {'mlp': 4, 'ours': 4, 'mlp_priors': 4}
    assert evaluate.main(['horizons', '--quick', '--tasks', 'cartpole', '--out', str(tmp_path / 'hz')]) == 0
    hz = json.loads((tmp_path / 'hz' / 'results.json').read_text())['results']['cartpole']
    assert set(hz['methods']) == {'mlp', 'gru', 'hnn', 'ours'}
    assert hz['ours_substeps'] == evaluate.OURS_SUBSTEPS['cartpole'] == 4    # as the sample-efficiency suite's
    assert hz['rollout_horizon'] == {'mlp': 4, 'gru': 4, 'hnn': 4, 'ours': evaluate.OURS_ROLLOUT_HORIZON['cartpole']}
    assert set(hz['methods']['ours']['mse']) == {'1', '10'}
    assert 0.0 <= hz['methods']['ours']['picp95']['1'] <= 1.0


def test_bad_arguments():
    with pytest.raises(SystemExit) as err:
        evaluate.main(['no-such-suite'])
    assert err.value.code == 2
    assert evaluate.main(['hnn-table', '--quick', '--tasks', 'trebuchet', '--out', '/tmp/hamwm-eval-bad']) == 2


def test_rollout_horizon_reaches_every_methods_training(tmp_path, capsys):
    # 50-step training trajectories (51 states) cannot hold a 51-step window: the override reached fit_rollouts.
    args = ['sample-efficiency', '--quick', '--tasks', 'damped_pendulum', '--methods', 'mlp', '--out', str(tmp_path)]
    assert evaluate.main([*args, '--rollout-horizon', '51']) == 2
    assert 'too short for horizon 51' in capsys.readouterr().err
    assert evaluate.main([*args, '--rollout-horizon', '0']) == 2
    assert evaluate.main([*args, '--rollout-horizon', '6']) == 0
    result = json.loads((tmp_path / 'results.json').read_text())['results']['damped_pendulum']
    assert result['rollout_horizon'] == {'mlp': 6}
    assert evaluate.rollout_horizon('ours', 'cartpole') == 8 and evaluate.rollout_horizon('mlp', 'cartpole') == 4
    assert evaluate.rollout_horizon('ours', 'cartpole', override=3) == 3


def test_ours_learns_spring_field_and_conserves_energy():
    # The adapter trains the project's model on the paper's data; its leapfrog rollout keeps the true energy.
    torch.manual_seed(0)
    system = make_system('mass_spring')
    data = hnn_dataset(system, seed=0)
    model = evaluate.Ours(2, 0, dt=0.1, hidden=32, substeps=10)
    fit_derivatives(model, model.field, data['x'], data['dx'], steps=400, lr=3e-3)
    x0 = np.array([[0.6, 0.0], [0.0, -0.4]])
    pred = evaluate.simulate(model, x0, np.zeros((2, 300, 0)), 0.1)
    energy = system.hamiltonian(pred)
    assert np.all(np.isfinite(pred))
    assert np.abs(energy - system.hamiltonian(x0)[:, None]).max() < 0.1 * system.hamiltonian(x0).max()
    with pytest.raises(ValueError):
        model.rollout(torch.zeros(1, 2), torch.zeros(1, 3, 0), dt=0.05)


def test_spread_calibration_is_fitted_on_validation_not_test(monkeypatch):
    made, fitted = {}, []
    real_data, real_fit = evaluate._control_data, evaluate.metrics.fit_spread_calibration

    def spy_data(system, n, steps, seed):
        made[seed] = real_data(system, n, steps, seed)
        return made[seed]

    def spy_fit(members, target, *args, **kwargs):
        fitted.append(target)
        return real_fit(members, target, *args, **kwargs)

    monkeypatch.setattr(evaluate, '_control_data', spy_data)
    monkeypatch.setattr(evaluate.metrics, 'fit_spread_calibration', spy_fit)
    monkeypatch.setattr(evaluate, 'HORIZON_METHODS', ('ours',))
    out = evaluate.suite_horizons(evaluate.Budget.quick(), 0, ['cartpole'])['cartpole']['methods']['ours']
    assert len(fitted) == 1
    np.testing.assert_array_equal(fitted[0], made[6000]['states'][:, 1:])  # validation seed
    test = made[7000]['states'][:, 1:]
    assert fitted[0].shape != test.shape or not np.allclose(fitted[0], test)
    assert out['spread_calibration']['info']['data'] == 'validation trajectories'
    assert set(out['picp95']) == set(out['picp95_raw']) == set(out['spread_factor']) == {'1', '10'}


def test_overconfident_ensemble_is_widened_toward_nominal():
    # Members that differ only by initialisation and see identical batches (no bootstrap) are over-confident; the
    # calibration fitted on validation trajectories widens them and the test coverage rises toward 95 %.
    system = make_system('damped_pendulum')
    data = evaluate.rollout_dataset(system, 4, 40, 0.05, seed=0, action_scale=1.0)
    val = evaluate.rollout_dataset(system, 8, 30, 0.05, seed=1, action_scale=1.0)
    test = evaluate.rollout_dataset(system, 8, 30, 0.05, seed=2, action_scale=1.0)
    torch.manual_seed(0)
    model = evaluate.Ours(2, 1, dt=0.05, hidden=16, dissipation=True, ensemble=3)
    fit_rollouts(lambda x, a: model.rollout(x, a), model.parameters(), data['states'], data['actions'], horizon=4,
                 steps=40, lr=3e-3, batch_size=64)
    model.eval()
    horizons = (1, 10, 30)
    before = evaluate.ensemble_picp(model, test['states'][:, 0], test['actions'], test['states'][:, 1:], horizons)
    assert not before['calibrated']  # no calibration yet
    cal = evaluate.calibrate_ensemble(model, val)
    assert min(cal['factors']) > 1.0
    after = evaluate.ensemble_picp(model, test['states'][:, 0], test['actions'], test['states'][:, 1:], horizons)
    for h in ('1', '10', '30'):
        assert after['factor'][h] > 1.0
        assert after['raw'][h] < 0.8
        assert after['calibrated'][h] > after['raw'][h]
        assert abs(after['calibrated'][h] - 0.95) < abs(after['raw'][h] - 0.95)


def test_damping_prior_pulls_spurious_damping_to_zero():
    system = make_system('pendulum')
    data = evaluate._control_data(system, 4, 40, 0)
    traces = {}
    for weight in (0.0, 1e-2):
        torch.manual_seed(0)
        model = evaluate.Ours(2, 0, dt=0.05, hidden=16, dissipation=True, damping_param='square')
        with torch.no_grad():
            model.model.damping_raw.fill_(0.2)  # start with clearly spurious damping (D = 0.04)
        assert float(model.damping_trace().detach()) == pytest.approx(0.04, rel=1e-5)
        fit_rollouts(lambda x, u, m=model: m.rollout(x, u, 0.05), model.parameters(), data['states'], data['actions'],
                     horizon=4, steps=150, lr=1e-2, penalty=(lambda m=model, w=weight: w * m.damping_trace()))
        traces[weight] = float(model.damping_trace().detach())
    assert traces[1e-2] < 1e-4
    assert traces[1e-2] < 0.5 * traces[0.0]
    assert float(evaluate.Ours(2, 0, dt=0.05, dissipation=False).damping_trace()) == 0.0
