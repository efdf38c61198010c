"""Start the MuJoCo simulation node with the project's parameter file.

Usage::

    ros2 launch hamwm_ros sim.launch.py                        # humanoid, share/hamwm_ros/config/hamwm.yaml
    ros2 launch hamwm_ros sim.launch.py robot:=cartpole
    ros2 launch hamwm_ros sim.launch.py params_file:=/path/to/my.yaml

Every sim_node parameter comes from the parameter file (section ``sim_node``); the ``robot`` launch argument
overrides the file's ``robot``. Change other values at run time with ``ros2 param set /sim_node <name> <value>``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    """Launch description: sim_node with config/hamwm.yaml and the ``robot`` override."""
    default_params = os.path.join(get_package_share_directory('hamwm_ros'), 'config', 'hamwm.yaml')
    return LaunchDescription([
        DeclareLaunchArgument('robot', default_value='humanoid',
                              choices=['pendulum', 'cartpole', 'acrobot', 'humanoid'],
                              description='robot to simulate'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='parameter file with a sim_node section'),
        Node(
            package='hamwm_ros',
            executable='sim_node',
            name='sim_node',
            output='screen',
            emulate_tty=True,
            parameters=[LaunchConfiguration('params_file'), {'robot': LaunchConfiguration('robot')}],
            # MuJoCo renders offscreen through EGL (headless robots, CI) unless MUJOCO_GL says otherwise.
            additional_env={'MUJOCO_GL': EnvironmentVariable('MUJOCO_GL', default_value='egl')},
        ),
    ])
