"""``hamwm export``: a trained world model -> ``encoder.onnx`` + ``predictor.onnx`` + ``metadata.json``.

Choices (the runtime contract is in :mod:`hamwm_ros.runtime.metadata`):

* **Horizon fixed at export, unrolled in the graph** (``--horizon``, default 32). An unrolled chain of small MatMuls
  lets onnxruntime fuse and pre-pack everything once; an ONNX ``Loop`` would re-enter a subgraph executor per step.
  The runtime chains calls for longer horizons and truncates for shorter ones, exactly.
* **Ensembles as one graph**: members are the leading axis of every weight (one batched MatMul per layer), so the
  encoder returns ``z`` (E, B, n) and every predictor output carries a leading member axis. One member -> no axis.
* **Lean predictor graph** for models with constant mass, input map and damping (:class:`LeanPredictorGraph`):
  constants precomputed at export, one potential pass per step, normalisation folded into the decoder, energy read
  from the step's own potential pass; other models trace the generic rollout (:class:`PredictorGraph`).
* **Physical units at the graph boundary**: observation normalisation and action scaling are inside the graphs; the
  statistics are copied into the metadata for tools.
* **Images enter as uint8** (B, frames, H, W, 3) exactly as a camera driver delivers them; the scaling to [0, 1] is
  in the graph.
* The legacy TorchScript-based exporter (``dynamo=False``) is used: it needs no onnxscript and traces the model's
  closed-form dH/dz (no ``torch.autograd.grad`` anywhere on these paths).

After writing, the files are checked with ``onnx.checker`` (full check, with shape inference) and reloaded through the
runtime's own validation; torch-vs-onnxruntime parity is measured on random inputs at a batch size different from the
one traced and recorded in the metadata (``metrics.export_parity``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
import hashlib
import json
import logging
from pathlib import Path
import sys
from typing import Any
import warnings

import numpy as np
import torch
from torch import nn

from hamwm_ros.cli import HelpFormatter
from hamwm_ros.runtime.metadata import (
    ACTION_SOURCES,
    ImageSpec,
    ModelMetadata,
    TensorSpec,
    expected_signatures,
    sha256_file,
)
from hamwm_ros.worldmodel.model import HamiltonianWorldModel, _affine, lean_energy, lean_rollout

LOG = logging.getLogger(__name__)
JOINT_ENCODERS = ('mlp', 'identity', 'configuration', 'fused')  # encoders fed joint states (``obs``)
DEFAULT_OPSET = 17
DEFAULT_HORIZON = 32
PARITY_RTOL = 1e-4


class ExportError(RuntimeError):
    """The model cannot be exported, or the exported files fail a check."""


# ---------------------------------------------------------------------- graph wrappers


class EncoderGraph(nn.Module):
    """``encode`` with the runtime's input names and dtypes."""

    def __init__(self, model: HamiltonianWorldModel) -> None:
        super().__init__()
        self.model = model
        self.uses_joints = model.cfg.encoder in JOINT_ENCODERS
        self.uses_images = model.cfg.encoder in ('image', 'fused')
        self.linear = model.cfg.encoder == 'configuration'
        if self.linear:  # one affine map, computed here (the graph needs no matrix inverse)
            with torch.no_grad():
                w, b = model.configuration_maps()[:2]
            self.register_buffer('enc_w', (w[0] if model.cfg.ensemble == 1 else w).detach().clone())
            self.register_buffer('enc_b', b.detach().clone())

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``obs`` and/or ``images`` (in that order) -> ``z``."""
        obs = inputs[0] if self.uses_joints else None
        images = inputs[-1] if self.uses_images else None
        if self.linear:
            return torch.matmul(obs, self.enc_w) + self.enc_b
        return self.model.encode(obs, images)


class PredictorGraph(nn.Module):
    """``rollout`` + ``decode`` + ``energy`` in one graph: (z, actions) -> (z_seq, obs_seq, energy)."""

    def __init__(self, model: HamiltonianWorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Z (B, n) or (E, B, n), actions (B, H, m)."""
        z_seq = self.model.rollout(z, actions)
        obs_seq = self.model.decode(z_seq)
        n = z_seq.shape[-1]
        if self.model.cfg.ensemble > 1:  # energy() takes (E, N, n): fold time into the batch and back
            energy = self.model.energy(z_seq.reshape(z_seq.shape[0], -1, n)).reshape(z_seq.shape[:-1])
        else:
            energy = self.model.energy(z_seq.reshape(-1, n)).reshape(z_seq.shape[:-1])
        return z_seq, obs_seq, energy


