"""ROS 2 nodes of hamwm_ros: one rclpy node class per module.

Each module (``sim_node``, ``balance_node``, ``world_model_node``, ``mpc_node``) has a ``main(args=None) -> int``
entry point installed as a console script of the same name (``ros2 run hamwm_ros <node>``). Nodes only convert
messages, hold parameters and call the library; algorithms live in the rclpy-free packages.
"""

import faulthandler
import signal


def dump_stacks_on_sigusr1() -> None:
    """Make SIGUSR1 print every thread's Python stack to stderr (the node keeps running).

    :func:`hamwm_ros.sim.cli.interrupt_process` sends it to a node that has not exited within its SIGINT timeout,
    before killing it, so the log says where the node was stuck. No-op where the signal does not exist.
    """
    if hasattr(signal, 'SIGUSR1'):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
