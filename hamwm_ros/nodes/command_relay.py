"""The command relay: a process that publishes mpc_node's effort commands on its own clock (``command_relay``).

mpc_node's control thread decides each command (supervisor, watchdog, guards) and, with ``command_relay`` on, posts
it to a :class:`hamwm_ros.commandmailbox.CommandMailbox` instead of publishing it. This process, started by the node
with ``python -m hamwm_ros.nodes.command_relay``, wakes at the control rate on SCHED_FIFO with an interpreter lock
of its own, ``PHASE_OFFSET_S`` (1 ms, or half a period if shorter) after each of the control thread's deadlines,
takes the latest command and publishes it on the node's effort topic. It publishes a command only while it is fresh
(posted at most ``MAX_AGE_PERIODS`` control periods ago). When the posts stop without the command being withdrawn
(the node's process stalled: starved, stopped, stuck in a long pause) the relay goes quiet, or, with the mailbox's
``stale_hold`` on (mpc_node sets it when its ``safe_hold`` is ``zero_effort``), publishes zero effort every tick
until the posts resume: the node's own safe hold, which its stalled watchdog cannot command. A driver that holds the
last effort it received would otherwise keep pushing with it for the whole stall (for a balancing pole, worse than
no effort: README, Known weaknesses). A withdrawn command (deactivate, a hold handed to the driver, the node
publishing itself) leaves the relay quiet. It exits when the node asks, when the node's process is gone, or on
SIGINT / SIGTERM.

The cost: a command reaches the wire about ``PHASE_OFFSET_S`` after the control thread's deadline (one period more
when the thread posts later than that; the ``relay_command_age`` figures in the node's diagnostics), in exchange for
the interpreter lock's jitter on when it goes out.
"""

from __future__ import annotations

import argparse
import array
from collections.abc import Callable
import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

from hamwm_ros.commandmailbox import CommandMailbox

MAX_AGE_PERIODS = 2.5      # a posted command older than this many periods is stale: the relay publishes nothing
# The relay ticks this long after each of the control thread's deadlines (half a period where that is shorter): the
# thread posts ~0.15 ms after its deadline and its lateness p99 is 0.3-0.9 ms at 500 Hz on 2 cores, so almost every
# command goes out on the tick after it was decided, at the same age, without adding half a period at low rates.
PHASE_OFFSET_S = 0.001
# The relay is a DDS participant of its own, so a subscriber that appears (a driver, a simulator restarted) can match
# the node's publisher before the relay's: the relay reports its match count this often and the node publishes
# itself while its own publisher has matched more (no command is lost to the relay's discovery).
MATCH_REPORT_TICKS = 10
START_TIMEOUT_S = 20.0     # the relay process imports rclpy and joins the graph: seconds before activation gives up


def _raise_priority(priority: int) -> int:
    """SCHED_FIFO ``priority`` for this process: the priority granted, 0 if not asked, -1 if refused."""
    if priority <= 0 or not hasattr(os, 'sched_setscheduler'):
        return 0
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError:
        return -1
    return priority


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_relay(mailbox: CommandMailbox, publish: Callable[[np.ndarray], bool], parent_pid: int,
              matched: Callable[[], int] | None = None) -> None:
    """The relay loop: until a stop request or the parent's exit, publish the latest fresh command each period.

    Parameters
    ----------
    mailbox
        The attached mailbox (reader side).
    publish
        Called with each command's values (float64 array); returns False when publishing is over (context gone).
    parent_pid
        The node's pid; the loop ends when this process is re-parented (the node died without a stop request).
    matched
        Returns how many subscriptions the publisher has matched; reported through the mailbox every
        ``MATCH_REPORT_TICKS`` ticks (the node publishes itself while its own publisher has matched more).
    """
    deadline = time.monotonic()
    previous_tick = None
    last_written = math.nan
    ticks = 0
    zeros = np.zeros(mailbox.size)
    while not mailbox.stop_requested and os.getppid() == parent_pid:
        if matched is not None and ticks % MATCH_REPORT_TICKS == 0:
            mailbox.set_matched(matched())
        ticks += 1
        period = mailbox.period
        if not period > 0.0:
            time.sleep(0.01)
            deadline = time.monotonic()
            continue
        deadline += period
        phase = mailbox.phase
        if phase > 0.0:
            # onto the grid just after the control thread's deadlines (the nearest point, so no tick is skipped or
            # doubled): a command posted on time is then the same age when it goes out, every time
            grid = phase + min(PHASE_OFFSET_S, 0.5 * period)
            deadline = grid + round((deadline - grid) / period) * period
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        missed = 0
        if now - deadline > period:           # a whole period late: count it and re-anchor, no burst
            missed = int((now - deadline) / period)
            deadline = now
        mailbox.record_tick(now, None if previous_tick is None else abs(now - previous_tick - period), missed)
        previous_tick = now
        taken = mailbox.take()
        if taken is None or not now - taken[0] <= MAX_AGE_PERIODS * period:
            if not math.isnan(last_written):     # ticks before the first command are not counted as stale
                mailbox.record_skip(refused=False)
            if taken is not None and mailbox.stale_hold:   # posted, then no more: the writer stalled
                if not publish(zeros):
                    return
                mailbox.record_stale_hold()
            continue
        written, values = taken
        if not np.all(np.isfinite(values)):   # the node never posts one; never publish it anyway
            mailbox.record_skip(refused=True)
            continue
        if not publish(values):
            return
        mailbox.record_publish(now - written, repeat=written == last_written)
        last_written = written


