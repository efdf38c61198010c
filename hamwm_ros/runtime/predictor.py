"""The world model as a robot runs it: encoder + predictor ONNX sessions behind one small facade.

```python
from hamwm_ros.runtime import WorldModelRuntime, SessionConfig
wm = WorldModelRuntime.load('models/cartpole', joint_names=urdf_joints, config=SessionConfig(providers=('cpu',)))
z = wm.encode(position, velocity)                  # (B, n) float32 (ensembles: (E, B, n))
out = wm.rollout(z, actions)                       # actions (B, H, m); any H
out.latent, out.observations, out.energy         # (B, H, n), (B, H, 2 * joints), (B, H)
out.position, out.velocity                         # (B, H, joints) views of out.observations
```

Horizons: the predictor graph has its horizon fixed at export (``metadata.horizon``). Shorter requests are padded
with zero actions and truncated (exact: step k depends only on actions up to k); longer ones chain calls, feeding the
last latent state of one call into the next.

No torch, no rclpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import time

import numpy as np

from hamwm_ros.runtime.metadata import (
    MetadataError,
    ModelMetadata,
    check_joint_order,
    load_metadata,
)
from hamwm_ros.runtime.session import ModelLoadError, OrtSession, SessionConfig


@dataclass
class Rollout:
    """Predicted futures. Ensembles carry a leading member axis on every array.

    Attribute names match :class:`hamwm_ros.mpc.rollout.Rollout`, so planners take this object as it is.
    """

    latent: np.ndarray
    observations: np.ndarray
    energy: np.ndarray
    n_joints: int

    @property
    def position(self) -> np.ndarray:
        """Predicted joint positions, (..., H, joints)."""
        return self.observations[..., :self.n_joints]

    @property
    def velocity(self) -> np.ndarray:
        """Predicted joint velocities, (..., H, joints)."""
        return self.observations[..., self.n_joints:]


class WorldModelRuntime:
    """Encoder and predictor sessions of one validated model directory.

    Use :meth:`load`; the constructor takes already-validated parts.
    """

    def __init__(self, directory: Path, metadata: ModelMetadata, encoder: OrtSession, predictor: OrtSession) -> None:
        self.directory = directory
        self.metadata = metadata
        self.encoder = encoder
        self.predictor = predictor

    @classmethod
    def load(cls, model_dir: str | Path, *, joint_names: Sequence[str] | None = None,
             config: SessionConfig | None = None) -> WorldModelRuntime:
        """Validate and load a model directory.

        Parameters
        ----------
        model_dir
            Directory with ``metadata.json``, ``encoder.onnx`` and ``predictor.onnx``.
        joint_names
            The joint order the caller works in (URDF or controller configuration). The model is refused if its
            order differs; map messages by name with :class:`hamwm_ros.jointmap.JointMap` before calling.
        config
            Providers, threads and warm-up batch sizes.

        Raises
        ------
        MetadataError
            If the metadata is missing or invalid, a file is missing or its hash differs, the joint order does not
            match, or (as :class:`ModelLoadError`) onnxruntime refuses a file or its signature contradicts the
            metadata. Nothing is kept from a failed load.
        """
        directory = Path(model_dir)
        meta = load_metadata(directory, check_files=True)
        if joint_names is not None:
            check_joint_order(meta, joint_names)
        encoder = OrtSession(directory / meta.files['encoder'].path, meta.files['encoder'], config)
        predictor = OrtSession(directory / meta.files['predictor'].path, meta.files['predictor'], config)
        return cls(directory, meta, encoder, predictor)

    # ------------------------------------------------------------------ properties
    @property
    def joint_names(self) -> tuple[str, ...]:
        """Joint order of every joint-shaped array."""
        return self.metadata.joint_names

    @property
    def dt(self) -> float:
        """Seconds per predicted step."""
        return self.metadata.dt

    @property
    def horizon(self) -> int:
        """Steps per predictor call (fixed at export)."""
        return self.metadata.horizon

    @property
    def providers(self) -> tuple[str, ...]:
        """Execution providers in use by the predictor session."""
        return self.predictor.providers

    # ------------------------------------------------------------------ inference
    def encode(self, position: np.ndarray | None = None, velocity: np.ndarray | None = None,
               images: np.ndarray | None = None) -> np.ndarray:
        """Latent state from joint states and/or stacked camera frames.

        Parameters
        ----------
        position, velocity
            (B, joints) or (joints,) in model joint order, physical units. Required when the model uses joints.
        images
            (B, frames, height, width, 3) or (frames, height, width, 3) uint8 rgb, oldest first. Required when the
            model uses images.

        Returns
        -------
        numpy.ndarray
            ``z`` (B, latent_dim) float32, (E, B, latent_dim) for ensembles; a fresh array.

        Raises
        ------
        ValueError
            If a required input is missing, shapes are wrong, or an input is not finite.
        """
        meta = self.metadata
        feeds = {}
        batch = None
        if meta.uses_joints:
            if position is None or velocity is None:
                raise ValueError('this model encodes joint states: position and velocity are required')
            obs = np.concatenate([np.atleast_2d(np.asarray(position, np.float32)),
                                  np.atleast_2d(np.asarray(velocity, np.float32))], axis=-1)
            if obs.ndim != 2 or obs.shape[1] != meta.obs_dim:
                raise ValueError(f'position/velocity must each be (B, {len(meta.joint_names)}), got {obs.shape}')
            if not np.all(np.isfinite(obs)):
                raise ValueError('joint state is not finite')
            feeds['obs'] = obs
            batch = obs.shape[0]
        if meta.images is not None:
            if images is None:
                raise ValueError('this model encodes camera frames: images are required')
            frames = np.asarray(images)
            if frames.ndim == 4:
                frames = frames[None]
            spec = meta.images
            want = (spec.frames, spec.height, spec.width, spec.channels)
            if frames.ndim != 5 or frames.shape[1:] != want or frames.dtype != np.uint8:
                raise ValueError(f'images must be uint8 (B, {", ".join(map(str, want))}), got {frames.dtype} '
                                 f'{frames.shape}')
            if batch is not None and frames.shape[0] != batch:
                raise ValueError(f'images batch {frames.shape[0]} differs from joint batch {batch}')
            feeds['images'] = frames
        return self.encoder.run(feeds, copy=True)['z']

    def rollout(self, z: np.ndarray, actions: np.ndarray, *, copy: bool = True) -> Rollout:
        """Roll the latent state forward under action sequences.

        Parameters
        ----------
        z
            (B, latent_dim) (ensembles: (E, B, latent_dim)) from :meth:`encode` or an earlier rollout.
        actions
            (B, H, action_dim) efforts in physical units, any H >= 1.
        copy
            When False and H equals the export horizon, the arrays returned are the session's reusable buffers
            (overwritten by the next call of the same batch size); the zero-allocation path for planners.

        Raises
        ------
        ValueError
            If shapes do not fit the model.
        """
        meta = self.metadata
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 3 or actions.shape[2] != meta.action_dim:
            raise ValueError(f'actions must be (B, H, {meta.action_dim}), got {actions.shape}')
        batch, steps = actions.shape[:2]
        if steps < 1:
            raise ValueError('actions must hold at least one step')
        z = np.asarray(z, dtype=np.float32)
        want_z = ((meta.ensemble,) if meta.ensemble > 1 else ()) + (batch, meta.latent_dim)
        if z.shape != want_z:
            raise ValueError(f'z must be {want_z} for {batch} action sequences, got {z.shape}')
        horizon = meta.horizon
        if steps == horizon:
            out = self.predictor.run({'z': z, 'actions': actions}, copy=copy)
            return Rollout(out['z_seq'], out['obs_seq'], out['energy'], len(meta.joint_names))
        pieces: dict[str, list[np.ndarray]] = {'z_seq': [], 'obs_seq': [], 'energy': []}
        step_axis = 2 if meta.ensemble > 1 else 1
        for start in range(0, steps, horizon):
            chunk = actions[:, start:start + horizon]
            used = chunk.shape[1]
            if used < horizon:
                chunk = np.concatenate([chunk, np.zeros((batch, horizon - used, meta.action_dim), np.float32)], 1)
            out = self.predictor.run({'z': z, 'actions': chunk})
            for key in pieces:
                pieces[key].append(np.take(out[key], np.arange(used), axis=step_axis))
            z = np.take(out['z_seq'], used - 1, axis=step_axis)
        joined = {k: np.concatenate(v, axis=step_axis) for k, v in pieces.items()}
        return Rollout(joined['z_seq'], joined['obs_seq'], joined['energy'], len(meta.joint_names))

    def cancel_runs(self, cancel: bool = True) -> None:
        """End the encoder's and the predictor's runs in progress and refuse new ones until ``cancel=False``.

        See :meth:`OrtSession.cancel_runs`: for a node that stops its planner while a long rollout is running.
        """
        self.encoder.cancel_runs(cancel)
        self.predictor.cancel_runs(cancel)

    def time_rollout(self, batch: int, steps: int | None = None, repeats: int = 3) -> float:
        """Median wall time in seconds of one :meth:`rollout` of ``batch`` sequences of ``steps`` steps.

        ``steps`` defaults to the export horizon; one untimed call comes first. The rollouts start from the zero
        latent under zero actions: the graphs have no data-dependent branches, so the values do not change the time.
        For a planner's budget check at start-up (the figure depends on the machine's load).

        Raises
        ------
        ValueError
            If ``batch``, ``steps`` or ``repeats`` is not positive.
        """
        meta = self.metadata
        steps = meta.horizon if steps is None else steps
        if min(batch, steps, repeats) < 1:
            raise ValueError(f'batch, steps and repeats must be >= 1, got {batch}, {steps}, {repeats}')
        z = np.zeros(((meta.ensemble,) if meta.ensemble > 1 else ()) + (batch, meta.latent_dim), np.float32)
        actions = np.zeros((batch, steps, meta.action_dim), np.float32)
        self.rollout(z, actions, copy=False)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.rollout(z, actions, copy=False)
            times.append(time.perf_counter() - start)
        return float(np.median(times))


__all__ = ['MetadataError', 'ModelLoadError', 'Rollout', 'SessionConfig', 'WorldModelRuntime']
