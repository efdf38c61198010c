"""onnxruntime session wrapper for the robot-side hot path.

What it adds over a bare ``onnxruntime.InferenceSession``:

* the file's sha256 is checked against the metadata *before* onnxruntime parses it;
* execution providers come from configuration in priority order (``tensorrt``, ``cuda``, ``cpu``); a provider that
  is missing from this build or fails to initialise (no driver, no libcudart) is logged and skipped, and the
  providers actually in use are reported in :attr:`OrtSession.providers`. A provider that failed to initialise is
  not tried again in the same process (onnxruntime prints its reason once, not once per model file);
* input/output names, ranks, fixed dimensions and dtypes are compared with the metadata at load; any mismatch raises
  :class:`ModelLoadError` and no session object escapes;
* one warm-up run at load (allocations, kernel selection, TensorRT engine build happen there, not in the loop);
* the hot path uses IO binding into output buffers pre-allocated per batch size, so a steady-state call allocates
  no output memory; on CUDA the same binding copies inputs to the device and results back into those buffers.

No torch, no rclpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import logging
import os
from pathlib import Path
import threading

import numpy as np

from hamwm_ros.runtime.metadata import DTYPES, FileSpec, MetadataError, sha256_file, shapes_compatible

LOG = logging.getLogger(__name__)

PROVIDERS = {
    'tensorrt': 'TensorrtExecutionProvider',
    'cuda': 'CUDAExecutionProvider',
    'cpu': 'CPUExecutionProvider',
}
DEFAULT_PROVIDERS = ('cuda', 'cpu')
_ORT_TO_NUMPY = {ort_type: np.dtype(name) for name, ort_type in DTYPES.items()}
_OPT_LEVELS = ('disable', 'basic', 'extended', 'all')
# Providers that failed to initialise in this process (missing CUDA libraries, no GPU): a library-load failure does
# not heal while the process runs, and each new attempt repeats onnxruntime's multi-line error on stderr.
_FAILED_PROVIDERS: set[str] = set()
_FAILED_LOCK = threading.Lock()


class ModelLoadError(MetadataError):
    """An ONNX file cannot be used: missing, corrupt, modified, or its signature contradicts the metadata."""


@dataclass(frozen=True)
class SessionConfig:
    """How to create sessions.

    Parameters
    ----------
    providers
        Priority order, any of ``tensorrt``, ``cuda``, ``cpu``. ``cpu`` is always appended as the last resort.
    intra_op_threads
        Threads inside one operator (0 lets onnxruntime pick, which is one per physical core).
    inter_op_threads
        Threads across independent operators (used only with ``parallel_execution``).
    optimization
        Graph optimisation level: ``disable``, ``basic``, ``extended`` or ``all``.
    parallel_execution
        Run independent branches concurrently (ORT_PARALLEL); sequential is usually faster for chain-shaped graphs.
    spin
        Let idle intra-op threads spin-wait between operators: lower latency, but they burn CPU another process on
        the same cores could use. Off by default on a shared robot computer.
    warmup_batch
        Batch sizes to run once at load (buffers and kernels for them are then ready). Empty -> batch 1 only.
    memory_reuse
        Let onnxruntime's allocation planner share buffers between intermediate tensors. Off by default: its reuse
        analysis grows super-linearly with node count, and the unrolled predictor graphs (thousands of nodes) then
        take 15-20 s to load instead of about 1 s; the arena still recycles freed blocks, so steady-state memory
        and speed stay the same within measurement noise (``hamwm bench predictor`` prints both settings).
    device_id
        GPU index for CUDA / TensorRT.
    trt_cache_dir
        Where TensorRT keeps built engines between starts (engine builds take seconds to minutes).
    """

    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    optimization: str = 'all'
    parallel_execution: bool = False
    spin: bool = False
    warmup_batch: tuple[int, ...] = (1,)
    memory_reuse: bool = False
    device_id: int = 0
    trt_cache_dir: str | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.providers if p not in PROVIDERS]
        if unknown:
            raise ValueError(f'unknown providers {unknown}; choose from {list(PROVIDERS)}')
        if self.optimization not in _OPT_LEVELS:
            raise ValueError(f'optimization must be one of {_OPT_LEVELS}, got {self.optimization!r}')
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError('thread counts must be >= 0')


def resolve_providers(config: SessionConfig) -> list[str | tuple[str, dict]]:
    """Provider list for onnxruntime: requested order, filtered by what this onnxruntime build offers.

    Skipped providers are logged at warning level. ``CPUExecutionProvider`` always ends the list.
    """
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen: list[str | tuple[str, dict]] = []
    for key in (*config.providers, 'cpu'):
        name = PROVIDERS[key]
        if any((c if isinstance(c, str) else c[0]) == name for c in chosen):
            continue
        if name not in available:
            LOG.warning('execution provider %s requested but not in this onnxruntime build; falling back', name)
            continue
        with _FAILED_LOCK:
            failed_before = name in _FAILED_PROVIDERS
        if failed_before:
            LOG.warning('execution provider %s failed to initialise earlier in this process; not tried again', name)
            continue
        if key == 'cuda':
            chosen.append((name, {'device_id': config.device_id}))
        elif key == 'tensorrt':
            options = {'device_id': config.device_id, 'trt_fp16_enable': False}
            if config.trt_cache_dir:
                os.makedirs(config.trt_cache_dir, exist_ok=True)
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=config.trt_cache_dir)
            chosen.append((name, options))
        else:
            chosen.append(name)
    return chosen


class OrtSession:
    """A validated onnxruntime session for one model file, with a preallocated IO-bound hot path.

    Parameters
    ----------
    path
        The ONNX file.
    spec
        Its entry from the metadata (expected sha256 and signature).
    config
        Provider order, threads and optimisation level.

    Notes
    -----
    Thread-safe: onnxruntime runs concurrent calls, and the preallocated output buffers (and their IO binding) are
    kept per calling thread and batch size, so two threads never write into each other's results.

    Raises
    ------
    ModelLoadError
        If the file is missing, its sha256 differs, onnxruntime cannot parse it, its inputs/outputs differ from the
        metadata in name, rank, fixed dimension or dtype, or the warm-up run fails or produces wrong shapes.
    """

    def __init__(self, path: str | Path, spec: FileSpec, config: SessionConfig | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.spec = spec
        self.config = config or SessionConfig()
        if not self.path.is_file():
            raise ModelLoadError(f'{self.path} is missing')
        digest = sha256_file(self.path)
        if digest != spec.sha256:
            raise ModelLoadError(f'{self.path}: sha256 {digest[:12]}... differs from the metadata '
                                 f'({spec.sha256[:12]}...): file modified, corrupt or from another model')
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.config.optimization]
        options.intra_op_num_threads = self.config.intra_op_threads
        options.inter_op_num_threads = self.config.inter_op_threads
        options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.config.parallel_execution
                                  else ort.ExecutionMode.ORT_SEQUENTIAL)
        options.add_session_config_entry('session.intra_op.allow_spinning', '1' if self.config.spin else '0')
        options.enable_mem_reuse = self.config.memory_reuse
        options.log_severity_level = 3  # onnxruntime's own provider-failure chatter; we log the outcome ourselves
        requested = resolve_providers(self.config)
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=requested)
        except Exception as exc:  # onnxruntime raises several private exception types for bad graphs
            raise ModelLoadError(f'{self.path}: onnxruntime refused the file: {exc}') from exc
        self.providers: tuple[str, ...] = tuple(session.get_providers())
        wanted = [c if isinstance(c, str) else c[0] for c in requested]
        dropped = [p for p in wanted if p not in self.providers]
        if dropped:
            with _FAILED_LOCK:
                _FAILED_PROVIDERS.update(dropped)
            LOG.warning('%s: providers %s failed to initialise; running on %s (not tried again in this process)',
                        self.path.name, dropped, list(self.providers))
        self._check_signature(session)
        self._session = session
        self._on_gpu = self.providers[0] in (PROVIDERS['cuda'], PROVIDERS['tensorrt'])
        self._input_names = [t.name for t in spec.inputs]
        self._output_names = [t.name for t in spec.outputs]
        self._in_dtypes = {t.name: np.dtype(t.dtype) for t in spec.inputs}
        self._buffers: dict[tuple[int, int], tuple[object, dict[str, np.ndarray]]] = {}
        self._buffers_lock = threading.Lock()
        # One RunOptions shared by every call: setting its terminate flag ends the runs in progress (onnxruntime
        # checks it between nodes), so a long rollout cannot keep a stopping node waiting. See cancel_runs.
        self._run_options = ort.RunOptions()
        self._warmup()

    # ------------------------------------------------------------------ load-time checks
    def _check_signature(self, session) -> None:
        for kind, have, want in (('input', session.get_inputs(), self.spec.inputs),
                                 ('output', session.get_outputs(), self.spec.outputs)):
            have_names = [h.name for h in have]
            want_names = [w.name for w in want]
            if have_names != want_names:
                raise ModelLoadError(f'{self.path}: {kind}s are {have_names}, metadata says {want_names}')
            for h, w in zip(have, want):
                dtype = _ORT_TO_NUMPY.get(h.type)
                if dtype is None or dtype.name != w.dtype:
                    raise ModelLoadError(f'{self.path}: {kind} {h.name} has type {h.type}, metadata says {w.dtype}')
                if not shapes_compatible(h.shape, w.shape):
                    raise ModelLoadError(f'{self.path}: {kind} {h.name} has shape {h.shape}, metadata says '
                                         f'{list(w.shape)}')

    def _warmup(self) -> None:
        for batch in self.config.warmup_batch or (1,):
            feeds = {t.name: np.zeros(self._concrete(t.shape, batch), dtype=t.dtype) for t in self.spec.inputs}
            try:
                outputs = self.run(feeds)
            except Exception as exc:
                raise ModelLoadError(f'{self.path}: warm-up run at batch {batch} failed: {exc}') from exc
            for t in self.spec.outputs:
                want = self._concrete(t.shape, batch)
                if outputs[t.name].shape != want:
                    raise ModelLoadError(f'{self.path}: warm-up output {t.name} has shape {outputs[t.name].shape}, '
                                         f'expected {want}')

    @staticmethod
    def _concrete(shape: Sequence[int | str], batch: int) -> tuple[int, ...]:
        return tuple(batch if isinstance(d, str) else d for d in shape)

    # ------------------------------------------------------------------ hot path
    @property
    def input_names(self) -> list[str]:
        """Input names in graph order."""
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        """Output names in graph order."""
        return list(self._output_names)

    def run(self, feeds: Mapping[str, np.ndarray], *, copy: bool = False) -> dict[str, np.ndarray]:
        """Run the graph.

        Parameters
        ----------
        feeds
            One array per input name; converted to the metadata dtype and made C-contiguous if needed (free when
            already so). The batch size is taken from the first input's symbolic axis.
        copy
            Return copies. By default the arrays returned are this session's preallocated buffers for that batch
            size and calling thread, overwritten by that thread's next call with the same batch size.

        Raises
        ------
        ValueError
            If an input is missing or unexpected, or its shape does not fit the metadata.
        """
        if set(feeds) != set(self._input_names):
            raise ValueError(f'inputs {sorted(feeds)} do not match the graph inputs {self._input_names}')
        arrays = {}
        batch = None
        for t in self.spec.inputs:
            array = np.ascontiguousarray(feeds[t.name], dtype=self._in_dtypes[t.name])
            if array.ndim != len(t.shape):
                raise ValueError(f'{t.name}: rank {array.ndim}, expected {len(t.shape)} ({list(t.shape)})')
            for axis, (n, d) in enumerate(zip(array.shape, t.shape)):
                if isinstance(d, int) and n != d:
                    raise ValueError(f'{t.name}: axis {axis} is {n}, expected {d}')
                if isinstance(d, str):
                    if batch is None:
                        batch = n
                    elif n != batch:
                        raise ValueError(f'{t.name}: batch {n} differs from {batch} of the other inputs')
            arrays[t.name] = array
        binding, outputs = self._binding(batch or 1)
        for name, array in arrays.items():
            binding.bind_cpu_input(name, array)
        self._session.run_with_iobinding(binding, self._run_options)
        if self._on_gpu:
            binding.synchronize_outputs()
        return {k: v.copy() for k, v in outputs.items()} if copy else outputs

    def cancel_runs(self, cancel: bool = True) -> None:
        """End the runs in progress, and refuse new ones, until called with ``cancel=False``.

        From any thread (a node stopping its planner): the runs stop between two graph nodes and raise onnxruntime's
        error, which the caller sees like any failed run.
        """
        self._run_options.terminate = cancel

    def _binding(self, batch: int):
        key = (threading.get_ident(), batch)
        cached = self._buffers.get(key)
        if cached is not None:
            return cached
        binding = self._session.io_binding()
        outputs = {}
        for t in self.spec.outputs:
            # Host buffers even on CUDA: onnxruntime copies the device result straight into them.
            buffer = np.empty(self._concrete(t.shape, batch), dtype=t.dtype)
            binding.bind_output(t.name, 'cpu', 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)
            outputs[t.name] = buffer
        with self._buffers_lock:
            if len(self._buffers) >= 16:  # callers cycling through batch sizes or threads must not grow memory
                # Evict another thread's oldest entry first only if this thread has none to give up.
                mine = [k for k in self._buffers if k[0] == key[0]]
                self._buffers.pop(mine[0] if mine else next(iter(self._buffers)))
            self._buffers[key] = (binding, outputs)
        return binding, outputs
