"""backend.erf: float32 by Abramowitz & Stegun 7.1.26 within its stated error, float64 exact."""

import numpy as np
import scipy.special

from minis2t2.backend import PIECE, erf


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
    x = np.random.default_rng(0).standard_normal((3, 5 * PIECE + 7), dtype=np.float32)
    y = erf(x[:, ::2])  # a strided view, more than 4 pieces: threaded
    assert y.shape == (3, (5 * PIECE + 7 + 1) // 2) and y.dtype == np.float32
    np.testing.assert_array_equal(y[1], erf(np.ascontiguousarray(x[1, ::2])))


def test_float64_erf_is_scipys_exactly():
    x = np.random.default_rng(1).standard_normal(9 * PIECE + 3) * 3
    np.testing.assert_array_equal(erf(x), scipy.special.erf(x))
    assert erf(np.float64(0.5)).shape == () and erf(np.float64(0.5)) == scipy.special.erf(0.5)
    assert erf(np.float32(0.5)).shape == ()


def test_importing_minis2t2_first_lets_openblas_threads_sleep():
    """minis2t2/__init__.py sets OPENBLAS_THREAD_TIMEOUT=4 before NumPy loads OpenBLAS (unless the
    user set it): OpenBLAS reads it once, at load, so this runs in a fresh interpreter and asks the
    loaded library what it read. A value the user chose is kept."""
    import os
    import subprocess
    import sys

    probe = ("import minis2t2, ctypes, numpy\n"
             "lib = next(line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line.lower())\n"
             "print(ctypes.CDLL(lib).openblas_thread_timeout())")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert numpy_blas() == "scipy-openblas", "this check reads OpenBLAS's setting; NumPy here uses another BLAS"
    read = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert read.stdout.strip() == "4"
    env["OPENBLAS_THREAD_TIMEOUT"] = "9"
    read = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert read.stdout.strip() == "9"


def numpy_blas() -> str:
    return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]


def test_pieces_and_row_shares_give_the_plain_forms_numbers(monkeypatch):
    """gelu and gelu_backward run large float32 arrays in cache-sized pieces on every core
    (backend.elementwise), layer_norm and its backward in one share of rows per core
    (backend.rowwise): elementwise work gives the same bits as the plain call (``__wrapped__``),
    per-row work the same numbers to float32 rounding: layer norm's row means are matrix-vector
    products (layers.row_mean), whose BLAS kernel adds a row's numbers in an order that depends on
    how many rows it is given; its dγ and dβ, sums over all rows, add in another order too."""
    from minis2t2 import backend, layers
    from minis2t2.weights import Tree

    monkeypatch.setattr(backend, "CPU_THREADS", 3)  # three shares, whatever this machine has
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2 * PIECE + 11, 5), dtype=np.float32)[:, ::2] * 3  # strided, > 4 pieces
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    np.testing.assert_array_equal(layers.gelu(x), layers.gelu.__wrapped__(x))
    np.testing.assert_array_equal(layers.gelu_backward(x, dy), layers.gelu_backward.__wrapped__(x, dy))
    p = Tree(weight=rng.standard_normal(5, dtype=np.float32), bias=rng.standard_normal(5, dtype=np.float32))
    # a row mean of unit-scale numbers rounds differently by ~1e-7; outputs are within a few times 1e-6 in scale
    np.testing.assert_allclose(layers.layer_norm(p, x, 1e-5), layers.layer_norm.__wrapped__(p, x, 1e-5), atol=1e-5)
    dx, grads = layers.layer_norm_backward(p, x, dy, eps=1e-5)
    plain_dx, plain_grads = layers.layer_norm_backward.__wrapped__(p, x, dy, eps=1e-5)
    np.testing.assert_allclose(dx, plain_dx, atol=1e-5)
    for name in ("weight", "bias"):  # ~200 k rows of unit scale summed (totals ~1e3): orders differ ~1e-5 relative
        np.testing.assert_allclose(grads[name], plain_grads[name], rtol=1e-4, atol=1e-2)
    assert dx.shape == x.shape and grads["weight"].shape == (5,)
    small = x[:1, :10]  # below the threshold: the plain call itself
    np.testing.assert_array_equal(layers.gelu(small), layers.gelu.__wrapped__(small))
