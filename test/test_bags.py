"""Reading real rosbag2 bags (written with rosbags, sqlite3 and MCAP) into training data, and training on them."""

import json

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
import torch

from hamwm_ros.worldmodel.bags import BagError, image_to_rgb, read_bags
from hamwm_ros.worldmodel.train import main as train_main

torch.set_num_threads(1)
TS = get_typestore(Stores.ROS2_HUMBLE)
JOINTS = ['shoulder', 'elbow']
DT = 0.01


def _simulate(n=300, seed=0):
    """A damped two-joint system driven by effort commands (ground truth for the bag)."""
    rng = np.random.default_rng(seed)
    q = np.zeros((n + 1, 2))
    v = np.zeros((n + 1, 2))
    u = np.repeat(rng.normal(0, 2, (n // 10 + 1, 2)), 10, axis=0)[:n]
    q[0] = [0.3, -0.2]
    for t in range(n):
        acc = -4.0 * np.sin(q[t]) - 0.5 * v[t] + u[t]
        v[t + 1] = v[t] + DT * acc
        q[t + 1] = q[t] + DT * v[t + 1]
    return q, v, u


def _joint_state(t, names, pos, vel, eff):
    JS = TS.types['sensor_msgs/msg/JointState']
    Header = TS.types['std_msgs/msg/Header']
    Time = TS.types['builtin_interfaces/msg/Time']
    stamp = Time(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))
    return JS(header=Header(stamp=stamp, frame_id=''), name=list(names), position=np.asarray(pos, float),
              velocity=np.asarray(vel, float), effort=np.asarray(eff, float))


def _command(values):
    F64 = TS.types['std_msgs/msg/Float64MultiArray']
    Layout = TS.types['std_msgs/msg/MultiArrayLayout']
    return F64(layout=Layout(dim=[], data_offset=0), data=np.asarray(values, float))


def _image(t, value):
    Image = TS.types['sensor_msgs/msg/Image']
    Header = TS.types['std_msgs/msg/Header']
    Time = TS.types['builtin_interfaces/msg/Time']
    stamp = Time(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))
    data = np.zeros((6, 8, 3), np.uint8)
    data[..., 0] = value  # bgr8: this is the blue channel
    return Image(header=Header(stamp=stamp, frame_id='cam'), height=6, width=8, encoding='bgr8',
                 is_bigendian=0, step=24, data=data.reshape(-1))


def write_bag(path, storage=StoragePlugin.SQLITE3, n=300, with_messages=True, images=False, t0=100.0, skip=()):
    """JointState with shuffled joint order and an extra joint; commands as Float64MultiArray [elbow, shoulder]."""
    q, v, u = _simulate(n)
    rng = np.random.default_rng(1)
    with Writer(path, version=9, storage_plugin=storage) as writer:
        js = writer.add_connection('/joint_states', 'sensor_msgs/msg/JointState', typestore=TS)
        cmd = writer.add_connection('/effort_controller/commands', 'std_msgs/msg/Float64MultiArray', typestore=TS)
        cam = writer.add_connection('/camera/image_raw', 'sensor_msgs/msg/Image', typestore=TS) if images else None
        if not with_messages:
            return q, v, u
        for k in range(n + 1):
            t = t0 + k * DT
            ns = int(round(t * 1e9))
            if k < n:  # the command for interval k is sent just after sample k
                writer.write(cmd, ns + 1000, TS.serialize_cdr(_command([u[k, 1], u[k, 0]]),
                                                               'std_msgs/msg/Float64MultiArray'))
            if k in skip:  # a recording gap
                continue
            names = ['gripper'] + JOINTS
            order = rng.permutation(3)
            pos = np.r_[0.05, q[k]][order]
            vel = np.r_[0.0, v[k]][order]
            eff = np.r_[0.0, u[min(k, n - 1)]][order]
            msg = _joint_state(t, [names[i] for i in order], pos, vel, eff)
            writer.write(js, ns + 2000, TS.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))
            if cam is not None and k % 2 == 0:
                writer.write(cam, ns, TS.serialize_cdr(_image(t, k % 256), 'sensor_msgs/msg/Image'))
    return q, v, u


