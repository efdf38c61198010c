"""Report folder of the closed-loop demo: PNG plots (matplotlib, imported lazily, Agg backend) and a JSON of figures.

Plots: predicted vs actual joints (the plan's prediction made at a tick against what then happened), energy
(physical, from MuJoCo, and the world model's Hamiltonian), ZMP against the support polygon and MuJoCo's centre of
pressure during a push, and loop timing histograms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use('Agg')  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def to_jsonable(value: Any) -> Any:
    """Numbers, lists and dicts only (numpy scalars and arrays converted; NaN/Inf become None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def write_json(figures: dict[str, Any], path: Path) -> Path:
    """Write the figures as indented JSON (strict: no NaN literals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(figures), indent=2, allow_nan=False) + '\n')
    return path


def plot_predictions(episodes: dict[str, Any], out: Path, every_s: float = 1.0) -> Path:
    """Actual joint positions with the H-step predictions made every ``every_s`` seconds, one panel per robot.

    ``episodes`` maps a title to an object with ``time``, ``position``, ``predicted`` and ``joint_names`` (an
    :class:`~hamwm_ros.closedloop.swingup.EpisodeLog`, or a dict with those keys for the humanoid).
    """
    plt = _plt()
    fig, axes = plt.subplots(len(episodes), 1, figsize=(9, 3.2 * max(1, len(episodes))), squeeze=False)
    for ax, (title, ep) in zip(axes[:, 0], episodes.items()):
        get = ep.get if isinstance(ep, dict) else lambda k, e=ep: getattr(e, k)
        t, pos, pred = np.asarray(get('time')), np.asarray(get('position')), np.asarray(get('predicted'))
        names = list(get('joint_names'))
        joints = get('plot_joints') if isinstance(ep, dict) and 'plot_joints' in ep else range(len(names))
        dt = float(t[1] - t[0]) if len(t) > 1 else 0.02
        stride = max(1, int(round(every_s / dt)))
        for c, j in enumerate(joints):
            color = f'C{c}'
            ax.plot(t, pos[:, j], color=color, lw=1.5, label=f'{names[j]} actual')
            for k in range(0, len(t), stride):
                if pred.ndim == 3 and np.all(np.isfinite(pred[k, :, j])):
                    steps = t[k] + dt * np.arange(1, pred.shape[1] + 1)
                    ax.plot(steps, pred[k, :, j], color=color, lw=1.0, ls='--', alpha=0.8,
                            label=f'{names[j]} predicted' if k == 0 else None)
        ax.set_title(title)
        ax.set_xlabel('time [s]')
        ax.set_ylabel('position [rad | m]')
        ax.legend(fontsize=7, loc='best')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / 'predicted_vs_actual.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_energy(episodes: dict[str, Any], targets: dict[str, float], out: Path) -> Path:
    """Physical energy (MuJoCo) per episode with the upright target, and the model's Hamiltonian on a second axis."""
    plt = _plt()
    fig, axes = plt.subplots(len(episodes), 1, figsize=(9, 3.0 * max(1, len(episodes))), squeeze=False)
    for ax, (title, ep) in zip(axes[:, 0], episodes.items()):
        ax.plot(ep.time, ep.energy, color='C0', label='physical energy (MuJoCo)')
        if title in targets:
            ax.axhline(targets[title], color='C0', ls=':', label='upright at rest')
        ax.set_ylabel('energy [J]')
        ax.set_xlabel('time [s]')
        ax2 = ax.twinx()
        ax2.plot(ep.time, ep.model_energy, color='C3', lw=1.0, alpha=0.8, label='model Hamiltonian (1 step ahead)')
        ax2.set_ylabel('model H [model units]', color='C3')
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc='lower right')
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / 'energy.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_zmp(traces: dict[str, dict[str, Any]], out: Path) -> Path:
    """ZMP (Pinocchio) and contact CoP (MuJoCo) in the ground plane with the support polygon, per controller."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(traces), figsize=(5.5 * max(1, len(traces)), 4.8), squeeze=False)
    for ax, (title, tr) in zip(axes[0], traces.items()):
        polys = [p for p in tr['polygon'] if len(p) >= 3]
        if polys:
            poly = np.vstack([polys[0], polys[0][:1]])
            ax.fill(poly[:, 0], poly[:, 1], color='0.85', label='support polygon (start)')
        zmp, cop, com = np.asarray(tr['zmp']), np.asarray(tr['cop']), np.asarray(tr['com'])
        ax.plot(cop[:, 0], cop[:, 1], '.', ms=3, color='C2', label='contact CoP (MuJoCo)')
        ax.plot(zmp[:, 0], zmp[:, 1], '-', lw=1, color='C3', label='ZMP (Pinocchio, finite-diff accel)')
        ax.plot(com[:, 0], com[:, 1], '-', lw=1.5, color='C0', label='CoM ground projection')
        ax.set_aspect('equal')
        ax.set_xlim(-0.25, 0.25)
        ax.set_ylim(-0.25, 0.25)
        ax.set_xlabel('x [m]')
        ax.set_ylabel('y [m]')
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc='upper right')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / 'zmp_support_polygon.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timing(samples: dict[str, np.ndarray], out: Path) -> Path:
    """Histograms (ms) of loop timings, one panel per series."""
    plt = _plt()
    series = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    series = {k: v[np.isfinite(v)] for k, v in series.items() if np.isfinite(v).any()}
    fig, axes = plt.subplots(1, max(1, len(series)), figsize=(4.2 * max(1, len(series)), 3.4), squeeze=False)
    for ax, (title, v) in zip(axes[0], series.items()):
        ax.hist(v, bins=40, color='C0', alpha=0.8)
        p50, p99 = np.percentile(v, [50, 99])
        ax.axvline(p50, color='C1', label=f'p50 {p50:.2f} ms')
        ax.axvline(p99, color='C3', label=f'p99 {p99:.2f} ms')
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('ms')
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / 'loop_timing.png'
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ['plot_energy', 'plot_predictions', 'plot_timing', 'plot_zmp', 'to_jsonable', 'write_json']
