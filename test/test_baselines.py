"""Baselines: HNN structure, training reduces error, rollout interfaces."""

import numpy as np
import pytest
import torch

from hamwm_ros.worldmodel.baselines import (
    HNN,
    DerivativeMLP,
    GRUWorldModel,
    WeightAverage,
    fit_derivatives,
    fit_rollouts,
    windows,
)
from hamwm_ros.worldmodel.systems import hnn_dataset, make_system, rollout_dataset

torch.set_num_threads(1)


def _divergence(field, x):
    x = x.clone().requires_grad_(True)
    f = field(x)
    return sum(torch.autograd.grad(f[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))


def test_hnn_field_is_divergence_free_and_conserves_its_energy():
    torch.manual_seed(0)
    hnn = HNN(4, hidden=32)
    hnn.train()  # create_graph so the divergence can differentiate through the field
    x = torch.randn(64, 4)
    assert torch.allclose(_divergence(hnn.field, x), torch.zeros(64), atol=1e-5)
    # dH/dt = dH/dx . J dH/dx = 0 along the field.
    xg = x.clone().requires_grad_(True)
    grad_h = torch.autograd.grad(hnn.energy(xg).sum(), xg)[0]
    power = (grad_h * hnn.field(x)).sum(-1)
    assert power.abs().max() < 1e-5 * (grad_h.norm(dim=-1) ** 2).max()
    # The unstructured baseline has no such property (so the check above can fail).
    mlp = DerivativeMLP(4, hidden=32)
    assert _divergence(mlp.field, x).abs().max() > 1e-3


def test_hnn_rejects_odd_state():
    with pytest.raises(ValueError):
        HNN(3)


def test_weight_average_forgets_the_init_and_averages_recent_iterates():
    w = torch.nn.Parameter(torch.tensor([100.0]))  # far-off initial value
    avg = WeightAverage([w], decay=0.9)
    for k in range(400):
        with torch.no_grad():
            w.fill_(1.0 + (-1.0) ** k)  # an iterate oscillating between 0 and 2 around its mean 1
        avg.update()
    avg.load()
    assert abs(float(w.detach()) - 1.0) < 0.1  # the oscillation is averaged out and the 100 at init is forgotten
    with pytest.raises(ValueError):
        WeightAverage([w], decay=1.0)


def test_averaged_training_ends_near_the_last_iterate_loss():
    torch.manual_seed(0)
    data = hnn_dataset(make_system('mass_spring'), seed=0)
    test_x = torch.as_tensor(data['test_x'], dtype=torch.float32)
    test_dx = torch.as_tensor(data['test_dx'], dtype=torch.float32)
    errors = {}
    for average in (0.0, 0.95):
        torch.manual_seed(0)
        model = DerivativeMLP(2, hidden=32)
        fit_derivatives(model, model.field, data['x'], data['dx'], steps=300, lr=3e-3, average=average)
        errors[average] = float(((model.field(test_x).detach() - test_dx) ** 2).mean())
    assert errors[0.95] < 1.5 * errors[0.0]


def test_derivative_training_learns_the_spring():
    torch.manual_seed(0)
    system = make_system('mass_spring')
    data = hnn_dataset(system, seed=0)
    test_x = torch.as_tensor(data['test_x'], dtype=torch.float32)
    test_dx = torch.as_tensor(data['test_dx'], dtype=torch.float32)
    for model in (DerivativeMLP(2, hidden=32), HNN(2, hidden=32)):
        model.eval()
        before = float(((model.field(test_x).detach() - test_dx) ** 2).mean())
        losses = fit_derivatives(model, model.field, data['x'], data['dx'], steps=300, lr=3e-3)
        after = float(((model.field(test_x).detach() - test_dx) ** 2).mean())
        assert losses[-1] < 0.3 * losses[0]
        assert after < 0.3 * before
    with pytest.raises(ValueError):
        fit_derivatives(model, model.field, data['x'], data['dx'][:5])


def test_windows_shapes():
    states = np.arange(2 * 6 * 1, dtype=float).reshape(2, 6, 1)
    actions = np.zeros((2, 5, 1))
    x0, act, tgt = windows(states, actions, 3)
    assert x0.shape == (6, 1) and act.shape == (6, 3, 1) and tgt.shape == (6, 3, 1)
    np.testing.assert_array_equal(tgt[0, :, 0], states[0, 1:4, 0])


@pytest.mark.parametrize('cls', [DerivativeMLP, HNN, GRUWorldModel])
def test_rollout_training_reduces_multistep_error(cls):
    torch.manual_seed(0)
    system = make_system('damped_pendulum')
    data = rollout_dataset(system, 4, 30, 0.05, seed=0)
    model = cls(2, 1, hidden=24)
    x0 = torch.as_tensor(data['states'][:, 0], dtype=torch.float32)
    acts = torch.as_tensor(data['actions'], dtype=torch.float32)
    target = torch.as_tensor(data['states'][:, 1:], dtype=torch.float32)
    pred = model.rollout(x0, acts, 0.05)
    assert pred.shape == target.shape
    before = float(((pred.detach() - target) ** 2).mean())
    losses = fit_rollouts(lambda x, a: model.rollout(x, a, 0.05), model.parameters(), data['states'],
                          data['actions'], horizon=3, steps=150, lr=3e-3)
    model.eval()
    after = float(((model.rollout(x0, acts, 0.05).detach() - target) ** 2).mean())
    assert losses[-1] < losses[0]
    assert after < before
    with pytest.raises(ValueError):
        fit_rollouts(lambda x, a: model.rollout(x, a, 0.05), model.parameters(), data['states'][:, :3],
                     data['actions'][:, :2], horizon=3)
