"""ROS 2 nodes of hamwm_ros: one rclpy node class per module.

Each module (``sim_node``, ``balance_node``, ``world_model_node``, ``mpc_node``) has a ``main(args=None) -> int``
entry point installed as a console script of the same name (``ros2 run hamwm_ros <node>``). Nodes only convert
messages, hold parameters and call the library; algorithms live in the rclpy-free packages.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from typing import Any

# SIGINT/SIGTERM only set an event that the main thread's spin loop checks; neither rclpy's signal handler nor a
# KeyboardInterrupt ends the node. rclpy's handler shuts the context down from another thread, which races with the
# executor: a context gone between its ok() check and building the wait set raised RCLError (sim_node exited 1 on
# SIGINT, 1 in 60 under load), and a shutdown landing while the wait set was rebuilt could be missed, leaving a wait
# without timeout asleep until killed. A KeyboardInterrupt raised inside rclpy's pybind11 calls surfaced as
# RuntimeError ("Unable to convert call argument"). A Python handler runs only when the main thread is back in
# bytecode, so the executor waits at most this long per call.
WAKE_PERIOD_S = 0.2
SHUTDOWN_REQUESTED = threading.Event()     # set by SIGINT/SIGTERM once init_node_process installed it


def init_node_process(args: list[str] | None = None) -> None:
    """Start rclpy for a node's ``main()``: SIGINT and SIGTERM request a shutdown, SIGUSR1 dumps the stacks.

    The request ends :func:`spin_until_shutdown` within one wake period; ``main()`` then destroys the node (lifecycle
    nodes publish their safe hold, the context still valid) and shuts rclpy down. A shell starts background jobs with
    SIGINT ignored; installing the handler here makes SIGINT stop the node anyway.

    Parameters
    ----------
    args
        Command-line arguments for ``rclpy.init`` (None: ``sys.argv``).
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    SHUTDOWN_REQUESTED.clear()
    signal.signal(signal.SIGINT, _request_shutdown)
    if hasattr(signal, 'SIGTERM'):
        signal.signal(signal.SIGTERM, _request_shutdown)
    dump_stacks_on_sigusr1()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def _request_shutdown(signum: int, frame: Any) -> None:
    SHUTDOWN_REQUESTED.set()


def finish_node_process() -> None:
    """End a node's ``main()``: shut rclpy down, then ignore SIGINT and SIGTERM for the rest of the process's life.

    ``ros2 launch`` forwards a terminal's Ctrl-C to each node, which the terminal has already sent to the whole
    process group, and users press it twice. A signal that arrives once ``main()`` has cleaned up, while the
    interpreter tears down, meets the default action (Python restores it for the handlers it installed) and kills
    the process: launch then reports "process has died [exit code -2]" for a node that stopped cleanly. Nothing is
    left to stop by then; SIGKILL still ends a teardown that hangs.
    """
    import rclpy

    rclpy.try_shutdown()
    if threading.current_thread() is threading.main_thread():   # signal.signal works in the main thread only
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, 'SIGTERM'):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def name_os_thread() -> None:
    """Give the calling thread its Python name at the OS level, so ``top -H`` and ``ps -L`` tell the threads apart.

    Linux only (``prctl(PR_SET_NAME)``, at most 15 bytes); a no-op elsewhere or when the call fails. Python 3.11 does
    not do this itself: without it every thread of a node shows as ``python``.
    """
    if not sys.platform.startswith('linux'):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, threading.current_thread().name.encode()[:15], 0, 0, 0)   # 15 = PR_SET_NAME
    except (OSError, AttributeError):
        pass


def dump_stacks_on_sigusr1() -> None:
    """Make SIGUSR1 print every thread's Python stack to stderr (the node keeps running).

    :func:`hamwm_ros.sim.cli.interrupt_process` sends it to a node that has not exited within its SIGINT timeout,
    before killing it, so the log says where the node was stuck. No-op where the signal does not exist.
    """
    if hasattr(signal, 'SIGUSR1'):
        faulthandler.register(signal.SIGUSR1, all_threads=True)


EXECUTOR_KINDS = ('events', 'single_threaded')


def message_executor(kind: str = 'events') -> Any:
    """A one-thread executor for a node that takes many small messages.

    balance_node and world_model_node do a little work per /joint_states message at the full joint-state rate, and
    mpc_node's executor takes every /clock message. With rclpy's Python single-threaded executor most of that CPU went
    into its own wait-set and take machinery (py-spy, session 11): balance_node alone beside the simulated humanoid at
    250 Hz, 0.69 cores with it, 0.48 with the events executor, at the same message rate. The nodes' read-only
    ``executor`` parameter chooses (:func:`hamwm_ros.nodes.params.declare_executor`).

    Parameters
    ----------
    kind
        ``'events'``: rclpy's C++ events executor (``rclpy.experimental``), or the single-threaded one where this
        rclpy has none; ``'single_threaded'``: rclpy's Python ``SingleThreadedExecutor``.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`EXECUTOR_KINDS`.
    """
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f'executor must be one of {", ".join(EXECUTOR_KINDS)}, got {kind!r}')
    from rclpy.executors import SingleThreadedExecutor

    if kind == 'events':
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # pragma: no cover - rclpy without the events executor
            return SingleThreadedExecutor()
        return EventsExecutor()
    return SingleThreadedExecutor()


def spin_until_shutdown(executor: Any, wake_period_s: float = WAKE_PERIOD_S,
                        stop: threading.Event | None = None) -> None:
    """Run ``executor``'s callbacks until a shutdown is requested (signal, ``stop``) or its context shuts down.

    Parameters
    ----------
    executor
        An rclpy executor with its nodes added.
    wake_period_s
        Longest wait (s) before the loop checks again when nothing is ready.
    stop
        Optional event that also ends the loop when set.

    Raises
    ------
    Exception
        Whatever a callback raises while no shutdown is under way.
    """
    def running() -> bool:
        return executor.context.ok() and not SHUTDOWN_REQUESTED.is_set() and not (stop is not None and stop.is_set())

    while running():
        try:
            executor.spin_once(timeout_sec=wake_period_s)
        except Exception:
            if running():
                raise
            return      # the executor tripped over a shutdown made elsewhere (another thread, the context's owner)
