"""Seeded initial joint states, shared by the in-process swing-up episodes and sim_node's initial_* parameters."""

from __future__ import annotations

import numpy as np
import pytest

from hamwm_ros.sim.initial import initial_joint_state


def test_seeded_initial_state_is_the_in_process_draw():
    rng = np.random.default_rng(7)
    q_expected, v_expected = rng.uniform(-0.1, 0.1, 2), rng.uniform(-0.1, 0.1, 2)
    q, v = initial_joint_state(2, 7, 0.1)
    assert np.array_equal(q, q_expected) and np.array_equal(v, v_expected)
    q, v = initial_joint_state(2, 7, 0.1, positions=[1.0, 2.0], velocities=[0.0, -1.0])
    assert q == pytest.approx(q_expected + [1.0, 2.0]) and v == pytest.approx(v_expected + [0.0, -1.0])
    q, v = initial_joint_state(2, -1, 0.1, positions=[1.0, 2.0])
    assert q.tolist() == [1.0, 2.0] and v.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match='2 finite'):
        initial_joint_state(2, 0, 0.1, positions=[1.0])
    with pytest.raises(ValueError, match='noise'):
        initial_joint_state(2, 0, -0.1)
