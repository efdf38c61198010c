"""Rollout contract: shape checks, and BatchedRollout over a real onnxruntime session (single model and ensemble)."""

import numpy as np
from onnx import TensorProto, helper
import onnxruntime as ort
import pytest

from hamwm_ros.mpc.critics import EffortCritic, TrackingCritic
from hamwm_ros.mpc.optimizer import MPPIOptimizer
from hamwm_ros.mpc.rollout import BatchedRollout, Rollout, RolloutShapeError, check_rollout
from hamwm_ros.mpc.settings import MPPISettings


@pytest.fixture(scope='module')
def session():
    """A real ONNX graph with the predictor contract.

    An integrator z_t = z + sum_{s<=t} u_s (broadcast over z's dims), obs = 2 z, energy = |z|^2 / 2. It accepts
    z (B, n) or (E, B, n): z's rank is left open, so the graph is checked by onnxruntime at session creation.
    """
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node('CumSum', ['actions', 'axis1'], ['cs']),
        helper.make_node('Unsqueeze', ['z', 'axis_m2'], ['zu']),
        helper.make_node('Add', ['zu', 'cs'], ['z_seq']),
        helper.make_node('Mul', ['z_seq', 'two'], ['obs_seq']),
        helper.make_node('Mul', ['z_seq', 'z_seq'], ['sq']),
        helper.make_node('ReduceSum', ['sq', 'axis_m1'], ['ssum'], keepdims=0),
        helper.make_node('Mul', ['ssum', 'half'], ['energy']),
    ]
    inits = [
        helper.make_tensor('axis1', TensorProto.INT64, [], [1]),
        helper.make_tensor('axis_m2', TensorProto.INT64, [1], [-2]),
        helper.make_tensor('axis_m1', TensorProto.INT64, [1], [-1]),
        helper.make_tensor('two', f, [], [2.0]),
        helper.make_tensor('half', f, [], [0.5]),
    ]
    graph = helper.make_graph(
        nodes, 'integrator', [helper.make_tensor_value_info('z', f, None),
                              helper.make_tensor_value_info('actions', f, [None, None, 1])],
        [helper.make_tensor_value_info(n, f, None) for n in ('z_seq', 'obs_seq', 'energy')], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])


def predictor(session):
    return lambda z, a: Rollout(*session.run(['z_seq', 'obs_seq', 'energy'], {'z': z, 'actions': a}))


def test_broadcasts_the_single_state_and_matches_the_graph_math(session):
    rollout = BatchedRollout(predictor(session))
    actions = np.random.default_rng(0).standard_normal((4, 5, 1)).astype(np.float32)
    z0 = np.array([1.0, -2.0, 0.5], np.float32)
    out = rollout(z0, actions)
    expected = z0 + np.cumsum(actions, axis=1)
    np.testing.assert_allclose(out.latent, expected, rtol=1e-5)
    np.testing.assert_allclose(out.observations, 2 * expected, rtol=1e-5)
    np.testing.assert_allclose(out.energy, 0.5 * (expected**2).sum(-1), rtol=1e-5)


def test_ensemble_members_are_averaged(session):
    rollout = BatchedRollout(predictor(session))
    actions = np.ones((2, 3, 1), np.float32)
    members = np.array([[0.0, 0.0], [2.0, 4.0]], np.float32)  # (E, n)
    out = rollout(members, actions)
    assert out.latent.shape == (2, 3, 2) and out.energy.shape == (2, 3)
    np.testing.assert_allclose(out.latent, members.mean(0) + np.cumsum(actions, 1), rtol=1e-6)
    member_energy = 0.5 * ((members[:, None, None, :] + np.cumsum(actions, 1)) ** 2).sum(-1)
    np.testing.assert_allclose(out.energy, member_energy.mean(0), rtol=1e-6)


def test_optimizer_plans_over_the_onnx_graph(session):
    s = MPPISettings(action_low=-2.0, action_high=2.0, num_samples=128, horizon=6, temperature=0.05, noise_std=0.5,
                     iterations=3, seed=0)
    opt = MPPIOptimizer(s, BatchedRollout(predictor(session)),
                        [TrackingCritic([0.0, 0.0], weight=1.0), EffortCritic(0.001)])
    z0 = np.array([1.0, 1.0], np.float32)
    for _ in range(10):
        result = opt.plan(z0, shift=0)
    assert result.valid
    assert result.command[0] == pytest.approx(-1.0, abs=0.15)  # one step cancels the offset, then hold
    assert np.abs(result.predicted_observations[1:]).max() < 0.3


def test_check_rollout_refuses_wrong_shapes():
    good = Rollout(np.zeros((2, 3, 4)), np.zeros((2, 3, 1)), np.zeros((2, 3)))
    assert check_rollout(good, 2, 3) is good
    with pytest.raises(RolloutShapeError, match='energy'):
        check_rollout(Rollout(good.latent, good.observations, np.zeros((2, 4))), 2, 3)
    with pytest.raises(RolloutShapeError, match='lacks'):
        check_rollout(object(), 2, 3)
    with pytest.raises(ValueError, match='member_reduce'):
        BatchedRollout(lambda z, a: good, member_reduce='max')


def test_from_runtime_plans_over_an_exported_world_model(tmp_path):
    """Integration: a HamiltonianWorldModel exported by hamwm_ros.worldmodel, loaded by hamwm_ros.runtime."""
    torch = pytest.importorskip('torch')
    from hamwm_ros.runtime import SessionConfig, WorldModelRuntime
    from hamwm_ros.worldmodel.export import export_model
    from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig

    torch.manual_seed(0)
    model = HamiltonianWorldModel(ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, hidden=16, mass_matrix='constant',
                                              dt=0.02)).eval()
    export_model(model, tmp_path, robot='cartpole', joint_names=['slider', 'hinge'], horizon=8,
                 training={'data_hash': 'test', 'source': 'random init'}, include_checkpoint=False)
    runtime = WorldModelRuntime.load(tmp_path, config=SessionConfig(providers=('cpu',), intra_op_threads=1))
    z0 = runtime.encode(np.array([[0.1, 0.2]], np.float32), np.zeros((1, 2), np.float32))[0]
    rollout = BatchedRollout.from_runtime(runtime)
    actions = np.random.default_rng(0).uniform(-1, 1, (16, 8, 1)).astype(np.float32)
    out = rollout(z0, actions)
    with torch.no_grad():
        z_seq = model.rollout(torch.from_numpy(np.repeat(z0[None], 16, 0)), torch.from_numpy(actions))
    np.testing.assert_allclose(out.latent, z_seq.numpy(), rtol=1e-4, atol=1e-5)

    s = MPPISettings(action_low=-1.0, action_high=1.0, num_samples=16, horizon=8, noise_std=0.5, seed=0)
    opt = MPPIOptimizer(s, rollout, [TrackingCritic(np.zeros(4)), EffortCritic(0.1)])
    result = opt.plan(z0)
    assert result.valid and result.finite_fraction == 1.0 and abs(result.command[0]) <= 1.0
