"""``hamwm models --quick``: the command that makes the shipped models, end to end at smoke-test size.

Real MuJoCo, torch and onnxruntime; the numbers mean nothing, the files and records must be complete.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hamwm_ros.runtime import SessionConfig, WorldModelRuntime, load_metadata
from hamwm_ros.sim import parse_urdf_joints, robot_urdf_path
from hamwm_ros.worldmodel.shipped import RECIPES, main, select_candidate


def test_quick_cartpole_is_trained_exported_evaluated_and_listed(tmp_path, capsys):
    assert main(['--quick', '--only', 'cartpole', '--out', str(tmp_path)]) == 0
    directory = tmp_path / 'cartpole'
    assert sorted(p.name for p in directory.iterdir()) == ['encoder.onnx', 'metadata.json', 'model.pt',
                                                           'predictor.onnx']
    meta = load_metadata(directory)
    recipe = RECIPES['cartpole']
    assert meta.robot == 'cartpole' and meta.training['quick'] is True
    assert meta.training['command'] == 'hamwm models --quick --only cartpole'
    assert meta.training['data']['seed'] == recipe.seed and meta.training['data_hash'].startswith('sha256:')
    # The closed-loop choice among training draws ran at smoke-test size: two candidates (quick models balance
    # nothing in 2 s episodes, so both were built and judged), the earliest kept, the scratch directory removed.
    selection = meta.metrics['selection']
    assert [c['seed'] for c in selection['candidates']] == [recipe.seed, recipe.seed + 100]
    assert all(c['balanced'] == 0 and c['episodes'] == 2 for c in selection['candidates'])
    assert selection['chosen_seed'] == recipe.seed and selection['episode_seeds'] == [100, 100]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
    held_out = meta.metrics['held_out']
    assert held_out['windows'] > 0 and held_out['finite']
    assert held_out['data']['seed'] == recipe.seed + 1000
    assert held_out['data']['wrapped_joints'] == ['pole_hinge']      # recorded as the controller encodes it
    assert set(held_out['mse_normalised']) == {'1', '10', '32', '100'}
    assert all(np.isfinite(v) and v >= 0 for v in held_out['mse_normalised'].values())
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= 1e-4
    # loads through the runtime in the robot's own joint order, and the README lists it as not for use
    names = parse_urdf_joints(robot_urdf_path('cartpole')).names
    runtime = WorldModelRuntime.load(directory, joint_names=names, config=SessionConfig(providers=('cpu',)))
    assert runtime.metadata.latent_dim == 2 * recipe.model['latent_dim']
    readme = (tmp_path / 'README.md').read_text()
    assert '| cartpole (quick) | cartpole |' in readme
    assert 'wrote cartpole' in capsys.readouterr().out
    json.dumps(meta.to_dict())   # the record is plain JSON


def test_unknown_model_is_refused():
    with pytest.raises(SystemExit):
        main(['--only', 'no_such_model'])


class Draws:
    """Plain stand-ins for building and judging candidates: a fixed number of balanced episodes per seed."""

    def __init__(self, balanced):
        self.balanced, self.built = balanced, []

    def build(self, seed):
        self.built.append(seed)
        return seed

    def judge(self, seed):
        return {'balanced': self.balanced[seed], 'episodes': 20}


def test_selection_stops_at_the_first_candidate_that_balances_every_episode():
    draws = Draws({1: 12, 2: 20, 3: 20})
    chosen, records = select_candidate([1, 2, 3], draws.build, draws.judge, trials=20)
    assert draws.built == [1, 2] and chosen == 1 and records[chosen]['seed'] == 2


def test_selection_without_a_perfect_candidate_keeps_the_earliest_of_the_best():
    draws = Draws({1: 3, 2: 15, 3: 15, 4: 0})
    chosen, records = select_candidate([1, 2, 3, 4], draws.build, draws.judge, trials=20)
    assert draws.built == [1, 2, 3, 4] and records[chosen]['seed'] == 2
    assert [r['balanced'] for r in records] == [3, 15, 15, 0]


def test_selection_needs_a_seed():
    with pytest.raises(ValueError, match='no candidate'):
        select_candidate([], Draws({}).build, Draws({}).judge, trials=1)
