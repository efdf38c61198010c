"""Training data for the world model: trajectories from simulation, ROS 2 bags or npz files, and training windows.

Every source becomes a :class:`TrajectoryData`: a list of trajectories, each with observations (T+1, D) sampled at a
fixed ``dt``, the actions held over each interval (T, m), optionally camera frames (T+1, H, W, C) uint8 and optionally
observation time derivatives (T+1, D). For robots the observation is ``[joint positions, joint velocities]`` in
``joint_names`` order.

npz format (``--data npz:<file>``), arrays with a leading trajectory dimension N:

=================  ===================  ==========================================================================
key                shape                meaning
=================  ===================  ==========================================================================
``dt``             scalar               sample period in seconds (required)
``position``       (N, T+1, n)          joint positions; with ``velocity`` forms obs = [position, velocity]
``velocity``       (N, T+1, n)          joint velocities
``obs``            (N, T+1, D)          observations used as they are (instead of position/velocity), e.g. (q, p)
``action``         (N, T, m)            action held from sample t to t+1 (optional; absent = uncontrolled)
``images``         (N, T+1, H, W, C)    uint8 camera frames (optional)
``obs_dot``        (N, T+1, D)          time derivative of obs (optional; enables the derivative loss)
``joint_names``    (n,) str             joint order (optional)
``action_names``   (m,) str             action order (optional; defaults to joint_names when m == n)
=================  ===================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class DataError(ValueError):
    """Training data is missing, malformed or too short."""


@dataclass
class TrajectoryData:
    """Trajectories at a fixed sample period (see the module docstring)."""

    obs: list[np.ndarray]
    actions: list[np.ndarray]
    dt: float
    joint_names: list[str] = field(default_factory=list)
    action_names: list[str] = field(default_factory=list)
    images: list[np.ndarray] | None = None
    obs_dot: list[np.ndarray] | None = None
    source: str = ''

    def __post_init__(self) -> None:
        """Validate shapes and values.

        Raises
        ------
        DataError
            On empty data, inconsistent shapes or non-finite values.
        """
        if not self.obs:
            raise DataError(f'{self.source or "data"}: no trajectories')
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise DataError(f'{self.source}: dt must be positive, got {self.dt}')
        if len(self.actions) != len(self.obs):
            raise DataError(f'{self.source}: {len(self.obs)} observation and {len(self.actions)} action trajectories')
        d, m = self.obs[0].shape[-1], self.actions[0].shape[-1]
        for i, (o, a) in enumerate(zip(self.obs, self.actions)):
            if o.ndim != 2 or o.shape[1] != d or a.ndim != 2 or a.shape[1] != m or a.shape[0] != o.shape[0] - 1:
                raise DataError(f'{self.source}: trajectory {i} has obs {o.shape} and actions {a.shape}; expected '
                                f'(T+1, {d}) and (T, {m})')
            if not (np.isfinite(o).all() and np.isfinite(a).all()):
                raise DataError(f'{self.source}: trajectory {i} has non-finite values')
        for name in ('images', 'obs_dot'):
            arr = getattr(self, name)
            if arr is not None and [len(x) for x in arr] != [len(o) for o in self.obs]:
                raise DataError(f'{self.source}: {name} lengths do not match the observations')

    @property
    def obs_dim(self) -> int:
        """Observation size D."""
        return int(self.obs[0].shape[-1])

    @property
    def action_dim(self) -> int:
        """Action size m."""
        return int(self.actions[0].shape[-1])

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(H, W, C) of the frames, or None."""
        return None if self.images is None else tuple(int(v) for v in self.images[0].shape[1:])

    @property
    def n_transitions(self) -> int:
        """Total number of (obs, action, next obs) transitions."""
        return int(sum(len(a) for a in self.actions))

    def normalisation(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Observation mean and std, and action scale (root mean square, so zero effort stays zero)."""
        allobs = np.concatenate(self.obs, 0)
        allact = np.concatenate(self.actions, 0) if self.action_dim else np.zeros((1, 0))
        scale = np.sqrt(np.mean(allact ** 2, 0)) if len(allact) else np.ones(self.action_dim)
        return allobs.mean(0), allobs.std(0), np.where(scale > 1e-6, scale, 1.0)

    def sha256(self) -> str:
        """Hash of the numeric content (goes into model metadata as the training-data hash)."""
        h = hashlib.sha256()
        h.update(np.float64(self.dt).tobytes())
        for o, a in zip(self.obs, self.actions):
            h.update(np.ascontiguousarray(o, dtype=np.float64).tobytes())
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()

    def subset(self, indices: list[int]) -> TrajectoryData:
        """The trajectories at ``indices``."""
        def pick(seq: list[np.ndarray] | None) -> list[np.ndarray] | None:
            return None if seq is None else [seq[i] for i in indices]

        return TrajectoryData(pick(self.obs), pick(self.actions), self.dt, list(self.joint_names),
                              list(self.action_names), pick(self.images), pick(self.obs_dot), self.source)

    def split(self, val_fraction: float, min_length: int, seed: int = 0
              ) -> tuple[TrajectoryData, TrajectoryData | None]:
        """Train/validation split: whole trajectories when there are >= 5, else the tail of each in time.

        Parameters
        ----------
        val_fraction
            Fraction held out (0 disables validation).
        min_length
            Samples a validation piece needs (window length) to be useful.
        seed
            Shuffle seed for the trajectory split.
        """
        if val_fraction <= 0:
            return self, None
        n = len(self.obs)
        if n >= 5:
            order = np.random.default_rng(seed).permutation(n).tolist()
            n_val = max(1, int(round(val_fraction * n)))
            return self.subset(sorted(order[n_val:])), self.subset(sorted(order[:n_val]))
        train, val = [], []
        for i, o in enumerate(self.obs):
            cut = len(o) - max(min_length, int(round(val_fraction * len(o))))
            if cut >= min_length:
                train.append((i, 0, cut + 1))
                val.append((i, cut, len(o)))
            else:
                train.append((i, 0, len(o)))
        if not val:
            return self, None
        return self._slices(train), self._slices(val)

    def _slices(self, spec: list[tuple[int, int, int]]) -> TrajectoryData:
        def cut(seq: list[np.ndarray] | None, off: int = 0) -> list[np.ndarray] | None:
            return None if seq is None else [seq[i][a:b - off] for i, a, b in spec]
        return TrajectoryData(cut(self.obs), cut(self.actions, 1), self.dt, list(self.joint_names),
                              list(self.action_names), cut(self.images), cut(self.obs_dot), self.source)


def from_position_velocity(position: np.ndarray, velocity: np.ndarray, action: np.ndarray | None, dt: float, *,
                           joint_names: list[str] | None = None, action_names: list[str] | None = None,
                           images: np.ndarray | None = None, source: str = '') -> TrajectoryData:
    """Build trajectories from batched arrays (N, T+1, n) as ``generate_rollouts`` returns them.

    Raises
    ------
    DataError
        On inconsistent shapes.
    """
    position, velocity = np.asarray(position, np.float64), np.asarray(velocity, np.float64)
    if position.ndim != 3 or position.shape != velocity.shape:
        raise DataError(f'{source}: position {position.shape} and velocity {velocity.shape} must be equal (N, T+1, n)')
    obs = np.concatenate([position, velocity], -1)
    n, t1, nj = position.shape
    act = np.zeros((n, t1 - 1, 0)) if action is None else np.asarray(action, np.float64)
    joint_names = list(joint_names) if joint_names is not None else [f'joint_{i}' for i in range(nj)]
    if action_names is None:
        action_names = list(joint_names) if act.shape[-1] == nj else [f'action_{i}' for i in range(act.shape[-1])]
    return TrajectoryData(list(obs), list(act), float(dt), joint_names, list(action_names),
                          None if images is None else list(np.asarray(images)), None, source)


def load_npz(path: str | Path) -> TrajectoryData:
    """Load trajectories from an npz file (keys in the module docstring).

    Raises
    ------
    DataError
        If the file is missing or unreadable, or keys are missing or malformed.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f'npz file not found: {p}')
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:  # zip/format errors come in many types
        raise DataError(f'cannot read npz file {p}: {err}') from err
    if 'dt' not in arrays:
        raise DataError(f'{p}: missing key "dt" (sample period in seconds)')
    dt = float(np.asarray(arrays['dt']).reshape(-1)[0])
    names = [str(v) for v in arrays['joint_names']] if 'joint_names' in arrays else None
    action_names = [str(v) for v in arrays['action_names']] if 'action_names' in arrays else None
    images = arrays.get('images')
    if 'obs' in arrays:
        obs = np.asarray(arrays['obs'], np.float64)
        if obs.ndim != 3:
            raise DataError(f'{p}: obs must be (N, T+1, D), got {obs.shape}')
        act = np.asarray(arrays['action'], np.float64) if 'action' in arrays else np.zeros((*obs.shape[:2], 0))[:, 1:]
        obs_dot = arrays.get('obs_dot')
        return TrajectoryData(list(obs), list(act), dt, names or [], action_names or [],
                              None if images is None else list(images),
                              None if obs_dot is None else list(np.asarray(obs_dot, np.float64)), str(p))
    if 'position' not in arrays or 'velocity' not in arrays:
        raise DataError(f'{p}: needs "obs" or both "position" and "velocity"; keys are {sorted(arrays)}')
    data = from_position_velocity(arrays['position'], arrays['velocity'], arrays.get('action'), dt,
                                  joint_names=names, action_names=action_names, images=images, source=str(p))
    if 'obs_dot' in arrays:
        data.obs_dot = list(np.asarray(arrays['obs_dot'], np.float64))
    return data


