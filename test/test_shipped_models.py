"""The shipped models in models/: they load through the runtime, validate, match their robot and roll out finitely.

Regenerate them with ``hamwm models`` (``make models``). The whole module skips, with that instruction, only when
models/ holds no model at all; a model missing from a non-empty models/ is a failure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hamwm_ros.runtime import SessionConfig, WorldModelRuntime, load_metadata
from hamwm_ros.sim import parse_urdf_joints, robot_urdf_path

MODELS = Path(__file__).resolve().parent.parent / 'models'
SHIPPED = {'pendulum': 'pendulum', 'cartpole': 'cartpole', 'acrobot': 'acrobot', 'humanoid': 'humanoid',
           'pendulum_camera': 'pendulum'}
MAX_DIR_BYTES = 5 * 1024 * 1024
CPU = SessionConfig(providers=('cpu',), intra_op_threads=1)

if not any((MODELS / name / 'metadata.json').is_file() for name in SHIPPED):
    pytest.skip('models/ holds no shipped model: run `hamwm models` (make models) to generate them',
                allow_module_level=True)


@pytest.fixture(scope='module', params=sorted(SHIPPED))
def shipped(request):
    name = request.param
    directory = MODELS / name
    assert (directory / 'metadata.json').is_file(), f'{directory} is missing: run `hamwm models --only {name}`'
    urdf_joints = parse_urdf_joints(robot_urdf_path(SHIPPED[name])).names
    return name, directory, WorldModelRuntime.load(directory, joint_names=urdf_joints, config=CPU)


def test_metadata_is_complete(shipped):
    name, directory, wm = shipped
    meta = load_metadata(directory)
    assert meta.robot == SHIPPED[name]
    assert meta.training['data_hash'].startswith('sha256:') and not meta.training.get('quick')
    assert max(meta.metrics['export_parity']['rel_error'].values()) <= 1e-4
    held_out = meta.metrics['held_out']
    assert held_out['finite'] and held_out['windows'] > 0
    assert set(held_out['mse_normalised']) >= {'1', '10', '32'}
    assert (meta.images is not None) == (name == 'pendulum_camera')
    # every model carries the energy books of its validation data (the monitor judges against them)
    calibration = meta.energy_calibration
    assert calibration is not None and calibration.steps[0] == 1 and calibration.limits[0] > 0
    assert list(calibration.limits) == sorted(calibration.limits)
    assert sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) < MAX_DIR_BYTES


def test_a_selected_model_records_its_closed_loop_choice(shipped):
    from hamwm_ros.worldmodel.shipped import RECIPES

    name, directory, _ = shipped
    selection = RECIPES[name].selection
    record = load_metadata(directory).metrics.get('selection')
    if selection is None:
        assert record is None
        return
    seeds = [c['seed'] for c in record['candidates']]
    assert seeds == selection.seeds(RECIPES[name].seed)[:len(seeds)]        # tried in the recipe's order
    best = max(c['balanced'] for c in record['candidates'])
    chosen = next(c for c in record['candidates'] if c['balanced'] == best)  # the earliest of the best
    assert record['chosen_seed'] == chosen['seed'] == load_metadata(directory).training['data']['seed']
    assert chosen['episodes'] == selection.trials and sum(chosen['by_latency'].values()) == chosen['balanced']
    # shipped only after balancing every validation episode, undelayed and at 50 ms
    assert chosen['balanced'] == chosen['episodes']


def test_predicts_better_than_holding_still(shipped):
    """The recorded held-out error at 32 steps is below the hold-last-state baseline's."""
    name, directory, _ = shipped
    held_out = load_metadata(directory).metrics['held_out']
    assert held_out['mse_normalised']['32'] < held_out['hold_baseline_mse_normalised']['32'], name


def test_rolls_out_finite_predictions(shipped):
    name, _, wm = shipped
    meta = wm.metadata
    rng = np.random.default_rng(0)
    batch, steps = 16, 2 * meta.horizon + 3  # chained calls plus a truncated one
    n = len(meta.joint_names)
    mean, std = np.asarray(meta.normalisation['obs_mean']), np.asarray(meta.normalisation['obs_std'])
    obs = mean + 0.5 * std * rng.normal(size=(batch, meta.obs_dim))
    frames = None
    if meta.images is not None:
        i = meta.images
        frames = rng.integers(0, 256, (batch, i.frames, i.height, i.width, i.channels), dtype=np.uint8)
    z = wm.encode(obs[:, :n], obs[:, n:], frames)
    actions = rng.normal(size=(batch, steps, meta.action_dim)) * np.asarray(meta.normalisation['action_std'])
    out = wm.rollout(z, actions)
    assert out.latent.shape == (batch, steps, meta.latent_dim)
    assert out.position.shape == (batch, steps, n) and out.energy.shape == (batch, steps)
    assert np.all(np.isfinite(out.latent)) and np.all(np.isfinite(out.observations))
    assert np.all(np.isfinite(out.energy))
    # predictions stay in a physically plausible range: within 10 standard deviations of the training data
    assert np.all(np.abs(out.observations - mean) < 10 * std + 1e-6), name


def test_predictor_graph_is_lean(shipped):
    """Every shipped model has constant mass, input map and damping: the exported step is ~15 nodes, not ~130."""
    import onnx

    _, directory, wm = shipped
    graph = onnx.load(str(directory / 'predictor.onnx')).graph
    nodes = [n.op_type for n in graph.node if n.op_type != 'Constant']
    assert len(nodes) <= 20 * wm.metadata.horizon
    assert wm.metadata.training['model_config']['damping_map'] == 'constant'


def test_held_out_windows_start_with_the_pole_wrapped_as_the_controller_encodes_it():
    """Held-out windows start with the pole wrapped to [-pi, pi): a pole turned over is the same physical state.

    The recorded error does not change when the whole trajectory is shifted by a turn, while encoding it raw does.
    """
    from hamwm_ros.worldmodel.data import TrajectoryData, load_sim
    from hamwm_ros.worldmodel.shipped import RECIPES, evaluate_runtime

    recipe = RECIPES['cartpole']
    assert recipe.wrap_joints == (1,)
    runtime = WorldModelRuntime.load(MODELS / 'cartpole', config=CPU)
    data = load_sim('cartpole', 2, 40, recipe.control_dt, seed=4)
    turned = TrajectoryData([o + np.array([0.0, 2.0 * np.pi, 0.0, 0.0]) for o in data.obs], data.actions, data.dt,
                            data.joint_names, data.action_names)
    kwargs = {'horizons': (1, 10), 'stride': 5}
    wrapped = evaluate_runtime(runtime, data, wrap_joints=recipe.wrap_joints, **kwargs)
    wrapped_turned = evaluate_runtime(runtime, turned, wrap_joints=recipe.wrap_joints, **kwargs)
    raw_turned = evaluate_runtime(runtime, turned, **kwargs)
    assert wrapped['windows'] == wrapped_turned['windows'] == 14   # 2 trajectories x 7 starts
    for h in ('1', '10'):
        assert wrapped_turned['mse_normalised'][h] == pytest.approx(wrapped['mse_normalised'][h], rel=1e-5)
        assert wrapped['mse_normalised'][h] < wrapped['hold_baseline_mse_normalised'][h]
    # a turn outside the training angles is what the raw encoding gets wrong
    assert raw_turned['mse_normalised']['1'] > 10 * wrapped['mse_normalised']['1']
