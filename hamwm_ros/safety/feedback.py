"""Feedback around the plan at control rate: what the planner's 50 Hz cannot react to between two plans.

MPPI plans at the planner rate; the control loop plays the plan back at the control rate. Between two plans the robot
can leave the trajectory the plan predicted for it (a push, a model error, a state step), and the plan only learns of
it at the next planner slot plus a few warm-started iterations (50-60 ms to reverse on the pendulum, `hamwm bench
mpc`). :class:`PlanFeedback` adds, on every control tick, a PD law on the deviation of the measured joint state from
the state the plan predicted for that instant, as a tracking controller under a slower MPC does::

    effort += kp * wrap(q_plan(t) - q) + kd * (v_plan(t) - v)

``wrap`` takes the position error to [-pi, pi) on joints whose predictions live on the circle (an angle the planner
wraps before encoding), and leaves the others alone. The gains are per joint and zero by default (off).
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np


class PlanFeedback:
    """PD feedback on the deviation from the plan's predicted joint state.

    Parameters
    ----------
    kp, kd
        Gains per joint (effort per unit of position error, per unit of velocity error), finite and >= 0.
    wrapped
        Per joint: take the position error to [-pi, pi) (angles the planner's model sees wrapped); None: none.

    Raises
    ------
    ValueError
        On gains of different sizes, negative or non-finite gains, or a ``wrapped`` mask of another size.
    """

    def __init__(self, kp: Sequence[float], kd: Sequence[float], wrapped: Sequence[bool] | None = None) -> None:
        kp_array = np.asarray(kp, dtype=np.float64).reshape(-1)
        kd_array = np.asarray(kd, dtype=np.float64).reshape(-1)
        if kp_array.shape != kd_array.shape or kp_array.size == 0:
            raise ValueError(f'plan feedback gains need one kp and one kd per joint, got {kp_array.size} and '
                             f'{kd_array.size}')
        if not (np.all(np.isfinite(kp_array)) and np.all(np.isfinite(kd_array))
                and np.all(kp_array >= 0.0) and np.all(kd_array >= 0.0)):
            raise ValueError('plan feedback gains must be finite and >= 0')
        mask = np.zeros(kp_array.size, dtype=bool) if wrapped is None else np.asarray(wrapped, dtype=bool).reshape(-1)
        if mask.shape != kp_array.shape:
            raise ValueError(f'wrapped names {mask.size} joints, the gains {kp_array.size}')
        self.kp, self.kd, self.wrapped = kp_array, kd_array, mask
        self.active = bool(np.any(kp_array > 0.0) or np.any(kd_array > 0.0))

    def effort(self, plan_state: np.ndarray, position: np.ndarray, velocity: np.ndarray) -> np.ndarray | None:
        """Effort to add to the plan's at this instant.

        Parameters
        ----------
        plan_state
            (2n,) the plan's predicted positions then velocities for now.
        position, velocity
            (n,) the measured joint state.

        Returns
        -------
        numpy.ndarray or None
            (n,) effort; None when the prediction or the measurement is not finite (the plan goes out alone).
        """
        n = self.kp.size
        error_q = plan_state[:n] - position
        error_q = np.where(self.wrapped, np.mod(error_q + math.pi, 2.0 * math.pi) - math.pi, error_q)
        out = self.kp * error_q + self.kd * (plan_state[n:2 * n] - velocity)
        return out if np.all(np.isfinite(out)) else None