def main(argv: list[str] | None = None) -> int:
    """Run the relay process (started by mpc_node; see :class:`CommandRelay`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='JSON: mailbox, size, topic, node, namespace, domain_id, priority, parent_pid')
    config = json.loads(parser.parse_args(argv).config)
    signal.signal(signal.SIGTERM, _on_term)
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension

    mailbox = CommandMailbox(int(config['size']), name=config['mailbox'])
    context = rclpy.Context()
    node = None
    try:
        rclpy.init(args=[], context=context, domain_id=int(config['domain_id']),
                   signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node(config['node'], namespace=config['namespace'], context=context,
                                 use_global_arguments=False, start_parameter_services=False, enable_rosout=False)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        publisher = node.create_publisher(Float64MultiArray, config['topic'], qos)
        message = Float64MultiArray()
        size = mailbox.size
        message.layout.dim = [MultiArrayDimension(label='joints', size=size, stride=size)]

        def publish(values: np.ndarray) -> bool:
            if not context.ok():
                return False
            message.data = array.array('d', values.tobytes())
            publisher.publish(message)
            return True

        mailbox.mark_ready(os.getpid(), _raise_priority(int(config['priority'])))
        run_relay(mailbox, publish, int(config['parent_pid']), publisher.get_subscription_count)
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
        mailbox.close()
    return 0


class CommandRelay:
    """mpc_node's handle on its relay process: start it, post commands, read its figures, stop it.

    Parameters
    ----------
    size
        Values per command.
    topic
        Fully resolved topic to publish on (the node's ``effort_controller/commands`` after its remaps).
    node_name, namespace
        Name and namespace of the relay's own node in the graph.
    domain_id
        The node's ROS domain.
    priority
        SCHED_FIFO priority of the relay process (0: normal scheduling).
    period
        First loop period, seconds (:meth:`set_period` changes it).
    stale_hold
        Publish zero effort while a posted command is stale (the node stalled) instead of going quiet
        (:attr:`CommandMailbox.stale_hold`).

    Raises
    ------
    OSError
        If the process cannot be started.
    """

    def __init__(self, size: int, topic: str, node_name: str, namespace: str, domain_id: int, priority: int,
                 period: float, stale_hold: bool = False) -> None:
        self.mailbox = CommandMailbox(size)
        self.mailbox.set_period(period)
        self.mailbox.set_stale_hold(stale_hold)
        self._stopped = False
        config = {'mailbox': self.mailbox.name, 'size': size, 'topic': topic, 'node': node_name,
                  'namespace': namespace, 'domain_id': domain_id, 'priority': priority, 'parent_pid': os.getpid()}
        try:
            self.process = subprocess.Popen([sys.executable, '-m', 'hamwm_ros.nodes.command_relay',
                                             json.dumps(config)], stdin=subprocess.DEVNULL)
        except BaseException:
            self.mailbox.close()
            raise

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str | None:
        """Wait until the relay publishes; None when it does, else why not (it exited, or the timeout passed)."""
        end = time.monotonic() + timeout
        while self.mailbox.ready_pid == 0:
            code = self.process.poll()
            if code is not None:
                return f'the command relay process exited with code {code} before it was ready'
            if time.monotonic() > end:
                return f'the command relay process was not ready within {timeout:g} s'
            time.sleep(0.02)
        return None

    def healthy(self, now: float, period: float) -> bool:
        """Whether the relay is ready and ticked within the last ten periods (at least 50 ms)."""
        return self.mailbox.ready_pid != 0 and now - self.mailbox.heartbeat < max(0.05, 10.0 * period)

    @property
    def matched(self) -> int:
        """Subscriptions the relay's publisher had matched at its last report (-1 before any)."""
        return self.mailbox.matched

    def post(self, values: np.ndarray, now: float) -> None:
        """Hand the relay the command of time ``now``."""
        self.mailbox.post(values, now)

    def clear(self) -> None:
        """Withdraw the last command: nothing more goes out until the next :meth:`post`."""
        self.mailbox.clear()

    def set_period(self, period: float) -> None:
        """Change the relay's loop period, seconds."""
        self.mailbox.set_period(period)

    def set_phase(self, deadline: float) -> None:
        """The control thread's current deadline: the relay ticks ``PHASE_OFFSET_S`` after it."""
        self.mailbox.set_phase(deadline)

    def stats(self) -> dict[str, Any]:
        """The relay's figures (:meth:`CommandMailbox.stats`), whether its process runs, its exit code if not."""
        code = self.process.poll()
        return {**self.mailbox.stats(), 'running': code is None, 'exit_code': code}

    def stop(self, timeout: float = 3.0) -> int | None:
        """Ask the relay to stop, wait for it (SIGTERM, then SIGKILL past ``timeout``), remove the mailbox.

        Returns the process's exit code. Idempotent.
        """
        if self._stopped:
            return self.process.returncode
        self._stopped = True
        self.mailbox.clear()
        self.mailbox.request_stop()
        code = None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        finally:
            self.mailbox.close()
        return code


if __name__ == '__main__':
    sys.exit(main())
