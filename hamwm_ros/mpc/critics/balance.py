"""Balance: keep the predicted ZMP inside the support polygon with margin and the capture point close.

The whole-body model is injected as a callable ``balance_fn(observations (B, H, k)) -> (margin (B, H), capture
(B, H))``: ``margin`` is the signed distance (m) of the ZMP to the support polygon's edge, positive inside; ``capture``
is the distance (m) of the capture point from the support centre (or from the polygon, whichever the callable
reports). The callable may instead return an object with a ``margin`` attribute and optionally ``capture``, so
``hamwm_ros.wholebody.batch.BatchedBalance.evaluate`` results (``com``, ``zmp``, ``margin``) are accepted as they are:
``BalanceCritic(lambda obs: batched.evaluate(obs[..., :n], obs[..., n:], dt, v_now))`` (capture cost then 0).
Tests pass an analytic one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hamwm_ros.mpc.critics.base import INFEASIBLE_COST, Critic, CriticContext, CriticError, check_nonnegative

BalanceFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class BalanceCritic(Critic):
    """Cost ``mean_t [ (relu(m* - margin_t) / m*)^2 + c (capture_t / m*)^2 ] + INFEASIBLE_COST * #(margin_t < 0)``.

    Parameters
    ----------
    balance_fn
        Maps predicted observations to (margin, capture) arrays of shape (B, H).
    weight
        Critic weight.
    margin_target
        Margin (m) beyond which no cost accrues; below it the cost grows quadratically.
    capture_weight
        Relative weight of the capture-point distance.
    hard
        Count a step with the ZMP outside the polygon (margin < 0) as infeasible.

    Raises
    ------
    CriticError
        If ``margin_target`` is not positive or ``capture_weight`` negative.
    """

    name = 'balance'

    def __init__(self, balance_fn: BalanceFunction, weight: float = 1.0, margin_target: float = 0.02,
                 capture_weight: float = 0.1, hard: bool = True) -> None:
        super().__init__(weight)
        if not callable(balance_fn):
            raise CriticError(f'{self.name}: balance_fn must be callable')
        if not np.isfinite(margin_target) or margin_target <= 0:
            raise CriticError(f'{self.name}: margin_target must be finite and > 0, got {margin_target}')
        check_nonnegative(self.name, capture_weight=capture_weight)
        self.balance_fn = balance_fn
        self.margin_target = float(margin_target)
        self.capture_weight = float(capture_weight)
        self.hard = bool(hard)

    def score(self, ctx: CriticContext) -> np.ndarray:
        """Raw balance cost per sample."""
        out = self.balance_fn(ctx.rollout.observations)
        if hasattr(out, 'margin'):
            margin = np.asarray(out.margin)
            capture = np.asarray(getattr(out, 'capture', None) if getattr(out, 'capture', None) is not None
                                 else np.zeros_like(margin))
        else:
            margin, capture = (np.asarray(a) for a in out)
        expected = ctx.actions.shape[:2]
        if margin.shape != expected or capture.shape != expected:
            raise CriticError(f'{self.name}: balance_fn returned {margin.shape}/{capture.shape}, expected {expected}')
        inv = 1.0 / self.margin_target
        deficit = np.maximum(self.margin_target - margin, 0.0) * inv
        cost = (np.square(deficit) + self.capture_weight * np.square(capture * inv)).mean(axis=1)
        if self.hard:
            cost = cost + INFEASIBLE_COST * np.count_nonzero(margin < 0.0, axis=1)
        return cost
