"""Whole-body balance on Pinocchio: CoM, ZMP, support polygon, capture point, balance margin (no rclpy, no torch).

``WholeBodyModel`` (``model``) computes the balance of one full state from full multibody dynamics;
``BalanceEstimator`` (``estimator``) builds that state from joint states plus IMU/odometry or stance-foot kinematics;
``BatchedBalance`` (``batch``) scores B x H predicted states for an MPC and ``PlanBalance`` (``planning``) wraps it
(and an estimator) as a planner's balance term; ``proof`` compares the ZMP with MuJoCo's
contact centre of pressure.
"""

from hamwm_ros.wholebody.batch import BatchedBalance, BatchResult
from hamwm_ros.wholebody.estimator import (
    BalanceEstimator,
    BaseMeasurement,
    LowPassDerivative,
    base_measurement,
    dynamics_base_acceleration,
    stance_state,
)
from hamwm_ros.wholebody.model import BalanceState, Foot, WholeBodyError, WholeBodyModel
from hamwm_ros.wholebody.planning import FLIGHT_CAPTURE, FLIGHT_MARGIN, PlanBalance

__all__ = ['FLIGHT_CAPTURE', 'FLIGHT_MARGIN', 'BalanceEstimator', 'BalanceState', 'BaseMeasurement', 'BatchResult',
           'BatchedBalance', 'Foot', 'LowPassDerivative', 'PlanBalance', 'WholeBodyError', 'WholeBodyModel',
           'base_measurement', 'dynamics_base_acceleration', 'stance_state']
