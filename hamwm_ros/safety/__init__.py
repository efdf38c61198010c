"""Controller safety: the supervision logic between sensors, planner and actuators, without rclpy.

Everything a controller must get right independently of how good the planner is lives here and is tested directly:

* :mod:`~hamwm_ros.safety.watchdog`: joint-state freshness by message stamp and by receipt time, latched safe until
  fresh data has arrived for a configurable time;
* :mod:`~hamwm_ros.safety.guards`: the input guard (name mapping, NaN/Inf rejection with counters, measured positions
  beyond the URDF limits) and the command guard (non-finite never passes, URDF effort clamp, bounded change per tick);
* :mod:`~hamwm_ros.safety.estop`: a latched emergency stop with an explicit, conditional reset;
* :mod:`~hamwm_ros.safety.overrun`: planner overrun counting (K in a row trips the fallback);
* :mod:`~hamwm_ros.safety.modes`: the controller mode machine with a reason on every transition;
* :mod:`~hamwm_ros.safety.limits`: URDF joint limits in a given joint order (read by the simulation's URDF reader),
  the outward-effort rule and trajectory clamping;
* :mod:`~hamwm_ros.safety.validity`: the world-model validity input (monitor ERROR/STALE -> fallback);
* :mod:`~hamwm_ros.safety.handover`: the bumpless hand-over between the plan and the fallback;
* :mod:`~hamwm_ros.safety.feedback`: PD feedback at control rate on the deviation from the plan's predicted state;
* :mod:`~hamwm_ros.safety.supervisor`: all of the above combined into the control-rate decision ``tick(now)``.

``hamwm_ros.nodes.mpc_node`` wraps the supervisor for ROS 2. No rclpy, no torch.
"""

from hamwm_ros.safety.estop import EStop
from hamwm_ros.safety.feedback import PlanFeedback
from hamwm_ros.safety.guards import CommandGuard, InputGuard, InputVerdict
from hamwm_ros.safety.handover import Handover
from hamwm_ros.safety.limits import JointLimits, LimitsError, clamp_trajectory, outward_effort_mask
from hamwm_ros.safety.modes import Mode, ModeMachine, Transition
from hamwm_ros.safety.overrun import OverrunCounter
from hamwm_ros.safety.supervisor import Plan, Supervisor, SupervisorConfig, TickResult
from hamwm_ros.safety.validity import ModelValidity
from hamwm_ros.safety.watchdog import StampPolicy, StampVerdict, Watchdog

__all__ = [
    'CommandGuard', 'EStop', 'Handover', 'InputGuard', 'InputVerdict', 'JointLimits', 'LimitsError', 'Mode',
    'ModeMachine', 'ModelValidity', 'OverrunCounter', 'Plan', 'PlanFeedback', 'StampPolicy', 'StampVerdict',
    'Supervisor', 'SupervisorConfig', 'TickResult', 'Transition', 'Watchdog', 'clamp_trajectory',
    'outward_effort_mask',
]
