"""``hamwm eval`` end to end on tiny budgets, plus the adapter around the project's world model."""

import json

import numpy as np
import pytest
import torch

from hamwm_ros import cli
from hamwm_ros.worldmodel import evaluate
from hamwm_ros.worldmodel.baselines import fit_derivatives
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
    assert evaluate.main(['horizons', '--quick', '--tasks', 'cartpole', '--out', str(tmp_path / 'hz')]) == 0
    hz = json.loads((tmp_path / 'hz' / 'results.json').read_text())['results']['cartpole']
    assert set(hz['methods']) == {'mlp', 'gru', 'hnn', 'ours'}
    assert set(hz['methods']['ours']['mse']) == {'1', '10'}
    assert 0.0 <= hz['methods']['ours']['picp95']['1'] <= 1.0


def test_bad_arguments():
    with pytest.raises(SystemExit) as err:
        evaluate.main(['no-such-suite'])
    assert err.value.code == 2
    assert evaluate.main(['hnn-table', '--quick', '--tasks', 'trebuchet', '--out', '/tmp/hamwm-eval-bad']) == 2


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
