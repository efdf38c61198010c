"""``hamwm doctor``: is this machine ready to run the nodes? One line per check, with what to do about a problem.

Each check exercises the real component rather than only importing it: a message goes through DDS and comes back,
MuJoCo renders a frame offscreen, Pinocchio's RNEA is cross-checked against M a + nle, each shipped model is
loaded and its files' hashes checked, onnxruntime runs the pendulum model on every provider this build offers. Exit
code 1 when a check fails (a component the nodes need is broken), 0 otherwise; warnings (no GPU, no real-time
scheduling, no torch, no `ros2 launch`, nothing for rviz's robot model) name what is missing without failing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import contextlib
from dataclasses import dataclass
import functools
import importlib
import io
import logging
import os
from pathlib import Path
import sys
import threading
import time

from hamwm_ros.cli import HelpFormatter

OK, WARN, FAIL = 'OK', 'WARN', 'FAIL'
EGL_HINT = 'apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri, and MUJOCO_GL=egl on a headless machine'


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``status`` is OK, WARN or FAIL; ``detail`` says what was seen or what to do."""

    name: str
    status: str
    detail: str


def check_python() -> Check:
    """The interpreter version (the set-up targets 3.10-3.12)."""
    version = '.'.join(str(v) for v in sys.version_info[:3])
    supported = (3, 10) <= sys.version_info[:2] <= (3, 12)
    return Check('python', OK if supported else WARN,
                 version + ('' if supported else ': untested here (the set-up targets 3.10-3.12)'))


def check_ros(timeout: float = 10.0) -> Check:
    """rclpy, its RMW, and one message published and received on a private domain (real DDS, loopback)."""
    try:
        import rclpy
        from rclpy.utilities import get_rmw_implementation_identifier
        from std_msgs.msg import String
    except Exception as error:  # noqa: BLE001 - any import failure means: no usable ROS 2 Python stack
        return Check('ros2', FAIL, f'rclpy or std_msgs not importable ({error}): run `make venv`, or source ROS 2')
    import random

    from hamwm_ros.rosdomain import DOMAIN_RANGE

    domain = random.SystemRandom().randint(*DOMAIN_RANGE)
    context = rclpy.Context()
    try:
        rclpy.init(context=context, domain_id=domain)
        node = rclpy.create_node('hamwm_doctor', context=context)
        received = threading.Event()
        node.create_subscription(String, 'hamwm_doctor', lambda msg: received.set(), 10)
        publisher = node.create_publisher(String, 'hamwm_doctor', 10)
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout
        while not received.is_set() and time.monotonic() < deadline:
            publisher.publish(String(data='ping'))
            executor.spin_once(timeout_sec=0.05)
        rmw = get_rmw_implementation_identifier()
        executor.shutdown()
        node.destroy_node()
    except Exception as error:  # noqa: BLE001
        return Check('ros2', FAIL, f'rclpy could not start a node: {type(error).__name__}: {error}')
    finally:
        rclpy.try_shutdown(context=context)
    distro = os.environ.get('ROS_DISTRO') or 'the ROS 2 Python wheels (no ROS_DISTRO)'
    if not received.is_set():
        return Check('ros2', FAIL, f'{rmw}: a message on domain {domain} did not come back within {timeout:g} s '
                                   '(firewall or multicast on loopback?)')
    return Check('ros2', OK, f'{distro}, {rmw}: a message went through DDS and back (domain {domain}); '
                             f"ROS_DOMAIN_ID {os.environ.get('ROS_DOMAIN_ID', 'unset (0)')}")


