"""The port-Hamiltonian world model, its training (``hamwm train``), baselines, evaluation and ONNX export (torch).

Imports no rclpy. The main names are loaded lazily so that, e.g., reading bags does not pay for building the model
module::

    from hamwm_ros.worldmodel import HamiltonianWorldModel, ModelConfig
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    'HamiltonianWorldModel': 'model',
    'ModelConfig': 'model',
    'TrajectoryData': 'data',
    'load_data': 'data',
    'read_bags': 'bags',
    'BagError': 'bags',
    'TrainOptions': 'train',
    'fit': 'train',
    'build_model': 'train',
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Load ``name`` from its submodule on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'{__name__}.{module}'), name)
