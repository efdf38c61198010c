"""Model metadata: the schema of ``metadata.json`` beside the ONNX files, and its validation.

A model directory (``models/<robot>/``) holds ``encoder.onnx``, ``predictor.onnx`` and ``metadata.json``. The
metadata is what a robot trusts: joint names in order, the step ``dt``, normalisation, sizes, opset, the hash of the
training data, evaluation metrics, the sha256 of each ONNX file and the exact names, shapes and dtypes of every graph
input and output. Everything is checked here before any session is created, so a wrong file is refused with a reason
and never half-loaded.

Graph contract (fixed by this schema, produced by ``hamwm export``):

* ``encoder.onnx``: ``obs`` (B, obs_dim) float32 physical units, positions then velocities in ``joint_names`` order,
  and/or ``images`` (B, frames, height, width, 3) uint8 rgb, oldest frame first -> ``z`` (B, latent_dim) float32.
* ``predictor.onnx``: ``z`` (B, latent_dim) float32 and ``actions`` (B, horizon, action_dim) float32 efforts in
  physical units -> ``z_seq`` (B, horizon, latent_dim), ``obs_seq`` (B, horizon, obs_dim) and ``energy``
  (B, horizon), all float32; step k of every output is the state after applying ``actions[:, k]``.
* ``latent_dim`` is the length of z = (q, p), i.e. twice the world model's ``ModelConfig.latent_dim``.
* Ensembles (``ensemble`` E > 1) are one graph per file with a leading member axis on ``z`` and on every predictor
  output: ``z`` (E, B, latent_dim), ``z_seq`` (E, B, horizon, latent_dim), ... ; actions stay (B, horizon, m).
* The horizon is fixed at export (the rollout is unrolled in the graph); the runtime chains calls for longer
  horizons and truncates for shorter ones (a rollout is causal, so truncation is exact).
* Normalisation is applied inside the graphs; the statistics are recorded here for information and for tools.
* Optional ``spread_calibration`` (ensembles): per-step-count factors by which the raw member standard deviation is
  multiplied so that mean +- z * factor * std intervals reach their ``nominal`` coverage. Fitted on held-out
  validation trajectories at training time; :class:`SpreadCalibration` interpolates them (log-log in the step count,
  constant beyond the fitted range) and turns member predictions into a mean and a calibrated spread. A file without
  it is valid (raw spread).
* Optional ``energy_calibration``: how well the model's energy books closed on held-out validation trajectories
  (:class:`EnergyCalibration`): the mean per-step residual between H at the next encoded state and the H the model's
  step claims, and the ``nominal`` quantile of the de-biased residual summed over windows of several step counts.
  The validity monitor counts only the energy mismatch beyond it against the model. A file without it is valid (the
  monitor then counts all of it).

Pure python + numpy; no torch, no onnx, no rclpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = 'hamwm_ros/model-metadata'
SCHEMA_VERSION = 1
METADATA_FILE = 'metadata.json'
# numpy dtype name -> onnxruntime type string. Only the types the exported graphs use.
DTYPES = {'float32': 'tensor(float)', 'uint8': 'tensor(uint8)', 'float64': 'tensor(double)', 'int64': 'tensor(int64)'}
FILE_ROLES = ('encoder', 'predictor')
OBS_LAYOUTS = (('position', 'velocity'),)
# The model's input: the effort acting on the joints, or a feed-forward effort over a PD hold of the nominal posture
# (the hold's spring and damper are part of the plant the model learned; a controller sends only the correction).
ACTION_SOURCES = ('applied', 'feedforward')
MIN_OPSET, MAX_OPSET = 13, 23


class MetadataError(ValueError):
    """A model directory or its metadata is invalid; the message says why."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one graph input or output.

    ``shape`` holds ints for fixed dimensions and strings for symbolic (dynamic) ones, e.g. ``['batch', 4]``.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {'name': self.name, 'dtype': self.dtype, 'shape': list(self.shape)}

    @staticmethod
    def from_dict(data: Any, where: str) -> TensorSpec:
        """Parse and check one tensor entry.

        Raises
        ------
        MetadataError
            If a field is missing or has the wrong type, the dtype is unknown, or a dimension is neither a positive
            int nor a non-empty string.
        """
        if not isinstance(data, Mapping):
            raise MetadataError(f'{where}: expected an object with name, dtype, shape')
        name = _require(data, 'name', str, where)
        dtype = _require(data, 'dtype', str, where)
        if dtype not in DTYPES:
            raise MetadataError(f'{where}: dtype {dtype!r} is not one of {sorted(DTYPES)}')
        shape = _require(data, 'shape', list, where)
        for i, dim in enumerate(shape):
            ok = (isinstance(dim, int) and not isinstance(dim, bool) and dim > 0) or (isinstance(dim, str) and dim)
            if not ok:
                raise MetadataError(f'{where}: shape[{i}] = {dim!r} is neither a positive int nor a symbolic name')
        return TensorSpec(name, dtype, tuple(shape))