def check_mujoco() -> Check:
    """MuJoCo, and one offscreen frame of the simulated pendulum (the camera path)."""
    try:
        import mujoco

        from hamwm_ros.sim import Simulation
    except Exception as error:  # noqa: BLE001
        return Check('mujoco', FAIL, f'not importable ({error}): run `make venv`')
    try:
        sim = Simulation('pendulum', render_size=(32, 32))
        try:
            frame = sim.render()
        finally:
            sim.close()
    except Exception as error:  # noqa: BLE001 - a missing GL stack raises from deep inside MuJoCo
        return Check('mujoco', WARN, f'{mujoco.__version__}: simulation works, offscreen rendering does not '
                                     f'({type(error).__name__}: {error}); camera topics need it: {EGL_HINT}')
    if frame.shape != (32, 32, 3) or int(frame.max()) == 0:
        return Check('mujoco', WARN, f'{mujoco.__version__}: rendered an empty {frame.shape} frame; {EGL_HINT}')
    return Check('mujoco', OK, f"{mujoco.__version__}, offscreen rendering ({os.environ.get('MUJOCO_GL', 'default')})")


def check_pinocchio() -> Check:
    """Pinocchio on the humanoid: RNEA equals M a + nle at a random state (as Pinocchio's own tests check)."""
    try:
        import numpy as np
        import pinocchio as pin

        from hamwm_ros.sim import robot_urdf_path
    except Exception as error:  # noqa: BLE001
        return Check('pinocchio', FAIL, f'not importable ({error}): run `make venv` (package `pin`)')
    model = pin.buildModelFromUrdf(str(robot_urdf_path('humanoid')), pin.JointModelFreeFlyer())
    data = model.createData()
    rng = np.random.default_rng(0)
    q = pin.randomConfiguration(model, -np.ones(model.nq), np.ones(model.nq))
    v, a = rng.normal(size=model.nv), rng.normal(size=model.nv)
    tau = pin.rnea(model, data, q, v, a).copy()
    mass = pin.crba(model, data, q)
    mass = np.triu(mass) + np.triu(mass, 1).T
    error = float(np.max(np.abs(tau - (mass @ a + pin.nonLinearEffects(model, data, q, v)))))
    status = OK if error < 1e-8 else FAIL
    return Check('pinocchio', status, f'{pin.__version__}: humanoid ({model.nv} dof) RNEA - (M a + nle) = {error:.1e}')


def check_models(root: Path) -> list[Check]:
    """Each model directory under ``root``: metadata valid and every ONNX file matching its recorded hash.

    The detail also says whether the model carries an energy-book calibration (the validity monitor's allowance).
    """
    from hamwm_ros.runtime import MetadataError, load_metadata

    directories = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not directories:
        return [Check('models', FAIL, f'no model directories under {root}: run `hamwm models` (or `make models`)')]
    checks = []
    for directory in directories:
        try:
            meta = load_metadata(directory, check_files=True)
        except MetadataError as error:
            checks.append(Check(f'model {directory.name}', FAIL, f'{error}; regenerate: hamwm models --only '
                                                                 f'{directory.name}'))
            continue
        inputs = f'{meta.images.frames} x {meta.images.width}x{meta.images.height} frames' if meta.images else \
            f'{len(meta.joint_names)} joint' + ('s' if len(meta.joint_names) != 1 else '')
        books = meta.energy_calibration
        energy = (f'energy books calibrated ({books.limits[0]:.3g} per step, 95 %)' if books is not None else
                  'no energy calibration: the monitor counts every energy mismatch against it (hamwm train fits one)')
        checks.append(Check(f'model {directory.name}', OK, f'{meta.robot}: {inputs}, latent {meta.latent_dim}, dt '
                                                           f'{meta.dt:g} s, hashes match; {energy}'))
    return checks


