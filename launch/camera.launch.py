"""The camera model watching the simulated pendulum: MuJoCo sim_node + world_model_node, on simulated time.

Usage::

    ros2 launch hamwm_ros camera.launch.py                     # models/pendulum_camera, config/camera_pendulum.yaml
    ros2 launch hamwm_ros camera.launch.py model_dir:=/path/to/my_camera_model

sim_node renders the pendulum's scene camera at the model's image size and frame spacing (set in the parameter
file); world_model_node encodes the stacked frames, publishes the forecast (``/hamwm/predicted_trajectory``,
markers) and its validity monitor's verdict on ``/diagnostics``. No controller: the pendulum swings freely from its
initial angle. world_model_node configures and activates itself (``autostart``), as in ``sim.launch.py``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    """Launch description: sim_node (pendulum, camera on) and world_model_node on the camera model."""
    share = get_package_share_directory('hamwm_ros')
    params = LaunchConfiguration('params_file')
    model_dir = ParameterValue(LaunchConfiguration('model_dir'), value_type=str)
    autostart = ParameterValue(LaunchConfiguration('autostart'), value_type=bool)
    sim = Node(
        package='hamwm_ros', executable='sim_node', name='sim_node', output='screen', emulate_tty=True,
        parameters=[params],
        additional_env={'MUJOCO_GL': EnvironmentVariable('MUJOCO_GL', default_value='egl')},
    )
    world_model = LifecycleNode(
        package='hamwm_ros', executable='world_model_node', name='world_model_node', namespace='', output='screen',
        emulate_tty=True, parameters=[params, {'model_dir': model_dir, 'autostart': autostart, 'use_sim_time': True}],
    )
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=os.path.join(share, 'config', 'camera_pendulum.yaml'),
                              description='parameter file with sim_node and world_model_node sections'),
        DeclareLaunchArgument('model_dir', default_value=os.path.join(share, 'models', 'pendulum_camera'),
                              description='camera world-model directory (default: the package\'s '
                                          'models/pendulum_camera)'),
        DeclareLaunchArgument('autostart', default_value='true', choices=['true', 'false'],
                              description='configure and activate world_model_node at start-up'),
        sim,
        world_model,
    ])
