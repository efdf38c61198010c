"""Savitzky-Golay smoother: exact on polynomials, joins the previous command, damps noise."""

import numpy as np
import pytest

from hamwm_ros.mpc.smoothing import SequenceSmoother, savgol_coefficients


def test_coefficients_sum_to_one_and_reproduce_polynomials_of_the_order():
    c = savgol_coefficients(7, 2)
    assert c.sum() == pytest.approx(1.0)
    x = np.arange(-3, 4, dtype=float)
    assert c @ (0.5 * x**2 - x + 2.0) == pytest.approx(2.0)


def test_constant_sequence_equal_to_previous_is_unchanged():
    smooth = SequenceSmoother(10, 5, 2)
    seq = np.full((10, 2), 0.7, dtype=np.float32)
    np.testing.assert_allclose(smooth(seq, np.array([0.7, 0.7], np.float32)), seq, atol=1e-6)


def test_interior_of_a_quadratic_is_exact():
    smooth = SequenceSmoother(20, 5, 2)
    t = np.arange(20, dtype=np.float32)
    seq = (0.01 * t**2 - 0.1 * t)[:, None].astype(np.float32)
    out = smooth(seq, seq[0])
    np.testing.assert_allclose(out[2:-2], seq[2:-2], atol=1e-4)


def test_noise_is_reduced():
    rng = np.random.default_rng(0)
    seq = rng.standard_normal((64, 1)).astype(np.float32)
    out = SequenceSmoother(64, 9, 2)(seq, np.zeros(1, np.float32))
    assert np.diff(out[:, 0]).std() < 0.5 * np.diff(seq[:, 0]).std()


def test_bad_window_refused():
    with pytest.raises(ValueError, match='odd'):
        savgol_coefficients(4, 2)
    with pytest.raises(ValueError, match='order'):
        savgol_coefficients(5, 5)
    with pytest.raises(ValueError, match='horizon'):
        SequenceSmoother(0, 5, 2)
