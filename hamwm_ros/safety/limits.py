"""URDF joint limits in the joint order a controller works in.

The URDF is read with :func:`hamwm_ros.sim.parse_urdf_joints` (the same reader the simulation uses), so the limits a
command is clamped to are exactly the ones the simulated robot enforces. A URDF may be given as a file path or as
the XML text itself (the ``robot_description`` parameter convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import io
from pathlib import Path

import numpy as np

from hamwm_ros.sim.robots import parse_urdf_joints


class LimitsError(ValueError):
    """A URDF cannot be read or does not describe the expected joints."""


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits, all arrays in ``names`` order.

    Attributes
    ----------
    names
        Joint names.
    position
        (n, 2) lower and upper position limits.
    velocity
        (n,) symmetric velocity limits (> 0).
    effort
        (n,) symmetric effort limits (>= 0; 0 marks a passive joint that must never receive effort).
    """

    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        position = np.asarray(self.position, dtype=np.float64).reshape(-1, 2) if n else np.zeros((0, 2))
        velocity = np.asarray(self.velocity, dtype=np.float64).ravel()
        effort = np.asarray(self.effort, dtype=np.float64).ravel()
        if n == 0 or position.shape != (n, 2) or velocity.shape != (n,) or effort.shape != (n,):
            raise LimitsError(f'limits need one entry per joint ({n}); got position {position.shape}, '
                              f'velocity {velocity.shape}, effort {effort.shape}')
        if not (np.all(np.isfinite(position)) and np.all(position[:, 0] < position[:, 1])):
            raise LimitsError('position limits must be finite with lower < upper')
        if not (np.all(np.isfinite(velocity)) and np.all(velocity > 0)):
            raise LimitsError('velocity limits must be finite and > 0')
        if not (np.all(np.isfinite(effort)) and np.all(effort >= 0)):
            raise LimitsError('effort limits must be finite and >= 0')
        object.__setattr__(self, 'position', position)
        object.__setattr__(self, 'velocity', velocity)
        object.__setattr__(self, 'effort', effort)

    @classmethod
    def from_urdf(cls, urdf: str | Path, joint_names: Sequence[str] | None = None) -> JointLimits:
        """Limits of ``joint_names`` (default: every movable joint, in file order) from a URDF.

        Parameters
        ----------
        urdf
            Path of a URDF file, or URDF XML text (anything whose first non-blank character is ``<``).
        joint_names
            Order wanted; every name must be a movable joint of the URDF.

        Raises
        ------
        LimitsError
            If the URDF cannot be read, a joint lacks complete limits, or a requested joint is not in it.
        """
        text = str(urdf)
        source: io.StringIO | Path = io.StringIO(text) if text.lstrip().startswith('<') else Path(text)
        where = 'robot_description' if isinstance(source, io.StringIO) else str(source)
        try:
            joints = parse_urdf_joints(source)
        except (ValueError, OSError) as error:
            raise LimitsError(f'URDF {where}: {error}') from None
        names = list(joints.names if joint_names is None else joint_names)
        unknown = [name for name in names if name not in joints.names]
        if unknown:
            raise LimitsError(f'URDF {where} has no movable joints {unknown} (it has {list(joints.names)})')
        index = [joints.names.index(name) for name in names]
        return cls(tuple(names), joints.position_limits[index], joints.velocity_limits[index],
                   joints.effort_limits[index])

    @classmethod
    def urdf_joint_names(cls, urdf: str | Path) -> tuple[str, ...]:
        """Movable joints of a URDF (path or XML text) in file order.

        Raises
        ------
        LimitsError
            If the URDF cannot be read.
        """
        return cls.from_urdf(urdf).names

    def reorder(self, joint_names: Sequence[str]) -> JointLimits:
        """The same limits in another order (a subset is allowed).

        Raises
        ------
        LimitsError
            If a name is not one of :attr:`names`.
        """
        unknown = [name for name in joint_names if name not in self.names]
        if unknown:
            raise LimitsError(f'no limits for joints {unknown}')
        index = [self.names.index(name) for name in joint_names]
        return JointLimits(tuple(joint_names), self.position[index], self.velocity[index], self.effort[index])


def outward_effort_mask(effort: np.ndarray, position: np.ndarray, velocity: np.ndarray, limits: JointLimits,
                        margin: float = 0.0) -> np.ndarray:
    """Which efforts push a joint further out of its URDF range: True entries must be cut to zero.

    The rule (one joint at a time, arrays in ``limits.names`` order):

    * a positive effort is cut when the measured position is at or above ``upper - margin`` or the measured
      velocity is at or above ``+velocity_limit``;
    * a negative effort is cut when the position is at or below ``lower + margin`` or the velocity at or below
      ``-velocity_limit``.

    Efforts that pull the joint back inside (toward its range, or slowing it down) always pass; a zero effort is
    never cut. Non-finite measurements cut both directions (nothing is known about that joint).
    """
    effort = np.asarray(effort, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    velocity = np.asarray(velocity, dtype=np.float64)
    unknown = ~(np.isfinite(position) & np.isfinite(velocity))
    with np.errstate(invalid='ignore'):
        up = (position >= limits.position[:, 1] - margin) | (velocity >= limits.velocity) | unknown
        down = (position <= limits.position[:, 0] + margin) | (velocity <= -limits.velocity) | unknown
    return ((effort > 0.0) & up) | ((effort < 0.0) & down)


def clamp_trajectory(positions: np.ndarray, velocities: np.ndarray | None,
                     limits: JointLimits) -> tuple[np.ndarray, np.ndarray | None]:
    """Trajectory points clamped into the URDF position range and velocity limits (``(k, n)`` arrays).

    Non-finite entries are not repaired here: the caller must not publish a trajectory that has any.
    """
    q = np.clip(np.asarray(positions, dtype=np.float64), limits.position[:, 0], limits.position[:, 1])
    if velocities is None:
        return q, None
    v = np.clip(np.asarray(velocities, dtype=np.float64), -limits.velocity, limits.velocity)
    return q, v