def save_npz(data: TrajectoryData, path: str | Path) -> Path:
    """Write equal-length trajectories in the npz format of :func:`load_npz` (``obs`` form).

    Raises
    ------
    DataError
        If trajectories differ in length.
    """
    if len({len(o) for o in data.obs}) != 1:
        raise DataError('save_npz needs trajectories of equal length')
    out = {'dt': np.float64(data.dt), 'obs': np.stack(data.obs), 'action': np.stack(data.actions)}
    if data.joint_names:
        out['joint_names'] = np.array(data.joint_names)
    if data.action_names:
        out['action_names'] = np.array(data.action_names)
    if data.images is not None:
        out['images'] = np.stack(data.images)
    if data.obs_dot is not None:
        out['obs_dot'] = np.stack(data.obs_dot)
    np.savez_compressed(path, **out)
    return Path(path)


def load_sim(robot: str, n_trajectories: int, steps: int, control_dt: float, seed: int,
             render_size: tuple[int, int] | None = None, action_source: str = 'applied') -> TrajectoryData:
    """Roll out a simulated robot with exciting inputs (``hamwm_ros.sim.rollouts.generate_rollouts``).

    ``action_source``: ``'applied'`` (the effort that acted on the joints) or ``'feedforward'`` (the humanoid's
    feed-forward effort over its PD hold).

    Raises
    ------
    DataError
        If the robot is unknown or the simulator is not available.
    """
    try:
        from hamwm_ros.sim.rollouts import generate_rollouts
    except ImportError as err:
        raise DataError(f'simulated data needs hamwm_ros.sim.rollouts (MuJoCo): {err}') from err
    try:
        out = generate_rollouts(robot, n_trajectories, steps, control_dt, seed, render_size=render_size,
                                action_source=action_source)
    except (KeyError, ValueError) as err:
        raise DataError(f'cannot simulate robot {robot!r}: {err}') from err
    return from_position_velocity(out['position'], out['velocity'], out['action'], float(out['dt']),
                                  joint_names=list(out['joint_names']), images=out.get('images'),
                                  source=f'sim:{robot}')


