"""Does the planner fit its period? The start-up check mpc_node logs after measuring one predictor rollout.

The predictor rollout is most of an MPPI iteration (the rest, noise and critics, is a few ms at most on the shipped
models), so a rollout that takes most of the planner period means plans will overrun; the supervisor's overrun
counter then hands control to the fallback. Saying so at start-up, with the figure and what to change, saves a user
from reading it off the diagnostics later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from typing import Any

WARN_FRACTION = 0.8          # rollout / period above which the budget check warns
# Largest batch the check times; larger ones are scaled from it. onnxruntime's time per sample is flat from about 256
# samples up on the shipped models (10.97 / 11.05 / 11.55 ms per 1024 cart-pole samples in batches of 256 / 512 /
# 1024), and a check that timed 65536 samples took seconds, on a thread still inside onnxruntime when the node exited.
MAX_TIMED_SAMPLES = 512
# ModelConfig keys whose 'state' value exports the generic predictor graph instead of the lean one (constants hoisted
# out of the loop, one potential pass per step: an order of magnitude faster on the shipped models' sizes)
LEAN_KEYS = ('mass_matrix', 'input_map', 'damping_map')


@dataclass(frozen=True)
class TimedRollout:
    """The rollout :func:`timed_rollout` says to time, and the factor from its time to the full rollout's.

    Attributes
    ----------
    samples, steps
        Batch and steps to time.
    scale
        Full rollout time / timed rollout time (1.0 when the timed rollout is the full one).
    """

    samples: int
    steps: int
    scale: float

    @property
    def estimated(self) -> bool:
        """True when the full rollout's time is scaled from a smaller one."""
        return self.scale != 1.0


def timed_rollout(samples: int, horizon: int, export_horizon: int,
                  max_samples: int = MAX_TIMED_SAMPLES) -> TimedRollout:
    """What to time to know one rollout of ``samples`` x ``horizon`` steps within a bounded time.

    The runtime runs a horizon longer than the export horizon as that many chained, zero-padded calls of the exported
    graph, so time is linear in the number of calls; and it is linear in the batch above a few hundred samples. The
    check times at most ``max_samples`` samples and one call, and scales.

    Raises
    ------
    ValueError
        If a size is not positive.
    """
    if min(samples, horizon, export_horizon, max_samples) < 1:
        raise ValueError(f'sizes must be >= 1, got samples {samples}, horizon {horizon}, export horizon '
                         f'{export_horizon}, max_samples {max_samples}')
    timed_samples = min(samples, max_samples)
    calls = math.ceil(horizon / export_horizon)
    return TimedRollout(timed_samples, min(horizon, export_horizon), samples / timed_samples * calls)


@dataclass(frozen=True)
class PlannerBudget:
    """Outcome of :func:`planner_budget`.

    Attributes
    ----------
    over
        True when the rollout alone takes more than ``WARN_FRACTION`` of the planner period.
    fraction
        Rollout time / planner period.
    message
        One line for the log: the figures and, when over, what to change.
    """

    over: bool
    fraction: float
    message: str


def planner_budget(rollout_s: float, period_s: float, samples: int, horizon: int,
                   model_config: Mapping[str, Any] | None = None,
                   timed: TimedRollout | None = None) -> PlannerBudget:
    """Compare one measured predictor rollout with the planner period.

    Parameters
    ----------
    rollout_s
        Measured wall time of one rollout of ``samples`` sequences of ``horizon`` steps (s).
    period_s
        Planner period, 1 / planner_rate (s).
    samples
        Sequences per rollout call (the samples of one MPPI worker).
    horizon
        Steps per sequence.
    model_config
        The model's training configuration (metadata ``training.model_config``), if known: when it has
        state-dependent maps, the advice names the constant ones, whose export is much faster.
    timed
        The smaller rollout actually timed, when ``rollout_s`` is scaled from it (said in the message).

    Raises
    ------
    ValueError
        If a time is not finite and positive, or ``samples`` / ``horizon`` is not positive.
    """
    if not (math.isfinite(rollout_s) and rollout_s > 0 and math.isfinite(period_s) and period_s > 0):
        raise ValueError(f'times must be finite and > 0, got rollout {rollout_s!r} s, period {period_s!r} s')
    if samples < 1 or horizon < 1:
        raise ValueError(f'samples and horizon must be >= 1, got {samples}, {horizon}')
    fraction = rollout_s / period_s
    message = (f'planner budget: one predictor rollout of {samples} samples x {horizon} steps takes '
               f'{1e3 * rollout_s:.1f} ms, {100 * fraction:.0f} % of the {1e3 * period_s:.1f} ms planner period')
    if timed is not None and timed.estimated:
        message += f' (scaled from a timed rollout of {timed.samples} samples x {timed.steps} steps)'
    over = fraction > WARN_FRACTION
    if over:
        message += ('; plans will overrun and the fallback will take over: lower mppi.num_samples or planner_rate, '
                    'or raise mppi.workers where cores are free')
        generic = [key for key in LEAN_KEYS if (model_config or {}).get(key) == 'state']
        if generic:
            flags = ' '.join(f'--{key.replace("_", "-")} constant' for key in generic)
            message += (f'; this model has state-dependent {", ".join(generic)}: one trained with `hamwm train '
                        f'{flags}` exports a much faster predictor')
    return PlannerBudget(over, fraction, message)


__all__ = ['LEAN_KEYS', 'MAX_TIMED_SAMPLES', 'WARN_FRACTION', 'PlannerBudget', 'TimedRollout', 'planner_budget',
           'timed_rollout']
