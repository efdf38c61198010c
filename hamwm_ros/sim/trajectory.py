"""Joint trajectories as ros2_control's joint_trajectory_controller plays them: knots in time, sampled at any instant.

sim_node follows trajectory_msgs/JointTrajectory targets with :class:`TrajectorySampler`, its PD tracking evaluated
inside the physics step. Imports neither rclpy nor torch.
"""

from __future__ import annotations

import numpy as np


class TrajectorySampler:
    """Time-parameterised joint trajectory: cubic Hermite where velocities are given, linear otherwise.

    The first knot is the joint state when the trajectory starts, so motion begins from where the robot is (as
    ros2_control's joint_trajectory_controller does). After the last knot the last position is held.

    Parameters
    ----------
    times
        (k,) absolute knot times in seconds, strictly increasing.
    positions
        (k, m) knot positions.
    velocities
        (k, m) knot velocities, or None for piecewise-linear interpolation.
    """

    def __init__(self, times: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self.positions = np.asarray(positions, dtype=np.float64)
        self.velocities = None if velocities is None else np.asarray(velocities, dtype=np.float64)

    @property
    def end_time(self) -> float:
        """Time of the last knot."""
        return float(self.times[-1])

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Desired (position, velocity) at absolute time ``t``."""
        times, positions = self.times, self.positions
        if t >= times[-1] or len(times) == 1:
            return positions[-1].copy(), np.zeros(positions.shape[1])
        if t <= times[0]:
            velocity = np.zeros(positions.shape[1]) if self.velocities is None else self.velocities[0].copy()
            return positions[0].copy(), velocity
        i = int(np.searchsorted(times, t, side='right')) - 1
        h = times[i + 1] - times[i]
        s = (t - times[i]) / h
        q0, q1 = positions[i], positions[i + 1]
        if self.velocities is None:
            return q0 + s * (q1 - q0), (q1 - q0) / h
        v0, v1 = self.velocities[i] * h, self.velocities[i + 1] * h
        s2, s3 = s * s, s * s * s
        position = (2 * s3 - 3 * s2 + 1) * q0 + (s3 - 2 * s2 + s) * v0 + (-2 * s3 + 3 * s2) * q1 + (s3 - s2) * v1
        velocity = ((6 * s2 - 6 * s) * q0 + (3 * s2 - 4 * s + 1) * v0 + (-6 * s2 + 6 * s) * q1
                    + (3 * s2 - 2 * s) * v1) / h
        return position, velocity


__all__ = ['TrajectorySampler']
