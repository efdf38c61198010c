"""Ignorable (cyclic) and periodic coordinates: exact on every path (closed form, lean rollout, ONNX export)."""

import json

import numpy as np
import pytest
from test_worldmodel_model import _model as random_model
import torch

from hamwm_ros.worldmodel import evaluate
from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig
from hamwm_ros.worldmodel.systems import make_system

torch.set_num_threads(1)
DT = torch.float64
LEAN = dict(mass_matrix='constant', input_map='constant', damping_map='constant', residual=False)


def _model(seed=0, scale=0.4, **kw):
    """test_worldmodel_model's randomised float64 model, with positions 0 and 2 ignorable unless ``kw`` says."""
    return random_model(seed, scale, **{'ignorable': (0, 2), **kw})


VARIANTS = [
    dict(hamiltonian='separable', mass_matrix='state'),
    dict(**LEAN),
    dict(hamiltonian='general'),
    dict(hamiltonian='separable', mass_matrix='state', ensemble=3, activation='softplus', ignorable=(1,)),
    dict(hamiltonian='separable', mass_matrix='state', periodic=(1,)),
    dict(hamiltonian='separable', mass_matrix='state', mass_param='kinematic', periodic=(1,)),
    dict(hamiltonian='separable', mass_matrix='state', mass_param='chain', periodic=(1,)),
    dict(hamiltonian='separable', mass_matrix='state', mass_param='chain', ignorable=(0,), periodic=(1, 2), ensemble=2),
    dict(**LEAN, periodic=(1,)),
    dict(hamiltonian='general', ignorable=(0,), periodic=(1, 2)),
    dict(**LEAN, ensemble=2, ignorable=(), periodic=(0, 2)),
]


@pytest.mark.parametrize('variant', VARIANTS)
def test_closed_form_gradient_matches_autograd_and_vanishes_along_ignorable(variant):
    model = _model(**variant)
    shape = (variant['ensemble'], 7, 6) if variant.get('ensemble', 1) > 1 else (7, 6)
    z = torch.randn(*shape, dtype=DT)
    explicit = model.grad_energy(z)
    zz = z.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(model.energy(zz).sum(), zz)
    assert torch.allclose(explicit, auto, atol=1e-10, rtol=1e-8)
    ign = list(model.cfg.ignorable)
    assert torch.all(explicit[..., ign] == 0)
    assert explicit[..., 3:].abs().sum() > 0 and explicit[..., [i for i in range(3) if i not in ign]].abs().sum() > 0


@pytest.mark.parametrize('variant', [v for v in VARIANTS if v.get('periodic')])
def test_periodic_coordinates_wrap(variant):
    model = _model(**variant)
    z = torch.randn(5, 6, dtype=DT)
    actions = torch.randn(5, 6, 2, dtype=DT)
    turn = torch.zeros(6, dtype=DT)
    turn[list(model.cfg.periodic)] = 2 * torch.pi * torch.tensor([1.0, -3.0])[:len(model.cfg.periodic)].to(DT)
    with torch.no_grad():
        assert torch.allclose(model.energy(z + turn), model.energy(z), atol=1e-10)
        assert torch.allclose(model.grad_energy(z + turn), model.grad_energy(z), atol=1e-10)
        assert torch.allclose(model.rollout(z + turn, actions), model.rollout(z, actions) + turn, atol=1e-8)


@pytest.mark.parametrize('variant', VARIANTS + [dict(residual=True, mass_matrix='state', input_map='state',
                                                      damping_map='state', integrator='midpoint')])
def test_dynamics_commute_with_shifts_of_ignorable_coordinates(variant):
    model = _model(**variant)
    z = torch.randn(5, 6, dtype=DT)
    actions = torch.randn(5, 8, 2, dtype=DT)
    shift = torch.zeros(6, dtype=DT)
    for i in model.cfg.ignorable:
        shift[i] = 7.5  # far outside anything a network was "trained" on
    with torch.no_grad():
        a, b = model.rollout(z, actions), model.rollout(z + shift, actions)
        assert torch.allclose(b, a + shift, atol=1e-9)
        assert torch.allclose(model.energy(z + shift), model.energy(z), atol=1e-12)
        assert torch.allclose(model.time_derivative(z + shift, actions[:, 0]),
                              model.time_derivative(z, actions[:, 0]), atol=1e-12)
    if model.cfg.ignorable and not model.cfg.periodic:
        plain = _model(**{**variant, 'ignorable': ()})
        with torch.no_grad():  # the same weights without the option do depend on those coordinates
            assert not torch.allclose(plain.energy(z + shift), plain.energy(z), atol=1e-6)


