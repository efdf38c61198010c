"""MuJoCo simulation of the shipped robots, built from the same URDFs Pinocchio loads.

``Simulation`` runs one robot (physics at 1 kHz by default, PD tracking and effort limits inside the physics step,
pushes, contact centre of pressure, offscreen rendering); ``rollouts.generate_rollouts`` makes training data. This
package imports neither rclpy nor torch (``sim/cli.py``, the ``hamwm sim`` verb, is the only ROS part).
"""

import os

# MuJoCo picks its OpenGL back end when it is first imported: on a headless machine (no DISPLAY) offscreen EGL is the
# one that works. An explicit MUJOCO_GL always wins.
if 'MUJOCO_GL' not in os.environ and not os.environ.get('DISPLAY') and not os.environ.get('WAYLAND_DISPLAY'):
    os.environ['MUJOCO_GL'] = 'egl'

from hamwm_ros.sim.robots import ROBOTS, parse_urdf_joints, robot_urdf_path
from hamwm_ros.sim.simulation import BaseState, JointStateSample, Simulation, SimulationError

__all__ = ['ROBOTS', 'BaseState', 'JointStateSample', 'Simulation', 'SimulationError', 'parse_urdf_joints',
           'robot_urdf_path']
