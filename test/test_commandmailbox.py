"""The shared-memory command mailbox: what the writer posts is what the reader takes, torn reads are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hamwm_ros.commandmailbox import RING, CommandMailbox


@pytest.fixture
def pair():
    writer = CommandMailbox(3)
    reader = CommandMailbox(3, name=writer.name)
    yield writer, reader
    reader.close()
    writer.close()


def test_nothing_is_taken_before_a_post_or_after_a_clear(pair):
    writer, reader = pair
    assert reader.take() is None
    writer.post(np.array([1.0, -2.0, 3.5]), now=10.0)
    written, values = reader.take()
    assert written == 10.0
    np.testing.assert_array_equal(values, [1.0, -2.0, 3.5])
    writer.clear()
    assert reader.take() is None


def test_the_reader_sees_the_latest_post_and_a_copy_of_it(pair):
    writer, reader = pair
    for k in range(5):
        writer.post(np.full(3, float(k)), now=float(k))
    written, values = reader.take()
    assert written == 4.0
    np.testing.assert_array_equal(values, [4.0, 4.0, 4.0])
    writer.post(np.zeros(3), now=5.0)
    np.testing.assert_array_equal(values, [4.0, 4.0, 4.0])     # the taken copy does not change under it


def test_a_torn_or_half_written_command_is_refused_and_counted(pair):
    writer, reader = pair
    writer.post(np.ones(3), now=1.0)
    # a write in progress: the counter is odd
    writer._header[0] += 1.0
    assert reader.take() is None
    writer._header[0] += 1.0
    assert reader.take() is not None
    # values changed without their checksum (what a reordered store looks like): refused
    writer._values[1] = 7.0
    assert reader.take() is None
    assert reader.stats()['torn'] == 2


def test_wrong_sizes_are_refused():
    with pytest.raises(ValueError, match='at least one value'):
        CommandMailbox(0)
    writer = CommandMailbox(2)
    try:
        with pytest.raises(ValueError, match='expected 2 values'):
            writer.post(np.zeros(3), now=0.0)
        with pytest.raises(ValueError, match='finite'):
            writer.post(np.array([0.0, np.inf]), now=0.0)
        with pytest.raises(ValueError, match='needs'):
            CommandMailbox(5000, name=writer.name)
    finally:
        writer.close()
    with pytest.raises(FileNotFoundError):
        CommandMailbox(2, name=writer.name)     # the owner removed the block


def test_reader_statistics_reach_the_writer(pair):
    writer, reader = pair
    assert math.isnan(writer.stats()['period_error_p99_s'])
    assert reader.phase == 0.0 and writer.matched == -1          # no match count reported yet
    reader.set_matched(2)
    assert writer.matched == 2
    writer.set_phase(12.5)
    writer.set_period(0.002)
    assert reader.phase == 12.5 and reader.period == 0.002
    reader.mark_ready(pid=1234, scheduling=50)
    for k in range(200):
        reader.record_tick(now=float(k), period_error=None if k == 0 else 1e-4 * (k % 10), missed=int(k == 7))
        if k % 4:
            reader.record_publish(age=1e-3, repeat=k % 8 == 1)
        else:
            reader.record_skip(refused=k == 4)
    stats = writer.stats()
    assert stats['pid'] == 1234 and stats['scheduling'] == 'SCHED_FIFO 50'
    assert stats['ticks'] == 200 and stats['missed'] == 1 and stats['published'] == 150
    assert stats['refused'] == 1 and stats['stale'] == 49 and stats['repeats'] == 25
    assert stats['command_age_p99_s'] == pytest.approx(1e-3)
    assert 0.0 < stats['period_error_p99_s'] <= 9e-4 + 1e-12
    assert writer.heartbeat == 199.0
    reader.mark_ready(pid=1, scheduling=-1)
    assert writer.stats()['scheduling'] == 'SCHED_OTHER (SCHED_FIFO refused)'


def test_the_ring_keeps_the_last_ticks(pair):
    writer, reader = pair
    for k in range(RING + 10):
        reader.record_tick(now=float(k), period_error=1.0 if k < 10 else 1e-5, missed=0)
        reader.record_publish(age=0.0, repeat=False)
    assert writer.stats()['period_error_p99_s'] == pytest.approx(1e-5)   # the first ten, overwritten
