"""hamwm_ros: a Hamiltonian World Model inside a ROS 2 control loop.

Sub-packages (none of them imports rclpy; only ``hamwm_ros.nodes`` and the CLI do):

- ``sim``: MuJoCo-simulated robots built from the shipped URDFs.
- ``wholebody``: Pinocchio CoM, ZMP, support polygon, capture point and balance margin.
- ``worldmodel``: the port-Hamiltonian latent world model, its training and evaluation (torch).
- ``runtime``: the torch-free onnxruntime path that robots run.
- ``bench``: the ``hamwm bench ...`` benchmarks.
"""

from importlib import resources
import os
from pathlib import Path

# One OpenBLAS thread unless the user says otherwise, set before anything imports numpy. numpy's matrix products here
# are small (the planner's noise colouring and softmin update) and parallelism comes from the planner's own workers;
# OpenBLAS's extra thread busy-waits after each call and burned 90 % of a core inside mpc_node on a 2-core machine,
# next to the simulator and the planner it was meant to help (threads told apart by name_os_thread, session 5).
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

__version__ = '0.1.0'


def package_path(*parts: str) -> Path:
    """Path of a file shipped inside the Python package (URDFs, MuJoCo extras)."""
    return Path(str(resources.files(__name__).joinpath(*parts)))


def share_path(*parts: str) -> Path:
    """Path of a file under the package's share/ tree (config, launch, models).

    Looks in the source checkout first (editable installs, tests), then in the ament index when ROS 2 installed
    the package with colcon.

    Raises
    ------
    FileNotFoundError
        If the file exists in neither place.
    """
    source_root = Path(__file__).resolve().parent.parent
    candidate = source_root.joinpath(*parts)
    if candidate.exists():
        return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory('hamwm_ros')).joinpath(*parts)
        if installed.exists():
            return installed
    except (ImportError, LookupError, OSError):   # OSError: AMENT_PREFIX_PATH unset (no ROS install sourced)
        pass
    raise FileNotFoundError(f'{"/".join(parts)} not found in {source_root} nor in the hamwm_ros share directory')
