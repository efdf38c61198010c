"""ament_python / pip packaging for hamwm_ros.

The same file serves `colcon build` on a ROS 2 host (data_files land in share/hamwm_ros so `ros2 launch` finds
launch, config and model files) and `pip install -e .` in the project's own virtual environment.
"""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'hamwm_ros'


def _files(pattern: str) -> list[str]:
    return [path for path in glob(pattern, recursive=True) if os.path.isfile(path)]


def _model_data_files() -> list[tuple[str, list[str]]]:
    """One data_files entry per models/ sub-directory, keeping the tree shape under share/."""
    entries = []
    for directory in sorted({os.path.dirname(p) for p in _files('models/**/*')}):
        entries.append((os.path.join('share', PACKAGE, directory), _files(os.path.join(directory, '*'))))
    return entries


NODES = ['sim_node', 'balance_node', 'world_model_node', 'mpc_node']

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: ['robots/*.urdf', 'robots/*.xml', 'robots/meshes/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', _files('launch/*.py')),
        ('share/' + PACKAGE + '/config', _files('config/*')),
        ('share/' + PACKAGE + '/urdf', _files('hamwm_ros/robots/*.urdf')),
        *_model_data_files(),
    ],
    python_requires='>=3.10, <3.13',
    install_requires=[
        'numpy>=1.24',
        'pyyaml',
        'pin>=3.0',
        'mujoco>=3.1',
        'rosbags>=0.10',
        'onnxruntime-gpu>=1.18; platform_system == "Linux" and platform_machine == "x86_64"',
        'onnxruntime>=1.18; platform_system != "Linux" or platform_machine != "x86_64"',
    ],
    extras_require={
        # torch is pinned: an unpinned torch pulls several GB of CUDA wheels.
        'train': ['torch==2.13.0', 'onnx>=1.15', 'matplotlib'],
        'test': ['pytest>=7', 'pytest-rerunfailures>=14', 'hypothesis>=6', 'ruff==0.17.6', 'psutil'],
    },
    zip_safe=True,
    maintainer='hamwm_ros developers',
    maintainer_email='dev@hamwm.invalid',
    description='Hamiltonian World Model runtime for ROS 2 (ONNX world model, Pinocchio balance, MPPI).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            *[f'{node} = {PACKAGE}.nodes.{node}:main' for node in NODES],
            f'hamwm = {PACKAGE}.cli:main',
        ],
    },
)
