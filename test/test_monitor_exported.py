"""The monitor's tick on real exported HamiltonianWorldModels (torch -> ONNX -> onnxruntime).

Checks what predict_tick derives from the predictor's outputs against the torch model's own closed forms: H at the
encoded state (extrapolated from the rollout energies) and the claimed powers dH/dz . dz/dt with and without input.
Also runs the ensemble and camera-encoder paths of the tracker. Tiny models, every block switched on, weights
perturbed away from their initialisation.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from hamwm_ros.monitor import ModelTracker, MonitorConfig, predict_tick  # noqa: E402
from hamwm_ros.runtime import SessionConfig, WorldModelRuntime  # noqa: E402
from hamwm_ros.worldmodel.export import export_model  # noqa: E402
from hamwm_ros.worldmodel.model import HamiltonianWorldModel, ModelConfig  # noqa: E402

torch.set_num_threads(1)
JOINTS = ['slider', 'hinge']
CPU = SessionConfig(providers=('cpu',), intra_op_threads=1)


def _model(**overrides) -> HamiltonianWorldModel:
    torch.manual_seed(0)
    kw = dict(obs_dim=4, action_dim=2, latent_dim=2, hidden=16, layers=1, dt=0.01, residual=True)
    kw.update(overrides)
    model = HamiltonianWorldModel(ModelConfig(**kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.set_normalisation([0.0, 0.0, 0.0, 0.0], [0.5, 1.5, 2.0, 3.0], [2.0, 0.5])
    return model.eval()


def _export(model, out, horizon=4) -> WorldModelRuntime:
    export_model(model, out, robot='toy', joint_names=JOINTS, horizon=horizon, training={'data_hash': 'sha256:test'},
                 include_checkpoint=False)
    return WorldModelRuntime.load(out, joint_names=JOINTS, config=CPU)


def test_energy_and_powers_match_the_torch_model(tmp_path):
    model = _model()
    runtime = _export(model, tmp_path)
    rng = np.random.default_rng(0)
    for _ in range(5):
        state = rng.normal(0.0, [0.5, 1.5, 2.0, 3.0])
        u = rng.normal(0.0, [2.0, 0.5])
        tick = predict_tick(runtime, state, u, 10)
        with torch.no_grad():
            z = model.encode(torch.tensor(state[None], dtype=torch.float32))
            energy = float(model.energy(z)[0])
            grad = model.grad_energy(z)[0]
            forced = float(grad @ model.time_derivative(z, torch.tensor(u[None], dtype=torch.float32))[0])
            unforced = float(grad @ model.time_derivative(z)[0])
        scale = abs(forced) + abs(unforced) + 1e-3
        np.testing.assert_allclose(tick.latent, z[0].numpy(), rtol=1e-4, atol=1e-5)
        assert tick.energy_now == pytest.approx(energy, abs=0.05 * scale * runtime.dt + 1e-4)
        # one-step differences are taken about 1.5 steps ahead: first order in dt
        assert tick.power_claimed == pytest.approx(forced, abs=0.1 * scale)
        assert tick.power_unforced == pytest.approx(unforced, abs=0.1 * scale)
        assert tick.position.shape == (10, 2) and tick.hindsight is None


@pytest.mark.parametrize('members', [1, 3])
def test_between_states_get_the_energy_and_powers_of_their_own_ticks(tmp_path, members):
    """The earlier states batched into a tick (``between``) read as if each had had a tick of its own."""
    runtime = _export(_model(ensemble=members), tmp_path)
    rng = np.random.default_rng(2)
    states = rng.normal(0.0, [0.5, 1.5, 2.0, 3.0], size=(3, 4))
    inputs = rng.normal(0.0, [2.0, 0.5], size=(3, 2))
    now, past = rng.normal(0.0, [0.5, 1.5, 2.0, 3.0], size=(2, 4))
    tick = predict_tick(runtime, now, inputs[0], 6, past_state=past, past_inputs=inputs[:2], between=(states, inputs))
    assert tick.between.shape == (3, 3) and tick.finite
    for row, state, u in zip(tick.between, states, inputs):
        alone = predict_tick(runtime, state, u, 6)
        np.testing.assert_allclose(row, [alone.energy_now, alone.power_claimed, alone.power_unforced],
                                   rtol=1e-4, atol=1e-4)
    alone = predict_tick(runtime, now, inputs[0], 6, past_state=past, past_inputs=inputs[:2])
    assert tick.energy_now == pytest.approx(alone.energy_now, rel=1e-5, abs=1e-6)   # the other rows are unchanged
    np.testing.assert_allclose(tick.hindsight, alone.hindsight, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='between has 3 states and 2 inputs'):
        predict_tick(runtime, now, inputs[0], 6, between=(states, inputs[:2]))


def test_tracker_runs_an_ensemble_model(tmp_path):
    runtime = _export(_model(ensemble=3), tmp_path)
    tracker = ModelTracker(runtime, MonitorConfig(error_step=3), input_timeout=0.5)
    for i in range(60):
        t = 0.002 * i
        tracker.observe_input(t, [0.5, -0.1])
        tracker.observe_state(t, [0.1 * t, 0.2], [0.1, 0.0])
    result = tracker.tick(12)
    prediction = result.prediction
    assert prediction.position.shape == (12, 2) and prediction.latent.shape == (4,)
    assert prediction.ensemble_spread > 0, 'perturbed members disagree'
    assert prediction.hindsight is not None and result.report.values['evaluations'] == 1
    assert np.all(np.isfinite(prediction.latent_seq)) and np.isfinite(prediction.energy_now)
    np.testing.assert_allclose(result.input, [0.5, -0.1])


def test_ensemble_spread_is_scaled_by_the_exported_calibration(tmp_path):
    model = _model(ensemble=3)
    state, u = np.array([0.2, 0.1, 0.3, -0.2]), np.array([0.5, -0.1])
    raw = predict_tick(_export(model, tmp_path / 'raw'), state, u, 8).ensemble_spread
    model.spread_calibration = {'method': 'test', 'nominal': 0.95, 'steps': [1, 4, 16], 'factors': [1.5, 2.0, 4.0],
                                'info': {}}
    runtime = _export(model, tmp_path / 'calibrated')
    assert runtime.metadata.spread_calibration is not None
    calibrated = predict_tick(runtime, state, u, 8).ensemble_spread
    assert raw > 0 and calibrated == pytest.approx(raw * 2.0 * 2.0 ** 0.5, rel=1e-4)   # log-log between 4 and 16


def test_tracker_runs_a_camera_model_through_the_forecast_log(tmp_path):
    runtime = _export(_model(encoder='image', image_shape=(16, 16, 3), n_frames=2), tmp_path)
    assert runtime.metadata.images is not None
    tracker = ModelTracker(runtime, MonitorConfig(error_step=2), input_timeout=0.5)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(2, 16, 16, 3), dtype=np.uint8)
    assert tracker.tick(5, frames) is None, 'no joint state yet'
    evaluations = []
    for i in range(40):                      # joint states at 500 Hz, a tick every 10 ms
        t = 0.002 * i
        tracker.observe_state(t, [0.0, 0.1], [0.0, 0.0])
        if i % 5 == 0:
            result = tracker.tick(5, frames)
            assert result.prediction.position.shape == (5, 2)
            evaluations.append(result.report.values['evaluations'])
    # forecasts made 2 steps (20 ms) earlier come due and are compared with the joint states then
    assert evaluations[0] == 0 and evaluations[-1] >= 4
