"""How the project's nodes start and stop (``hamwm_ros.nodes``): signals request a shutdown, the spin loop ends on it.

A real rclpy node in a child process is stopped by SIGINT or SIGTERM (also when SIGINT was inherited ignored, as a
shell's background job passes it down); in this process, ``spin_until_shutdown`` ends on its stop event and on a
context shut down by another thread mid-spin, without raising.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytestmark = pytest.mark.ros

NODE = textwrap.dedent('''
    import signal, sys
    if {ignore_sigint}:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # as a shell's background job inherits it
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from hamwm_ros.nodes import init_node_process, spin_until_shutdown

    init_node_process([])
    node = rclpy.create_node('signal_probe')
    ticks = []
    node.create_timer(0.001, lambda: ticks.append(1))     # a busy executor, as a node at control rate has
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    ready = []

    def report_ready():     # once the executor is serving the timer
        if len(ticks) > 10 and not ready:
            ready.append(True)
            print('ready', flush=True)

    node.create_timer(0.05, report_ready)
    spin_until_shutdown(executor)
    print('stopped after', len(ticks), 'ticks', flush=True)
    node.destroy_node()
    executor.shutdown()
    rclpy.try_shutdown()
''')


@pytest.mark.parametrize('signum, ignore_sigint', [(signal.SIGINT, False), (signal.SIGINT, True),
                                                   (signal.SIGTERM, False)])
def test_a_signal_stops_the_spin_loop_and_the_node_shuts_down_cleanly(signum, ignore_sigint):
    process = subprocess.Popen([sys.executable, '-c', NODE.format(ignore_sigint=ignore_sigint)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == 'ready', process.stderr.read()
        process.send_signal(signum)
        out, err = process.communicate(timeout=20.0)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert 'stopped after' in out and 'Traceback' not in err, out + err


def test_spin_loop_ends_on_its_stop_event_and_on_a_context_shut_down_mid_spin():
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from hamwm_ros.nodes import spin_until_shutdown

    # The stop event (bringup's several executors in one process).
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node('stop_probe', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    spin_until_shutdown(executor, 0.05, stop)
    assert stop.is_set() and time.monotonic() - started < 5.0
    node.destroy_node()
    executor.shutdown()
    context.try_shutdown()

    # A context shut down from another thread while the executor is busy: the loop returns, it never raises (rclpy
    # can fail building its wait set on a context that went away between its checks).
    rng = random.Random(5)
    for _ in range(20):
        context = Context()
        rclpy.init(context=context)
        node = rclpy.create_node('shutdown_probe', context=context)
        node.create_timer(0.0005, lambda: None)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        threading.Timer(rng.uniform(0.0, 0.05), context.try_shutdown).start()
        spin_until_shutdown(executor, 0.05)
        assert not context.ok()
        node.destroy_node()
        executor.shutdown()


def test_message_executor_gives_the_kind_asked_for_and_refuses_others():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hamwm_ros.nodes import EXECUTOR_KINDS, message_executor

    rclpy.init()
    try:
        with pytest.raises(ValueError, match="executor must be one of events, single_threaded, got 'multi'"):
            message_executor('multi')
        single = message_executor('single_threaded')
        assert type(single) is SingleThreadedExecutor
        events = message_executor('events')
        try:
            from rclpy.experimental import EventsExecutor  # noqa: F401 - present in this rclpy?
            expected = 'EventsExecutor'    # rclpy's factory returns its C++ class of that name
        except ImportError:     # this rclpy has none: the single-threaded one stands in
            expected = 'SingleThreadedExecutor'
        assert type(events).__name__ == expected
        assert EXECUTOR_KINDS == ('events', 'single_threaded')
        for executor in (single, events):
            executor.shutdown()
    finally:
        rclpy.try_shutdown()


def test_node_threads_carry_their_names_at_the_os_level():
    from hamwm_ros.nodes import name_os_thread

    seen = {}

    def named() -> None:
        name_os_thread()
        seen['comm'] = open(f'/proc/self/task/{threading.get_native_id()}/comm').read().strip()

    thread = threading.Thread(target=named, name='mpc_planner_and_more')
    thread.start()
    thread.join()
    assert seen['comm'] == 'mpc_planner_and'        # Linux keeps 15 bytes


@pytest.mark.parametrize('given, expected', [(None, '1'), ('2', '2')])
def test_importing_the_package_pins_openblas_to_one_thread_unless_the_user_chose(given, expected):
    # OpenBLAS's extra thread busy-waits after each call: 90 % of a core inside mpc_node on a 2-core machine.
    # The suite sets OMP_NUM_THREADS=1 (conftest), which OpenBLAS also reads: drop both to see the package's default.
    env = {k: v for k, v in os.environ.items() if k not in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS')}
    if given is not None:
        env['OPENBLAS_NUM_THREADS'] = given
    code = ('import os, hamwm_ros, numpy\n'
            'print(os.environ["OPENBLAS_NUM_THREADS"], len(os.listdir("/proc/self/task")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    setting, threads = result.stdout.split()
    assert setting == expected
    assert int(threads) == int(expected)        # OpenBLAS starts (setting - 1) threads when numpy is imported


@pytest.mark.parametrize('module', ['world_model_node', 'balance_node'])
def test_a_second_sigint_while_the_node_exits_does_not_kill_it(module):
    # `ros2 launch` forwards a terminal's Ctrl-C to each node, which the terminal has already sent to the whole process
    # group; a user may also press it twice. The signals that reach the node after main() has cleaned up, while the
    # interpreter tears down, must not kill it (launch reported those as "process has died [exit code -2]").
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.Random(module).randrange(100, 200)))
    process = subprocess.Popen([sys.executable, '-m', f'hamwm_ros.nodes.{module}'], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in process.stdout:             # the node logs once it is up (unconfigured or ready)
            if f'[{module}]' in line:
                break
        process.send_signal(signal.SIGINT)
        while process.poll() is None:           # then SIGINT again every 20 ms until it has exited
            time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert 'Traceback' not in output, output