def load_data(spec: str, *, seed: int = 0, sim_trajectories: int = 64, sim_steps: int = 200,
              sim_control_dt: float = 0.02, render_size: tuple[int, int] | None = None,
              bag_options: dict[str, Any] | None = None, sim_action_source: str = 'applied') -> TrajectoryData:
    """Load ``sim:<robot>``, ``bag:<path>[,<path>...]`` or ``npz:<file>``.

    ``sim_action_source`` is :func:`load_sim`'s ``action_source`` (simulated data only).

    Raises
    ------
    DataError
        On an unknown scheme or unreadable data (bag errors are :class:`~hamwm_ros.worldmodel.bags.BagError`, also a
        DataError).
    """
    scheme, _, rest = spec.partition(':')
    if not rest:
        raise DataError(f'data must be sim:<robot>, bag:<path> or npz:<file>, got {spec!r}')
    if scheme == 'sim':
        return load_sim(rest, sim_trajectories, sim_steps, sim_control_dt, seed, render_size,
                        action_source=sim_action_source)
    if scheme == 'npz':
        return load_npz(rest)
    if scheme == 'bag':
        from .bags import read_bags
        return read_bags([p for p in rest.split(',') if p], **(bag_options or {}))
    raise DataError(f'unknown data scheme {scheme!r} in {spec!r} (use sim:, bag: or npz:)')


class WindowDataset(Dataset):
    """Fixed-length training windows cut from trajectories.

    Item ``i`` is a dict of tensors: float32 ``obs`` (H+1, D), ``actions`` (H, m), the int64 index ``traj`` of the
    trajectory it was cut from (for per-trajectory bootstrap weights), and when present ``images``
    (n_frames - 1 + H + 1, Hi, Wi, C) uint8 (the first ``n_frames`` stack encodes the start state; frame
    ``n_frames - 1 + t`` is the target at step t) and ``obs_dot`` (H+1, D).

    Parameters
    ----------
    data
        Trajectories.
    horizon
        Rollout length H.
    stride
        Step between window starts.
    n_frames
        Frames stacked by an image encoder (history needed before the window start).
    use_images
        Include frames.

    Raises
    ------
    DataError
        If no trajectory is long enough for one window.
    """

    def __init__(self, data: TrajectoryData, horizon: int, stride: int = 1, n_frames: int = 1,
                 use_images: bool = False) -> None:
        self.data, self.horizon, self.history = data, horizon, (n_frames - 1 if use_images else 0)
        self.use_images = use_images and data.images is not None
        self.index = [(i, s) for i, o in enumerate(data.obs)
                      for s in range(self.history, len(o) - horizon, max(1, stride))]
        if not self.index:
            longest = max(len(o) for o in data.obs)
            raise DataError(f'{data.source}: no trajectory is long enough for a {horizon}-step window '
                            f'(longest has {longest} samples); lower --horizon or record longer')

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        """Window ``k``."""
        i, s = self.index[k]
        h = self.horizon
        item = {'obs': torch.from_numpy(self.data.obs[i][s:s + h + 1].astype(np.float32)),
                'actions': torch.from_numpy(self.data.actions[i][s:s + h].astype(np.float32)),
                'traj': torch.tensor(i, dtype=torch.long)}
        if self.use_images:
            item['images'] = torch.from_numpy(np.ascontiguousarray(self.data.images[i][s - self.history:s + h + 1]))
        if self.data.obs_dot is not None:
            item['obs_dot'] = torch.from_numpy(self.data.obs_dot[i][s:s + h + 1].astype(np.float32))
        return item
