"""MPPI critics, one cost term per module."""

from hamwm_ros.mpc.critics.balance import BalanceCritic
from hamwm_ros.mpc.critics.base import INFEASIBLE_COST, Critic, CriticContext, CriticError, GoalCritic
from hamwm_ros.mpc.critics.effort import EffortCritic
from hamwm_ros.mpc.critics.energy import EnergyCritic
from hamwm_ros.mpc.critics.limits import JointLimitsCritic
from hamwm_ros.mpc.critics.smoothness import SmoothnessCritic
from hamwm_ros.mpc.critics.terminal import TerminalCostCritic
from hamwm_ros.mpc.critics.tracking import TrackingCritic

__all__ = [
    'INFEASIBLE_COST', 'BalanceCritic', 'Critic', 'CriticContext', 'CriticError', 'EffortCritic', 'EnergyCritic',
    'GoalCritic', 'JointLimitsCritic', 'SmoothnessCritic', 'TerminalCostCritic', 'TrackingCritic',
]
