"""``hamwm bringup``: the node graph of ``ros2 launch`` in one process, without the launch package.

Starts (as present in this build) ``sim_node`` (optional), ``balance_node`` (legged robots), ``world_model_node``
and ``mpc_node`` in this process, each on its own thread with its own one-thread executor (the one its ``executor``
parameter names; rclpy's ``MultiThreadedExecutor`` busy-waits while a callback runs and starved the nodes' control
threads), all reading the same parameter file as the launch files (``config/hamwm.yaml``; each node reads its own
section). Lifecycle nodes are configured and activated unless ``--no-activate`` (bring-up drives their lifecycle:
their own ``autostart`` parameter is overridden to false). Runs until SIGINT (or
``--duration`` seconds), then deactivates and destroys every node.

Examples::

    hamwm bringup                                  # simulated humanoid + balance + world model + MPC
    hamwm bringup --robot pendulum                 # simulated pendulum, models/pendulum
    hamwm bringup --no-sim --model-dir models/humanoid   # a real robot publishes /joint_states
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
import importlib
import importlib.util
import os
from pathlib import Path
import signal
import sys
import tempfile
import threading
import time
from typing import Any

from hamwm_ros.cli import HelpFormatter

# node name -> (module, class). The order is the start order: the simulator first, so the others see its topics.
NODE_CLASSES: dict[str, tuple[str, str]] = {
    'sim_node': ('hamwm_ros.nodes.sim_node', 'SimNode'),
    'balance_node': ('hamwm_ros.nodes.balance_node', 'BalanceNode'),
    'world_model_node': ('hamwm_ros.nodes.world_model_node', 'WorldModelNode'),
    'mpc_node': ('hamwm_ros.nodes.mpc_node', 'MpcNode'),
}
LEGGED = ('humanoid',)
MODEL_NODES = ('world_model_node', 'mpc_node')


def available_nodes() -> list[str]:
    """Nodes whose module is part of this build."""
    out = []
    for name, (module, _) in NODE_CLASSES.items():
        try:
            if importlib.util.find_spec(module) is not None:
                out.append(name)
        except ModuleNotFoundError:
            pass
    return out


def default_params_file(robot: str | None = None) -> Path:
    """The parameter file for ``robot``, of the checkout or of the installed package.

    ``config/swingup_<robot>.yaml`` where one exists (the pendulum and the cart-pole: their shipped models are
    swing-up models, and ``sim.launch.py`` picks the same file), else ``config/hamwm.yaml`` (the humanoid's).

    Raises
    ------
    FileNotFoundError
        If neither exists.
    """
    from hamwm_ros import share_path

    if robot is not None:
        try:
            return share_path('config', f'swingup_{robot}.yaml')
        except FileNotFoundError:
            pass
    return share_path('config', 'hamwm.yaml')


def merged_parameters(params_file: Path, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The parameter file's content with per-node overrides applied (sections created where missing).

    Raises
    ------
    ValueError
        If the file is not a mapping of node sections.
    """
    import yaml

    data = yaml.safe_load(Path(params_file).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{params_file}: expected a mapping of node sections')
    for node, values in overrides.items():
        section = data.setdefault(node, {}) or {}
        data[node] = section
        params = section.setdefault('ros__parameters', {}) or {}
        section['ros__parameters'] = params
        params.update(values)
    return data


@dataclass
class Started:
    """One node of the graph and what happened to it."""

    name: str
    node: Any = None
    state: str = 'not started'
    lifecycle: bool = False


def plan_nodes(robot: str, sim: bool, requested: Sequence[str] | None) -> list[str]:
    """Which nodes to start: the requested ones, else the default graph for ``robot`` restricted to this build.

    Raises
    ------
    ValueError
        If a requested node is unknown or not part of this build.
    """
    present = available_nodes()
    if requested:
        unknown = [n for n in requested if n not in NODE_CLASSES]
        missing = [n for n in requested if n in NODE_CLASSES and n not in present]
        if unknown or missing:
            raise ValueError(f'unknown nodes {unknown}; not in this build: {missing}; available: {present}')
        return [n for n in NODE_CLASSES if n in requested]
    wanted = []
    for name in present:
        if name == 'sim_node' and not sim:
            continue
        if name == 'balance_node' and robot not in LEGGED:
            continue
        wanted.append(name)
    return wanted


def _activate(entry: Started, log: Any) -> None:
    """Configure + activate a lifecycle node, recording the resulting state."""
    from rclpy.lifecycle import TransitionCallbackReturn

    node = entry.node
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        entry.state = 'unconfigured (configure failed; see its log)'
        return
    entry.state = 'inactive'
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        entry.state = 'inactive (activate failed; see its log)'
        return
    entry.state = 'active'


def _deactivate(entry: Started) -> None:
    node = entry.node
    try:
        if entry.state == 'active':
            node.trigger_deactivate()
    except Exception:  # noqa: BLE001 - shutting down: a failing transition must not stop the others' cleanup
        pass


def run(nodes: Sequence[str], params: dict[str, Any], *, activate: bool = True, duration: float | None = None,
        ready: threading.Event | None = None, log: Any = print) -> int:
    """Start ``nodes`` with ``params`` (a parameter-file mapping) and spin until SIGINT or ``duration``.

    Returns
    -------
    int
        0 after a clean stop, 1 if a node failed to start or to activate, 130 never (SIGINT is the normal stop).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions
    import yaml

    from hamwm_ros.nodes import finish_node_process, message_executor, spin_until_shutdown

    with tempfile.NamedTemporaryFile('w', prefix='hamwm_bringup_', suffix='.yaml', delete=False) as handle:
        yaml.safe_dump(params, handle)
        merged = handle.name
    started: list[Started] = []
    code = 0
    executors: list[Any] = []
    spinners: list[threading.Thread] = []
    stop = threading.Event()

    try:
        # Python's own SIGINT handling (KeyboardInterrupt) instead of rclpy's, so the context is still valid while
        # lifecycle nodes deactivate (and publish their safe hold) on the way out.
        # Background jobs of a shell inherit SIGINT ignored; restore the default so SIGINT always stops the graph.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        rclpy.init(args=['--ros-args', '--params-file', merged], signal_handler_options=SignalHandlerOptions.NO)
        for name in nodes:
            module, cls = NODE_CLASSES[name]
            entry = Started(name)
            started.append(entry)
            try:
                entry.node = getattr(importlib.import_module(module), cls)()
            except Exception as err:  # noqa: BLE001 - report which node failed and why, keep the others
                entry.state = f'failed to start: {type(err).__name__}: {err}'
                code = 1
                continue
            entry.lifecycle = hasattr(entry.node, 'trigger_configure')
            entry.state = 'running' if not entry.lifecycle else 'unconfigured'
            # A node's read-only `executor` parameter chooses, as in its own process (sim_node has none).
            executors.append(message_executor(getattr(entry.node, 'executor_kind', 'single_threaded')))
            executors[-1].add_node(entry.node)
            # spin_until_shutdown ends on `stop` or a shut-down context without raising
            spinners.append(threading.Thread(target=spin_until_shutdown, args=(executors[-1], 0.1, stop),
                                             name=f'spin_{name}', daemon=True))
            if entry.lifecycle and activate:
                _activate(entry, log)
                if entry.state != 'active':
                    code = 1
        for spinner in spinners:    # after the transitions above, so no node's own autostart races them
            spinner.start()
        for entry in started:
            log(f'  {entry.name:<17} {entry.state}')
        log(f'bringup: {sum(e.node is not None for e in started)} node(s) running; Ctrl-C stops them', flush=True)
        if ready is not None:
            ready.set()
        deadline = None if duration is None else time.monotonic() + duration
        while rclpy.ok() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if threading.current_thread() is threading.main_thread():   # a second Ctrl-C (users press it twice;
            signal.signal(signal.SIGINT, signal.SIG_IGN)   # ros2 launch adds one) must not cut the safe holds short
        stop.set()
        for spinner in spinners:
            if spinner.is_alive():
                spinner.join(timeout=5.0)
        for entry in reversed(started):
            if entry.node is None:
                continue
            if entry.lifecycle:
                _deactivate(entry)
            try:
                entry.node.destroy_node()
            except Exception as err:  # noqa: BLE001
                log(f'  {entry.name}: destroy failed: {err}')
                code = 1
        for executor in executors:
            executor.shutdown()
        finish_node_process()      # rclpy down; a late Ctrl-C no longer kills the teardown
        Path(merged).unlink(missing_ok=True)
        log('bringup: stopped', flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``hamwm bringup [--robot R] [--no-sim] [--model-dir DIR] [--params-file F] [--nodes ...] [--duration S]``."""
    parser = argparse.ArgumentParser(prog='hamwm bringup', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--params-file', type=Path, default=None,
                        help='parameter file (default: config/swingup_<robot>.yaml where one exists, else '
                             'config/hamwm.yaml)')
    parser.add_argument('--robot', default=None,
                        help="simulated robot (default: the parameter file's sim_node robot, else humanoid)")
    parser.add_argument('--no-sim', action='store_true', help='no sim_node: a real robot publishes /joint_states')
    parser.add_argument('--model-dir', type=Path, default=None,
                        help='world-model directory for world_model_node and mpc_node (default: models/<robot>)')
    parser.add_argument('--nodes', nargs='+', default=None, help=f'start only these (of {list(NODE_CLASSES)})')
    parser.add_argument('--no-activate', action='store_true', help='leave lifecycle nodes unconfigured')
    parser.add_argument('--duration', type=float, default=None, help='stop after this many seconds (default: SIGINT)')
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault('MUJOCO_GL', 'egl')
    try:
        params_file = args.params_file or default_params_file(args.robot)
        base = merged_parameters(params_file, {})
        robot = args.robot or (base.get('sim_node', {}) or {}).get('ros__parameters', {}).get('robot', 'humanoid')
        nodes = plan_nodes(robot, not args.no_sim, args.nodes)
        if 'sim_node' in nodes:
            from hamwm_ros.sim.robots import ROBOTS

            if robot not in ROBOTS:
                raise ValueError(f"cannot simulate robot '{robot}': choose one of {', '.join(ROBOTS)}")
    except (OSError, ValueError) as err:
        print(f'hamwm bringup: {err}', file=sys.stderr)
        return 2
    overrides: dict[str, dict[str, Any]] = {}
    if 'sim_node' in nodes:
        overrides['sim_node'] = {'robot': robot}
    model_dir = args.model_dir
    if model_dir is None:
        from hamwm_ros import share_path

        try:
            model_dir = share_path('models', robot)
        except FileNotFoundError:
            model_dir = None
    for name in MODEL_NODES:
        if name in nodes:
            # bring-up drives the lifecycle (or, with --no-activate, leaves it to the user): no node's own autostart
            overrides[name] = {'autostart': False}
            if model_dir is not None:
                overrides[name]['model_dir'] = str(Path(model_dir).resolve())
    if 'sim_node' in nodes:
        # Simulated robot: stamps are simulated time (sim_node publishes /clock), so everyone else runs on it too.
        for name in nodes:
            if name != 'sim_node':
                overrides.setdefault(name, {})['use_sim_time'] = True
    params = merged_parameters(params_file, overrides)
    print(f'bringup: robot {robot}, parameters {params_file}, nodes {", ".join(nodes) or "(none)"}'
          + (f', model {model_dir}' if model_dir is not None and set(MODEL_NODES) & set(nodes) else ''), flush=True)
    if not nodes:
        print('hamwm bringup: no node to start', file=sys.stderr)
        return 2
    return run(nodes, params, activate=not args.no_activate, duration=args.duration)


if __name__ == '__main__':
    sys.exit(main())
