"""``hamwm train``: fit a Hamiltonian world model to simulated rollouts, recorded ROS 2 bags or npz arrays.

The objective on each window (start state plus H actions) is

* multi-step rollout loss: encode the first observation, roll the latent through the H actions with the model's
  structure-preserving integrator, decode, and compare with the recorded observations (normalised units);
* reconstruction loss (decode(encode(obs)) == obs) and a latent consistency loss (the rolled latent matches the
  encoding of the recorded future), which keep the latent phase space tied to the data;
* optional derivative loss on ``obs_dot`` (identity encoder, e.g. the HNN protocol) and image losses for pixel models;
* an L2 penalty on the residual r(z, u), so the structured part explains what it can.

Ensembles train all members on the same batches with per-member bootstrap weights: each member weighs the training
trajectories with its own fixed Bayesian-bootstrap draw (Dirichlet weights from the seed; per-window Poisson(1) online
weights when there is only one trajectory), which with independent initialisations gives their spread. After
training, the spread is calibrated on the held-out validation trajectories (:func:`calibrate_spread`): per-step-count
factors that make the ensemble's mean +- 1.96 std intervals cover 95 %, stored with the model (``model.pt``) and
exported into ``metadata.json``. The model's energy books are calibrated there too (:func:`calibrate_energy`): how
far H at the next encoded state misses the H its step claims, which the validity monitor then expects.

The loop is DDP-ready: under ``torchrun`` (``WORLD_SIZE`` set) it initialises torch.distributed (NCCL on GPUs, Gloo on
CPU), shards windows with a DistributedSampler, and only rank 0 logs and writes checkpoints.

Output directory: ``model.pt`` + ``config.json`` + ``normalisation.json`` + ``info.json`` (best validation weights,
loadable with ``HamiltonianWorldModel.load``), ``metrics.json`` (per-epoch losses, data summary) and
``checkpoint.pt`` (latest state for ``--resume``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
import json
import math
import os
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from hamwm_ros.cli import HelpFormatter
from hamwm_ros.runtime.metadata import ACTION_SOURCES

from .baselines import trajectory_bootstrap
from .data import DataError, TrajectoryData, WindowDataset, load_data
from .metrics import fit_spread_calibration
from .model import (
    DAMPING_PARAMS,
    ENCODERS,
    HAMILTONIANS,
    INTEGRATORS,
    MASS_PARAMS,
    HamiltonianWorldModel,
    ModelConfig,
)


@dataclass
class TrainOptions:
    """Optimisation settings (the CLI's training flags)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    horizon: int = 8
    stride: int = 1
    val_fraction: float = 0.1
    recon_weight: float = 1.0
    latent_weight: float = 0.1
    derivative_weight: float = 1.0
    image_weight: float = 1.0
    residual_weight: float = 1e-2
    grad_clip: float = 1.0
    batches_per_epoch: int = 0
    bootstrap: bool = True
    calibrate: bool = True
    calibration_horizon: int = 100
    seed: int = 0
    device: str = 'auto'
    checkpoint_every: int = 1
    progress: bool = True
    threads: int = 1


class TrainingObjective(nn.Module):
    """Wraps the model so one ``forward`` computes the loss (what DDP needs to synchronise gradients)."""

    def __init__(self, model: HamiltonianWorldModel, opts: TrainOptions) -> None:
        super().__init__()
        self.model, self.opts = model, opts

    def forward(self, batch: dict[str, torch.Tensor], weights: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of a batch of windows; ``weights`` (E, B) bootstrap weights or None."""
        m, o = self.model, self.opts
        cfg = m.cfg
        obs, actions = batch['obs'], batch['actions']
        B, H1, D = obs.shape
        E = cfg.ensemble
        w = torch.ones(E, B, dtype=obs.dtype, device=obs.device) if weights is None else weights
        w = w / w.sum(1, keepdim=True).clamp_min(1e-6)

        def wmean(err: torch.Tensor) -> torch.Tensor:
            """Per-sample squared error (E, B, ...) -> bootstrap-weighted mean over samples, mean over members."""
            per = err.reshape(E, B, -1).mean(-1)
            return (per * w).sum(1).mean()

        parts: dict[str, torch.Tensor] = {}
        images = batch.get('images')
        frames0 = images[:, :cfg.n_frames] if images is not None and cfg.encoder in ('image', 'fused') else None
        z0 = m.encode(obs[:, 0] if D else None, frames0)
        if z0.dim() == 2:
            z0 = z0.unsqueeze(0)
        z_seq = m.rollout(z0, actions if m.has_control else None, horizon=H1 - 1)  # (E, B, H, 2d)
        obs_n = m.normalise_obs(obs) if D else obs
        if D and cfg.obs_dim:
            pred = m.decode_normalised(z_seq)
            parts['rollout'] = wmean((pred - obs_n[:, 1:]) ** 2)
        if images is not None and hasattr(m, 'image_decoder'):
            target = images[:, cfg.n_frames - 1:].float() / 255.0  # frames at t = 0..H
            z_all = torch.cat([z0.unsqueeze(2), z_seq], 2)
            parts['image'] = o.image_weight * wmean((m.decode_image(z_all) - target.unsqueeze(0)) ** 2)
        if cfg.encoder in ('mlp', 'fused'):
            z_enc = m.encode(obs.reshape(B * H1, D), None if frames0 is None else frames0.repeat_interleave(H1, 0))
            z_enc = (z_enc if z_enc.dim() == 3 else z_enc.unsqueeze(0)).reshape(E, B, H1, -1)
            parts['recon'] = o.recon_weight * wmean((m.decode_normalised(z_enc) - obs_n.unsqueeze(0)) ** 2)
            if o.latent_weight > 0:
                parts['latent'] = o.latent_weight * wmean((z_seq - z_enc[:, :, 1:]) ** 2)
            z_states = z_enc[:, :, :-1]
        elif cfg.encoder == 'image' and cfg.obs_dim and D:
            parts['recon'] = o.recon_weight * wmean((m.decode_normalised(z0) - obs_n[:, 0].unsqueeze(0)) ** 2)
            z_states = torch.cat([z0.unsqueeze(2), z_seq[:, :, :-1]], 2)
        else:
            z_states = torch.cat([z0.unsqueeze(2), z_seq[:, :, :-1]], 2)
        if 'obs_dot' in batch and o.derivative_weight > 0 and cfg.encoder == 'identity':
            zs = obs_n.unsqueeze(0).expand(E, *obs_n.shape)
            target = batch['obs_dot'] / m.obs_std
            u = actions
            pad = None if not m.has_control else torch.cat([u, u[:, -1:]], 1)  # hold the last action at the end
            zd = m.time_derivative(zs.reshape(E, B * H1, D),
                                   None if pad is None else pad.reshape(B * H1, -1)).reshape(E, B, H1, D)
            parts['derivative'] = o.derivative_weight * wmean((zd - target.unsqueeze(0)) ** 2)
        if cfg.residual and o.residual_weight > 0:
            un = m._inputs(actions, (E, B, H1 - 1, cfg.action_dim)) if m.has_control else None
            r = m.residual_term(z_states.reshape(E, B * (H1 - 1), -1),
                                None if un is None else un.reshape(E, B * (H1 - 1), -1))
            parts['residual'] = o.residual_weight * wmean(r ** 2)
        return sum(parts.values()), parts


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment; (0, 1, 0) when not launched by it."""
    if 'WORLD_SIZE' not in os.environ:
        return 0, 1, 0
    return int(os.environ.get('RANK', 0)), int(os.environ['WORLD_SIZE']), int(os.environ.get('LOCAL_RANK', 0))


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == 'auto':
        return torch.device(f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu')
    return torch.device(name)


class _Progress:
    """Plain-text progress bar on stderr (carriage returns on a terminal, one line per epoch otherwise)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()

    def update(self, epoch: int, epochs: int, done: int, total: int, loss: float, started: float) -> None:
        if not (self.enabled and self.tty):
            return
        width = 24
        fill = int(width * done / max(total, 1))
        sys.stderr.write(f'\repoch {epoch}/{epochs} [{"#" * fill}{"." * (width - fill)}] {done}/{total} '
                         f'loss {loss:.4g} {time.monotonic() - started:.0f}s')
        sys.stderr.flush()

    def end(self, line: str) -> None:
        if self.enabled:
            sys.stderr.write(('\r' if self.tty else '') + line + ' ' * 10 + '\n')
            sys.stderr.flush()


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def build_model(data: TrajectoryData, cfg_overrides: dict[str, Any]) -> HamiltonianWorldModel:
    """A model sized for ``data`` with normalisation statistics from it.

    ``latent_dim`` defaults to half the observation size (one (q, p) pair per joint). The identity encoder keeps
    observations unnormalised, since scaling q and p separately would break their canonical pairing.
    """
    overrides = {k: v for k, v in cfg_overrides.items() if v is not None}
    overrides.setdefault('latent_dim', max(1, data.obs_dim // 2))
    if data.image_shape is not None and overrides.get('encoder') in ('image', 'fused'):
        overrides.setdefault('image_shape', data.image_shape)
    cfg = ModelConfig(obs_dim=data.obs_dim, action_dim=data.action_dim, dt=data.dt, **overrides)
    model = HamiltonianWorldModel(cfg)
    mean, std, ascale = data.normalisation()
    if cfg.encoder == 'identity':
        mean, std = np.zeros_like(mean), np.ones_like(std)
    model.set_normalisation(mean, std, ascale)
    model.info = {'joint_names': list(data.joint_names), 'action_names': list(data.action_names),
                  'dt': data.dt, 'data_source': data.source, 'data_sha256': data.sha256(),
                  'observation': 'position+velocity' if data.joint_names and data.obs_dim == 2 * len(
                      data.joint_names) else 'obs'}
    return model


def fit(model: HamiltonianWorldModel, train: TrajectoryData, val: TrajectoryData | None, opts: TrainOptions,
        out_dir: str | Path | None = None, *, resume: bool = False, log: Any = print) -> dict[str, Any]:
    """Train ``model`` in place; returns the metrics dict (also written to ``out_dir/metrics.json``).

    Parameters
    ----------
    model
        The model (normalisation already set, e.g. by :func:`build_model`).
    train, val
        Training and optional validation trajectories.
    opts
        Optimisation settings.
    out_dir
        Where checkpoints, the best model and metrics go (None: nothing is written).
    resume
        Continue from ``out_dir/checkpoint.pt``.
    log
        Line logger (rank 0 only).

    Raises
    ------
    DataError
        If the data has no window of the requested horizon.
    ValueError
        If resuming from a checkpoint of a different model or data set.
    """
    rank, world, local_rank = _distributed()
    distributed = 'WORLD_SIZE' in os.environ  # launched by torchrun (any world size, 1 included)
    own_group = distributed and not torch.distributed.is_initialized()
    if own_group:
        torch.distributed.init_process_group('nccl' if torch.cuda.is_available() and opts.device != 'cpu' else 'gloo')
    device = _pick_device(opts.device, local_rank)
    if opts.threads > 0:
        # The model is many small ops: extra intra-op threads mostly spin, and on a busy CPU they wait on each other
        # (measured ~30x slower with 2 threads on a loaded 2-core machine). torchrun also defaults to one thread.
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    log = log if rank == 0 else (lambda *a, **k: None)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    use_images = model.cfg.encoder in ('image', 'fused')
    train_ds = WindowDataset(train, opts.horizon, opts.stride, model.cfg.n_frames, use_images)
    val_ds = None
    if val is not None:
        try:
            val_ds = WindowDataset(val, opts.horizon, max(opts.stride, 1), model.cfg.n_frames, use_images)
        except DataError:
            val_ds = None
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=opts.seed) \
        if distributed else None
    gen = torch.Generator().manual_seed(opts.seed)
    loader = DataLoader(train_ds, batch_size=opts.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=gen if sampler is None else None, drop_last=len(train_ds) > opts.batch_size)

    model.to(device)
    objective = TrainingObjective(model, opts)
    trainer: nn.Module = objective
    if distributed:
        trainer = nn.parallel.DistributedDataParallel(objective, device_ids=[local_rank] if device.type == 'cuda'
                                                      else None, find_unused_parameters=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(opts.epochs, 1),
                                                          eta_min=0.1 * opts.lr)
    boot_gen = torch.Generator().manual_seed(opts.seed + 1000 * rank + 1)
    E = model.cfg.ensemble
    # Per-member trajectory weights (the same on every rank and after --resume: drawn from the seed alone).
    traj_weights = trajectory_bootstrap(len(train.obs), E, opts.seed).to(device) \
        if E > 1 and opts.bootstrap and len(train.obs) > 1 else None
    history: list[dict[str, Any]] = []
    best_val, best_epoch, best_state, start_epoch = math.inf, -1, None, 0
    data_hash = train.sha256()
    ckpt_path = out / 'checkpoint.pt' if out is not None else None
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise ValueError(f'--resume: no checkpoint at {ckpt_path}')
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck['config'] != model.cfg.to_dict():
            raise ValueError('--resume: the checkpoint was trained with a different model configuration')
        if ck['data_sha256'] != data_hash:
            raise ValueError('--resume: the checkpoint was trained on different data')
        model.load_state_dict(ck['model'])
        optimiser.load_state_dict(ck['optimiser'])
        schedule.load_state_dict(ck['schedule'])
        history, best_val, best_epoch = ck['history'], ck['best_val'], ck['best_epoch']
        best_state = ck.get('best_state')
        torch.set_rng_state(ck['torch_rng'])
        gen.set_state(ck['loader_rng'])
        boot_gen.set_state(ck['boot_rng'])
        start_epoch = ck['epoch'] + 1
        log(f'resumed from {ckpt_path} at epoch {start_epoch}')

    log(f'training on {device} ({world} process{"es" if world > 1 else ""}): {len(train_ds)} windows of '
        f'{opts.horizon} steps, {len(val_ds) if val_ds else 0} validation windows, '
        f'{sum(p.numel() for p in model.parameters())} parameters')
    bar = _Progress(opts.progress and rank == 0)

    def to_device(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    for epoch in range(start_epoch, opts.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        started = time.monotonic()
        total = len(loader) if opts.batches_per_epoch <= 0 else min(len(loader), opts.batches_per_epoch)
        sums: dict[str, float] = {}
        n_ok = skipped = 0
        for i, batch in enumerate(loader):
            if i >= total:
                break
            batch = to_device(batch)
            weights = None
            if traj_weights is not None:
                weights = traj_weights[:, batch['traj']]
            elif E > 1 and opts.bootstrap:
                weights = torch.poisson(torch.ones(E, batch['obs'].shape[0]), generator=boot_gen).to(device)
            loss, parts = trainer(batch, weights)
            if not torch.isfinite(loss):
                skipped += 1  # a diverging rollout must not poison the weights
                optimiser.zero_grad(set_to_none=True)
                continue
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if opts.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            optimiser.step()
            n_ok += 1
            sums['loss'] = sums.get('loss', 0.0) + float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.update(epoch + 1, opts.epochs, i + 1, total, sums['loss'] / n_ok, started)
        schedule.step()
        record: dict[str, Any] = {'epoch': epoch, 'seconds': time.monotonic() - started, 'skipped_batches': skipped,
                                  'lr': optimiser.param_groups[0]['lr']}
        record.update({f'train_{k}': v / max(n_ok, 1) for k, v in sums.items()})
        if val_ds is not None:
            record['val_rollout_mse'] = evaluate_windows(model, val_ds, opts.batch_size, device)
        history.append(record)
        score = record.get('val_rollout_mse', record.get('train_loss', math.inf))
        if math.isfinite(score) and score < best_val:
            best_val, best_epoch = score, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        bar.end(f'epoch {epoch + 1}/{opts.epochs} loss {record.get("train_loss", float("nan")):.4g}'
                + (f' val {record["val_rollout_mse"]:.4g}' if 'val_rollout_mse' in record else '')
                + f' ({record["seconds"]:.1f}s)')
        if ckpt_path is not None and rank == 0 and ((epoch + 1) % max(opts.checkpoint_every, 1) == 0
                                                   or epoch + 1 == opts.epochs):
            _atomic_save({'epoch': epoch, 'model': model.state_dict(), 'optimiser': optimiser.state_dict(),
                          'schedule': schedule.state_dict(), 'config': model.cfg.to_dict(), 'history': history,
                          'best_val': best_val, 'best_epoch': best_epoch, 'best_state': best_state,
                          'data_sha256': data_hash, 'torch_rng': torch.get_rng_state(),
                          'loader_rng': gen.get_state(), 'boot_rng': boot_gen.get_state(),
                          'options': asdict(opts)}, ckpt_path)

    if own_group:
        torch.distributed.destroy_process_group()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to('cpu')
    if E > 1 and opts.calibrate and val is not None:
        model.spread_calibration = calibrate_spread(model, val, opts.calibration_horizon)
        if model.spread_calibration is not None:
            cal = model.spread_calibration
            log('spread calibration on validation: ' + ', '.join(
                f'x{f:.3g} at {k}' for k, f in zip(cal['steps'], cal['factors'])))
    if opts.calibrate and val is not None:
        model.energy_calibration = calibrate_energy(model, val)
        if model.energy_calibration is not None:
            cal = model.energy_calibration
            log(f"energy books on validation: bias {cal['bias']:+.3g} per step; mismatch limits " + ', '.join(
                f'{v:.3g} over {k}' for k, v in zip(cal['steps'], cal['limits'])))
    metrics = {'epochs': history, 'best_epoch': best_epoch, 'best_score': best_val,
               'best_score_kind': 'val_rollout_mse' if val_ds is not None else 'train_loss',
               'options': asdict(opts), 'config': model.cfg.to_dict(), 'world_size': world, 'device': str(device),
               'spread_calibration': model.spread_calibration, 'energy_calibration': model.energy_calibration,
               'data': {'source': train.source, 'sha256': data_hash, 'trajectories': len(train.obs),
                        'transitions': train.n_transitions, 'validation_trajectories': len(val.obs) if val else 0,
                        'dt': train.dt, 'obs_dim': train.obs_dim, 'action_dim': train.action_dim}}
    if out is not None and rank == 0:
        model.info['training'] = {'best_epoch': best_epoch, 'best_score': best_val, 'epochs': len(history)}
        model.save(out)
        (out / 'metrics.json').write_text(json.dumps(metrics, indent=2, default=float) + '\n')
    return metrics


@torch.no_grad()
def evaluate_windows(model: HamiltonianWorldModel, dataset: WindowDataset, batch_size: int = 256,
                     device: torch.device | str = 'cpu') -> float:
    """Mean normalised multi-step rollout MSE of the ensemble mean over ``dataset``'s windows."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total, count = 0.0, 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        obs = batch['obs']
        images = batch.get('images')
        frames0 = images[:, :model.cfg.n_frames] if images is not None and model.cfg.encoder in ('image', 'fused') \
            else None
        if model.cfg.obs_dim == 0:
            continue
        pred = model.predict(obs[:, 0], batch['actions'] if model.has_control else None, images=frames0,
                             horizon=obs.shape[1] - 1)
        err = (model.normalise_obs(pred.mean(0)) - model.normalise_obs(obs[:, 1:])) ** 2
        total += float(err.mean(dim=(1, 2)).sum())
        count += obs.shape[0]
    model.train()
    return total / max(count, 1)


@torch.no_grad()
def calibrate_spread(model: HamiltonianWorldModel, val: TrajectoryData, horizon: int = 100, nominal: float = 0.95,
                     max_windows: int = 512, batch_size: int = 128) -> dict[str, Any] | None:
    """Fit the ensemble's per-step-count spread calibration on validation trajectories.

    Rolls the model from windows of ``val`` (as long as the longest validation trajectory allows, at most
    ``horizon`` steps; starts a quarter of that apart, at most ``max_windows`` of them) and fits
    :func:`metrics.fit_spread_calibration` on the decoded observations. Use data the model was not trained on.

    Returns
    -------
    dict or None
        The ``spread_calibration`` entry, or None for a single model, a model without an observation decoder, or no
        usable window.
    """
    cfg = model.cfg
    if cfg.ensemble < 2 or cfg.obs_dim == 0:
        return None
    use_images = cfg.encoder in ('image', 'fused')
    history = cfg.n_frames - 1 if use_images and val.images is not None else 0
    steps = min(horizon, max(len(o) for o in val.obs) - 1 - history)
    if steps < 1:
        return None
    try:
        ds = WindowDataset(val, steps, max(1, steps // 4), cfg.n_frames, use_images)
    except DataError:
        return None
    picks = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), max_windows)).round().astype(int))
    was_training = model.training
    model.eval()
    members, targets = [], []
    for start in range(0, len(picks), batch_size):
        items = [ds[int(k)] for k in picks[start:start + batch_size]]
        obs = torch.stack([it['obs'] for it in items])
        acts = torch.stack([it['actions'] for it in items])
        frames = torch.stack([it['images'][:cfg.n_frames] for it in items]) if 'images' in items[0] else None
        pred = model.predict(obs[:, 0], acts if model.has_control else None, images=frames, horizon=steps)
        members.append(pred.double().numpy())
        targets.append(obs[:, 1:].double().numpy())
    model.train(was_training)
    cal = fit_spread_calibration(np.concatenate(members, 1), np.concatenate(targets), nominal)
    cal['info'].update({'data': 'validation trajectories', 'trajectories': len(val.obs), 'windows': int(len(picks)),
                        'horizon': steps})
    return cal


ENERGY_CALIBRATION_STEPS = (1, 2, 5, 10, 25, 50, 100)
MIN_CALIBRATION_WINDOWS = 10


@torch.no_grad()
def calibrate_energy(model: HamiltonianWorldModel, val: TrajectoryData,
                     steps: tuple[int, ...] = ENERGY_CALIBRATION_STEPS, nominal: float = 0.95
                     ) -> dict[str, Any] | None:
    """Fit how far the model's energy books miss on validation trajectories (the ``energy_calibration`` entry).

    For each recorded step the residual r = H(encode(x[i+1])) - H(step(encode(x[i]), u[i])) (member means for an
    ensemble) is what the validity monitor's energy balance accumulates. A model that encodes images is given the
    ``n_frames`` frames up to each step, so its residuals start once that many frames exist. Its mean is the bias; for
    each window length in ``steps`` that fits at least :data:`MIN_CALIBRATION_WINDOWS` times (windows a quarter of
    their length apart), the ``nominal`` quantile of |sum of r - bias x n| is the limit (made non-decreasing in n).
    Use data the model was not trained on.

    Returns
    -------
    dict or None
        The entry (see :class:`hamwm_ros.runtime.metadata.EnergyCalibration`), or None for validation data too short
        for any window, or image data missing for a model that encodes images.
    """
    cfg = model.cfg
    use_images = cfg.encoder in ('image', 'fused')
    if use_images and val.images is None:
        return None
    first = cfg.n_frames - 1 if use_images else 0       # the first step with a full frame history
    was_training = model.training
    model.eval()
    residuals = []
    for index, (obs, actions) in enumerate(zip(val.obs, val.actions)):
        if len(obs) - first < 2:
            continue
        x = torch.as_tensor(np.asarray(obs)[first:], dtype=torch.float32)
        u = torch.as_tensor(np.asarray(actions)[first:len(obs) - 1], dtype=torch.float32) if model.has_control \
            else None
        frames = None
        if use_images:
            video = np.asarray(val.images[index])
            frames = torch.as_tensor(np.stack([video[i - first:i + 1] for i in range(first, len(obs))]))
        z = model.encode(x if cfg.obs_dim else None, frames)
        following = model.step(z[..., :-1, :], u)
        observed, claimed = model.energy(z[..., 1:, :]), model.energy(following)
        if observed.dim() > 1:          # ensemble: the monitor judges the member mean
            observed, claimed = observed.mean(0), claimed.mean(0)
        residuals.append((observed.double() - claimed.double()).numpy())
    model.train(was_training)
    if not residuals:
        return None
    bias = float(np.mean(np.concatenate(residuals)))
    fitted, limits, windows = [], [], []
    for n in steps:
        stride = max(1, n // 4)
        sums = [np.convolve(r, np.ones(n), 'valid')[::stride] - bias * n for r in residuals if len(r) >= n]
        count = sum(len(s) for s in sums)
        if count < MIN_CALIBRATION_WINDOWS:
            continue
        fitted.append(int(n))
        limits.append(float(np.quantile(np.abs(np.concatenate(sums)), nominal)))
        windows.append(int(count))
    if not fitted:
        return None
    # A longer window never allows less: its few windows make a noisy quantile, and the monitor's window span varies.
    limits = np.maximum.accumulate(limits).tolist()
    return {'nominal': nominal, 'bias': bias, 'steps': fitted, 'limits': limits,
            'info': {'data': 'validation trajectories', 'trajectories': len(residuals), 'windows': windows,
                     'residual': 'H(encode(x[i+1])) - H(step(encode(x[i]), u[i]))'}}


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    w, _, h = text.lower().partition('x')
    return int(w), int(h)


def _indices(text: str) -> tuple[int, ...]:
    """'0,2' -> (0, 2) (argparse type; an empty string gives ())."""
    try:
        return tuple(int(v) for v in text.split(',') if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'expected comma-separated indices, got {text!r}') from err


def build_parser() -> argparse.ArgumentParser:
    """The ``hamwm train`` argument parser."""
    p = argparse.ArgumentParser(prog='hamwm train', description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--data', required=True, help='sim:<robot> | bag:<path>[,<path>...] | npz:<file>')
    p.add_argument('--out', required=True, help='output model directory')
    p.add_argument('--resume', action='store_true', help='continue from OUT/checkpoint.pt')
    g = p.add_argument_group('simulated data (sim:)')
    g.add_argument('--trajectories', type=int, default=64, help='simulated trajectories (exciting random inputs)')
    g.add_argument('--steps', type=int, default=200, help='control steps per trajectory')
    g.add_argument('--control-dt', type=float, default=0.02, help='s per control step, the model step dt')
    g.add_argument('--render', default=None, metavar='WxH', help='also render frames of this size')
    g.add_argument('--action-source', choices=ACTION_SOURCES, default='applied',
                   help="what the actions are: 'applied' (the effort acting on the joints) or 'feedforward' (an effort "
                        "added to a PD hold of the nominal posture, which then belongs to the learned plant: the "
                        "simulated humanoid's feed-forward, or a bag's commands to a driver that runs such a hold). "
                        "Saved in model.info; hamwm export writes it to metadata.json")
    g = p.add_argument_group('ROS 2 bags (bag:)')
    g.add_argument('--joint-topic', default='/joint_states', help='sensor_msgs/JointState topic')
    g.add_argument('--command-topic', default=None, help='Float64MultiArray effort commands (default: auto-detect)')
    g.add_argument('--command-joints', default=None, help='comma-separated joint of each command entry')
    g.add_argument('--joints', default=None, help='comma-separated model joint order (default: first message)')
    g.add_argument('--image-topic', default=None, help='sensor_msgs/Image topic for camera encoders (default: none)')
    g.add_argument('--image-size', default=None, metavar='WxH',
                   help='resize frames to this size (default: as recorded)')
    g.add_argument('--bag-dt', type=float, default=None, help='resampling period (default: median JointState period)')
    g = p.add_argument_group('model')
    g.add_argument('--latent-dim', type=int, default=None, help='size of q (and of p); default obs_dim / 2')
    g.add_argument('--encoder', choices=ENCODERS, default='mlp',
                   help='mlp: joint states; identity: observations are (q, p) already; configuration: q = the '
                        'normalised joint positions, p = M dq/dt (exact, needs --mass-matrix constant); image: '
                        'stacked camera frames; fused: frames and joint states')
    g.add_argument('--rest-momentum', choices=('free', 'zero'), default='free',
                   help='zero: the mlp/fused encoder maps zero joint velocity to p = 0 (a still robot claims no '
                        'motion, so no power)')
    g.add_argument('--hamiltonian', choices=HAMILTONIANS, default='separable',
                   help='separable: H = 1/2 p^T M(q)^-1 p + V(q); general: an MLP of (q, p)')
    g.add_argument('--integrator', choices=INTEGRATORS, default='leapfrog',
                   help='leapfrog (generalised Stormer-Verlet), midpoint (implicit), symplectic_euler (separable H '
                        'with a constant mass only)')
    g.add_argument('--mass-matrix', choices=('state', 'constant'), default='state',
                   help='M(q) or a constant M (constants make the MPPI predictor cheaper)')
    g.add_argument('--mass-param', choices=MASS_PARAMS, default='inverse',
                   help="how M(q) is parametrised: inverse (an MLP gives M^-1), kinematic (M = J J^T, J affine in "
                        "the q features: a planar mechanism's form, bounded all the way round --periodic angles) or "
                        'chain (that J restricted to a sliding base and absolute --periodic link angles, the '
                        "cart-pole's form; ModelConfig.mass_param)")
    g.add_argument('--input-map', choices=('state', 'constant'), default='state', help='G(q) or a constant G')
    g.add_argument('--damping-map', choices=('state', 'constant'), default='state', help='R(q) or a constant R')
    g.add_argument('--damping-param', choices=DAMPING_PARAMS, default='softplus',
                   help="damping parametrisation; 'square' can learn exactly zero damping (ModelConfig.damping_param)")
    g.add_argument('--ignorable', type=_indices, default=(), metavar='I,J',
                   help='indices into q that H does not depend on (a cart on a flat rail; ModelConfig.ignorable)')
    g.add_argument('--periodic', type=_indices, default=(), metavar='I,J',
                   help='indices into q of angles in radians, seen as (cos, sin) (use with --encoder identity, where q '
                        'holds the joint angles; ModelConfig.periodic)')
    g.add_argument('--hidden', type=int, default=64, help='width of every MLP')
    g.add_argument('--layers', type=int, default=2, help='hidden layers of every MLP')
    g.add_argument('--activation', choices=('tanh', 'softplus'), default='tanh', help='activation of every MLP')
    g.add_argument('--ensemble', type=int, default=1, help='ensemble members (mean and spread of predictions)')
    g.add_argument('--n-frames', type=int, default=2, help='consecutive frames the image encoder stacks')
    g.add_argument('--substeps', type=int, default=1, help='integrator substeps per model step')
    g.add_argument('--solver-iters', type=int, default=2, help='fixed-point iterations of the implicit integrators')
    g.add_argument('--no-dissipation', action='store_true', help='no dissipation term R (a lossless model)')
    g.add_argument('--no-control', action='store_true', help='no input term G u (an unforced model)')
    g.add_argument('--no-residual', action='store_true', help='no residual term r (structure only)')
    g = p.add_argument_group('training')
    defaults = TrainOptions()
    g.add_argument('--epochs', type=int, default=defaults.epochs, help='passes over the training windows')
    g.add_argument('--batch-size', type=int, default=defaults.batch_size, help='windows per optimiser step')
    g.add_argument('--lr', type=float, default=defaults.lr, help='Adam learning rate')
    g.add_argument('--weight-decay', type=float, default=defaults.weight_decay, help="Adam's L2 weight decay")
    g.add_argument('--horizon', type=int, default=defaults.horizon, help='rollout-loss horizon (steps)')
    g.add_argument('--stride', type=int, default=defaults.stride, help='step between training windows')
    g.add_argument('--val-fraction', type=float, default=defaults.val_fraction,
                   help='share of trajectories held out for validation (the best validation epoch is kept)')
    g.add_argument('--recon-weight', type=float, default=defaults.recon_weight,
                   help='weight of the decoded observations against the data')
    g.add_argument('--latent-weight', type=float, default=defaults.latent_weight,
                   help='weight of the rolled-out latent against the encoded later observations')
    g.add_argument('--derivative-weight', type=float, default=defaults.derivative_weight,
                   help='weight of the obs_dot loss (npz data with obs_dot, identity encoder)')
    g.add_argument('--image-weight', type=float, default=defaults.image_weight,
                   help='weight of the decoded frames against the data (camera encoders)')
    g.add_argument('--residual-weight', type=float, default=defaults.residual_weight,
                   help='L2 penalty on the residual term r')
    g.add_argument('--grad-clip', type=float, default=defaults.grad_clip, help='gradient norm clip (0: off)')
    g.add_argument('--batches-per-epoch', type=int, default=0, help='cap on batches per epoch (0: all)')
    g.add_argument('--no-bootstrap', action='store_true', help='train ensemble members on identical batches')
    g.add_argument('--no-calibration', action='store_true',
                   help='keep the raw ensemble spread and fit no energy-book calibration (nothing fitted on the '
                        'validation trajectories)')
    g.add_argument('--calibration-horizon', type=int, default=defaults.calibration_horizon,
                   help='longest rollout (steps) the spread calibration is fitted over')
    g.add_argument('--seed', type=int, default=0, help='seed for data, initialisation and batches')
    g.add_argument('--device', default='auto', help='auto (CUDA when present), cpu, cuda, cuda:1, ...')
    g.add_argument('--checkpoint-every', type=int, default=1, help='epochs between checkpoints')
    g.add_argument('--threads', type=int, default=1, help='torch CPU threads per process (0: torch default)')
    g.add_argument('--quiet', action='store_true', help='no progress output')
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hamwm train``; returns the exit code (2 on bad data or options)."""
    args = build_parser().parse_args(argv)
    rank = _distributed()[0]
    say = (lambda *a: print(*a, flush=True)) if (rank == 0 and not args.quiet) else (lambda *a: None)

    def split(text: str | None) -> list[str] | None:
        return [x.strip() for x in text.split(',') if x.strip()] if text else None

    bag_options = {'joint_topic': args.joint_topic, 'command_topic': args.command_topic,
                   'command_joints': split(args.command_joints), 'joints': split(args.joints),
                   'image_topic': args.image_topic, 'image_size': _parse_size(args.image_size), 'dt': args.bag_dt}
    try:
        data = load_data(args.data, seed=args.seed, sim_trajectories=args.trajectories, sim_steps=args.steps,
                         sim_control_dt=args.control_dt, render_size=_parse_size(args.render),
                         bag_options=bag_options, sim_action_source=args.action_source)
        say(f'data {data.source}: {len(data.obs)} trajectories, {data.n_transitions} transitions, dt {data.dt:g} s, '
            f'obs {data.obs_dim}, actions {data.action_dim}')
        opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            weight_decay=args.weight_decay, horizon=args.horizon, stride=args.stride,
                            val_fraction=args.val_fraction, recon_weight=args.recon_weight,
                            latent_weight=args.latent_weight, derivative_weight=args.derivative_weight,
                            image_weight=args.image_weight, residual_weight=args.residual_weight,
                            grad_clip=args.grad_clip, batches_per_epoch=args.batches_per_epoch,
                            bootstrap=not args.no_bootstrap, calibrate=not args.no_calibration,
                            calibration_horizon=args.calibration_horizon, seed=args.seed, device=args.device,
                            checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                            threads=args.threads)
        train, val = data.split(opts.val_fraction, opts.horizon + args.n_frames, seed=opts.seed)
        torch.manual_seed(opts.seed)
        model = build_model(train, {
            'latent_dim': args.latent_dim, 'encoder': args.encoder, 'hamiltonian': args.hamiltonian,
            'integrator': args.integrator, 'mass_matrix': args.mass_matrix, 'mass_param': args.mass_param,
            'input_map': args.input_map,
            'damping_map': args.damping_map, 'damping_param': args.damping_param,
            'hidden': args.hidden, 'layers': args.layers, 'activation': args.activation, 'ensemble': args.ensemble,
            'n_frames': args.n_frames, 'substeps': args.substeps, 'solver_iters': args.solver_iters,
            'dissipation': not args.no_dissipation, 'control': not args.no_control,
            'residual': not args.no_residual, 'ignorable': args.ignorable, 'periodic': args.periodic,
            'rest_momentum': args.rest_momentum})
        if args.action_source != 'applied':     # absent means 'applied' (models saved before it existed)
            model.info['action_source'] = args.action_source
        metrics = fit(model, train, val, opts, args.out, resume=args.resume, log=say)
    except (DataError, ValueError) as err:
        print(f'hamwm train: {err}', file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    say(f'model written to {args.out} (best {metrics["best_score_kind"]} {metrics["best_score"]:.4g} at epoch '
        f'{metrics["best_epoch"] + 1})')
    say(f'next: hamwm export {args.out} --out models/<name>   (ONNX + metadata for the nodes)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