@dataclass(frozen=True)
class FileSpec:
    """One ONNX file of a model: its path relative to the model directory, its sha256 and its signature."""

    path: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {'path': self.path, 'sha256': self.sha256, 'inputs': [t.to_dict() for t in self.inputs],
                'outputs': [t.to_dict() for t in self.outputs]}

    def input(self, name: str) -> TensorSpec | None:
        """The input called ``name``, or None."""
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        """The output called ``name``, or None."""
        return next((t for t in self.outputs if t.name == name), None)


@dataclass(frozen=True)
class ImageSpec:
    """Camera input of an image-fed encoder: stacked rgb frames, uint8, oldest first."""

    frames: int
    height: int
    width: int
    channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {'frames': self.frames, 'height': self.height, 'width': self.width, 'channels': self.channels}


def _step_series(data: Mapping, key: str, where: str, accept: Callable[[float], bool], what: str
                 ) -> tuple[list[int], list[float]]:
    """A calibration's ``steps`` (strictly increasing positive ints) and the numbers ``data[key]`` fitted at each.

    Raises
    ------
    MetadataError
        If either list is missing or empty, their lengths differ, the steps are not strictly increasing positive
        ints, or a number is not finite or not ``accept``-ed (the message says it must be ``what``).
    """
    steps = _require(data, 'steps', list, where)
    values = _require(data, key, list, where)
    if not steps or len(steps) != len(values):
        raise MetadataError(f'{where}: steps and {key} must be non-empty lists of one length')
    if not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in steps) or \
            any(b <= a for a, b in zip(steps, steps[1:])):
        raise MetadataError(f'{where}.steps must be strictly increasing positive integers')
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and accept(v)
               for v in values):
        raise MetadataError(f'{where}.{key} must be {what}')
    return steps, values