def check_onnxruntime(model_dir: Path) -> Check:
    """Which execution providers this onnxruntime build offers, and which actually run ``model_dir`` (CPU must)."""
    try:
        import onnxruntime as ort

        from hamwm_ros.runtime import SessionConfig, WorldModelRuntime
    except Exception as error:  # noqa: BLE001
        return Check('onnxruntime', FAIL, f'not importable ({error}): run `make venv`')
    offered = ort.get_available_providers()
    if not (model_dir / 'metadata.json').is_file():
        return Check('onnxruntime', WARN, f'{ort.__version__}, offers {offered}; no model at {model_dir} to run')
    usable = []
    # A provider whose libraries are missing makes onnxruntime (and the runtime's fallback log) print several lines;
    # the verdict below says it in one.
    ort.set_default_logger_severity(4)
    quiet = logging.getLogger('hamwm_ros.runtime')
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for key, name in (('tensorrt', 'TensorrtExecutionProvider'), ('cuda', 'CUDAExecutionProvider'),
                          ('cpu', 'CPUExecutionProvider')):
            if name not in offered:
                continue
            config = SessionConfig(providers=(key,), intra_op_threads=1)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    runtime = WorldModelRuntime.load(model_dir, config=config)
            except Exception:  # noqa: BLE001
                continue
            if runtime.providers[0] == name:
                usable.append(key)
    finally:
        quiet.setLevel(level)
    gpu = [key for key in usable if key != 'cpu']
    detail = f'{ort.__version__}: runs on {", ".join(usable) or "nothing"} (offered: {", ".join(offered)})'
    if 'cpu' not in usable:
        return Check('onnxruntime', FAIL, detail + '; the CPU provider must run the models')
    if not gpu:
        return Check('onnxruntime', WARN, detail + '; no GPU provider works here (CPU is what the nodes default to)')
    return Check('onnxruntime', OK, detail)


def check_realtime(priority: int = 1) -> Check:
    """Whether a thread may take SCHED_FIFO, as mpc_node's control thread asks (``control_rt_priority``)."""
    if not hasattr(os, 'sched_setscheduler'):
        return Check('real-time', WARN, 'no SCHED_FIFO on this platform: the control loop keeps normal scheduling')
    result: list[str] = []

    def attempt() -> None:   # on a throwaway thread, so this process keeps its policy
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            result.append('')
        except OSError as error:
            result.append(str(error))

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    if result and not result[0]:
        return Check('real-time', OK, 'SCHED_FIFO allowed: mpc_node\'s control thread can run at '
                                      'control_rt_priority')
    return Check('real-time', WARN, f'SCHED_FIFO refused ({result[0] if result else "?"}): the control thread '
                                    'keeps normal scheduling; allow it with an rtprio limit (limits.conf) or '
                                    'CAP_SYS_NICE')


def ament_prefix(package: str) -> Path | None:
    """The ament prefix that holds ``package``; None when the index lacks it (or no ROS 2 is sourced at all).

    Raises
    ------
    ImportError
        If ament_index_python is not installed.
    """
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return Path(get_package_prefix(package))
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH at all
        return None


def check_rviz() -> Check:
    """What rviz needs to draw the simulated robot: tf2_msgs (sim_node's odom -> base) and robot_state_publisher."""
    missing = []
    try:
        import tf2_msgs.msg  # noqa: F401 - importability is the check
    except ImportError:
        missing.append('tf2_msgs (sim_node publishes no /tf)')
    try:
        if ament_prefix('robot_state_publisher') is None:
            missing.append('robot_state_publisher (sim.launch.py starts it)')
    except ImportError:
        missing.append('ament_index_python')
    if missing:
        return Check('rviz', WARN, 'missing ' + ', '.join(missing) + ': the nodes run without them; the robot model '
                     'in rviz needs a ROS 2 installation (markers, points and polygons show without it)')
    return Check('rviz', OK, 'tf2_msgs and robot_state_publisher found: sim.launch.py gives rviz the robot model')


def _ament_install() -> tuple[Path | None, str | None]:
    """This package's ament prefix and why ``ros2 launch`` cannot start its nodes from it (None: it can)."""
    from hamwm_ros.bringup import NODE_CLASSES

    try:
        prefix = ament_prefix('hamwm_ros')
    except ImportError:
        return None, 'ament_index_python not importable'
    if prefix is None:
        return None, 'hamwm_ros not in the ament index (build it with colcon, source install/setup.bash)'
    # colcon puts the executables in lib/<package> (setup.cfg) and the launch files in share/<package>/launch
    needed = [Path('lib', 'hamwm_ros', name) for name in NODE_CLASSES] + [Path('share/hamwm_ros/launch/sim.launch.py')]
    absent = [str(path) for path in needed if not (prefix / path).is_file()]
    return prefix, (f'hamwm_ros at {prefix} lacks {", ".join(absent)} (rebuild it with colcon)' if absent else None)


