"""Initial joint states of seeded episodes, shared by the in-process swing-up loop and ``sim_node``.

The same seed gives the same start in both, so an episode run over ROS starts where the in-process one does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def initial_joint_state(n: int, seed: int | None = None, noise: float = 0.0,
                        positions: Sequence[float] | None = None,
                        velocities: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions and velocities: a base state plus uniform noise drawn from ``seed``.

    Parameters
    ----------
    n
        Number of joints.
    seed
        Seed of the noise; None (or a negative seed) adds none.
    noise
        Half-width of the uniform noise (rad or m on positions, rad/s or m/s on velocities); positions are drawn
        first, then velocities, from one generator.
    positions, velocities
        (n,) base state; None or empty: zeros.

    Returns
    -------
    (q, v)
        Two (n,) arrays.

    Raises
    ------
    ValueError
        If a base state has the wrong size or is not finite, or ``noise`` is negative or not finite.
    """
    def base(values: Sequence[float] | None, name: str) -> np.ndarray:
        if values is None or len(values) == 0:
            return np.zeros(n)
        array = np.asarray(values, dtype=np.float64).ravel()
        if array.shape != (n,) or not np.all(np.isfinite(array)):
            raise ValueError(f'{name} needs {n} finite values (one per joint), got {list(values)}')
        return array

    q, v = base(positions, 'initial positions'), base(velocities, 'initial velocities')
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f'initial noise must be finite and >= 0, got {noise}')
    if seed is None or seed < 0 or noise == 0:
        return q, v
    rng = np.random.default_rng(int(seed))
    return q + rng.uniform(-noise, noise, n), v + rng.uniform(-noise, noise, n)


__all__ = ['initial_joint_state']
