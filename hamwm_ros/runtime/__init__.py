"""hamwm_ros.runtime: the torch-free onnxruntime path robots run, and the model metadata schema.

Nothing under this package imports torch or rclpy (a test checks it in a fresh interpreter).
"""

from hamwm_ros.runtime.metadata import (
    METADATA_FILE,
    FileSpec,
    ImageSpec,
    MetadataError,
    ModelMetadata,
    TensorSpec,
    check_joint_order,
    load_metadata,
    sha256_file,
)
from hamwm_ros.runtime.predictor import Rollout, WorldModelRuntime
from hamwm_ros.runtime.session import ModelLoadError, OrtSession, SessionConfig

__all__ = [
    'METADATA_FILE', 'FileSpec', 'ImageSpec', 'MetadataError', 'ModelLoadError', 'ModelMetadata', 'OrtSession',
    'Rollout', 'SessionConfig', 'TensorSpec', 'WorldModelRuntime', 'check_joint_order', 'load_metadata',
    'sha256_file',
]
