"""sim_node's initial state over real DDS: seeded, explicit, and physics that waits for its subscribers.

Parameters initial_seed / initial_noise, initial_positions / initial_velocities, wait_for_subscribers,
wait_for_clock_subscribers, wait_for_command_publishers and subscriber_settle_time. Its own
module: no other sim_node may publish /joint_states on the domain while these run (test_sim_node.py keeps three
alive for its whole module).
"""

from __future__ import annotations

from contextlib import ExitStack
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _wait_for_log(process, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log():
        assert process.alive() and time.monotonic() < deadline, process.log()[-3000:]
        time.sleep(0.1)


def _probe(probes: ExitStack, probe):
    """Close ``probe`` when ``probes`` closes (before the sim_node process stops); returns it."""
    probes.callback(probe.close)
    return probe


def test_seeded_initial_state_waits_for_its_subscribers():
    """initial_seed / initial_noise give the in-process episodes' start; physics waits for two subscribers."""
    from sensor_msgs.msg import JointState

    from hamwm_ros.sim.cli import SimProcess, TopicProbe
    from hamwm_ros.sim.initial import initial_joint_state

    with SimProcess('cartpole', {'camera_rate': 0.0, 'initial_seed': 5, 'initial_noise': 0.1,
                                 'wait_for_subscribers': 2}, params_file=False) as sim, ExitStack() as probes:
        first_probe = _probe(probes, TopicProbe({'/joint_states': JointState}, name='probe_initial_a', keep=5000))
        _wait_for_log(sim, 'waiting for 2 /joint_states subscribers')
        assert first_probe.wait_for('/joint_states', timeout=1.5) is None, 'physics started with one subscriber'
        _probe(probes, TopicProbe({'/joint_states': JointState}, name='probe_initial_b'))
        msg = first_probe.wait_for('/joint_states', timeout=30.0, after=0)
        assert msg is not None, sim.log()[-3000:]
    q, v = initial_joint_state(2, 5, 0.1)
    assert _stamp(msg) < 0.01, 'the first state is not the episode start'
    assert np.asarray(msg.position) == pytest.approx(q, abs=2e-3)       # 2 ms of physics since
    assert np.asarray(msg.velocity) == pytest.approx(v, abs=2e-2)
    assert not np.allclose(q, 0.0)


def test_initial_positions_and_velocities_by_joint_order():
    """initial_positions / initial_velocities: one per joint in /joint_states order (the passive pole included)."""
    from sensor_msgs.msg import JointState

    from hamwm_ros.sim.cli import SimProcess, TopicProbe

    with SimProcess('cartpole', {'camera_rate': 0.0, 'initial_positions': [0.5, 3.0],
                                 'initial_velocities': [0.0, 0.2], 'wait_for_subscribers': 1,
                                 'subscriber_settle_time': 0.5}, params_file=False) as sim:
        with ExitStack() as probes:
            subscribed = time.monotonic()
            probe = _probe(probes, TopicProbe({'/joint_states': JointState}, name='probe_initial_c', keep=5000))
            msg = probe.wait_for('/joint_states', timeout=60.0, after=0)
            assert msg is not None, sim.log()[-3000:]
            waited = time.monotonic() - subscribed
        assert 'first physics step in 0.5 s' in sim.log(), sim.log()[-3000:]
    assert waited >= 0.5, 'physics started before the settle time after its subscriber matched'
    assert _stamp(msg) < 0.01
    assert np.asarray(msg.position) == pytest.approx([0.5, 3.0], abs=2e-3)
    assert np.asarray(msg.velocity) == pytest.approx([0.0, 0.2], abs=2e-2)


def test_physics_waits_for_a_clock_subscriber_and_a_command_publisher():
    """wait_for_clock_subscribers / wait_for_command_publishers: no physics until both exist, then it starts."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from hamwm_ros.sim.cli import SimProcess, TopicProbe

    with SimProcess('pendulum', {'camera_rate': 0.0, 'wait_for_subscribers': 1, 'wait_for_clock_subscribers': 1,
                                 'wait_for_command_publishers': 1}, params_file=False) as sim, ExitStack() as probes:
        states = _probe(probes, TopicProbe({'/joint_states': JointState}, name='probe_initial_d', keep=5000))
        _wait_for_log(sim, 'waiting for 1 /clock subscribers')
        assert states.wait_for('/joint_states', timeout=1.5) is None, 'physics started without a /clock subscriber'
        clock = _probe(probes, TopicProbe({'/clock': Clock}, name='probe_initial_e'))
        # a wait that lasts says so, with the parameter behind it, every 5 s
        _wait_for_log(sim, 'still waiting for command publishers (on one command topic): 0 of 1 (parameter '
                           'wait_for_command_publishers)')
        assert states.seq('/joint_states') == 0, 'physics started without a commander'
        clock.node.create_publisher(Float64MultiArray, '/effort_controller/commands', 10)
        msg = states.wait_for('/joint_states', timeout=30.0, after=0)
        assert msg is not None, sim.log()[-3000:]
        assert clock.wait_for('/clock', timeout=10.0) is not None, 'the /clock subscriber hears nothing'
    assert _stamp(msg) < 0.01, 'the first state is not the episode start'