def test_conjugate_momentum_is_conserved_without_force_or_damping():
    model = _model(mass_matrix='state', dissipation=False, control=False, residual=False)
    z = torch.randn(4, 6, dtype=DT)
    with torch.no_grad():
        traj = model.rollout(z, horizon=40)
    p = traj[..., 3:]
    assert torch.allclose(p[..., [0, 2]], z[:, None, [3, 5]].expand(-1, 40, -1), atol=1e-12)
    assert (p[..., 1] - z[:, None, 4]).abs().max() > 1e-3  # the other momentum does move


def test_config_round_trip_and_old_configs():
    cfg = ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, ignorable=(0,))
    d = cfg.to_dict()
    assert d['ignorable'] == [0]
    assert ModelConfig.from_dict(json.loads(json.dumps(d))).ignorable == (0,)
    plain = ModelConfig(obs_dim=4, action_dim=1, latent_dim=2).to_dict()
    assert 'ignorable' not in plain  # files of models without the option are written as before
    assert ModelConfig.from_dict(plain).ignorable == ()
    assert HamiltonianWorldModel(ModelConfig.from_dict(plain)).q_mask is None
    for bad in ((2,), (0, 0), (-1,), (True,), (0.5,)):
        with pytest.raises(ValueError, match='ignorable'):
            ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, ignorable=bad).validate()
        with pytest.raises(ValueError, match='periodic'):
            ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, periodic=bad).validate()
    with pytest.raises(ValueError, match='both'):
        ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, ignorable=(0,), periodic=(0, 1)).validate()
    both = ModelConfig(obs_dim=4, action_dim=1, latent_dim=2, ignorable=(0,), periodic=(1,)).to_dict()
    assert ModelConfig.from_dict(json.loads(json.dumps(both))).periodic == (1,)
    assert 'periodic' not in plain
    with pytest.raises(ValueError, match='ignorable'):
        ModelConfig.from_dict({**d, 'ignorable': 0})


def test_save_load_keeps_the_invariance(tmp_path):
    model = _model(mass_matrix='state').float()
    model.save(tmp_path / 'm')
    assert json.loads((tmp_path / 'm' / 'config.json').read_text())['ignorable'] == [0, 2]
    loaded = HamiltonianWorldModel.load(tmp_path / 'm')
    assert loaded.cfg.ignorable == (0, 2)
    z = torch.randn(3, 6)
    actions = torch.randn(3, 4, 2)
    with torch.no_grad():
        assert torch.allclose(loaded.rollout(z, actions), model.rollout(z, actions))
    assert 'q_mask' not in model.state_dict()  # derived from the config, not a weight


def test_invariant_mlp_and_make_method():
    net = evaluate.make_method('mlp', 4, 1, hidden=8, dt=0.05, ignorable=(0,), periodic=(1,))
    assert isinstance(net, evaluate.InvariantMLP) and net.net[0].in_features == 5  # p_x, p_th, cos, sin, u
    x, u = torch.randn(6, 4), torch.randn(6, 1)
    moved = x.clone()
    moved[:, 0] += 3.0
    moved[:, 1] -= 2 * torch.pi
    with torch.no_grad():
        assert net.field(x, u).shape == (6, 4)
        assert torch.allclose(net.field(moved, u), net.field(x, u), atol=1e-5)
    assert evaluate.make_method('mlp', 4, 1, hidden=8, dt=0.05, ignorable=(0,)).net[0].in_features == 4
    ours = evaluate.make_method('ours', 4, 1, hidden=8, dt=0.05, ignorable=(0,), periodic=(1,))
    assert ours.cfg.ignorable == (0,) and ours.cfg.periodic == (1,)
    with pytest.raises(ValueError, match='ignorable'):
        evaluate.make_method('hnn', 4, 1, hidden=8, dt=0.05, ignorable=(0,))
    cartpole = make_system('cartpole')
    assert cartpole.ignorable == (0,) and cartpole.periodic == (1,)
    damped = make_system('damped_pendulum')
    assert damped.ignorable == () and damped.periodic == (0,)
    # the HNN reproduction's ideal pendulum is left as the paper has it: no priors
    assert make_system('pendulum').ignorable == () == make_system('pendulum').periodic