@pytest.mark.parametrize('storage', [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_bag_joints_matched_by_name_and_commands_held(tmp_path, storage):
    q, v, u = write_bag(tmp_path / 'bag', storage)
    data = read_bags([tmp_path / 'bag'], joints=JOINTS, command_joints=['elbow', 'shoulder'])
    assert data.joint_names == JOINTS
    assert data.action_names == JOINTS
    assert len(data.obs) == 1
    obs, act = data.obs[0], data.actions[0]
    assert data.dt == pytest.approx(DT, rel=1e-6)
    # The first command arrives 1 us after the first joint state: the grid starts there, so positions are
    # interpolated a hair past sample 0 and the first held command is u[0].
    assert np.allclose(obs[:, :2], q[:len(obs)], atol=1e-3)
    assert np.allclose(obs[:, 2:], v[:len(obs)], atol=1e-2)
    assert np.allclose(act, u[:len(act)])
    assert obs.shape[0] >= 295


def test_default_joint_order_and_measured_effort(tmp_path):
    write_bag(tmp_path / 'bag')
    data = read_bags([tmp_path / 'bag'], command_topic=None, command_joints=['elbow', 'shoulder'])
    assert len(data.joint_names) == 3  # no joint list: the first message's order, the extra joint included
    assert set(data.joint_names) == {'gripper', *JOINTS}


def test_images_are_aligned_and_decoded(tmp_path):
    write_bag(tmp_path / 'bag', n=60, images=True)
    data = read_bags([tmp_path / 'bag'], joints=JOINTS, command_joints=['elbow', 'shoulder'],
                     image_topic='/camera/image_raw', image_size=(4, 3))
    frames = data.images[0]
    assert frames.shape == (len(data.obs[0]), 3, 4, 3)
    assert frames.dtype == np.uint8
    assert frames[..., 0].max() == 0 and frames[..., 2].max() > 0  # bgr8 converted to rgb


def test_image_encoding_errors():
    msg = _image(1.0, 5)
    assert image_to_rgb(msg).shape == (6, 8, 3)
    msg.encoding = '16UC1'
    with pytest.raises(BagError, match='encoding'):
        image_to_rgb(msg)


def test_bag_trains_with_cli(tmp_path):
    write_bag(tmp_path / 'bag', StoragePlugin.MCAP, n=200)
    out = tmp_path / 'model'
    rc = train_main(['--data', f'bag:{tmp_path / "bag"}', '--out', str(out), '--joints', 'shoulder,elbow',
                     '--command-joints', 'elbow,shoulder', '--epochs', '2', '--hidden', '16', '--horizon', '4',
                     '--batch-size', '32', '--stride', '4', '--quiet', '--mass-matrix', 'constant'])
    assert rc == 0
    info = json.loads((out / 'info.json').read_text())
    assert info['joint_names'] == JOINTS
    assert info['action_names'] == JOINTS
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['data']['obs_dim'] == 4 and metrics['data']['action_dim'] == 2
    assert all(np.isfinite(e['train_loss']) for e in metrics['epochs'])


def test_empty_bag_gives_clear_error(tmp_path):
    write_bag(tmp_path / 'bag', with_messages=False)
    with pytest.raises(BagError, match='no messages on /joint_states'):
        read_bags([tmp_path / 'bag'])


@pytest.mark.parametrize('storage, pattern', [(StoragePlugin.SQLITE3, '*.db3'), (StoragePlugin.MCAP, '*.mcap')])
def test_corrupt_bag_gives_clear_error(tmp_path, storage, pattern):
    write_bag(tmp_path / 'bag', storage, n=50)
    (data_file,) = (tmp_path / 'bag').glob(pattern)
    raw = bytearray(data_file.read_bytes())
    data_file.write_bytes(b'\x00garbage' * 16 + raw[len(raw) // 3:len(raw) // 2])
    with pytest.raises(BagError, match='cannot (open|read) bag'):
        read_bags([tmp_path / 'bag'])


def test_cli_reports_bad_bag_and_exit_code(tmp_path, capsys):
    (tmp_path / 'notabag').mkdir()
    rc = train_main(['--data', f'bag:{tmp_path / "notabag"}', '--out', str(tmp_path / 'm'), '--quiet'])
    assert rc == 2
    assert 'not a rosbag2 bag' in capsys.readouterr().err


def test_missing_topic_and_joint(tmp_path):
    write_bag(tmp_path / 'bag', n=20)
    with pytest.raises(BagError, match="no topic '/robot/joint_states'.*topics"):
        read_bags([tmp_path / 'bag'], joint_topic='/robot/joint_states')
    with pytest.raises(BagError, match='missing joints'):
        read_bags([tmp_path / 'bag'], joints=['shoulder', 'wrist'])
    with pytest.raises(BagError, match='no command topic'):
        read_bags([tmp_path / 'bag'], command_topic='/other/commands')


def test_folder_of_bags_and_gaps(tmp_path):
    write_bag(tmp_path / 'fleet' / 'a', n=40)
    write_bag(tmp_path / 'fleet' / 'b', StoragePlugin.MCAP, n=40, t0=500.0)
    data = read_bags([tmp_path / 'fleet'], joints=JOINTS, command_joints=['elbow', 'shoulder'])
    assert len(data.obs) == 2
    assert 'a' in data.source and 'b' in data.source


def test_recording_gap_splits_trajectories(tmp_path):
    q, _, _ = write_bag(tmp_path / 'bag', n=200, skip=range(80, 120))
    data = read_bags([tmp_path / 'bag'], joints=JOINTS, command_joints=['elbow', 'shoulder'])
    assert len(data.obs) == 2
    assert len(data.obs[0]) == 80 and len(data.obs[1]) == 81
    assert np.allclose(data.obs[1][:, :2], q[120:], atol=1e-3)  # no interpolation across the gap
