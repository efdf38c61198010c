"""``hamwm models --quick``: the command that makes the shipped models, end to end at smoke-test size.

Real MuJoCo, torch and onnxruntime; the numbers mean nothing, the files and records must be complete.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hamwm_ros.runtime import SessionConfig, WorldModelRuntime, load_metadata
from hamwm_ros.sim import parse_urdf_joints, robot_urdf_path
from hamwm_ros.worldmodel.shipped import RECIPES, main


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
