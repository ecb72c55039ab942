"""backend.erf: float32 by Abramowitz & Stegun 7.1.26 within its stated error, float64 exact."""

import numpy as np
import scipy.special

from minis2t2.backend import ERF_PIECE, erf


def test_float32_erf_is_within_its_stated_error():
    """6.5e-7 is the measured max abs error against float64 erf; 7e-7 leaves rounding room."""
    x = np.linspace(-8, 8, 2_000_001, dtype=np.float32)  # 2 M points: split across threads and pieces
    exact = scipy.special.erf(x.astype(np.float64))
    assert np.abs(erf(x) - exact).max() < 7e-7
    tiny = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-7], np.float32)
    assert np.abs(erf(tiny) - scipy.special.erf(tiny.astype(np.float64))).max() < 7e-7
    assert np.signbit(erf(np.array([-0.0], np.float32)))[0]


def test_float32_erf_special_values_and_shapes():
    special = erf(np.array([np.inf, -np.inf, np.nan, 30.0, -30.0], np.float32))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2]) and special[3] == 1 and special[4] == -1
    x = np.random.default_rng(0).standard_normal((3, 5 * ERF_PIECE + 7), dtype=np.float32)
    y = erf(x[:, ::2])  # a strided view, more than 4 pieces: threaded
    assert y.shape == (3, (5 * ERF_PIECE + 7 + 1) // 2) and y.dtype == np.float32
    np.testing.assert_array_equal(y[1], erf(np.ascontiguousarray(x[1, ::2])))


def test_float64_erf_is_scipys_exactly():
    x = np.random.default_rng(1).standard_normal(9 * ERF_PIECE + 3) * 3
    np.testing.assert_array_equal(erf(x), scipy.special.erf(x))
    assert erf(np.float64(0.5)).shape == () and erf(np.float64(0.5)) == scipy.special.erf(0.5)
    assert erf(np.float32(0.5)).shape == ()
