"""``hamwm doctor``: every check runs against the real component and a broken one is reported, not crashed on."""

import importlib
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

from hamwm_ros import doctor
from hamwm_ros.bringup import NODE_CLASSES
from hamwm_ros.doctor import FAIL, OK, WARN, Check, check_launch, check_models, format_checks, run_checks

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / 'models'


def _rviz_parts_installed() -> bool:
    """tf2_msgs importable and robot_state_publisher in the ament index (a ROS 2 installation)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        import tf2_msgs.msg  # noqa: F401
        get_package_prefix('robot_state_publisher')
    except (ImportError, PackageNotFoundError, OSError):
        return False
    return True


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@pytest.mark.ros
def test_doctor_on_this_machine_passes_every_check_the_nodes_need():
    result = subprocess.run([sys.executable, '-m', 'hamwm_ros.cli', 'doctor'], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()[:-1]}
    for name in ('python', 'ros2', 'pinocchio', 'onnxruntime', 'real-time', 'torch', 'mujoco'):
        assert name in lines, result.stdout
    assert lines['ros2'] == OK and lines['pinocchio'] == OK, result.stdout     # DDS round trip; RNEA = M a + nle
    assert lines['onnxruntime'] in (OK, WARN), result.stdout                  # CPU runs; a GPU is optional
    if (MODELS / 'pendulum' / 'metadata.json').is_file():
        assert lines['model'] == OK, result.stdout
    assert lines['rviz'] == (OK if _rviz_parts_installed() else WARN), result.stdout
    if not _importable('launch_ros.actions'):               # no ROS 2 installation: `ros2 launch` cannot work
        assert lines['launch'] == WARN, result.stdout
    assert result.stdout.splitlines()[-1].endswith('0 failed'), result.stdout
    assert 'EP Error' not in result.stdout + result.stderr      # provider probing stays quiet


def test_a_corrupt_or_missing_model_is_a_failure_with_the_command_that_fixes_it(tmp_path):
    if not (MODELS / 'pendulum' / 'metadata.json').is_file():
        pytest.skip('models/pendulum is not built')
    assert check_models(tmp_path)[0].status == FAIL and 'hamwm models' in check_models(tmp_path)[0].detail
    good, bad = tmp_path / 'pendulum', tmp_path / 'broken'
    shutil.copytree(MODELS / 'pendulum', good)
    shutil.copytree(MODELS / 'pendulum', bad)
    with open(bad / 'predictor.onnx', 'r+b') as handle:    # one flipped byte: the recorded sha256 no longer matches
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    checks = {c.name: c for c in check_models(tmp_path)}
    assert checks['model pendulum'].status == OK and 'hashes match' in checks['model pendulum'].detail
    assert 'energy books calibrated' in checks['model pendulum'].detail
    assert checks['model broken'].status == FAIL
    assert 'sha256' in checks['model broken'].detail and 'hamwm models --only broken' in checks['model broken'].detail


def test_launch_check_says_what_ros2_launch_lacks(tmp_path, monkeypatch):
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    detail = check_launch().detail
    assert check_launch().status == WARN and 'not in the ament index' in detail and 'hamwm bringup' in detail
    # an ament prefix that knows the package but holds no executables: a pip install registered by hand, say
    (tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'hamwm_ros').touch()
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    check = check_launch()
    assert check.status == WARN and f'hamwm_ros at {tmp_path} lacks' in check.detail, check.detail
    for name in NODE_CLASSES:
        assert f'lib/hamwm_ros/{name}' in check.detail
    assert 'share/hamwm_ros/launch/sim.launch.py' in check.detail
    # what colcon installs: then only the launch packages themselves can be missing
    for name in NODE_CLASSES:
        (tmp_path / 'lib' / 'hamwm_ros').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'lib' / 'hamwm_ros' / name).touch()
    (tmp_path / 'share' / 'hamwm_ros' / 'launch').mkdir(parents=True)
    (tmp_path / 'share' / 'hamwm_ros' / 'launch' / 'sim.launch.py').touch()
    check = check_launch()
    assert 'lacks' not in check.detail and 'ament index' not in check.detail, check.detail
    launch_importable = all(_importable(f'{package}.actions') for package in ('launch', 'launch_ros'))
    assert check.status == (OK if launch_importable else WARN), check.detail
    assert str(tmp_path) in check.detail if launch_importable else 'launch_ros not importable' in check.detail


def test_a_check_that_crashes_is_reported_as_failed(tmp_path, monkeypatch):
    def broken() -> Check:
        raise RuntimeError('boom')

    monkeypatch.setattr(doctor, 'check_torch', broken)
    checks = run_checks(tmp_path, ros=False)
    crashed = [c for c in checks if 'the check itself failed' in c.detail]
    assert len(crashed) == 1 and crashed[0].status == FAIL and 'RuntimeError: boom' in crashed[0].detail
    assert doctor.main(['--models', str(tmp_path), '--no-ros']) == 1      # no models there: a failure, exit 1


def test_the_report_aligns_and_counts():
    text = format_checks([Check('a', OK, 'fine'), Check('longer', WARN, 'hm'), Check('b', FAIL, 'no')])
    lines = text.splitlines()
    assert lines[0] == 'OK    a       fine' and lines[1] == 'WARN  longer  hm' and lines[2] == 'FAIL  b       no'
    assert lines[-1] == '1 ok, 1 warnings, 1 failed'
