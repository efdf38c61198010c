"""Savitzky-Golay smoothing of a planned action sequence, as one precomputed matrix.

The filter fits a polynomial of ``order`` over a ``window`` centred on each step. Ends are padded with the previous
command (before the first step, so the plan joins the command already applied) and with the last planned action
(after the end). Both the padding and the filter are linear, so the whole smoother is a fixed (H, H + 1) matrix
applied to ``[previous; sequence]``; a per-tick smoothing is one small matrix product.
"""

from __future__ import annotations

import numpy as np


def savgol_coefficients(window: int, order: int) -> np.ndarray:
    """(window,) weights of the centre-point Savitzky-Golay estimate.

    Raises
    ------
    ValueError
        If ``window`` is not odd and >= 3 or ``order`` is not in [0, window).
    """
    if window < 3 or window % 2 == 0:
        raise ValueError(f'window must be odd and >= 3, got {window}')
    if not 0 <= order < window:
        raise ValueError(f'order must be in [0, {window}), got {order}')
    half = window // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    vandermonde = offsets[:, None] ** np.arange(order + 1)[None, :]
    # Row 0 of the pseudo-inverse evaluates the fitted polynomial at offset 0.
    return np.linalg.pinv(vandermonde)[0]


class SequenceSmoother:
    """Savitzky-Golay smoother of (H, m) sequences with previous-command padding.

    Parameters
    ----------
    horizon
        Sequence length H.
    window, order
        Filter window (odd) and polynomial order.

    Raises
    ------
    ValueError
        If ``horizon`` < 1 or the window/order are invalid.
    """

    def __init__(self, horizon: int, window: int, order: int) -> None:
        if horizon < 1:
            raise ValueError(f'horizon must be >= 1, got {horizon}')
        coeffs = savgol_coefficients(window, order)
        half = window // 2
        matrix = np.zeros((horizon, horizon + 1), dtype=np.float64)
        for t in range(horizon):
            for j, c in enumerate(coeffs):
                padded = t + j  # index into [prev] * half + sequence + [last] * half
                source = 0 if padded < half else min(padded - half + 1, horizon)
                matrix[t, source] += c
        self.matrix = matrix.astype(np.float32)
        self._stacked = np.empty((horizon + 1, 1), dtype=np.float32)

    def __call__(self, sequence: np.ndarray, previous: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Smoothed copy of ``sequence`` (H, m), joined to ``previous`` (m,); writes into ``out`` when given."""
        if self._stacked.shape[1] != sequence.shape[1]:
            self._stacked = np.empty((sequence.shape[0] + 1, sequence.shape[1]), dtype=np.float32)
        self._stacked[0] = previous
        self._stacked[1:] = sequence
        return np.matmul(self.matrix, self._stacked, out=out)
