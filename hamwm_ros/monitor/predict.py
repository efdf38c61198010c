"""One world-model tick: encode the current state, forecast, and gather what the validity monitor needs.

Everything goes through :class:`hamwm_ros.runtime.WorldModelRuntime` in two batched calls (one ``encode``, one
``rollout``), so a tick costs about as much as a single forecast:

* row 0: the forecast published to the graph, under the input in force (held);
* row 1: the same state with zero input, whose energy gives the power the model claims without input (passivity);
* row 2 (when the past state is known): a *hindsight* rollout from the state k model steps ago under the inputs that
  were really applied since, whose k-th state is compared with the state now. Unlike a stored forecast it does not
  blame the model for input changes it could not know about;
* then two rows (input in force, zero input) for each earlier observed state passed as ``between``: the energy and
  the claimed powers there, so the monitor integrates the claimed power at the model's step rather than its tick rate
  (a tick every 50 ms under-samples the power of a robot on a stiff PD hold).

What the ONNX predictor exposes is ``z_seq``, ``obs_seq`` and ``energy`` *after* each step, not H at the start state
nor the terms of dH/dt. So H at the encoded observed state is extrapolated from the first two energies of the
unforced rollout (exact to O(dt^2)), and the claimed powers are one-step differences of the energies, which for the
model's structure-preserving integrator approximate -dH^T R dH + dH^T G u (+ residual) to O(dt).

No rclpy, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hamwm_ros.mpc.swingup import wrap_angle
from hamwm_ros.runtime import WorldModelRuntime


@dataclass
class TickPrediction:
    """Result of :func:`predict_tick` (member means for ensembles).

    Attributes
    ----------
    latent
        (latent_dim,) encoded current state z = (q, p).
    latent_seq
        (H, latent_dim) forecast latent states, step k after k + 1 actions.
    position, velocity
        (H, joints) forecast joint positions and velocities.
    energy
        (H,) forecast energy.
    energy_now
        H at the encoded current state (extrapolated, see the module docstring).
    power_claimed, power_unforced
        The model's dH/dt at the current state under the held input and with zero input.
    hindsight
        (2 joints,) state now as predicted from the state k steps ago under the recorded inputs, or None.
    between
        (k, 3) energy, claimed power and unforced power at the earlier states given to :func:`predict_tick` as
        ``between`` (in their order), or None.
    ensemble_spread
        Mean standard deviation across ensemble members of the final forecast observation (0 without an ensemble),
        times the model's spread calibration factor at that horizon when its metadata has one.
    finite
        False when any model output was NaN or Inf (then nothing of it may be published).
    """

    latent: np.ndarray
    latent_seq: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    energy: np.ndarray
    energy_now: float
    power_claimed: float
    power_unforced: float
    hindsight: np.ndarray | None
    ensemble_spread: float
    finite: bool
    between: np.ndarray | None = None


def model_energy_scale(runtime: WorldModelRuntime, samples: int = 64, seed: int = 0) -> float:
    """The model's typical spread of H (model energy units).

    The standard deviation of H over joint states drawn from the model's normalisation statistics (obs_mean +-
    obs_std), i.e. roughly over its training distribution.

    Returns 1.0 for models that encode only images (no joint states to draw) or when the spread is not positive.
    """
    meta = runtime.metadata
    if not meta.uses_joints or meta.images is not None:
        return 1.0
    n = len(meta.joint_names)
    rng = np.random.default_rng(seed)
    mean, std = (np.asarray(meta.normalisation[k], np.float64) for k in ('obs_mean', 'obs_std'))
    obs = mean + std * rng.standard_normal((samples, 2 * n))
    z = runtime.encode(obs[:, :n], obs[:, n:])
    energy = runtime.rollout(z, np.zeros((samples, 2, meta.action_dim), np.float32)).energy
    if meta.ensemble > 1:
        energy = energy.mean(axis=0)
    spread = float(np.std(2.0 * energy[:, 0] - energy[:, 1]))
    return spread if np.isfinite(spread) and spread > 0 else 1.0


def predict_tick(runtime: WorldModelRuntime, state: np.ndarray, u_hold: np.ndarray, horizon: int, *,
                 past_state: np.ndarray | None = None, past_inputs: np.ndarray | None = None,
                 images: np.ndarray | None = None, wrap_joints: Sequence[int] = (),
                 between: tuple[np.ndarray, np.ndarray] | None = None) -> TickPrediction:
    """Forecast ``horizon`` steps from ``state`` and prepare the monitor's evidence.

    Parameters
    ----------
    runtime
        A loaded model.
    state
        (2 joints,) current positions then velocities in model joint order; may be None for image-only models.
    u_hold
        (action_dim,) input assumed held over the forecast.
    horizon
        Forecast steps (>= 2, so the energy differences exist).
    past_state, past_inputs
        The state k steps ago and the (k, action_dim) inputs applied since; both or neither. Not for models that
        encode images (their past frames are not kept).
    images
        (frames, height, width, 3) uint8 for models with an image encoder.
    wrap_joints
        Joints (model order) whose angle is shifted by whole turns into [-pi, pi) before encoding (as the swing-up
        controller wraps it), and the forecast and hindsight shifted back by the same turns: a model trained on
        angles there (the shipped pendulum and cart-pole) extrapolates badly beyond them, and a joint turned over is
        the same physical state.
    between
        Earlier observed states (k, 2 joints) and the inputs in force at each (k, action_dim): the energy and claimed
        powers there come back as ``TickPrediction.between``. Not for models that encode images.

    Raises
    ------
    ValueError
        If shapes do not fit the model, ``horizon`` < 2, a hindsight or ``between`` request is made for an image
        model, or a ``wrap_joints`` index is not a joint of the model.
    """
    meta = runtime.metadata
    n = len(meta.joint_names)
    if horizon < 2:
        raise ValueError(f'horizon must be >= 2, got {horizon}')
    wrap = [int(j) for j in wrap_joints]
    if any(not 0 <= j < n for j in wrap):
        raise ValueError(f'wrap_joints {wrap} must index the model\'s {n} joints')
    u_hold = np.asarray(u_hold, np.float32).reshape(-1)
    if u_hold.shape != (meta.action_dim,):
        raise ValueError(f'u_hold must have {meta.action_dim} entries, got {u_hold.shape}')
    hindsight = past_state is not None
    if hindsight and (past_inputs is None or meta.images is not None):
        raise ValueError('hindsight needs past_inputs and a model without an image encoder')
    extra_states = extra_inputs = None
    if between is not None:
        if meta.images is not None:
            raise ValueError('between needs a model without an image encoder')
        extra_states = np.asarray(between[0], np.float64).reshape(-1, 2 * n)
        extra_inputs = np.asarray(between[1], np.float32).reshape(-1, meta.action_dim)
        if len(extra_states) != len(extra_inputs):
            raise ValueError(f'between has {len(extra_states)} states and {len(extra_inputs)} inputs')
    steps = horizon
    k = 0
    if hindsight:
        past_inputs = np.asarray(past_inputs, np.float32).reshape(-1, meta.action_dim)
        k = past_inputs.shape[0]
        if k < 1:
            raise ValueError('past_inputs must hold at least one step')
        steps = max(horizon, k)

    if meta.uses_joints:
        rows = [np.asarray(state, np.float64)] + ([np.asarray(past_state, np.float64)] if hindsight else [])
        if extra_states is not None:
            rows += list(extra_states)
        obs = np.stack(rows)
        if obs.shape[1] != 2 * n:
            raise ValueError(f'states must have {2 * n} entries (positions then velocities), got {obs.shape[1]}')
        turns = np.zeros((len(obs), n))     # whole turns taken off each row's wrapped joints, added back below
        turns[:, wrap] = obs[:, wrap] - wrap_angle(obs[:, wrap])
        obs[:, :n] -= turns
        z = runtime.encode(obs[:, :n], obs[:, n:], images=None if images is None else images[None])
    else:
        z = runtime.encode(images=images[None])
        turns = np.zeros((2, n))
    member = meta.ensemble > 1
    z_now = z[..., :1, :]
    batch_z = [z_now, z_now] + ([z[..., 1:2, :]] if hindsight else [])
    first_extra = len(batch_z)      # rows of the earlier states: (input in force, zero input) for each
    if extra_states is not None:
        z_extra = z[..., 1 + int(hindsight):, :]
        batch_z.append(np.repeat(z_extra, 2, axis=-2))
    zz = np.concatenate(batch_z, axis=-2)
    actions = np.zeros((zz.shape[-2], steps, meta.action_dim), np.float32)
    actions[0] = u_hold
    if hindsight:
        actions[2, :k] = past_inputs
    if extra_states is not None:
        actions[first_extra::2, 0] = extra_inputs
    out = runtime.rollout(zz, actions)
    latent_seq, obs_seq, energy = out.latent, out.observations, out.energy
    spread = 0.0
    if member:   # mean over members; the spread says how much they disagree
        spread = float(np.mean(np.std(obs_seq[:, 0, horizon - 1], axis=0)))
        calibration = getattr(meta, 'spread_calibration', None)
        if calibration is not None:   # calibrated at training time so that +-1.96 spread covers 95 % on held-out data
            spread *= float(calibration.factor([horizon])[0])
        latent_seq, obs_seq, energy, z_now = (a.mean(axis=0) for a in (latent_seq, obs_seq, energy, z_now))
    finite = bool(np.all(np.isfinite(latent_seq)) and np.all(np.isfinite(obs_seq)) and np.all(np.isfinite(energy))
                  and np.all(np.isfinite(z_now)))
    dt = meta.dt
    e_free = energy[1].astype(np.float64)
    e_forced = energy[0].astype(np.float64)
    energy_now = float(2.0 * e_free[0] - e_free[1])
    between_out = None
    if extra_states is not None:
        forced = energy[first_extra::2, 0].astype(np.float64)
        free = energy[first_extra + 1::2, :2].astype(np.float64)
        level = 2.0 * free[:, 0] - free[:, 1]
        between_out = np.stack([level, (forced - level) / dt, (free[:, 0] - level) / dt], axis=1)
    return TickPrediction(
        latent=z_now[0].astype(np.float64),
        latent_seq=latent_seq[0, :horizon].astype(np.float64),
        position=obs_seq[0, :horizon, :n].astype(np.float64) + turns[0],
        velocity=obs_seq[0, :horizon, n:].astype(np.float64),
        energy=e_forced[:horizon],
        energy_now=energy_now,
        power_claimed=float((e_forced[0] - energy_now) / dt),
        power_unforced=float((e_free[0] - energy_now) / dt),
        hindsight=obs_seq[2, k - 1].astype(np.float64) + np.concatenate([turns[1], np.zeros(n)]) if hindsight else None,
        ensemble_spread=spread,
        finite=finite and (between_out is None or bool(np.all(np.isfinite(between_out)))),
        between=between_out,
    )