def test_sample_efficiency_reports_the_baseline_given_the_same_priors(tmp_path):
    assert evaluate.main(['sample-efficiency', '--quick', '--tasks', 'cartpole', '--out', str(tmp_path)]) == 0
    res = json.loads((tmp_path / 'results.json').read_text())['results']['cartpole']
    assert res['ignorable'] == [0] and res['periodic'] == [1] and res['ours_mass_param'] == 'chain'
    assert set(res['error']) == {'mlp', 'ours', 'mlp_priors'}
    assert set(res['efficiency_by_method']) == {'ours', 'mlp_priors'}
    assert res['efficiency'] == res['efficiency_by_method']['ours']
    assert 'ratio' in res['ours_vs_mlp_priors']
    assert evaluate.main(['sample-efficiency', '--quick', '--tasks', 'cartpole', '--methods', 'gru',
                          '--out', str(tmp_path)]) == 2


def test_sample_efficiency_method_selection():
    cartpole, pendulum, damped = make_system('cartpole'), make_system('pendulum'), make_system('damped_pendulum')
    assert evaluate._se_methods(cartpole, None) == ('mlp', 'ours', 'mlp_priors')
    assert evaluate._se_methods(damped, None) == ('mlp', 'ours', 'mlp_priors')     # the angle is periodic
    assert evaluate._se_methods(pendulum, None) == ('mlp', 'ours')                 # no priors declared
    assert evaluate._se_methods(cartpole, ('ours', 'ours_plain')) == ('ours', 'ours_plain')
    # without priors the variants coincide with the plain methods and are left out
    assert evaluate._se_methods(pendulum, ('mlp', 'ours', 'ours_plain', 'mlp_priors')) == ('mlp', 'ours')
    # one joint: a constant mass, so the inverse parametrisation whatever the priors
    assert evaluate._se_spec(damped, 'ours') == ('ours', (), (0,), 'inverse')
    assert evaluate._se_methods(damped, ('ours', 'ours_ignorable')) == ('ours', 'ours_ignorable')
    assert evaluate._se_methods(damped, ('ours', 'ours_inverse', 'ours_kinematic')) == ('ours',)
    # the cart-pole with its periodic pole angle: the planar chain's mass, the general affine J and the inverse
    # parametrisation as the ablations
    assert evaluate._se_spec(cartpole, 'ours') == ('ours', (0,), (1,), 'chain')
    assert evaluate._se_spec(cartpole, 'ours_kinematic') == ('ours', (0,), (1,), 'kinematic')
    assert evaluate._se_spec(cartpole, 'ours_inverse') == ('ours', (0,), (1,), 'inverse')
    assert evaluate._se_methods(cartpole, ('ours', 'ours_inverse', 'ours_kinematic')) == (
        'ours', 'ours_inverse', 'ours_kinematic')
    assert evaluate._se_spec(cartpole, 'ours_ignorable') == ('ours', (0,), (), 'inverse')
    assert evaluate._se_spec(cartpole, 'mlp_priors') == ('mlp', (0,), (1,), None)
    assert evaluate._se_spec(cartpole, 'ours_plain') == ('ours', (), (), 'inverse')
    assert evaluate._se_spec(cartpole, 'mlp') == ('mlp', (), (), None)


def cartpole_npz(folder) -> str:
    """Six short cart-pole trajectories written as an npz data set; returns the ``hamwm train --data`` source."""
    from hamwm_ros.worldmodel.systems import rollout_dataset

    system = make_system('cartpole')
    data = rollout_dataset(system, 6, 30, 0.05, seed=0, action_scale=3.0)
    x = data['states']
    np.savez(folder / 'cp.npz', dt=0.05, position=x[..., :2], velocity=system.velocity(x),
             action=data['actions'], joint_names=np.array(['slider', 'hinge']))
    return f'npz:{folder / "cp.npz"}'


def test_train_cli_sets_ignorable_and_periodic(tmp_path):
    from hamwm_ros.worldmodel.train import main

    source = cartpole_npz(tmp_path)
    rc = main(['--data', source, '--out', str(tmp_path / 'm'), '--encoder', 'identity',
               '--ignorable', '0', '--periodic', '1', '--hidden', '8', '--horizon', '4', '--stride', '4',
               '--epochs', '1', '--quiet'])
    assert rc == 0
    cfg = json.loads((tmp_path / 'm' / 'config.json').read_text())
    assert cfg['ignorable'] == [0] and cfg['periodic'] == [1]
    model = HamiltonianWorldModel.load(tmp_path / 'm')
    assert model.cfg.ignorable == (0,) and model.cfg.periodic == (1,)
    with pytest.raises(SystemExit):
        main(['--data', source, '--out', str(tmp_path / 'bad'), '--ignorable', 'x'])
