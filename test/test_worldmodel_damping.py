"""Damping parametrisation: the 'square' factor is PSD, can be exactly zero, and lets a lossless system learn none."""

import numpy as np
import pytest
import torch

from hamwm_ros.worldmodel import evaluate
from hamwm_ros.worldmodel.baselines import fit_rollouts
from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig
from hamwm_ros.worldmodel.systems import make_system, rollout_dataset

torch.set_num_threads(1)
DT = torch.float64


def _square(damping_map='constant', **kw):
    cfg = ModelConfig(obs_dim=6, action_dim=0, latent_dim=3, hidden=16, encoder='identity', control=False,
                      residual=False, mass_matrix='constant', damping_map=damping_map, damping_param='square', **kw)
    return HamiltonianWorldModel(cfg).double()


@pytest.mark.parametrize('damping_map', ['constant', 'state'])
def test_square_damping_starts_at_init_squared_and_stays_psd(damping_map):
    torch.manual_seed(0)
    model = _square(damping_map, damping_init=0.05)
    z = torch.randn(32, 6, dtype=DT)
    D = model.damping_matrix(z)
    expected = (2 if damping_map == 'state' else 1) * 0.05 ** 2 * torch.eye(3, dtype=DT)
    assert torch.allclose(D, expected.expand_as(D), atol=1e-12)
    with torch.no_grad():  # any sign of the raw parameters: still symmetric PSD
        for p in model.parameters():
            p.normal_(0.0, 0.7)
    D = model.damping_matrix(z)
    assert torch.allclose(D, D.transpose(-1, -2), atol=1e-12)
    assert torch.linalg.eigvalsh(D).min() > -1e-10


def test_square_damping_at_zero_conserves_the_model_energy_like_no_dissipation():
    torch.manual_seed(1)
    model = _square(damping_init=0.0, dt=0.05)
    conservative = HamiltonianWorldModel(ModelConfig(**{**model.cfg.to_dict(), 'dissipation': False})).double()
    conservative.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        z0 = torch.randn(8, 6, dtype=DT)
        assert torch.allclose(model.rollout(z0, None, horizon=50), conservative.rollout(z0, None, horizon=50),
                              atol=1e-12)


def test_invalid_damping_options_are_refused():
    with pytest.raises(ValueError, match='damping_param'):
        ModelConfig(obs_dim=2, action_dim=0, latent_dim=1, damping_param='relu').validate()
    with pytest.raises(ValueError, match='damping_init'):
        ModelConfig(obs_dim=2, action_dim=0, latent_dim=1, damping_init=-1.0).validate()


def _learned(name: str, param: str) -> float:
    system = make_system(name)
    data = rollout_dataset(system, 4, 40, 0.05, seed=0, action_scale=1.0 if system.action_dim else 0.0)
    torch.manual_seed(0)
    model = evaluate.Ours(2, system.action_dim, dt=0.05, hidden=16, dissipation=True, damping_map='constant',
                          damping_param=param)
    fit_rollouts(lambda x, u: model.rollout(x, u, 0.05), model.parameters(), data['states'], data['actions'],
                 horizon=4, steps=300, lr=1e-2)
    return evaluate._learned_damping(model, system, data['states'][:, 1:])


def test_square_damping_learns_none_on_a_lossless_pendulum_and_the_true_one_when_damped():
    """The softplus factor cannot leave its initial ~2e-3 in a short run; the square factor reaches ~0."""
    lossless = {param: _learned('pendulum', param) for param in ('softplus', 'square')}
    assert abs(lossless['square']) < 2e-4
    assert lossless['softplus'] > 5 * abs(lossless['square'])
    damped = {param: _learned('damped_pendulum', param) for param in ('softplus', 'square')}
    true = make_system('damped_pendulum').damping
    assert abs(damped['square'] - true) < abs(damped['softplus'] - true)
    assert np.isclose(damped['square'], true, rtol=0.25)