@dataclass(frozen=True)
class SpreadCalibration:
    """Per-step-count multipliers of an ensemble's member standard deviation (see the module docstring).

    ``steps`` are strictly increasing step counts (1 = the first predicted step) and ``factors`` the positive multiplier
    fitted at each; ``nominal`` is the coverage level they were fitted for and ``info`` free-form provenance (number of
    validation samples, what data, ...).
    """

    steps: tuple[int, ...]
    factors: tuple[float, ...]
    nominal: float = 0.95
    method: str = 'residual-quantile'
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {'method': self.method, 'nominal': self.nominal, 'steps': list(self.steps),
                'factors': list(self.factors), 'info': dict(self.info)}

    @staticmethod
    def from_dict(data: Any, where: str = 'spread_calibration') -> SpreadCalibration:
        """Parse and check a calibration entry.

        Raises
        ------
        MetadataError
            If steps are not strictly increasing positive ints, factors are not positive finite numbers of the same
            count, or nominal is not in (0, 1).
        """
        if not isinstance(data, Mapping):
            raise MetadataError(f'{where}: expected an object with steps, factors, nominal')
        steps, factors = _step_series(data, 'factors', where, lambda f: f > 0, 'positive finite numbers')
        nominal = _require(data, 'nominal', (int, float), where)
        if not 0.0 < nominal < 1.0:
            raise MetadataError(f'{where}.nominal must be in (0, 1), got {nominal!r}')
        method = data.get('method', 'residual-quantile')
        if not isinstance(method, str):
            raise MetadataError(f'{where}.method must be a string')
        info = data.get('info') or {}
        if not isinstance(info, Mapping):
            raise MetadataError(f'{where}.info must be an object')
        return SpreadCalibration(tuple(steps), tuple(float(f) for f in factors), float(nominal), method, dict(info))

    def factor(self, steps: Any) -> np.ndarray:
        """Multiplier at each step count in ``steps`` (array-like of ints >= 1), interpolated linearly in log-log."""
        k = np.log(np.maximum(np.asarray(steps, dtype=np.float64), 1.0))
        return np.exp(np.interp(k, np.log(np.asarray(self.steps, np.float64)),
                                np.log(np.asarray(self.factors, np.float64))))

    def scale(self, std: np.ndarray, step_axis: int = -2, first_step: int = 1) -> np.ndarray:
        """``std`` with entry k along ``step_axis`` multiplied by the factor of step count ``first_step + k``."""
        std = np.asarray(std)
        axis = step_axis % std.ndim
        shape = [1] * std.ndim
        shape[axis] = std.shape[axis]
        f = self.factor(np.arange(first_step, first_step + std.shape[axis])).reshape(shape)
        return (std * f).astype(std.dtype, copy=False)

    def spread(self, members: np.ndarray, step_axis: int = -2, first_step: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and calibrated standard deviation of member predictions.

        Parameters
        ----------
        members
            (E, ...) member predictions, e.g. a runtime rollout's ``observations`` (E, B, H, obs_dim) (step axis -2)
            or ``energy`` (E, B, H) (step axis -1).
        step_axis
            Axis of the prediction step in ``members`` (negative counts from the end).
        first_step
            Step count of index 0 along that axis (1 for a rollout from the current state).

        Raises
        ------
        ValueError
            If there is no member axis or the step axis is the member axis.
        """
        members = np.asarray(members)
        if members.ndim < 2:
            raise ValueError('members must be (E, ...) with a step axis')
        axis = step_axis % members.ndim
        if axis == 0:
            raise ValueError('the step axis cannot be the member axis')
        std = members.std(0)
        return members.mean(0), self.scale(std, axis - 1, first_step)


@dataclass(frozen=True)
class EnergyCalibration:
    """How far the model's energy books missed on held-out data (see the module docstring).

    ``bias`` is the mean per-step residual r = H(encode(x[i+1])) - H(step(encode(x[i]), u[i])) (model energy units);
    ``limits[j]`` the ``nominal`` quantile of |sum of r - bias x n| over windows of ``steps[j]`` consecutive steps;
    ``info`` free-form provenance (data, windows).
    """

    steps: tuple[int, ...]
    limits: tuple[float, ...]
    bias: float
    nominal: float = 0.95
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {'nominal': self.nominal, 'bias': self.bias, 'steps': list(self.steps), 'limits': list(self.limits),
                'info': dict(self.info)}

    @staticmethod
    def from_dict(data: Any, where: str = 'energy_calibration') -> EnergyCalibration:
        """Parse and check a calibration entry.

        Raises
        ------
        MetadataError
            If steps are not strictly increasing positive ints, limits are not non-negative finite numbers of the
            same count, bias is not finite, or nominal is not in (0, 1).
        """
        if not isinstance(data, Mapping):
            raise MetadataError(f'{where}: expected an object with steps, limits, bias, nominal')
        steps, limits = _step_series(data, 'limits', where, lambda v: v >= 0, 'non-negative finite numbers')
        bias = _require(data, 'bias', (int, float), where)
        if isinstance(bias, bool) or not math.isfinite(bias):
            raise MetadataError(f'{where}.bias must be a finite number')
        nominal = _require(data, 'nominal', (int, float), where)
        if not 0.0 < nominal < 1.0:
            raise MetadataError(f'{where}.nominal must be in (0, 1), got {nominal!r}')
        info = data.get('info') or {}
        if not isinstance(info, Mapping):
            raise MetadataError(f'{where}.info must be an object')
        return EnergyCalibration(tuple(steps), tuple(float(v) for v in limits), float(bias), float(nominal),
                                 dict(info))

    def limit(self, steps: float) -> float:
        """The calibrated bound on the de-biased mismatch over a window of ``steps`` model steps (may be fractional).

        Interpolated linearly in log-log between the fitted step counts; below the first it scales the first limit
        down with the square root of the step count, beyond the last it grows with the square root (a random walk:
        the residuals of separate steps add up with their signs).
        """
        steps = max(float(steps), 0.0)
        first, last = self.steps[0], self.steps[-1]
        if steps <= first:
            return self.limits[0] * math.sqrt(steps / first)
        if steps >= last:
            return self.limits[-1] * math.sqrt(steps / last)
        logs = np.log(np.maximum(np.asarray(self.limits, np.float64), 1e-300))   # a zero limit stays ~0
        return float(np.exp(np.interp(math.log(steps), np.log(np.asarray(self.steps, np.float64)), logs)))


@dataclass(frozen=True)
class ModelMetadata:
    """Parsed, validated ``metadata.json``. Build with :func:`load_metadata` or :meth:`from_dict`."""

    robot: str
    joint_names: tuple[str, ...]
    dt: float
    obs_dim: int
    latent_dim: int
    action_dim: int
    horizon: int
    ensemble: int
    opset: int
    normalisation: dict[str, list[float]]
    training: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, FileSpec]
    uses_joints: bool = True
    images: ImageSpec | None = None
    obs_layout: tuple[str, ...] = ('position', 'velocity')
    producer: dict[str, Any] = field(default_factory=dict)
    spread_calibration: SpreadCalibration | None = None
    energy_calibration: EnergyCalibration | None = None
    # What the model's input is: 'applied' (the effort acting on the joints) or 'feedforward' (an effort added to a
    # PD hold of the nominal posture that the model treats as part of the robot; see ACTION_SOURCES).
    action_source: str = 'applied'

    @property
    def feedforward(self) -> bool:
        """Whether the input is a feed-forward effort over a PD hold that the model includes (``action_source``)."""
        return self.action_source == 'feedforward'

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON form (what ``metadata.json`` holds)."""
        data = {
            'schema': SCHEMA,
            'schema_version': SCHEMA_VERSION,
            'robot': self.robot,
            'joint_names': list(self.joint_names),
            'dt': self.dt,
            'observation': {'layout': list(self.obs_layout), 'dim': self.obs_dim, 'joints': self.uses_joints,
                            'images': None if self.images is None else self.images.to_dict()},
            'latent_dim': self.latent_dim,
            'action_dim': self.action_dim,
            'horizon': self.horizon,
            'ensemble': self.ensemble,
            'opset': self.opset,
            'normalisation': self.normalisation,
            'training': self.training,
            'metrics': self.metrics,
            'files': {role: spec.to_dict() for role, spec in self.files.items()},
            'producer': self.producer,
        }
        if self.spread_calibration is not None:  # optional: absent from files written without it
            data['spread_calibration'] = self.spread_calibration.to_dict()
        if self.energy_calibration is not None:
            data['energy_calibration'] = self.energy_calibration.to_dict()
        if self.action_source != 'applied':     # optional: absent means 'applied' (files written before it existed)
            data['action_source'] = self.action_source
        return data

    def save(self, directory: str | Path) -> Path:
        """Write ``metadata.json`` into ``directory`` after validating this object.

        Raises
        ------
        MetadataError
            If the metadata is inconsistent (it is re-parsed before writing).
        """
        data = self.to_dict()
        ModelMetadata.from_dict(data)  # never write a file we would refuse to load
        path = Path(directory) / METADATA_FILE
        path.write_text(json.dumps(data, indent=1, sort_keys=False, allow_nan=False) + '\n')
        return path

    @staticmethod
    def from_dict(data: Any) -> ModelMetadata:
        """Parse and validate a metadata object.

        Raises
        ------
        MetadataError
            On a wrong schema or version, a missing or mistyped field, inconsistent sizes between the header and the
            graph signatures, repeated joint names, a non-positive or non-finite dt, or bad normalisation statistics.
        """
        if not isinstance(data, Mapping):
            raise MetadataError('metadata must be a JSON object')
        if data.get('schema') != SCHEMA:
            raise MetadataError(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        if data.get('schema_version') != SCHEMA_VERSION:
            raise MetadataError(f"schema_version {data.get('schema_version')!r} is not supported "
                                f'(this runtime reads {SCHEMA_VERSION})')
        robot = _require(data, 'robot', str, 'metadata')
        joints = _require(data, 'joint_names', list, 'metadata')
        if not joints or not all(isinstance(j, str) and j for j in joints):
            raise MetadataError('joint_names must be a non-empty list of non-empty strings')
        repeated = sorted({j for j in joints if joints.count(j) > 1})
        if repeated:
            raise MetadataError(f'joint_names repeat: {repeated}')
        dt = _require(data, 'dt', (int, float), 'metadata')
        if not math.isfinite(dt) or dt <= 0:
            raise MetadataError(f'dt must be a positive finite number of seconds, got {dt!r}')
        obs = _require(data, 'observation', Mapping, 'metadata')
        layout = tuple(_require(obs, 'layout', list, 'observation'))
        if layout not in OBS_LAYOUTS:
            raise MetadataError(f'observation.layout {list(layout)} is not one of {[list(x) for x in OBS_LAYOUTS]}')
        obs_dim = _positive_int(obs, 'dim', 'observation')
        if obs_dim != len(layout) * len(joints):
            raise MetadataError(f'observation.dim is {obs_dim} but layout {list(layout)} over {len(joints)} joints '
                                f'needs {len(layout) * len(joints)}')
        uses_joints = _require(obs, 'joints', bool, 'observation')
        images = None
        if obs.get('images') is not None:
            img = _require(obs, 'images', Mapping, 'observation')
            images = ImageSpec(*(_positive_int(img, k, 'observation.images') for k in
                                 ('frames', 'height', 'width', 'channels')))
        if not uses_joints and images is None:
            raise MetadataError('observation uses neither joints nor images')
        latent = _positive_int(data, 'latent_dim', 'metadata')
        action_dim = _positive_int(data, 'action_dim', 'metadata')
        horizon = _positive_int(data, 'horizon', 'metadata')
        ensemble = _positive_int(data, 'ensemble', 'metadata')
        opset = _positive_int(data, 'opset', 'metadata')
        if not MIN_OPSET <= opset <= MAX_OPSET:
            raise MetadataError(f'opset {opset} outside the supported range {MIN_OPSET}..{MAX_OPSET}')
        norm = _normalisation(_require(data, 'normalisation', Mapping, 'metadata'), obs_dim, action_dim)
        training = dict(_require(data, 'training', Mapping, 'metadata'))
        data_hash = training.get('data_hash')
        if not isinstance(data_hash, str) or not data_hash:
            raise MetadataError('training.data_hash must be a non-empty string')
        metrics = dict(_require(data, 'metrics', Mapping, 'metadata'))
        files_raw = _require(data, 'files', Mapping, 'metadata')
        files = {}
        for role in FILE_ROLES:
            entry = _require(files_raw, role, Mapping, 'files')
            path = _require(entry, 'path', str, f'files.{role}')
            if Path(path).is_absolute() or '..' in Path(path).parts:
                raise MetadataError(f'files.{role}.path {path!r} must be relative and stay inside the model directory')
            sha = _require(entry, 'sha256', str, f'files.{role}')
            if len(sha) != 64 or any(c not in '0123456789abcdef' for c in sha):
                raise MetadataError(f'files.{role}.sha256 is not a lowercase hex sha256 digest')
            inputs = tuple(TensorSpec.from_dict(t, f'files.{role}.inputs[{i}]')
                           for i, t in enumerate(_require(entry, 'inputs', list, f'files.{role}')))
            outputs = tuple(TensorSpec.from_dict(t, f'files.{role}.outputs[{i}]')
                            for i, t in enumerate(_require(entry, 'outputs', list, f'files.{role}')))
            files[role] = FileSpec(path, sha, inputs, outputs)
        calibration = None
        if data.get('spread_calibration') is not None:
            calibration = SpreadCalibration.from_dict(data['spread_calibration'])
        energy_calibration = None
        if data.get('energy_calibration') is not None:
            energy_calibration = EnergyCalibration.from_dict(data['energy_calibration'])
        action_source = data.get('action_source', 'applied')
        if action_source not in ACTION_SOURCES:
            raise MetadataError(f'action_source must be one of {list(ACTION_SOURCES)}, got {action_source!r}')
        meta = ModelMetadata(robot=robot, joint_names=tuple(joints), dt=float(dt), obs_dim=obs_dim,
                             latent_dim=latent, action_dim=action_dim, horizon=horizon, ensemble=ensemble,
                             opset=opset, normalisation=norm, training=training, metrics=metrics, files=files,
                             uses_joints=uses_joints, images=images, obs_layout=layout,
                             producer=dict(data.get('producer') or {}), spread_calibration=calibration,
                             energy_calibration=energy_calibration, action_source=action_source)
        _check_signatures(meta)
        return meta

    # ------------------------------------------------------------------ conveniences
    def expected_signatures(self) -> dict[str, tuple[list[TensorSpec], list[TensorSpec]]]:
        """The (inputs, outputs) every file must have, derived from the header sizes."""
        return expected_signatures(self.obs_dim, self.latent_dim, self.action_dim, self.horizon, self.ensemble,
                                   self.uses_joints, self.images)


def expected_signatures(obs_dim: int, latent_dim: int, action_dim: int, horizon: int, ensemble: int,
                        uses_joints: bool, images: ImageSpec | None) -> dict[str, tuple[list[TensorSpec],
                                                                                         list[TensorSpec]]]:
    """The graph signatures the runtime contract requires for these sizes (see the module docstring)."""
    member = (ensemble,) if ensemble > 1 else ()
    enc_in = []
    if uses_joints:
        enc_in.append(TensorSpec('obs', 'float32', ('batch', obs_dim)))
    if images is not None:
        enc_in.append(TensorSpec('images', 'uint8', ('batch', images.frames, images.height, images.width,
                                                     images.channels)))
    enc_out = [TensorSpec('z', 'float32', (*member, 'batch', latent_dim))]
    pred_in = [TensorSpec('z', 'float32', (*member, 'batch', latent_dim)),
               TensorSpec('actions', 'float32', ('batch', horizon, action_dim))]
    pred_out = [TensorSpec('z_seq', 'float32', (*member, 'batch', horizon, latent_dim)),
                TensorSpec('obs_seq', 'float32', (*member, 'batch', horizon, obs_dim)),
                TensorSpec('energy', 'float32', (*member, 'batch', horizon))]
    return {'encoder': (enc_in, enc_out), 'predictor': (pred_in, pred_out)}


def _check_signatures(meta: ModelMetadata) -> None:
    expected = meta.expected_signatures()
    for role, (inputs, outputs) in expected.items():
        spec = meta.files[role]
        for kind, want, have in (('inputs', inputs, spec.inputs), ('outputs', outputs, spec.outputs)):
            if [t.name for t in have] != [t.name for t in want]:
                raise MetadataError(f'files.{role}.{kind} are {[t.name for t in have]}, the contract for these sizes '
                                    f'is {[t.name for t in want]}')
            for w, h in zip(want, have):
                if h.dtype != w.dtype:
                    raise MetadataError(f'files.{role}: {h.name} has dtype {h.dtype}, expected {w.dtype}')
                if not shapes_compatible(h.shape, w.shape):
                    raise MetadataError(f'files.{role}: {h.name} has shape {list(h.shape)}, expected {list(w.shape)}')


def shapes_compatible(actual: Sequence[Any], expected: Sequence[Any]) -> bool:
    """True when ranks match, fixed dimensions are equal and symbolic dimensions are symbolic on both sides.

    ``actual`` may come from onnxruntime, where a dynamic dimension is a string or None.
    """
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected):
        a_fixed = isinstance(a, int) and not isinstance(a, bool)
        if isinstance(e, int):
            if not a_fixed or a != e:
                return False
        elif a_fixed:
            return False
    return True


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def load_metadata(model_dir: str | Path, *, check_files: bool = True) -> ModelMetadata:
    """Read and validate ``<model_dir>/metadata.json``; optionally check each ONNX file exists and matches its hash.

    Raises
    ------
    MetadataError
        If the directory or metadata file is missing, the JSON is malformed or fails validation, or (with
        ``check_files``) an ONNX file is missing or its sha256 differs from the recorded one.
    """
    directory = Path(model_dir)
    if not directory.is_dir():
        raise MetadataError(f'model directory {directory} does not exist')
    path = directory / METADATA_FILE
    if not path.is_file():
        raise MetadataError(f'{path} is missing')
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f'{path} is not readable JSON: {exc}') from exc
    try:
        meta = ModelMetadata.from_dict(data)
    except MetadataError as exc:
        raise MetadataError(f'{path}: {exc}') from exc
    if check_files:
        verify_files(meta, directory)
    return meta


