"""Read recorded ROS 2 bags (rosbag2, sqlite3 or MCAP) into training trajectories with the ``rosbags`` library.

What is read:

* ``sensor_msgs/msg/JointState`` on ``joint_topic``: positions (and velocities, else finite differences) matched to the
  model's joint order **by name** (:class:`~hamwm_ros.jointmap.JointMap`: any order, extra joints ignored), timed by
  ``header.stamp`` (the bag's receive time when the stamp is zero).
* ``std_msgs/msg/Float64MultiArray`` effort commands on ``command_topic`` (ros2_control forward command controllers):
  the message has no names, so ``command_joints`` gives the joint of each entry (default: the model joints); timed by
  receive time. Without a command topic the measured ``effort`` field of JointState is used when present.
* ``sensor_msgs/msg/Image`` on ``image_topic`` (optional): rgb8/bgr8/rgba8/bgra8/mono8, resized to ``image_size``.

Streams are aligned on one time grid of period ``dt`` (default: the median JointState period): joint states are
linearly interpolated, commands and images held from the last message (zero-order hold, as a controller applies
them). A gap longer than ``gap_factor * dt`` in the joint states starts a new trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hamwm_ros.jointmap import JointMap, JointMapError

from .data import DataError, TrajectoryData

JOINT_STATE = 'sensor_msgs/msg/JointState'
FLOAT_ARRAY = 'std_msgs/msg/Float64MultiArray'
IMAGE = 'sensor_msgs/msg/Image'


class BagError(DataError):
    """A bag cannot be used for training (unreadable, empty, missing topics or joints)."""


def find_bags(paths: Sequence[str | Path]) -> list[Path]:
    """Expand paths into rosbag2 bag directories.

    A path is a bag directory (it holds ``metadata.yaml``), a bare ``.mcap``/``.db3`` file's directory, or a folder
    of bags (each sub-directory holding ``metadata.yaml``, e.g. a fleet's logs).

    Raises
    ------
    BagError
        If a path does not exist or holds no bag.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise BagError(f'bag path does not exist: {p}')
        if p.is_file():
            p = p.parent
        if (p / 'metadata.yaml').is_file():
            out.append(p)
            continue
        children = sorted(c for c in p.iterdir() if (c / 'metadata.yaml').is_file())
        if not children:
            raise BagError(f'{p} is not a rosbag2 bag (no metadata.yaml) and holds no bags')
        out.extend(children)
    return out


def _stamp(msg: object, fallback_ns: int) -> float:
    header = getattr(msg, 'header', None)
    if header is not None:
        ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        if ns > 0:
            return ns * 1e-9
    return fallback_ns * 1e-9


def image_to_rgb(msg: object, size: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 rgb, optionally resized (nearest) to ``size`` = (width, height).

    Raises
    ------
    BagError
        On an unsupported encoding or a data size that does not match the header.
    """
    enc = str(msg.encoding).lower()
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, '8uc1': 1, '8uc3': 3}.get(enc)
    if channels is None:
        raise BagError(f'unsupported image encoding {msg.encoding!r} (use rgb8, bgr8, rgba8, bgra8 or mono8)')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size < h * step or step < w * channels:
        raise BagError(f'image data has {data.size} bytes for {w}x{h} {enc} (step {step})')
    img = data[:h * step].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif enc.startswith('bgr'):
        img = img[..., 2::-1]
    else:
        img = img[..., :3]
    if size is not None and (w, h) != tuple(size):
        rows = (np.arange(size[1]) * h // size[1]).clip(0, h - 1)
        cols = (np.arange(size[0]) * w // size[0]).clip(0, w - 1)
        img = img[rows][:, cols]
    return np.ascontiguousarray(img)


def _read_one(path: Path, joint_topic: str, command_topic: str | None, image_topic: str | None,
              image_size: tuple[int, int] | None, joints: list[str] | None, command_joints: list[str] | None
              ) -> dict:
    """Raw, unaligned streams of one bag."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as err:  # rosbags raises reader-, storage- and yaml-specific errors
        raise BagError(f'cannot open bag {path}: {type(err).__name__}: {err}') from err
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        if joint_topic not in topics:
            raise BagError(f'bag {path} has no topic {joint_topic!r}; topics: {sorted(topics) or "none"}')
        if topics[joint_topic] != JOINT_STATE:
            raise BagError(f'{joint_topic} in {path} is {topics[joint_topic]}, expected {JOINT_STATE}')
        if command_topic is None:  # auto-detect a single effort-command stream
            candidates = [t for t, ty in topics.items() if ty == FLOAT_ARRAY]
            command_topic = candidates[0] if len(candidates) == 1 else None
        elif command_topic not in topics:
            raise BagError(f'bag {path} has no command topic {command_topic!r}; topics: {sorted(topics)}')
        if image_topic is not None and image_topic not in topics:
            raise BagError(f'bag {path} has no image topic {image_topic!r}; topics: {sorted(topics)}')
        wanted = {joint_topic, command_topic, image_topic} - {None}
        conns = [c for c in reader.connections if c.topic in wanted]
        js_t, js_pos, js_vel, js_eff, cmd_t, cmd, img_t, imgs = [], [], [], [], [], [], [], []
        jmap: JointMap | None = JointMap(joints) if joints else None
        has_vel, has_eff = True, True
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == joint_topic:
                if jmap is None:  # default joint order: the first message's
                    jmap = JointMap(list(msg.name))
                names = list(msg.name)
                try:
                    js_pos.append(jmap.reorder(names, msg.position, field='position'))
                    vel = jmap.reorder(names, msg.velocity, field='velocity', allow_empty=True)
                    eff = jmap.reorder(names, msg.effort, field='effort', allow_empty=True)
                except JointMapError as err:
                    raise BagError(f'{path}: {joint_topic} at t={t_ns * 1e-9:.3f}s: {err}') from err
                has_vel &= vel is not None
                has_eff &= eff is not None
                js_vel.append(vel)
                js_eff.append(eff)
                js_t.append(_stamp(msg, t_ns))
            elif conn.topic == command_topic:
                cmd_t.append(t_ns * 1e-9)
                cmd.append(np.asarray(msg.data, dtype=np.float64))
            else:
                img_t.append(_stamp(msg, t_ns))
                imgs.append(image_to_rgb(msg, image_size))
    except BagError:
        raise
    except Exception as err:  # corrupt chunks surface only while iterating
        raise BagError(f'cannot read bag {path}: {type(err).__name__}: {err}') from err
    finally:
        reader.close()
    if not js_t:
        raise BagError(f'bag {path} has no messages on {joint_topic}')
    if image_topic is not None and not imgs:
        raise BagError(f'bag {path} has no messages on {image_topic}')
    names = list(jmap.target_names)
    out = {'t': np.asarray(js_t), 'pos': np.stack(js_pos), 'joints': names,
           'vel': np.stack(js_vel) if has_vel else None, 'img_t': np.asarray(img_t), 'imgs': imgs}
    if command_topic is not None and cmd:
        cjoints = list(command_joints) if command_joints else names
        action_names = [n for n in names if n in cjoints]
        if not action_names:
            raise BagError(f'{path}: none of the command joints {cjoints} is a model joint {names}')
        amap = JointMap(action_names)
        try:
            out['act'] = np.stack([amap.reorder(cjoints, c, field=command_topic) for c in cmd])
        except JointMapError as err:
            raise BagError(f'{path}: {command_topic}: {err} (commands are mapped with command_joints={cjoints})'
                           ) from err
        out['act_t'], out['action_names'] = np.asarray(cmd_t), action_names
    elif command_topic is not None:
        raise BagError(f'bag {path} has no messages on {command_topic}')
    elif has_eff:
        out['act_t'], out['act'], out['action_names'] = out['t'], np.stack(js_eff), names
    return out


def _hold(t_src: np.ndarray, t_grid: np.ndarray) -> np.ndarray:
    """Index of the last source sample at or before each grid time (-1 when none)."""
    return np.searchsorted(t_src, t_grid, side='right') - 1


def read_bags(paths: Sequence[str | Path], *, joint_topic: str = '/joint_states', command_topic: str | None = None,
              command_joints: Sequence[str] | None = None, joints: Sequence[str] | None = None,
              image_topic: str | None = None, image_size: tuple[int, int] | None = None, dt: float | None = None,
              gap_factor: float = 5.0) -> TrajectoryData:
    """Read, align and resample bags into trajectories (see the module docstring).

    Parameters
    ----------
    paths
        Bag directories or folders of bags.
    joint_topic, command_topic, image_topic
        Topics; ``command_topic`` None auto-detects a single Float64MultiArray topic.
    command_joints
        Joint of each command entry (default: ``joints``).
    joints
        Model joint order (default: the first JointState message's order).
    image_size
        (width, height) frames are resized to.
    dt
        Resampling period (default: median JointState period of the first bag).
    gap_factor
        Joint-state gaps longer than ``gap_factor * dt`` split trajectories.

    Raises
    ------
    BagError
        On unreadable or empty bags, missing topics or joints, or too little data.
    """
    bags = find_bags(paths)
    joints = list(joints) if joints else None
    segments, img_segments, action_names, names = [], [], None, None
    for path in bags:
        raw = _read_one(path, joint_topic, command_topic, image_topic, image_size, joints, command_joints)
        joints = joints or raw['joints']  # later bags must match the first bag's joints
        names = raw['joints']
        order = np.argsort(raw['t'], kind='stable')
        t = raw['t'][order]
        pos = raw['pos'][order]
        vel = raw['vel'][order] if raw['vel'] is not None else None
        keep = np.concatenate([[True], np.diff(t) > 0])  # drop duplicate stamps
        t, pos, vel = t[keep], pos[keep], (vel[keep] if vel is not None else None)
        if len(t) < 2:
            raise BagError(f'bag {path} has fewer than 2 joint states on {joint_topic}')
        if dt is None:
            dt = float(np.median(np.diff(t)))
        if 'act' in raw:
            if action_names is not None and raw['action_names'] != action_names:
                raise BagError(f'{path}: action joints {raw["action_names"]} differ from {action_names}')
            action_names = raw['action_names']
        elif action_names:
            raise BagError(f'{path}: no effort commands, but earlier bags had them')
        # Split at gaps, then resample each segment on its own grid.
        breaks = np.flatnonzero(np.diff(t) > gap_factor * dt) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(t)]):
            ts = t[lo:hi]
            start = ts[0]
            if 'act' in raw:
                start = max(start, raw['act_t'][0])
            if image_topic is not None:
                start = max(start, raw['img_t'][0])
            if ts[-1] - start < dt:
                continue
            # a grid point within 0.1 % of dt past the last sample still counts (stamps jitter by microseconds)
            grid = start + dt * np.arange(int(np.floor((ts[-1] - start) / dt + 1e-3)) + 1)
            p = np.stack([np.interp(grid, ts, pos[lo:hi, j]) for j in range(pos.shape[1])], 1)
            if vel is not None:
                v = np.stack([np.interp(grid, ts, vel[lo:hi, j]) for j in range(vel.shape[1])], 1)
            else:
                v = np.gradient(p, dt, axis=0)
            if 'act' in raw:
                a = raw['act'][_hold(raw['act_t'], grid[:-1])]
            else:
                a = np.zeros((len(grid) - 1, 0))
            segments.append((np.concatenate([p, v], 1), a))
            if image_topic is not None:
                img_segments.append(np.stack([raw['imgs'][i] for i in _hold(raw['img_t'], grid)]))
    if not segments:
        raise BagError(f'no usable trajectories in {[str(b) for b in bags]} (segments shorter than dt={dt})')
    return TrajectoryData([s[0] for s in segments], [s[1] for s in segments], float(dt), list(names),
                          list(action_names or []), img_segments or None, None,
                          'bag:' + ','.join(str(b) for b in bags))
