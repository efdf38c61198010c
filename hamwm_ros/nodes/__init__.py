"""ROS 2 nodes of hamwm_ros: one rclpy node class per module.

Each module (``sim_node``, ``balance_node``, ``world_model_node``, ``mpc_node``) has a ``main(args=None) -> int``
entry point installed as a console script of the same name (``ros2 run hamwm_ros <node>``). Nodes only convert
messages, hold parameters and call the library; algorithms live in the rclpy-free packages.
"""