class LeanPredictorGraph(nn.Module):
    """The predictor of a :attr:`HamiltonianWorldModel.lean` model as a short graph (same outputs as PredictorGraph).

    Every q-independent quantity (inverse mass, damping flow, input map with action scaling and h/2, the rearranged
    potential backward) is computed once here, in torch, and enters the graph as a constant; the loop body is then
    GEMMs and a few elementwise ops (see :func:`hamwm_ros.worldmodel.model.lean_rollout`). The energy output reuses
    the potential pass each step makes anyway; decoding runs once over all steps, with the observation
    de-normalisation folded into the decoder's last layer.
    """

    def __init__(self, model: HamiltonianWorldModel) -> None:
        super().__init__()
        if not model.lean:
            raise ExportError('LeanPredictorGraph needs a lean model (see HamiltonianWorldModel.lean)')
        self.latent_dim = model.cfg.latent_dim
        self.members = model.cfg.ensemble
        self.linear_decoder = model.cfg.encoder == 'configuration'
        one = self.members == 1
        self.activation = None if self.linear_decoder else model.decoder_net.activation
        with torch.no_grad():
            k = model.lean_constants(squeeze=one)
            if self.linear_decoder:  # physical observations = z @ W + b (HamiltonianWorldModel.configuration_maps)
                w, b = model.configuration_maps()[2:]
                k['dec_lin_w'], k['dec_lin_b'] = (w[0] if one else w), b
            else:
                dec = model.decoder_net
                std, mean = model.obs_std, model.obs_mean
                k['dec_w'] = [layer.weight for layer in dec.hidden_layers]
                k['dec_b'] = [layer.bias for layer in dec.hidden_layers]
                k['dec_out_w'] = dec.out.weight * std  # de-normalisation folded into the last layer and the skip
                k['dec_out_b'] = dec.out.bias * std + mean
                k['dec_skip'] = model.decoder_skip * std
                if one:
                    for key in ('dec_w', 'dec_b'):
                        k[key] = [w[0] for w in k[key]]
                    for key in ('dec_out_w', 'dec_out_b', 'dec_skip'):
                        k[key] = k[key][0]
        # Tensors become buffers (one shared initializer each in the graph, not a copy per unrolled step).
        self._layout: dict[str, Any] = {}
        for key, value in k.items():
            if isinstance(value, torch.Tensor):
                self.register_buffer(f'c_{key}', value.detach().clone())
                self._layout[key] = f'c_{key}'
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    self.register_buffer(f'c_{key}_{i}', v.detach().clone())
                self._layout[key] = [f'c_{key}_{i}' for i in range(len(value))]
            else:
                self._layout[key] = ('value', value)

    def _constants(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, where in self._layout.items():
            if isinstance(where, str):
                out[key] = getattr(self, where)
            elif isinstance(where, list):
                out[key] = [getattr(self, name) for name in where]
            else:
                out[key] = where[1]
        return out

    def _decode(self, k: dict[str, Any], z: torch.Tensor) -> torch.Tensor:
        """Decoder in physical units over (.., B, H, n); the steps fold into the batch (one GEMM per layer)."""
        horizon, n = int(z.shape[-2]), int(z.shape[-1])
        x = z.reshape(-1, n) if self.members == 1 else z.reshape(self.members, -1, n)
        lead = () if self.members == 1 else (self.members,)
        if self.linear_decoder:
            out = _affine(x, k['dec_lin_w'], k['dec_lin_b'])
            return out.reshape(*lead, -1, horizon, int(out.shape[-1]))
        skip = x
        for w, b in zip(k['dec_w'], k['dec_b']):
            a = _affine(x, w, b)
            x = torch.tanh(a) if self.activation == 'tanh' else torch.nn.functional.softplus(a)
        out = _affine(x, k['dec_out_w'], k['dec_out_b']) + torch.matmul(skip, k['dec_skip'])
        return out.reshape(*lead, -1, horizon, int(out.shape[-1]))

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Z (B, n) or (E, B, n), actions (B, H, m)."""
        k = self._constants()
        d = self.latent_dim
        q, p = z[..., :d], z[..., d:]
        q_seq, p_seq, v_seq = lean_rollout(k, q, p, actions, actions.shape[-2], with_potential=True)
        z_seq = torch.cat([q_seq, p_seq], -1)
        return z_seq, self._decode(k, z_seq), lean_energy(k, p_seq, v_seq)


def predictor_graph(model: HamiltonianWorldModel) -> nn.Module:
    """The module exported as ``predictor.onnx``: :class:`LeanPredictorGraph` where the model allows it.

    Otherwise :class:`PredictorGraph` (the generic traced rollout).
    """
    return LeanPredictorGraph(model) if model.lean and model.cfg.obs_dim > 0 else PredictorGraph(model)


# ---------------------------------------------------------------------- helpers


def data_hash(arrays: Mapping[str, Any]) -> str:
    """sha256 over a dataset's arrays (names, dtypes, shapes, bytes) in sorted key order, as ``sha256:<hex>``.

    Non-array entries (dt, joint names) are hashed by their JSON form, so the hash identifies the exact data.
    """
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = arrays[key]
        digest.update(key.encode())
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            digest.update(f'{array.dtype.str}{array.shape}'.encode())
            digest.update(array.tobytes())
        else:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return 'sha256:' + digest.hexdigest()


def _signature(model: HamiltonianWorldModel, horizon: int) -> tuple[dict, ImageSpec | None, bool]:
    cfg = model.cfg
    images = None
    if cfg.encoder in ('image', 'fused'):
        h, w, c = cfg.image_shape
        images = ImageSpec(cfg.n_frames, h, w, c)
    uses_joints = cfg.encoder in JOINT_ENCODERS
    sigs = expected_signatures(cfg.obs_dim, 2 * cfg.latent_dim, cfg.action_dim, horizon, cfg.ensemble, uses_joints,
                               images)
    return sigs, images, uses_joints


def _dynamic_axes(specs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    return {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in specs}


def _example(spec: TensorSpec, batch: int, generator: torch.Generator, scale: np.ndarray | None = None
             ) -> torch.Tensor:
    shape = tuple(batch if isinstance(d, str) else d for d in spec.shape)
    if spec.dtype == 'uint8':
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    x = torch.randn(shape, generator=generator)
    if scale is not None:
        x = x * torch.as_tensor(scale, dtype=torch.float32)
    return x


def _export_one(module: nn.Module, args: tuple, path: Path, inputs: Sequence[TensorSpec],
                outputs: Sequence[TensorSpec], opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is legacy, and traces warn on python-int shape arithmetic; both are
        # expected here (the shapes that matter are declared dynamic and checked by the parity run).
        warnings.simplefilter('ignore')
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                          input_names=[t.name for t in inputs], output_names=[t.name for t in outputs],
                          dynamic_axes={**_dynamic_axes(inputs), **_dynamic_axes(outputs)},
                          do_constant_folding=True)


def _stamp_signature(path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    """Write the contract's dimensions onto the graph's declared inputs and outputs.

    The tracer derives some output dimensions from shape arithmetic (e.g. the member axis after a reshape) and names
    them after internal nodes; the contract says they are fixed, so the declaration is made exact here (the checker's
    shape inference and the parity run then confirm it).
    """
    import onnx

    model = onnx.load(str(path))
    for values, specs in ((model.graph.input, inputs), (model.graph.output, outputs)):
        for value, spec in zip(values, specs):
            dims = value.type.tensor_type.shape.dim
            if value.name != spec.name or len(dims) != len(spec.shape):
                raise ExportError(f'{path.name}: {value.name} rank {len(dims)} does not fit {spec.to_dict()}')
            for dim, want in zip(dims, spec.shape):
                if isinstance(want, int):
                    dim.Clear()
                    dim.dim_value = want
                else:
                    dim.Clear()
                    dim.dim_param = want
    onnx.save(model, str(path))


def _check_onnx(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError and InferenceError
        raise ExportError(f'{path.name} fails onnx.checker: {exc}') from exc


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max |actual - expected| / max |expected| (infinity norm), the parity measure."""
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    return float(np.max(np.abs(actual - expected)) / max(scale, 1e-12))


def measure_parity(model: HamiltonianWorldModel, out_dir: str | Path, *, batch: int = 7, seed: int = 0,
                   state_scale: float = 1.0) -> dict[str, float]:
    """Relative error (infinity norm) of every output, onnxruntime (CPU) against eager torch, on random inputs.

    Inputs: observations drawn around the model's normalisation statistics, uint8 noise images, actions within
    about two action scales, ``z`` from the encoder.
    """
    from hamwm_ros.runtime import SessionConfig, WorldModelRuntime

    runtime = WorldModelRuntime.load(out_dir, config=SessionConfig(providers=('cpu',), intra_op_threads=1))
    meta = runtime.metadata
    gen = torch.Generator().manual_seed(seed)
    feeds = {}
    if meta.uses_joints:
        feeds['obs'] = (torch.randn(batch, meta.obs_dim, generator=gen) * state_scale * model.obs_std
                        + model.obs_mean)
    if meta.images is not None:
        i = meta.images
        feeds['images'] = torch.randint(0, 256, (batch, i.frames, i.height, i.width, i.channels), generator=gen,
                                        dtype=torch.uint8)
    actions = torch.randn(batch, meta.horizon, meta.action_dim, generator=gen) * 2.0 * model.action_scale
    with torch.no_grad():
        z_t = model.encode(feeds.get('obs'), feeds.get('images'))
        ref = PredictorGraph(model)(z_t, actions)
    n = len(meta.joint_names)
    obs = feeds.get('obs')
    z_o = runtime.encode(obs[:, :n].numpy() if obs is not None else None,
                         obs[:, n:].numpy() if obs is not None else None,
                         feeds['images'].numpy() if 'images' in feeds else None)
    out = runtime.rollout(z_t.numpy(), actions.numpy())
    return {
        'z': relative_error(z_o, z_t.numpy()),
        'z_seq': relative_error(out.latent, ref[0].numpy()),
        'obs_seq': relative_error(out.observations, ref[1].numpy()),
        'energy': relative_error(out.energy, ref[2].numpy()),
    }


# ---------------------------------------------------------------------- export


def export_model(model: HamiltonianWorldModel, out_dir: str | Path, *, robot: str,
                 joint_names: Sequence[str], horizon: int = DEFAULT_HORIZON, opset: int = DEFAULT_OPSET,
                 training: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
                 include_checkpoint: bool = True, parity_rtol: float = PARITY_RTOL,
                 action_source: str = 'applied') -> ModelMetadata:
    """Export ``model`` into ``out_dir`` and return the validated metadata written beside the graphs.

    Parameters
    ----------
    model
        A trained model (physical units at its boundary, normalisation inside).
    out_dir
        Created if needed; ``encoder.onnx``, ``predictor.onnx``, ``metadata.json`` (and ``model.pt`` with
        ``include_checkpoint``, for the eager-torch benchmark and parity checks) are replaced.
    robot, joint_names
        Robot name and joint order of the observation layout (positions then velocities).
    horizon
        Steps unrolled in ``predictor.onnx``.
    opset
        ONNX opset.
    training
        Provenance; must contain ``data_hash`` (see :func:`data_hash`).
    metrics
        Evaluation numbers to record.
    include_checkpoint
        Also save the torch checkpoint (``model.pt`` + json side files) into ``out_dir``.
    parity_rtol
        Largest accepted torch-vs-onnxruntime relative error.
    action_source
        What the model's input is (``metadata.json``'s ``action_source``): ``'applied'`` effort, or ``'feedforward'``
        over a PD hold the model includes (:data:`hamwm_ros.runtime.metadata.ACTION_SOURCES`).

    Raises
    ------
    ExportError
        If the model has no observation decoder, sizes contradict ``joint_names``, ``data_hash`` is missing, the
        checker fails, or parity is worse than ``parity_rtol``.
    """
    cfg = model.cfg
    joint_names = list(joint_names)
    if action_source not in ACTION_SOURCES:
        raise ExportError(f'action_source must be one of {list(ACTION_SOURCES)}, got {action_source!r}')
    if cfg.obs_dim != 2 * len(joint_names):
        raise ExportError(f'model obs_dim {cfg.obs_dim} is not positions + velocities of {len(joint_names)} joints')
    if cfg.encoder == 'identity':
        raise ExportError('identity-encoder models have no learned latent; export a model with an encoder')
    training = dict(training or {})
    if not training.get('data_hash'):
        raise ExportError('training provenance must include data_hash')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    sigs, images, uses_joints = _signature(model, horizon)
    gen = torch.Generator().manual_seed(0)
    trace_batch = 3  # any value but 1 (a traced 1 risks being folded as a constant) and different from parity's
    enc_in, enc_out = sigs['encoder']
    enc_args = tuple(_example(t, trace_batch, gen) for t in enc_in)
    _export_one(EncoderGraph(model), enc_args, out / 'encoder.onnx', enc_in, enc_out, opset)
    pred_in, pred_out = sigs['predictor']
    pred_args = (_example(pred_in[0], trace_batch, gen), _example(pred_in[1], trace_batch, gen))
    _export_one(predictor_graph(model), pred_args, out / 'predictor.onnx', pred_in, pred_out, opset)
    for name, (inputs, outputs) in (('encoder.onnx', sigs['encoder']), ('predictor.onnx', sigs['predictor'])):
        _stamp_signature(out / name, inputs, outputs)
        _check_onnx(out / name)
    if include_checkpoint:
        model.save(out)
        training['checkpoint'] = {'path': 'model.pt', 'sha256': sha256_file(out / 'model.pt')}
    files = {}
    for role in ('encoder', 'predictor'):
        inputs, outputs = sigs[role]
        files[role] = {'path': f'{role}.onnx', 'sha256': sha256_file(out / f'{role}.onnx'),
                       'inputs': [t.to_dict() for t in inputs], 'outputs': [t.to_dict() for t in outputs]}
    data = {
        'schema': 'hamwm_ros/model-metadata', 'schema_version': 1, 'robot': robot, 'joint_names': joint_names,
        'dt': float(cfg.dt),
        'observation': {'layout': ['position', 'velocity'], 'dim': cfg.obs_dim, 'joints': uses_joints,
                        'images': None if images is None else images.to_dict()},
        'latent_dim': 2 * cfg.latent_dim, 'action_dim': cfg.action_dim, 'horizon': horizon,
        'ensemble': cfg.ensemble, 'opset': opset,
        'normalisation': {'obs_mean': model.obs_mean.tolist(), 'obs_std': model.obs_std.tolist(),
                          'action_mean': [0.0] * cfg.action_dim, 'action_std': model.action_scale.tolist(),
                          'applied_in_graph': True},
        'training': {**training, 'model_config': cfg.to_dict()},
        'metrics': dict(metrics or {}),
        'files': files,
        'producer': {'tool': 'hamwm export', 'torch': torch.__version__, 'exporter': 'torchscript',
                     'horizon_mode': 'unrolled', 'ensemble_mode': 'one graph, leading member axis'},
    }
    if action_source != 'applied':
        data['action_source'] = action_source
    if getattr(model, 'spread_calibration', None) is not None and cfg.ensemble > 1:
        data['spread_calibration'] = dict(model.spread_calibration)  # optional: the ensemble's calibrated spread
    if getattr(model, 'energy_calibration', None) is not None:
        data['energy_calibration'] = dict(model.energy_calibration)  # optional: how far its energy books missed
    meta = ModelMetadata.from_dict(data)
    meta.save(out)
    parity = measure_parity(model, out)
    worst = max(parity.values())
    if not worst <= parity_rtol:
        raise ExportError(f'torch vs onnxruntime parity {parity} exceeds {parity_rtol}')
    data['metrics']['export_parity'] = {'rel_error': parity, 'rtol': parity_rtol, 'batch': 7}
    meta = ModelMetadata.from_dict(data)
    meta.save(out)
    return meta


def _load_model(path: Path) -> HamiltonianWorldModel:
    try:
        return HamiltonianWorldModel.load(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """``hamwm export``: export a saved world model (``model.save`` directory or ``model.pt``)."""
    parser = argparse.ArgumentParser(prog='hamwm export', description=__doc__.split('\n\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('model', type=Path, help='directory written by HamiltonianWorldModel.save, or its model.pt')
    parser.add_argument('--out', type=Path, required=True, help='output model directory (e.g. models/cartpole)')
    parser.add_argument('--robot', help="robot name (default: from the model's info, e.g. data source sim:<robot>)")
    parser.add_argument('--joint-names', nargs='+', help="joint order (default: the model's info['joint_names'])")
    parser.add_argument('--horizon', type=int, default=DEFAULT_HORIZON, help='steps unrolled in predictor.onnx')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help='ONNX opset of both graphs')
    parser.add_argument('--data-hash', help="training-data hash (default: the model's info['data_sha256'])")
    parser.add_argument('--metrics', type=Path, help='JSON file of evaluation metrics to record')
    parser.add_argument('--no-checkpoint', action='store_true', help='do not copy the torch checkpoint')
    parser.add_argument('--action-source', choices=ACTION_SOURCES, default=None,
                        help="what the model's input is (metadata action_source; default: the model's "
                             "info['action_source'] from hamwm train --action-source, else 'applied')")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.horizon < 1:
            raise ExportError('--horizon must be >= 1')
        model = _load_model(args.model)
        info = dict(model.info)
        source_name = str(info.get('data_source', ''))
        robot = args.robot or info.get('robot') or (source_name[4:] if source_name.startswith('sim:') else None)
        joints = args.joint_names or info.get('joint_names')
        digest = args.data_hash or info.get('data_hash') or (
            'sha256:' + info['data_sha256'] if info.get('data_sha256') else None)
        if not robot or not joints or not digest:
            raise ExportError('robot, joint names and data hash are needed: pass --robot, --joint-names, '
                              '--data-hash or save them in model.info')
        metrics = json.loads(args.metrics.read_text()) if args.metrics else dict(info.get('metrics') or {})
        training = {k: v for k, v in info.items() if k not in ('metrics', 'joint_names', 'robot')}
        action_source = args.action_source or str(info.get('action_source', 'applied'))
        training['data_hash'] = digest
        source = args.model if args.model.is_dir() else args.model.parent
        same_dir = source.resolve() == args.out.resolve()
        meta = export_model(model, args.out, robot=robot, joint_names=joints, horizon=args.horizon,
                            opset=args.opset, training=training, metrics=metrics,
                            include_checkpoint=not args.no_checkpoint or same_dir, action_source=action_source)
    except (ExportError, OSError, json.JSONDecodeError) as exc:
        print(f'hamwm export: {exc}', file=sys.stderr)
        return 1
    parity = meta.metrics['export_parity']['rel_error']
    print(f'exported {meta.robot} to {args.out}: horizon {meta.horizon}, latent {meta.latent_dim}, '
          f'opset {meta.opset}; parity (max rel. error) {max(parity.values()):.2e}')
    for spec in meta.files.values():
        size = (args.out / spec.path).stat().st_size
        print(f'  {spec.path:<15} {size / 1024:8.1f} KiB  sha256 {spec.sha256[:16]}')
    return 0


__all__ = ['EncoderGraph', 'ExportError', 'LeanPredictorGraph', 'PredictorGraph', 'data_hash', 'export_model', 'main',
           'measure_parity', 'predictor_graph', 'relative_error']
