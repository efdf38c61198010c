"""MPPI planning library: settings, optimizer, critics, noise, smoothing and the fallback law.

Imports neither rclpy nor torch; ``hamwm_ros.nodes.mpc_node`` wraps it for ROS 2.
"""

from hamwm_ros.mpc.budget import PlannerBudget, TimedRollout, planner_budget, timed_rollout
from hamwm_ros.mpc.critics import (
    INFEASIBLE_COST,
    BalanceCritic,
    Critic,
    CriticContext,
    CriticError,
    EffortCritic,
    EnergyCritic,
    JointLimitsCritic,
    SmoothnessCritic,
    TerminalCostCritic,
    TrackingCritic,
)
from hamwm_ros.mpc.fallback import PDHoldFallback
from hamwm_ros.mpc.noise import NoiseGenerator
from hamwm_ros.mpc.optimizer import MPPIOptimizer, PlanResult
from hamwm_ros.mpc.rollout import BatchedRollout, Rollout, RolloutFunction, RolloutShapeError, check_rollout
from hamwm_ros.mpc.settings import MPPISettings, SettingsError
from hamwm_ros.mpc.timing import committed_steps, elapsed_steps

__all__ = [
    'INFEASIBLE_COST', 'BalanceCritic', 'BatchedRollout', 'Critic', 'CriticContext', 'CriticError', 'EffortCritic',
    'EnergyCritic', 'JointLimitsCritic', 'MPPIOptimizer', 'MPPISettings', 'NoiseGenerator', 'PDHoldFallback',
    'PlanResult', 'PlannerBudget', 'Rollout', 'RolloutFunction', 'RolloutShapeError', 'SettingsError',
    'SmoothnessCritic', 'TerminalCostCritic', 'TimedRollout', 'TrackingCritic', 'check_rollout', 'committed_steps',
    'elapsed_steps', 'planner_budget', 'timed_rollout',
]
