"""The simulated closed loop: MuJoCo sim_node + balance_node + world_model_node + mpc_node, all on simulated time.

With robot_state_publisher (ROS 2's, from the robot's URDF in share/hamwm_ros/urdf) for rviz: it publishes
``/robot_description`` and the links' transforms from ``/joint_states``; sim_node publishes ``odom`` -> base.

Usage::

    ros2 launch hamwm_ros sim.launch.py                        # humanoid, share/hamwm_ros/config/hamwm.yaml
    ros2 launch hamwm_ros sim.launch.py robot:=cartpole        # swing-up, share/hamwm_ros/config/swingup_cartpole.yaml
    ros2 launch hamwm_ros sim.launch.py params_file:=/path/to/my.yaml model_dir:=/path/to/models/humanoid
    ros2 launch hamwm_ros sim.launch.py autostart:=false      # then: ros2 lifecycle set /mpc_node configure ...
    ros2 launch hamwm_ros sim.launch.py robot_state_publisher:=false   # without it (then rviz shows no robot)
    rviz2 -d $(ros2 pkg prefix hamwm_ros)/share/hamwm_ros/config/hamwm.rviz

Every parameter comes from the parameter file (default: ``config/swingup_<robot>.yaml`` for the pendulum and the
cart-pole, whose shipped models are swing-up models, else ``config/hamwm.yaml``, the humanoid's; sections
``sim_node``, ``balance_node``, ``world_model_node``, ``mpc_node``); this file overrides only ``robot``
(sim_node), ``model_dir`` (default: the package's ``models/<robot>``), ``use_sim_time: true`` (every node; sim_node
publishes ``/clock``) and ``autostart``.
balance_node runs for the humanoid only (it is a floating-base tool).

Lifecycle: no lifecycle manager is needed. world_model_node and mpc_node are started as ``LifecycleNode`` (so
``ros2 lifecycle`` works on them) and configure and activate themselves at start-up through their ``autostart``
parameter (set here from the ``autostart`` launch argument). That is race-free (no event can be emitted before the
node's lifecycle services exist) and is the same mechanism ``hamwm bringup`` relies on without the launch package.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import Command, EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

SWINGUP_ROBOTS = ('pendulum', 'cartpole')     # robots with a complete config/swingup_<robot>.yaml


def generate_launch_description() -> LaunchDescription:
    """Launch description: sim_node, robot_state_publisher, balance_node (humanoid), world_model_node, mpc_node."""
    share = get_package_share_directory('hamwm_ros')
    default_params = os.path.join(share, 'config', 'hamwm.yaml')
    params = LaunchConfiguration('params_file')
    robot = LaunchConfiguration('robot')
    # evaluated at launch time: '<share>/config/swingup_<robot>.yaml' for the swing-up robots, else hamwm.yaml
    robot_params = PythonExpression(["'", os.path.join(share, 'config', 'swingup_'), "' + '", robot,
                                     "' + '.yaml' if '", robot, "' in ", repr(SWINGUP_ROBOTS), " else '",
                                     default_params, "'"])
    # value_type=str: the path must stay a string parameter (YAML would turn some strings into other types)
    model_dir = ParameterValue(LaunchConfiguration('model_dir'), value_type=str)
    autostart = ParameterValue(LaunchConfiguration('autostart'), value_type=bool)

    sim = Node(
        package='hamwm_ros', executable='sim_node', name='sim_node', output='screen', emulate_tty=True,
        parameters=[params, {'robot': robot}],
        # MuJoCo renders offscreen through EGL (headless robots, CI) unless MUJOCO_GL says otherwise.
        additional_env={'MUJOCO_GL': EnvironmentVariable('MUJOCO_GL', default_value='egl')},
    )
    balance = Node(
        package='hamwm_ros', executable='balance_node', name='balance_node', output='screen', emulate_tty=True,
        parameters=[params, {'use_sim_time': True}],
        condition=IfCondition(PythonExpression(["'", robot, "' == 'humanoid'"])),
    )
    world_model = LifecycleNode(
        package='hamwm_ros', executable='world_model_node', name='world_model_node', namespace='', output='screen',
        emulate_tty=True, parameters=[params, {'model_dir': model_dir, 'autostart': autostart, 'use_sim_time': True}],
    )
    # robot_description: the URDF's text (`cat` of share/hamwm_ros/urdf/<robot>.urdf, as xacro is usually run)
    description = ParameterValue(Command(['cat ', os.path.join(share, 'urdf', ''), robot, '.urdf']), value_type=str)
    state_publisher = Node(
        package='robot_state_publisher', executable='robot_state_publisher', name='robot_state_publisher',
        output='screen', parameters=[{'robot_description': description, 'use_sim_time': True}],
        condition=IfCondition(LaunchConfiguration('robot_state_publisher')),
    )
    mpc = LifecycleNode(
        package='hamwm_ros', executable='mpc_node', name='mpc_node', namespace='', output='screen', emulate_tty=True,
        parameters=[params, {'model_dir': model_dir, 'autostart': autostart, 'use_sim_time': True}],
    )
    return LaunchDescription([
        DeclareLaunchArgument('robot', default_value='humanoid',
                              choices=['pendulum', 'cartpole', 'acrobot', 'humanoid'],
                              description='robot to simulate (and whose models/<robot> the nodes load)'),
        DeclareLaunchArgument('params_file', default_value=robot_params,
                              description='parameter file with sim_node, balance_node, world_model_node and mpc_node '
                                          'sections (default: config/swingup_<robot>.yaml for the pendulum and the '
                                          'cart-pole, else config/hamwm.yaml)'),
        DeclareLaunchArgument('model_dir', default_value=[os.path.join(share, 'models', ''), robot],
                              description='world-model directory (default: the package\'s models/<robot>)'),
        DeclareLaunchArgument('autostart', default_value='true', choices=['true', 'false'],
                              description='configure and activate world_model_node and mpc_node at start-up'),
        DeclareLaunchArgument('robot_state_publisher', default_value='true', choices=['true', 'false'],
                              description='start robot_state_publisher with the robot\'s URDF (the robot in rviz)'),
        sim,
        state_publisher,
        balance,
        world_model,
        mpc,
    ])
