"""The kinematic mass matrix M(q) = J(q) J(q)^T + eps I (``ModelConfig.mass_param='kinematic'``).

The closed-form gradient and energy conservation of this parametrisation are checked with the other variants in
``test_worldmodel_model.py`` and ``test_worldmodel_ignorable.py``, its ONNX parity in ``test_export.py``.
"""

import json

import numpy as np
import pytest
from test_worldmodel_ignorable import cartpole_npz
from test_worldmodel_model import _model
import torch

from hamwm_ros.worldmodel import evaluate
from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig
from hamwm_ros.worldmodel.networks import cholesky_solve_unrolled, cholesky_unrolled
from hamwm_ros.worldmodel.systems import make_system

torch.set_num_threads(1)
DT = torch.float64
KINEMATIC = dict(mass_matrix='state', mass_param='kinematic')


@pytest.mark.parametrize('d', [1, 2, 3, 5])
def test_unrolled_cholesky_and_solve_match_linalg(d):
    gen = torch.Generator().manual_seed(d)
    a = torch.randn(3, 4, d, d, generator=gen, dtype=DT)
    m = a @ a.transpose(-1, -2) + 0.1 * torch.eye(d, dtype=DT)
    factor = cholesky_unrolled(m)
    assert torch.allclose(factor, torch.linalg.cholesky(m), atol=1e-12, rtol=0)
    b = torch.randn(3, 4, d, generator=gen, dtype=DT)
    expected = torch.linalg.solve(m, b.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(cholesky_solve_unrolled(factor, b), expected, atol=1e-10, rtol=0)


def test_unrolled_cholesky_of_a_singular_matrix_stays_finite():
    m = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=DT)  # rank 1: the second pivot is 0
    assert torch.isfinite(cholesky_unrolled(m)).all()


def test_inverse_mass_inverts_a_positive_definite_j_jt():
    model = _model(scale=1.0, **KINEMATIC)
    z = torch.randn(64, 6, dtype=DT) * 3
    minv = model.inverse_mass(z)
    features, _ = model.q_features(z[:, :3])
    jac = model.mass_net(features.unsqueeze(0))[0].unflatten(-1, (3, 6))
    mass = jac @ jac.transpose(-1, -2) + model.cfg.mass_eps * torch.eye(3, dtype=DT)
    assert torch.allclose(torch.linalg.inv(minv), mass, atol=1e-8, rtol=1e-8)
    assert torch.linalg.eigvalsh(minv).min() > 0


def _cart_pole_model(system):
    """A kinematic model whose J(theta) is the cart-pole's, set by hand (point masses: the cart and the bob).

    With q = (x, theta) the velocities of the cart and the bob, scaled by the root of their masses, are J^T dq/dt:
    sqrt(mc) (dx, 0) and sqrt(mp) (dx + l cos theta dtheta, l sin theta dtheta). So J (2 x 4) has the constant row
    (sqrt(mc), 0, sqrt(mp), 0) and the row (0, 0, sqrt(mp) l cos theta, sqrt(mp) l sin theta): affine in the features
    (x and theta zeroed, cos theta, sin theta).
    """
    cfg = ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, encoder='identity', ignorable=(0,), periodic=(1,),
                      mass_eps=1e-6, **KINEMATIC)
    model = HamiltonianWorldModel(cfg).double()
    arm = np.sqrt(system.mp) * system.length
    with torch.no_grad():
        model.mass_net.bias.zero_()
        model.mass_net.weight.zero_()
        model.mass_net.bias[0, 0, 0] = np.sqrt(system.mc)
        model.mass_net.bias[0, 0, 2] = np.sqrt(system.mp)
        model.mass_net.weight[0, 2, 6] = arm  # feature cos theta -> J[1, 2]
        model.mass_net.weight[0, 3, 7] = arm  # feature sin theta -> J[1, 3]
    return model


