"""Run hamwm_ros on a real robot: balance, world model and MPC nodes (no simulator) from the parameter file.

Usage::

    ros2 launch hamwm_ros hamwm.launch.py model_dir:=/path/to/models/humanoid urdf_file:=/path/to/robot.urdf
    ros2 launch hamwm_ros hamwm.launch.py params_file:=/path/to/my.yaml balance:=false model_dir:=...
    ros2 launch hamwm_ros hamwm.launch.py robot_description:="$(xacro robot.urdf.xacro)" ...

The robot's driver (ros2_control) must publish ``/joint_states`` and accept the commands mpc_node's
``command_interface`` names: with the default file (the humanoid's, ``trajectory``)
``/joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory, a joint_trajectory_controller
whose gains match ``fallback_kp``); with ``effort`` ``/effort_controller/commands`` (std_msgs/Float64MultiArray,
ForwardCommandController); ``both`` publishes both. Every other parameter comes from the file (default
``share/hamwm_ros/config/hamwm.yaml``, the same file ``hamwm bringup`` reads). The world model and MPC nodes are
lifecycle nodes that configure and activate themselves through their ``autostart`` parameter (set here from the
``autostart`` launch argument; race-free, unlike emitting transition events before the node's services exist). With
``autostart:=false`` drive them with ``ros2 lifecycle set``.
Watch it with ``rviz2 -d share/hamwm_ros/config/hamwm.rviz``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    """Launch description: balance_node (optional), world_model_node and mpc_node with config/hamwm.yaml."""
    default_params = os.path.join(get_package_share_directory('hamwm_ros'), 'config', 'hamwm.yaml')
    params = LaunchConfiguration('params_file')
    # value_type=str: an empty argument must stay an empty string (YAML would read it as null)
    model_dir = ParameterValue(LaunchConfiguration('model_dir'), value_type=str)
    urdf_file = ParameterValue(LaunchConfiguration('urdf_file'), value_type=str)
    description = ParameterValue(LaunchConfiguration('robot_description'), value_type=str)
    use_sim_time = LaunchConfiguration('use_sim_time')
    autostart = ParameterValue(LaunchConfiguration('autostart'), value_type=bool)
    robot_overrides = {'urdf_file': urdf_file, 'robot_description': description, 'use_sim_time': use_sim_time}

    balance = Node(
        package='hamwm_ros', executable='balance_node', name='balance_node', output='screen', emulate_tty=True,
        parameters=[params, robot_overrides], condition=IfCondition(LaunchConfiguration('balance')))
    world_model = LifecycleNode(
        package='hamwm_ros', executable='world_model_node', name='world_model_node', namespace='', output='screen',
        emulate_tty=True,
        parameters=[params, {'model_dir': model_dir, 'use_sim_time': use_sim_time, 'autostart': autostart}])
    mpc = LifecycleNode(
        package='hamwm_ros', executable='mpc_node', name='mpc_node', namespace='', output='screen', emulate_tty=True,
        parameters=[params, {'model_dir': model_dir, 'autostart': autostart, **robot_overrides}])
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='parameter file with balance_node, world_model_node and mpc_node sections'),
        DeclareLaunchArgument('model_dir', default_value=os.path.join(
            get_package_share_directory('hamwm_ros'), 'models', 'humanoid'),
            description='world-model directory (metadata.json, encoder.onnx, predictor.onnx)'),
        DeclareLaunchArgument('urdf_file', default_value='',
                              description='URDF path of the robot (empty: robot_description, else the shipped one)'),
        DeclareLaunchArgument('robot_description', default_value='',
                              description='URDF XML of the robot; wins over urdf_file'),
        DeclareLaunchArgument('balance', default_value='true', choices=['true', 'false'],
                              description='start balance_node (legged robots)'),
        DeclareLaunchArgument('autostart', default_value='true', choices=['true', 'false'],
                              description='configure and activate the lifecycle nodes'),
        DeclareLaunchArgument('use_sim_time', default_value='false', choices=['true', 'false'],
                              description='use /clock (a simulator or a bag) instead of the wall clock'),
        balance,
        world_model,
        mpc,
    ])
