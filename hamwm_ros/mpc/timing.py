"""Plan timing for a planner in a control loop: model steps between two states, and steps a new plan cannot change.

The planner's warm start shifts by the model steps elapsed since the last planned state (:func:`elapsed_steps`);
a plan that takes L seconds to compute and hand over is played from its state's receipt, so its first
ceil(L / dt) steps are already history when it takes over (:func:`committed_steps`), and the optimizer keeps them
from the previous plan. ``mpc_node`` calls both from its planner thread.

Imports neither rclpy nor torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import math

import numpy as np

MIN_LATENCY_SAMPLES = 5     # plans measured before the measured latency sets the committed steps
MAX_COMMITTED = 32          # mpc_node's committed_steps parameter range


def _check_dt(dt: float) -> None:
    if not (math.isfinite(dt) and dt > 0.0):
        raise ValueError(f'dt must be finite and > 0, got {dt}')


def committed_steps(latencies: Iterable[float], dt: float, fixed: int = -1) -> int:
    """Plan steps the robot runs before a new plan can take over.

    Parameters
    ----------
    latencies
        Recent receipt-to-handover latencies of plans, seconds.
    dt
        Model step, seconds.
    fixed
        A fixed count (>= 0) wins; -1 measures it: the 90th percentile of ``latencies`` in steps, rounded up.

    Returns
    -------
    int
        ``fixed`` when >= 0; 0 before :data:`MIN_LATENCY_SAMPLES` latencies; else at most :data:`MAX_COMMITTED`.

    Raises
    ------
    ValueError
        If ``dt`` is not finite and positive.
    """
    _check_dt(dt)
    if fixed >= 0:
        return int(fixed)
    values = np.fromiter(latencies, float)
    if values.size < MIN_LATENCY_SAMPLES:
        return 0
    latency = float(np.percentile(values, 90))
    # 1e-3: a latency of exactly k steps (up to float error) commits k, not k + 1
    return min(MAX_COMMITTED, max(0, int(math.ceil(latency / dt - 1e-3))))


def elapsed_steps(stamps: Mapping[float, int], last_receipt: float, receipt: float, dt: float) -> int:
    """Model steps between two accepted states: from their stamps (exact integer nanoseconds), else receipts.

    Receipt times carry the transport's jitter, which would make the warm start, and so the plan, depend on timing
    rather than on the input; stamps are used whenever both are known, non-zero and in order.

    Parameters
    ----------
    stamps
        Receipt time (s) -> header stamp (integer ns) of recently accepted states.
    last_receipt, receipt
        Receipt times (s) of the previously planned state and of this one.
    dt
        Model step, seconds.

    Returns
    -------
    int
        Steps, >= 0.

    Raises
    ------
    ValueError
        If ``dt`` is not finite and positive.
    """
    _check_dt(dt)
    before, now = stamps.get(last_receipt, 0), stamps.get(receipt, 0)
    elapsed = (now - before) * 1e-9 if 0 < before <= now else receipt - last_receipt
    return max(0, int(round(elapsed / dt)))


__all__ = ['MAX_COMMITTED', 'MIN_LATENCY_SAMPLES', 'committed_steps', 'elapsed_steps']
