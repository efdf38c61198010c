"""The port-Hamiltonian world model: closed-form gradients, structure, ensembles, persistence."""

import numpy as np
import pytest
import torch

from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig

torch.set_num_threads(1)
DT = torch.float64


def _model(seed=0, scale=0.4, **kw):
    """A float64 model with every weight randomised (zero-initialised heads would make checks trivial)."""
    torch.manual_seed(seed)
    base = dict(obs_dim=6, action_dim=2, latent_dim=3, hidden=16)
    base.update(kw)
    model = HamiltonianWorldModel(ModelConfig(**base)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model


VARIANTS = [
    dict(hamiltonian='separable', mass_matrix='state'),
    dict(hamiltonian='separable', mass_matrix='constant', input_map='constant', damping_map='constant'),
    dict(hamiltonian='general'),
    dict(hamiltonian='separable', mass_matrix='state', ensemble=3, activation='softplus'),
    dict(hamiltonian='separable', mass_matrix='state', mass_param='kinematic'),
    dict(hamiltonian='separable', mass_matrix='state', mass_param='kinematic', ensemble=3),
]


@pytest.mark.parametrize('variant', VARIANTS)
def test_closed_form_gradient_matches_autograd(variant):
    model = _model(**variant)
    shape = (variant.get('ensemble', 1), 7, 6) if variant.get('ensemble', 1) > 1 else (7, 6)
    z = torch.randn(*shape, dtype=DT)
    explicit = model.grad_energy(z)
    zz = z.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(model.energy(zz).sum(), zz)
    assert explicit.shape == z.shape
    assert torch.allclose(explicit, auto, atol=1e-5, rtol=0)
    assert auto.abs().max() > 1e-3  # the check is not vacuous


def test_prediction_paths_need_no_autograd():
    # Under no_grad with plain inputs torch.autograd.grad would raise: encode/step/rollout/energy must not use it.
    model = _model()
    with torch.no_grad():
        z = model.encode(torch.randn(5, 6, dtype=DT))
        out = model.rollout(z, torch.randn(5, 4, 2, dtype=DT))
        model.grad_energy(z)
        model.energy(out[:, -1])
        model.decode(out)
    assert torch.isfinite(out).all()


def test_conservative_vector_field_preserves_energy_and_dissipation_removes_it():
    z = torch.randn(64, 6, dtype=DT)
    conservative = _model(dissipation=False, control=False, residual=False)
    dz = conservative.time_derivative(z)
    assert torch.allclose((conservative.grad_energy(z) * dz).sum(-1), torch.zeros(64, dtype=DT), atol=1e-10)
    for damping_map in ('state', 'constant'):
        damped = _model(dissipation=True, control=False, residual=False, damping_map=damping_map)
        rate = (damped.grad_energy(z) * damped.time_derivative(z)).sum(-1)
        assert torch.all(rate <= 1e-12)
        assert rate.min() < -1e-4
        R = damped.damping_matrix(z)
        assert torch.allclose(R, R.transpose(-1, -2))
        assert torch.linalg.eigvalsh(R).min() >= -1e-10  # PSD


def test_inverse_mass_is_positive_definite():
    model = _model(scale=1.5)
    minv = model.inverse_mass(torch.randn(128, 6, dtype=DT) * 3)
    assert torch.linalg.eigvalsh(minv).min() >= model.cfg.mass_eps * 0.999


@pytest.mark.parametrize('variant', [dict(mass_matrix='state'), dict(mass_matrix='constant'),
                                     dict(mass_matrix='state', mass_param='kinematic'),
                                     dict(mass_matrix='state', mass_param='chain', periodic=(1,)),
                                     dict(hamiltonian='general', integrator='midpoint', solver_iters=8)])
def test_undamped_unforced_model_conserves_its_energy(variant):
    kw = dict(scale=0.3, dissipation=False, control=True, residual=False, dt=0.02, solver_iters=4)
    model = _model(**{**kw, **variant})
    z0 = torch.randn(4, 6, dtype=DT) * 0.5
    with torch.no_grad():
        traj = model.rollout(z0, None, horizon=1000)  # actions None: unforced
        h = model.energy(traj.reshape(-1, 6)).reshape(4, 1000)
    h0 = model.energy(z0)
    spread = (h - h0[:, None]).abs().max(1).values / (h0.abs() + 1e-3)
    assert spread.max() < 2e-2
    drift = (h[:, -200:].mean(1) - h[:, :200].mean(1)).abs() / (h0.abs() + 1e-3)
    assert drift.max() < 5e-3


def test_damped_model_loses_energy_and_never_gains_it_on_balance():
    model = _model(scale=0.3, dissipation=True, control=False, residual=False, dt=0.05, mass_matrix='constant')
    with torch.no_grad():
        model.damping_raw.add_(2.0)  # strong damping
        z0 = torch.randn(16, 6, dtype=DT)
        traj = model.rollout(z0, None, horizon=400)
        h = model.energy(traj.reshape(-1, 6)).reshape(16, 400)
        h0 = model.energy(z0)
        undamped = _model(scale=0.3, dissipation=False, control=False, residual=False, dt=0.05,
                          mass_matrix='constant')
        undamped.load_state_dict(model.state_dict(), strict=False)
        hu = undamped.energy(undamped.rollout(z0, None, horizon=400).reshape(-1, 6)).reshape(16, 400)
    assert torch.all(h[:, -1] < h0)
    # the damped trajectory never sits above what the same conservative model would oscillate to
    assert torch.all(h.max(1).values <= hu.max(1).values + 1e-9)


def test_rollout_matches_repeated_steps_and_handles_actions():
    model = _model()
    z = torch.randn(4, 6, dtype=DT)
    actions = torch.randn(4, 5, 2, dtype=DT)
    traj = model.rollout(z, actions)
    for t in range(5):
        z = model.step(z, actions[:, t])
        assert torch.allclose(traj[:, t], z, atol=1e-12)
    unforced = model.rollout(traj[:, 0], torch.zeros(4, 3, 2, dtype=DT))
    assert not torch.allclose(unforced, model.rollout(traj[:, 0], actions[:, :3]))


def test_large_batch_rollout_shapes():
    model = HamiltonianWorldModel(ModelConfig(obs_dim=8, action_dim=4, latent_dim=4, hidden=32,
                                              mass_matrix='constant', input_map='constant'))
    with torch.no_grad():
        out = model.rollout(torch.randn(1024, 8), torch.randn(1024, 32, 4))
    assert out.shape == (1024, 32, 8)
    assert model.decode(out).shape == (1024, 32, 8)


def test_ensemble_mean_and_spread():
    model = _model(ensemble=4, scale=0.3)
    obs = torch.randn(5, 6, dtype=DT)
    actions = torch.randn(5, 7, 2, dtype=DT)
    z = model.encode(obs)
    assert z.shape == (4, 5, 6)
    assert model.rollout(z, actions).shape == (4, 5, 7, 6)
    assert model.energy(z).shape == (4, 5)
    mean, std = model.predict_mean_std(obs, actions)
    assert mean.shape == (5, 7, 6) and std.shape == (5, 7, 6)
    assert torch.all(std > 0)
    members = model.predict(obs, actions)
    assert torch.allclose(mean, members.mean(0))
    single = _model(ensemble=1)
    _, std1 = single.predict_mean_std(obs, actions)
    assert torch.all(std1 == 0)


def test_save_load_round_trip(tmp_path):
    model = _model(ensemble=2)
    model.set_normalisation(np.arange(6.0), np.linspace(1, 2, 6), [0.5, 3.0])
    model.info = {'joint_names': ['a', 'b', 'c']}
    obs = torch.randn(3, 6, dtype=DT)
    actions = torch.randn(3, 4, 2, dtype=DT)
    expected = model.predict(obs, actions)
    model.save(tmp_path / 'm')
    loaded = HamiltonianWorldModel.load(tmp_path / 'm').double()
    assert loaded.cfg == model.cfg
    assert loaded.info == model.info
    assert torch.allclose(loaded.action_scale, torch.tensor([0.5, 3.0], dtype=DT))
    assert torch.allclose(loaded.predict(obs, actions), expected, atol=1e-6)
    for name in ('config.json', 'normalisation.json', 'info.json'):
        assert (tmp_path / 'm' / name).is_file()


def test_load_rejects_other_files(tmp_path):
    (tmp_path / 'model.pt').write_bytes(b'not a model')
    with pytest.raises(Exception, match='model'):
        HamiltonianWorldModel.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        HamiltonianWorldModel.load(tmp_path / 'missing')


def test_config_validation():
    with pytest.raises(ValueError, match='identity'):
        ModelConfig(obs_dim=5, action_dim=0, latent_dim=2, encoder='identity').validate()
    with pytest.raises(ValueError, match='image_shape'):
        ModelConfig(obs_dim=4, action_dim=0, latent_dim=2, encoder='image').validate()
    with pytest.raises(ValueError, match='rest_momentum must be'):
        ModelConfig(obs_dim=4, action_dim=0, latent_dim=2, rest_momentum='sometimes').validate()
    with pytest.raises(ValueError, match="rest_momentum 'zero' needs the mlp or fused encoder"):
        ModelConfig(obs_dim=4, action_dim=0, latent_dim=2, encoder='identity', rest_momentum='zero').validate()
    with pytest.raises(ValueError, match='configuration encoder needs obs_dim'):
        ModelConfig(obs_dim=5, action_dim=0, latent_dim=2, encoder='configuration', mass_matrix='constant').validate()
    for changes in ({'mass_matrix': 'state'}, {'hamiltonian': 'general', 'mass_matrix': 'constant'}):
        with pytest.raises(ValueError, match="configuration' needs hamiltonian 'separable' and mass_matrix"):
            ModelConfig(obs_dim=4, action_dim=0, latent_dim=2, encoder='configuration', **changes).validate()
    with pytest.raises(ValueError, match='hamiltonian'):
        ModelConfig(obs_dim=4, action_dim=0, latent_dim=2, hamiltonian='odd').validate()
    for changes in ({'hamiltonian': 'general'}, {'mass_matrix': 'state'}):
        with pytest.raises(ValueError, match="symplectic_euler' needs"):
            ModelConfig(obs_dim=4, action_dim=0, latent_dim=2, integrator='symplectic_euler', **changes).validate()


def test_symplectic_euler_model_steps_drift_then_kick():
    from hamwm_ros.worldmodel.integrators import symplectic_euler_step
    from hamwm_ros.worldmodel.model import _Dynamics

    torch.manual_seed(0)
    model = HamiltonianWorldModel(ModelConfig(obs_dim=4, action_dim=0, latent_dim=2, encoder='identity',
                                              control=False, dissipation=False, residual=False, hidden=16, dt=0.05,
                                              mass_matrix='constant', integrator='symplectic_euler')).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    dyn = _Dynamics(model)
    q, p = symplectic_euler_step(z[:, :2], z[:, 2:], 0.05, dyn.grad_q, dyn.grad_p)
    assert torch.allclose(model.step(z), torch.cat([q, p], -1), atol=1e-12)
    # and it is not the leapfrog step of the same H
    model.cfg = ModelConfig(**{**model.cfg.__dict__, 'integrator': 'leapfrog'})
    assert not torch.allclose(model.step(z), torch.cat([q, p], -1), atol=1e-6)


def test_identity_and_image_encoders():
    ident = HamiltonianWorldModel(ModelConfig(obs_dim=2, action_dim=0, latent_dim=1, encoder='identity',
                                              control=False))
    x = torch.randn(3, 2)
    assert torch.equal(ident.encode(x), x)
    assert torch.allclose(ident.decode(ident.encode(x)), x)
    img = HamiltonianWorldModel(ModelConfig(obs_dim=2, action_dim=1, latent_dim=1, encoder='fused',
                                            image_shape=(16, 20, 3), n_frames=2, hidden=16))
    frames = torch.randint(0, 255, (3, 2, 16, 20, 3), dtype=torch.uint8)
    z = img.encode(torch.randn(3, 2), frames)
    assert z.shape == (3, 2)
    assert img.decode_image(z).shape == (3, 16, 20, 3)
    with pytest.raises(ValueError, match='images'):
        img.encode(torch.randn(3, 2))


LEAN = dict(mass_matrix='constant', input_map='constant', damping_map='constant', residual=False)


def _configuration_model(**kw):
    model = _model(obs_dim=6, latent_dim=3, encoder='configuration', **LEAN, **kw)
    model.set_normalisation([0.3, -0.2, 0.1, 0.5, -0.4, 0.2], [0.5, 1.5, 0.8, 2.0, 3.0, 1.0])
    return model


@pytest.mark.parametrize('members', [1, 3])
def test_configuration_encoder_gives_canonical_coordinates(members):
    """Q is the normalised positions and p = M dq/dt: the model's own dq/dt = dH/dp is the observed velocity."""
    model = _configuration_model(ensemble=members)
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(5, 6, generator=gen, dtype=DT)
    z = model.encode(obs)
    lead = (members,) if members > 1 else ()
    assert z.shape == (*lead, 5, 6)
    pos, vel = obs[:, :3], obs[:, 3:]
    sigma, mu = model.obs_std[:3], model.obs_mean[:3]
    assert torch.allclose(z[..., :3], ((pos - mu) / sigma).expand(*lead, 5, 3), atol=1e-12)
    qdot = model.time_derivative(z, torch.zeros(5, 2, dtype=DT))[..., :3]  # dH/dp = A p, forces act on p only
    assert torch.allclose(qdot * sigma, vel.expand(*lead, 5, 3), atol=1e-9)
    assert torch.allclose(model.decode(z), obs.expand(*lead, 5, 6), atol=1e-9)  # exact inverse, no learned error
    inv_mass = model.constant_inverse_mass()
    energy = model.energy(z)  # kinetic part is 1/2 qdot^T M qdot in the normalised positions' units
    kinetic = 0.5 * torch.einsum('...bi,...bi->...b', z[..., 3:], torch.matmul(z[..., 3:], inv_mass))
    q_only = model.energy(torch.cat([z[..., :3], torch.zeros_like(z[..., 3:])], -1))
    assert torch.allclose(energy - q_only, kinetic, atol=1e-9)


@pytest.mark.parametrize('members', [1, 2])
def test_rest_momentum_zero_maps_a_still_robot_to_zero_momentum(members):
    """``rest_momentum='zero'``: zero joint velocity gives p = 0 exactly (so dH/dp = A p = 0: no claimed power)."""
    model = _model(obs_dim=6, latent_dim=3, rest_momentum='zero', ensemble=members, **LEAN)
    model.set_normalisation([0.3, -0.2, 0.1, 0.5, -0.4, 0.2], [0.5, 1.5, 0.8, 2.0, 3.0, 1.0])
    positions = torch.randn(5, 3, dtype=DT)
    still = model.encode(torch.cat([positions, torch.zeros(5, 3, dtype=DT)], -1))
    assert torch.allclose(still[..., 3:], torch.zeros_like(still[..., 3:]), atol=1e-12)
    assert still[..., :3].abs().max() > 0.01                  # q is not forced: only the momentum
    moving = model.encode(torch.cat([positions, torch.randn(5, 3, dtype=DT)], -1))
    assert moving[..., 3:].abs().max() > 0.01
    free = _model(obs_dim=6, latent_dim=3, ensemble=members, **LEAN)
    free.set_normalisation([0.3, -0.2, 0.1, 0.5, -0.4, 0.2], [0.5, 1.5, 0.8, 2.0, 3.0, 1.0])
    assert free.encode(torch.cat([positions, torch.zeros(5, 3, dtype=DT)], -1))[..., 3:].abs().max() > 0.01
    assert 'rest_momentum' not in free.cfg.to_dict() and model.cfg.to_dict()['rest_momentum'] == 'zero'
    assert ModelConfig.from_dict(model.cfg.to_dict()).rest_momentum == 'zero'


def test_configuration_encoder_trains_through_the_mass():
    """The encoder has no weights of its own: the mass, through M = A^-1, gets the gradient."""
    model = _configuration_model()
    obs = torch.randn(4, 6, dtype=DT)
    model.encode(obs).square().sum().backward()
    assert model.mass_raw.grad is not None and model.mass_raw.grad.abs().max() > 0
    assert not hasattr(model, 'encoder_net') and not hasattr(model, 'decoder_net')


IGNORABLE = dict(ignorable=(0, 2))     # symmetry priors (test_worldmodel_ignorable.py): the lean path keeps them too


@pytest.mark.parametrize('variant', [dict(), dict(ensemble=3), dict(activation='softplus', substeps=3),
                                     dict(layers=1, dissipation=False), dict(layers=3, control=False),
                                     IGNORABLE, dict(IGNORABLE, ensemble=3),
                                     dict(IGNORABLE, activation='softplus', substeps=2),
                                     dict(IGNORABLE, periodic=(1,)),
                                     dict(IGNORABLE, ensemble=2, layers=1, periodic=(1,)),
                                     dict(ensemble=2, periodic=(0, 1, 2))])
def test_lean_rollout_is_the_same_map_as_repeated_steps(variant):
    model = _model(**LEAN, **variant)
    assert model.lean
    z = torch.randn(4, 6, dtype=DT)
    actions = torch.randn(4, 6, 2, dtype=DT)
    with torch.no_grad():
        traj = model.rollout(z, actions)
        zz = z
        for t in range(6):
            zz = model.step(zz, actions[:, t])
            assert torch.allclose(traj[..., t, :], zz, atol=1e-10)
    # the lean path is the training path too: gradients reach every parameter that shapes the rollout
    loss = model.rollout(z, actions).square().sum()
    loss.backward()
    for name in ('mass_raw', 'potential.hidden_layers.0.weight', 'input_const', 'damping_raw'):
        param = dict(model.named_parameters()).get(name)
        if param is not None and (name != 'damping_raw' or model.cfg.dissipation) and (
                name != 'input_const' or model.has_control):
            assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_state_dependent_ports_keep_the_generic_rollout():
    assert not _model(**{**LEAN, 'damping_map': 'state'}).lean
    assert not _model(**{**LEAN, 'residual': True}).lean
    assert not _model(**{**LEAN, 'integrator': 'midpoint'}).lean


def test_exact_dissipation_flow_never_adds_energy_for_any_step():
    """Constant mass and damping: each Strang half is p @ expm(-tau A D), which can only lower 1/2 p A p."""
    model = _model(**LEAN)
    with torch.no_grad():
        model.damping_raw.add_(1.0)
        A = model.constant_inverse_mass()[0]
        p = torch.randn(256, 3, dtype=DT)
        for tau in (1e-4, 0.05, 1.0, 50.0):
            p_new = p @ model.dissipation_factor(tau)[0]
            kinetic = 0.5 * (p * (p @ A)).sum(-1)
            kinetic_new = 0.5 * (p_new * (p_new @ A)).sum(-1)
            assert torch.all(kinetic_new <= kinetic + 1e-12)
        # small tau: the flow agrees with the Euler step -tau D A p to first order
        C = model.constant_damping_factor()[0]
        euler = p - 1e-6 * (p @ A) @ (C @ C.T)
        assert torch.allclose(p @ model.dissipation_factor(1e-6)[0], euler, atol=1e-10)
