"""Suite-wide settings.

ROS tests run real DDS: each pytest session picks its own ROS_DOMAIN_ID (so parallel runs on one machine never hear
each other) and keeps discovery on the loopback interface. Subprocesses inherit both through the environment.
"""

import os
import random

os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('OMP_NUM_THREADS', '1')

