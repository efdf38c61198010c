"""Map named joint arrays (sensor_msgs/JointState, JointTrajectory, model metadata) onto a fixed joint order.

ROS publishers may send joints in any order, with extra joints, or with some missing. Everything downstream works on
arrays in one model order, so the mapping is computed once per distinct name list and reused (the hot path then is a
single fancy-index). Pure numpy, no rclpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class JointMapError(ValueError):
    """A message's joints cannot be mapped onto the expected order."""


class JointMap:
    """Reorders named arrays into ``target_names`` order.

    Parameters
    ----------
    target_names
        Joint names in the order the consumer needs (a model's or a controller's ``joints`` parameter).

    Raises
    ------
    JointMapError
        If ``target_names`` is empty or repeats a name.
    """

    def __init__(self, target_names: Sequence[str]) -> None:
        names = list(target_names)
        if not names:
            raise JointMapError('no target joint names given')
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise JointMapError(f'target joint names repeat: {duplicates}')
        self.target_names: tuple[str, ...] = tuple(names)
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.target_names)

    def indices(self, source_names: Sequence[str]) -> np.ndarray:
        """Index array ``idx`` such that ``source_array[idx]`` is in target order.

        Extra source joints are ignored. Cached per distinct source name tuple.

        Raises
        ------
        JointMapError
            If a target joint is missing from ``source_names`` or a source name repeats.
        """
        key = tuple(source_names)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        position = {}
        for i, name in enumerate(key):
            if name in position:
                raise JointMapError(f"joint '{name}' appears twice in the message")
            position[name] = i
        missing = [n for n in self.target_names if n not in position]
        if missing:
            raise JointMapError(f'missing joints: {missing}')
        idx = np.fromiter((position[n] for n in self.target_names), dtype=np.intp, count=len(self.target_names))
        if len(self._cache) > 64:  # a publisher that changes its name list every message must not grow memory
            self._cache.clear()
        self._cache[key] = idx
        return idx

    def reorder(self, source_names: Sequence[str], values: Sequence[float] | np.ndarray, *,
                field: str = 'values', allow_empty: bool = False) -> np.ndarray | None:
        """Return ``values`` (one per source name) in target order as float64.

        Parameters
        ----------
        source_names
            Names as the message gives them.
        values
            One value per source name, or empty when the field is unset and ``allow_empty`` is true.
        field
            Field name used in error messages (``position``, ``velocity``, ...).
        allow_empty
            Accept an empty array (JointState leaves unused fields empty) and return None for it.

        Raises
        ------
        JointMapError
            On missing joints, repeated names, a length mismatch, or non-finite values.
        """
        array = np.asarray(values, dtype=np.float64)
        if array.size == 0 and allow_empty:
            return None
        if array.ndim != 1 or array.shape[0] != len(source_names):
            raise JointMapError(f'{field} has {array.size} entries for {len(source_names)} joint names')
        out = array[self.indices(source_names)]
        if not np.all(np.isfinite(out)):
            bad = [self.target_names[i] for i in np.flatnonzero(~np.isfinite(out))]
            raise JointMapError(f'{field} is not finite for joints {bad}')
        return out