def test_holds_the_cart_pole_mass_matrix_at_every_angle():
    # The form holds the cart-pole's M exactly at every angle, where the inverse parametrisation (an MLP of cos and
    # sin) can only approximate it; whether training finds this J is another matter (the README's measurements).
    system = make_system('cartpole')
    model = _cart_pole_model(system)
    theta = torch.linspace(-2 * np.pi, 2 * np.pi, 41, dtype=DT)
    q = torch.stack([torch.full_like(theta, 3.0), theta], -1)
    z = torch.cat([q, torch.zeros_like(q)], -1)
    true_mass = system.mass_matrix(q.numpy()) + 1e-6 * np.eye(2)
    with torch.no_grad():
        np.testing.assert_allclose(model.inverse_mass(z).numpy(), np.linalg.inv(true_mass), rtol=1e-9, atol=1e-9)
        # and so its kinetic energy is the cart-pole's at any velocity
        v = torch.randn(41, 2, dtype=DT, generator=torch.Generator().manual_seed(1)).numpy()
        p = torch.as_tensor(np.einsum('nij,nj->ni', true_mass, v))
        kinetic = (model.energy(torch.cat([q, p], -1)) - model.energy(z)).numpy()
    np.testing.assert_allclose(kinetic, 0.5 * np.einsum('ni,nij,nj->n', v, true_mass, v), rtol=1e-9)


def test_config_validation_and_round_trip(tmp_path):
    base = dict(obs_dim=4, action_dim=1, latent_dim=2)
    with pytest.raises(ValueError, match='mass_param'):
        ModelConfig(**base, mass_param='cholesky').validate()
    with pytest.raises(ValueError, match="mass_param 'kinematic' needs"):
        ModelConfig(**base, mass_param='kinematic', mass_matrix='constant').validate()
    with pytest.raises(ValueError, match="mass_param 'kinematic' needs"):
        ModelConfig(**base, mass_param='kinematic', hamiltonian='general').validate()
    assert 'mass_param' not in ModelConfig(**base).to_dict()  # the default is not written: old files stay as they were
    cfg = ModelConfig(**base, **KINEMATIC)
    assert cfg.to_dict()['mass_param'] == 'kinematic'
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    model = _model(**KINEMATIC)
    model.save(tmp_path / 'm')
    assert json.loads((tmp_path / 'm' / 'config.json').read_text())['mass_param'] == 'kinematic'
    loaded = HamiltonianWorldModel.load(tmp_path / 'm').double()
    z = torch.randn(5, 6, dtype=DT)
    assert torch.allclose(loaded.inverse_mass(z), model.inverse_mass(z), rtol=1e-6, atol=0)


def test_suites_give_ours_the_kinematic_mass_on_the_cart_pole_only():
    cartpole, damped = make_system('cartpole'), make_system('damped_pendulum')
    assert evaluate.ours_mass_param(cartpole, cartpole.periodic) == 'kinematic'
    assert evaluate.ours_mass_param(cartpole, ()) == 'inverse'  # no angle declared periodic
    assert evaluate.ours_mass_param(damped, damped.periodic) == 'inverse'  # one joint: a constant mass
    data = evaluate._control_data(cartpole, 2, 10, 0)
    kw = dict(hidden=8, steps=2, seed=0, batch_size=4)
    ours = evaluate._train_dynamics('ours', cartpole, data['states'], data['actions'], 0.05, **kw)
    assert ours.cfg.mass_param == 'kinematic'
    ablation = evaluate._train_dynamics('ours', cartpole, data['states'], data['actions'], 0.05, mass_param='inverse',
                                        **kw)
    assert ablation.cfg.mass_param == 'inverse'
    with pytest.raises(ValueError, match='no mass_param'):
        evaluate.make_method('mlp', 4, 1, hidden=8, dt=0.05, mass_param='kinematic')


def test_train_cli_sets_the_mass_param(tmp_path):
    from hamwm_ros.worldmodel.train import main

    args = ['--data', cartpole_npz(tmp_path), '--encoder', 'identity', '--ignorable', '0', '--periodic', '1',
            '--hidden', '8', '--horizon', '4', '--stride', '4', '--epochs', '1', '--quiet', '--mass-param', 'kinematic']
    assert main([*args, '--out', str(tmp_path / 'm')]) == 0
    model = HamiltonianWorldModel.load(tmp_path / 'm')
    assert model.cfg.mass_param == 'kinematic'
    assert main([*args, '--out', str(tmp_path / 'bad'), '--mass-matrix', 'constant']) == 2