def verify_files(meta: ModelMetadata, model_dir: str | Path) -> None:
    """Check every ONNX file named in ``meta`` exists under ``model_dir`` with the recorded sha256.

    Raises
    ------
    MetadataError
        Naming the first missing or modified file.
    """
    for role, spec in meta.files.items():
        path = Path(model_dir) / spec.path
        if not path.is_file():
            raise MetadataError(f'{role} file {path} is missing')
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise MetadataError(f'{role} file {path} has sha256 {actual[:12]}..., metadata records '
                                f'{spec.sha256[:12]}... (file modified, corrupt or from another model)')


def check_joint_order(meta: ModelMetadata, expected: Sequence[str]) -> None:
    """Refuse a model whose joint order differs from what the robot or controller expects.

    Raises
    ------
    MetadataError
        Saying which joints are missing, extra, or in a different order.
    """
    expected = tuple(expected)
    if expected == meta.joint_names:
        return
    missing = [j for j in expected if j not in meta.joint_names]
    extra = [j for j in meta.joint_names if j not in expected]
    if missing or extra:
        raise MetadataError(f'model joints do not match: missing from the model {missing}, not expected {extra}')
    raise MetadataError(f'model joint order {list(meta.joint_names)} differs from the expected {list(expected)}')


def _require(data: Mapping, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise MetadataError(f'{where}: missing field {key!r}')
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in python; a JSON true where a number belongs is an error.
    if isinstance(value, bool) and bool not in kinds:
        raise MetadataError(f'{where}.{key}: expected {kind}, got a boolean')
    if not isinstance(value, kinds):
        raise MetadataError(f'{where}.{key}: expected {getattr(kind, "__name__", kind)}, got {type(value).__name__}')
    return value


def _positive_int(data: Mapping, key: str, where: str) -> int:
    value = _require(data, key, int, where)
    if value <= 0:
        raise MetadataError(f'{where}.{key} must be positive, got {value}')
    return value


def _normalisation(norm: Mapping, obs_dim: int, action_dim: int) -> dict[str, list[float]]:
    out = {}
    for key, size in (('obs_mean', obs_dim), ('obs_std', obs_dim), ('action_mean', action_dim),
                      ('action_std', action_dim)):
        values = _require(norm, key, list, 'normalisation')
        if len(values) != size:
            raise MetadataError(f'normalisation.{key} has {len(values)} entries, expected {size}')
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise MetadataError(f'normalisation.{key} must be finite numbers')
        if key.endswith('std') and min(values) <= 0:
            raise MetadataError(f'normalisation.{key} must be positive')
        out[key] = [float(v) for v in values]
    return out
