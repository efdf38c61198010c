"""The command relay process over real DDS: it publishes what was posted, only while fresh, and exits when told.

The relay (``python -m hamwm_ros.nodes.command_relay``) runs on a ROS domain of its own here with a probe node
in this process; mpc_node's use of it is in test_mpc_node.py.
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from ros_probe import other_domain
from std_msgs.msg import Float64MultiArray

from hamwm_ros.nodes.command_relay import PHASE_OFFSET_S, CommandRelay

pytestmark = pytest.mark.ros

PERIOD = 0.004        # 250 Hz


class Probe:
    """Records every Float64MultiArray on ``topic`` with its receipt time, on domain ``domain``."""

    def __init__(self, domain: int, topic: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=domain)
        self.node = rclpy.create_node('relay_probe', context=self.context, enable_rosout=False)
        self.received: list[tuple[float, list[float]]] = []
        self.subscription = self.node.create_subscription(
            Float64MultiArray, topic, lambda m: self.received.append((time.monotonic(), list(m.data))), 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:    # noqa: BLE001 - the context shut down under the spin
                return

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=5.0)


@pytest.fixture
def relay_and_probe():
    domain = other_domain()
    probe = Probe(domain, '/robot/effort_controller/commands')
    relay = CommandRelay(2, '/robot/effort_controller/commands', 'mpc_node_relay', '/robot', domain, priority=0,
                         period=PERIOD)
    try:
        assert relay.wait_ready() is None
        deadline = time.monotonic() + 20.0
        while probe.subscription.get_publisher_count() == 0:
            assert time.monotonic() < deadline, 'the relay never matched the probe'
            time.sleep(0.05)
        while relay.matched < 1:             # the relay reports its match count every MATCH_REPORT_TICKS ticks
            assert time.monotonic() < deadline, f'the relay reported {relay.matched} matched subscriptions'
            time.sleep(0.01)
        yield relay, probe
    finally:
        relay.stop()
        probe.close()


def post_for(relay: CommandRelay, seconds: float, start: int = 0) -> int:
    """Post (k, -k) every period for ``seconds``; returns the next k."""
    k = start
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        relay.post(np.array([float(k), -float(k)]), time.monotonic())
        k += 1
        time.sleep(PERIOD)
    return k


def test_the_relay_publishes_the_posted_commands_at_its_rate_and_goes_quiet_when_they_stop(relay_and_probe):
    relay, probe = relay_and_probe
    time.sleep(0.3)
    assert probe.received == []                 # nothing posted: nothing published
    last = post_for(relay, 2.0) - 1
    stopped = time.monotonic()
    time.sleep(0.5)
    received = list(probe.received)
    values = np.array([v for _, v in received])
    assert len(received) > 0.5 * 2.0 / PERIOD, len(received)
    np.testing.assert_array_equal(values[:, 1], -values[:, 0])      # whole commands, never torn
    assert np.all(np.diff(values[:, 0]) >= 0)                       # in the order posted
    assert values[-1, 0] == last                                    # the last post went out
    # fresh commands only: nothing later than 2.5 periods after the last post (plus transport)
    assert received[-1][0] - stopped < 0.1
    stats = relay.stats()
    assert stats['running'] and stats['pid'] == relay.process.pid
    assert stats['published'] == len(received)
    assert stats['stale'] > 0.4 / PERIOD * 0.5           # the quiet ticks after the posts stopped
    assert stats['command_age_p99_s'] <= 2.5 * PERIOD
    assert stats['period_error_p99_s'] < PERIOD


def test_the_relay_ticks_just_after_the_posting_loop(relay_and_probe):
    # a posting loop on absolute deadlines that tells the relay its phase, as mpc_node's control thread does
    relay, probe = relay_and_probe
    deadline = time.monotonic()
    for k in range(int(1.5 / PERIOD)):
        deadline += PERIOD
        time.sleep(max(0.0, deadline - time.monotonic()))
        relay.set_phase(deadline)
        relay.post(np.array([float(k), -float(k)]), time.monotonic())
    stats = relay.stats()
    assert stats['published'] > 0.5 * 1.5 / PERIOD
    # 1 ms (PHASE_OFFSET_S) after the deadline, give or take both loops' jitter (the median: robust to load)
    assert 0.3 * PHASE_OFFSET_S < stats['command_age_p50_s'] < 1.5 * PHASE_OFFSET_S, stats
    assert stats['repeats'] < 0.2 * stats['published'], stats


def test_a_cleared_command_is_not_published_again(relay_and_probe):
    relay, probe = relay_and_probe
    relay.post(np.array([1.0, -1.0]), time.monotonic() + 10.0)    # "fresh" for a long time
    time.sleep(0.3)
    assert len(probe.received) > 10
    relay.clear()
    time.sleep(0.1)
    count = len(probe.received)
    time.sleep(0.3)
    assert len(probe.received) == count


def test_stop_ends_the_process_and_removes_the_mailbox(relay_and_probe):
    relay, _ = relay_and_probe
    name = relay.mailbox.name
    assert Path('/dev/shm', name.lstrip('/')).exists()
    assert relay.stop() == 0
    assert not Path('/dev/shm', name.lstrip('/')).exists()


def test_the_relay_exits_when_its_node_process_dies_without_stopping_it(tmp_path):
    # a parent that starts a relay and dies at once (no stop request): the relay notices it was re-parented
    script = tmp_path / 'parent.py'
    script.write_text(
        'import os, sys\n'
        'from hamwm_ros.nodes.command_relay import PHASE_OFFSET_S, CommandRelay\n'
        f'relay = CommandRelay(1, "/orphan_commands", "orphan_relay", "/", {other_domain()}, 0, 0.01)\n'
        'assert relay.wait_ready() is None\n'
        'print(relay.process.pid, flush=True)\n'
        'os._exit(0)\n')
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail('the orphaned relay kept running')


def test_the_relay_loop_refuses_non_finite_commands_and_stops_on_request():
    # the loop alone, in a thread, publishing into a list: no process, no DDS
    from hamwm_ros.commandmailbox import CommandMailbox, _checksum
    from hamwm_ros.nodes.command_relay import run_relay

    writer = CommandMailbox(2)
    reader = CommandMailbox(2, name=writer.name)
    published: list[np.ndarray] = []
    writer.set_period(PERIOD)
    thread = threading.Thread(target=run_relay, args=(reader, lambda v: published.append(v) or True, os.getppid()),
                              kwargs={'matched': lambda: 3})
    thread.start()
    try:
        writer.post(np.array([1.0, 2.0]), time.monotonic() + 60.0)
        time.sleep(0.1)
        assert len(published) > 5 and all(np.array_equal(v, [1.0, 2.0]) for v in published)
        assert writer.matched == 3
        with pytest.raises(ValueError, match='finite'):
            writer.post(np.array([np.nan, 2.0]), time.monotonic())
        # one that got into the block anyway (checksum and all): the relay refuses it
        bad, written = np.array([np.inf, 2.0]), time.monotonic() + 60.0
        writer._header[0] += 1.0
        writer._values[:] = bad
        writer._header[1], writer._header[2] = written, _checksum(bad, written, writer._weights)
        writer._header[0] += 1.0
        time.sleep(0.02)
        count = len(published)
        time.sleep(0.1)
        assert len(published) == count                       # a non-finite command never goes out
        assert writer.stats()['refused'] > 5
        writer.request_stop()
        thread.join(timeout=2.0)
        assert not thread.is_alive()
    finally:
        writer.request_stop()
        thread.join(timeout=2.0)
        reader.close()
        writer.close()


def test_with_stale_hold_a_stalled_writer_gets_zeros_and_a_withdrawn_command_nothing():
    # the loop alone, in a thread, publishing into a list: no process, no DDS
    from hamwm_ros.commandmailbox import CommandMailbox
    from hamwm_ros.nodes.command_relay import MAX_AGE_PERIODS, run_relay

    writer = CommandMailbox(2)
    reader = CommandMailbox(2, name=writer.name)
    published: list[tuple[float, np.ndarray]] = []
    writer.set_period(PERIOD)
    thread = threading.Thread(target=run_relay, args=(reader, lambda v: published.append((time.monotonic(), v))
                                                       or True, os.getppid()))
    thread.start()
    try:
        assert not reader.stale_hold                          # off unless the writer asks
        post_until = time.monotonic() + 0.1
        while time.monotonic() < post_until:                  # the writer posts, then stops (a stalled node)
            writer.post(np.array([1.0, 2.0]), time.monotonic())
            time.sleep(PERIOD)
        stopped = time.monotonic()
        time.sleep(0.1)
        assert all(t <= stopped + (MAX_AGE_PERIODS + 1) * PERIOD for t, _ in published)   # quiet: the default
        writer.set_stale_hold(True)
        assert reader.stale_hold
        time.sleep(0.1)
        zeros = [v for t, v in published if t > stopped + (MAX_AGE_PERIODS + 1) * PERIOD]
        assert len(zeros) > 0.5 * 0.1 / PERIOD and all(np.array_equal(v, [0.0, 0.0]) for v in zeros)
        assert writer.stats()['stale_holds'] == len(zeros)
        writer.post(np.array([3.0, 4.0]), time.monotonic() + 60.0)     # posts again: its commands go out again
        time.sleep(0.05)
        assert np.array_equal(published[-1][1], [3.0, 4.0])
        writer.clear()                                        # withdrawn, not stale: nothing, zeros included
        time.sleep(0.02)
        count = len(published)
        time.sleep(0.1)
        assert len(published) == count
        writer.set_stale_hold(False)
        assert not reader.stale_hold
    finally:
        writer.request_stop()
        thread.join(timeout=2.0)
        reader.close()
        writer.close()
