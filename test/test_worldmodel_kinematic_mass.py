"""The Jacobian mass matrices M(q) = J(q) J(q)^T + eps I (``ModelConfig.mass_param`` 'kinematic' and 'chain').

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
from hamwm_ros.worldmodel.networks import ChainJacobian, cholesky_solve_unrolled, cholesky_unrolled
from hamwm_ros.worldmodel.systems import make_system

torch.set_num_threads(1)
DT = torch.float64
KINEMATIC = dict(mass_matrix='state', mass_param='kinematic')
CHAIN = dict(mass_matrix='state', mass_param='chain')


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


def _chain_cart_pole(system):
    """A chain model holding the cart-pole's J (the rows of ``_cart_pole_model``'s, as a translation and an angle)."""
    cfg = ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, encoder='identity', ignorable=(0,), periodic=(1,),
                      mass_eps=1e-6, **CHAIN)
    model = HamiltonianWorldModel(cfg).double()
    with torch.no_grad():
        model.mass_net.rows.zero_()
        model.mass_net.rows[0, 0, 0] = np.sqrt(system.mc)
        model.mass_net.rows[0, 0, 2] = np.sqrt(system.mp)
        model.mass_net.rows[0, 1, 2] = np.sqrt(system.mp) * system.length  # turned by theta: (cos, sin) l sqrt(mp)
    return model


@pytest.mark.parametrize('build', [_cart_pole_model, _chain_cart_pole])
def test_holds_the_cart_pole_mass_matrix_at_every_angle(build):
    # Both Jacobian forms hold the cart-pole's M exactly at every angle, where the inverse parametrisation (an MLP of
    # cos and sin) can only approximate it; whether training finds this J is another matter (the README's measurements).
    system = make_system('cartpole')
    model = build(system)
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


def test_suites_give_ours_the_chain_mass_on_the_cart_pole_only():
    cartpole, damped = make_system('cartpole'), make_system('damped_pendulum')
    assert evaluate.ours_mass_param(cartpole, cartpole.periodic) == 'chain'
    assert evaluate.ours_mass_param(cartpole, ()) == 'inverse'  # no angle declared periodic
    assert evaluate.ours_mass_param(damped, damped.periodic) == 'inverse'  # one joint: a constant mass
    two_links = make_system('acrobot')  # a relative second angle: not a chain, the general affine J if told angles
    assert not two_links.planar_chain and evaluate.ours_mass_param(two_links, (0, 1)) == 'kinematic'
    data = evaluate._control_data(cartpole, 2, 10, 0)
    kw = dict(hidden=8, steps=2, seed=0, batch_size=4)
    ours = evaluate._train_dynamics('ours', cartpole, data['states'], data['actions'], 0.05, **kw)
    assert ours.cfg.mass_param == 'chain'
    ablation = evaluate._train_dynamics('ours', cartpole, data['states'], data['actions'], 0.05, mass_param='inverse',
                                        **kw)
    assert ablation.cfg.mass_param == 'inverse'
    with pytest.raises(ValueError, match='no mass_param'):
        evaluate.make_method('mlp', 4, 1, hidden=8, dt=0.05, mass_param='kinematic')


@pytest.mark.parametrize('mass_param', ['kinematic', 'chain'])
def test_train_cli_sets_the_mass_param(tmp_path, mass_param):
    from hamwm_ros.worldmodel.train import main

    args = ['--data', cartpole_npz(tmp_path), '--encoder', 'identity', '--ignorable', '0', '--periodic', '1',
            '--hidden', '8', '--horizon', '4', '--stride', '4', '--epochs', '1', '--quiet', '--mass-param', mass_param]
    assert main([*args, '--out', str(tmp_path / 'm')]) == 0
    model = HamiltonianWorldModel.load(tmp_path / 'm')
    assert model.cfg.mass_param == mass_param
    assert main([*args, '--out', str(tmp_path / 'bad'), '--mass-matrix', 'constant']) == 2
    if mass_param == 'chain':  # a chain without an angle is refused with its reason, not trained
        at = args.index('--periodic')
        no_angle = args[:at] + args[at + 2:]
        assert main([*no_angle, '--out', str(tmp_path / 'no_angle')]) == 2
        assert not (tmp_path / 'no_angle' / 'model.pt').exists()


# ---------------------------------------------------------------------------------------------------------------------
# The planar chain (``mass_param='chain'``): J's rows for base translations constant, an absolute angle's row turning
# ---------------------------------------------------------------------------------------------------------------------
def test_chain_jacobian_is_a_translation_row_and_turning_angle_rows():
    # Random rows, coordinates (x, theta1, theta2): the weight/bias view the model differentiates is the J the rows
    # describe, and M has the structure of a chain in absolute angles.
    torch.manual_seed(3)
    chain = ChainJacobian(2, 3, (1, 2)).double()
    with torch.no_grad():
        chain.rows.normal_()
    angles = torch.rand(50, 2, dtype=DT) * 12 - 6
    features = torch.cat([torch.zeros(50, 3, dtype=DT), angles.cos(), angles.sin()], -1)
    jac = chain(features.expand(2, 50, 7)).unflatten(-1, (3, 6))
    rows = chain.rows.detach()
    assert torch.equal(jac[:, :, 0], rows[:, None, 0].expand(2, 50, 6))  # the translation's row is constant
    for k in (1, 2):
        c, s = angles[:, k - 1].cos()[:, None], angles[:, k - 1].sin()[:, None]
        b = rows[:, None, k]
        u, v = b[..., 0::2], b[..., 1::2]  # each column pair turned by the angle, no constant part
        expected = torch.stack([c * u - s * v, s * u + c * v], -1).flatten(-2)
        assert torch.allclose(jac[:, :, k], expected, atol=1e-12)
    mass = jac @ jac.transpose(-1, -2)
    # an angle's own entry is constant; two angles' entry depends on their difference only
    assert torch.allclose(mass[..., 1, 1], mass[:, :1, 1, 1].expand(2, 50), atol=1e-10)
    shifted = torch.cat([torch.zeros(50, 3, dtype=DT), (angles + 0.7).cos(), (angles + 0.7).sin()], -1)
    jac2 = chain(shifted.expand(2, 50, 7)).unflatten(-1, (3, 6))
    assert torch.allclose((jac2 @ jac2.transpose(-1, -2))[..., 1, 2], mass[..., 1, 2], atol=1e-10)
    assert not torch.allclose((jac2 @ jac2.transpose(-1, -2))[..., 0, 1], mass[..., 0, 1], atol=1e-3)


def test_chain_starts_at_the_identity_and_refuses_a_chain_without_angles():
    model = _model(seed=0, scale=0.0, periodic=(1,), **CHAIN)  # scale 0: every other weight zero, rows as built
    with torch.no_grad():
        model.mass_net.rows.copy_(ChainJacobian(1, 3, (1,)).rows)
        minv = model.inverse_mass(torch.randn(9, 6, dtype=DT) * 4)
    np.testing.assert_allclose(minv.numpy(), np.broadcast_to(np.eye(3) / (1 + model.cfg.mass_eps), minv.shape),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="mass_param 'chain' needs at least one periodic"):
        ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, **CHAIN).validate()
    with pytest.raises(ValueError, match="mass_param 'chain' needs hamiltonian"):
        ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, periodic=(1,), mass_param='chain',
                    mass_matrix='constant').validate()
    for bad in ((), (0, 0), (3,)):
        with pytest.raises(ValueError):
            ChainJacobian(1, 3, bad)


def _fit_kinetic_energy(mass_param: str, steps: int = 500):
    """A cart-pole model's mass fitted to the true kinetic energy on |theta| <= 0.5; its M^-1 at theta 0-3 rad."""
    system = make_system('cartpole')
    torch.manual_seed(0)
    cfg = ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, encoder='identity', ignorable=(0,), periodic=(1,),
                      mass_matrix='state', mass_param=mass_param, dissipation=False, control=False, residual=False,
                      hidden=8)
    model = HamiltonianWorldModel(cfg).double()
    rng = np.random.default_rng(0)
    q = np.stack([rng.uniform(-2, 2, 256), rng.uniform(-0.5, 0.5, 256)], -1)
    p = rng.normal(size=(256, 2)) * 2
    target = torch.as_tensor(0.5 * np.einsum('ni,nij,nj->n', p, np.linalg.inv(system.mass_matrix(q)), p))
    z = torch.as_tensor(np.concatenate([q, p], -1))
    at_rest = torch.cat([z[:, :2], torch.zeros_like(z[:, 2:])], -1)  # H there is V: the difference is T
    opt = torch.optim.Adam(model.mass_net.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model.energy(z) - model.energy(at_rest) - target) ** 2).mean()
        loss.backward()
        opt.step()
    theta = np.array([0.0, 1.0, 2.0, 3.0])
    q_far = np.stack([np.zeros(4), theta], -1)
    with torch.no_grad():
        learned = model.inverse_mass(torch.as_tensor(np.concatenate([q_far, np.zeros((4, 2))], -1))).numpy()
    return learned, np.linalg.inv(system.mass_matrix(q_far))


def test_chain_learns_the_cart_poles_mass_far_beyond_the_angles_it_saw():
    # Kinetic energy seen only for |theta| <= 0.5 rad: the chain's few parameters are pinned by it and give M^-1
    # out to 3 rad; the general affine J fits the same data with a different, wrong M beyond it.
    learned, true = _fit_kinetic_energy('chain')
    np.testing.assert_allclose(learned, true, rtol=0.01, atol=0.01)
    learned, true = _fit_kinetic_energy('kinematic')
    assert abs(learned[3, 1, 1] - true[3, 1, 1]) > 0.5 * true[3, 1, 1]
