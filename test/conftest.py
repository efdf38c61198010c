"""Suite-wide settings.

ROS tests run real DDS: each pytest session picks its own ROS_DOMAIN_ID (so parallel runs on one machine never hear
each other) and keeps discovery on the loopback interface. Subprocesses inherit both through the environment.
"""

import os
import random

os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('OMP_NUM_THREADS', '1')



def pytest_collection_modifyitems(config, items):
    """Give each real-time ROS test (marker ``ros``: processes over DDS) one rerun.

    These tests hold real nodes to real-time deadlines on a shared 2-core machine, where another job's burst can
    delay a process by hundreds of milliseconds. A test that fails twice in a row fails the suite; one that passes on
    its rerun is reported as rerun ("R" in the progress line and "rerun" in the summary), so flakes stay visible.
    """
    if not config.pluginmanager.hasplugin('rerunfailures'):
        return
    import pytest

    for item in items:
        if item.get_closest_marker('ros') is not None and item.get_closest_marker('flaky') is None:
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))


def pytest_runtest_logreport(report):
    """Print why a test needed its rerun (the summary names it, not the cause), so flakes can be diagnosed from CI."""
    if report.outcome == 'rerun':
        import sys

        text = report.longreprtext or ''
        sys.stderr.write(f'\n[rerun] {report.nodeid} ({report.when}) failed its first attempt:\n{text[-3000:]}\n')