def check_launch() -> Check:
    """What ``ros2 launch hamwm_ros ...`` needs: launch and launch_ros, and this package installed by colcon.

    A pip install (the project's own set-up) puts no executables in ``<prefix>/lib/hamwm_ros``; ``hamwm bringup``
    then starts the node graph instead.
    """
    problems = []
    for package in ('launch', 'launch_ros'):
        try:   # `.actions`: a checkout's own launch/ folder imports as an empty namespace package `launch`
            importlib.import_module(f'{package}.actions')
        except ImportError:
            problems.append(f'{package} not importable (ROS 2 installs it)')
    prefix, install_problem = _ament_install()
    if install_problem:
        problems.append(install_problem)
    if problems:
        return Check('launch', WARN, '; '.join(problems) + ': `ros2 launch` cannot start the nodes, `hamwm bringup` '
                     'starts the same graph from the same parameter file')
    return Check('launch', OK, f'launch, launch_ros and hamwm_ros at {prefix} with its node executables: '
                 '`ros2 launch hamwm_ros sim.launch.py` can start the graph')


def check_torch() -> Check:
    """torch, needed for training and export only: the pinned CPU build."""
    try:
        import torch
    except ImportError:
        return Check('torch', WARN, 'not installed: the nodes do not need it; `hamwm train` and `export` do')
    cuda = torch.version.cuda
    pinned = torch.__version__.split('+')[0] == '2.13.0'
    detail = f'{torch.__version__} ({"CUDA " + cuda if cuda else "CPU build"}; training and export only)'
    return Check('torch', OK if pinned else WARN, detail + ('' if pinned else ': the set-up pins 2.13.0'))


def run_checks(models_root: Path, *, ros: bool = True) -> list[Check]:
    """Every check, in the order a user would fix things."""
    steps: list[Callable[[], Check | list[Check]]] = [check_python]
    if ros:
        steps.append(check_ros)
    steps += [check_mujoco, check_pinocchio, functools.partial(check_models, models_root),
              functools.partial(check_onnxruntime, models_root / 'pendulum'), check_realtime, check_torch]
    if ros:
        steps += [check_launch, check_rviz]
    checks: list[Check] = []
    for step in steps:
        try:
            outcome = step()
        except Exception as error:  # noqa: BLE001 - a check that crashes is itself a finding, not a doctor crash
            name = getattr(getattr(step, 'func', step), '__name__', 'check').removeprefix('check_')
            outcome = Check(name, FAIL, f'the check itself failed: {type(error).__name__}: {error}')
        checks.extend(outcome if isinstance(outcome, list) else [outcome])
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    """The report: one aligned line per check, then a summary line."""
    width = max(len(c.name) for c in checks)
    lines = [f'{c.status:<5} {c.name:<{width}}  {c.detail}' for c in checks]
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    lines.append(f'{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failed')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """``hamwm doctor [--models DIR] [--no-ros]``: 1 if a check failed, else 0."""
    parser = argparse.ArgumentParser(prog='hamwm doctor', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--models', type=Path, default=None,
                        help="models root to check (default: the checkout's or installed package's models/)")
    parser.add_argument('--no-ros', action='store_true', help='skip the DDS round trip')
    args = parser.parse_args(argv)
    os.environ.setdefault('MUJOCO_GL', 'egl')
    root = args.models
    if root is None:
        from hamwm_ros import share_path

        try:
            root = share_path('models')
        except FileNotFoundError:
            root = Path('models')
    checks = run_checks(root, ros=not args.no_ros)
    print(format_checks(checks), flush=True)
    return 1 if any(c.status == FAIL for c in checks) else 0


if __name__ == '__main__':
    sys.exit(main())
