"""The one seam between layer code and the array library.

Layer code never names ``numpy`` on the hot path: it asks ``array_module(x)`` for the
module that owns its input and uses that. Weights are placed on a device once, at load
time (``device_module`` picks the module, ``xp.asarray`` moves them); afterwards every array
flowing through the model lives there, and ``to_numpy`` is the only way back to the host.
NumPy is the default and the reference; CuPy is picked up when arrays are CuPy arrays
(``tests/strict_xp.py`` stands in for it on machines without a GPU).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import math
import os
import sys
import types

import numpy as np
import scipy.special

from .errors import InputError


def array_module(x) -> types.ModuleType:
    """The array library that owns ``x``: numpy for NumPy arrays and Python numbers, cupy for
    cupy.ndarray (defined in cupy._core), else the module that defines x's type (a stand-in such as
    tests/strict_xp.py)."""
    module = type(x).__module__
    package = module.split(".")[0]
    if package in ("numpy", "builtins"):
        return np
    if package.startswith("cupy"):
        import cupy

        return cupy
    return sys.modules[module]


def erf(x):
    """Elementwise error function on the array's own device.

    Plain form: scipy's exact erf. One exception, for speed: a float32 array on the CPU goes to
    ``erf_float32_fast`` (an approximation, at most 6.5e-7 from the exact erf; tests/test_backend.py
    holds the two together). Other devices use their own erf.
    """
    xp = array_module(x)
    if xp is np:
        if x.dtype == np.float32:
            return erf_float32_fast(x)
        return scipy.special.erf(x)
    if hasattr(xp, "erf"):  # an array module that has its own
        return xp.erf(x)
    import cupyx.scipy.special

    return cupyx.scipy.special.erf(x)


def erf_float32_fast(x: np.ndarray) -> np.ndarray:
    """erf of a float32 array by ``erf_float32`` (A&S 7.1.26, 5x faster than scipy's float32 erf),
    in cache-sized pieces across the cores (``in_pieces``)."""
    return in_pieces(lambda piece: erf_float32(piece, out=np.empty_like(piece)), x)


def elementwise(fn):
    """Decorator for a function of same-shape arrays whose every output element depends on the
    inputs' same element alone (GELU and its derivative): float32 NumPy arrays of more than one
    PIECE go through it ``in_pieces``, the same numbers as one call on the whole arrays; anything
    else (float64, CuPy, one piece or less, broadcasting shapes) gets the plain call.
    ``fn.__wrapped__`` is the plain function, which tests hold the pieces against."""

    @functools.wraps(fn)
    def run(*arrays):
        first = arrays[0]
        if (array_module(first) is not np or first.dtype != np.float32 or first.size <= PIECE
                or any(array_module(a) is not np or a.shape != first.shape for a in arrays)):
            return fn(*arrays)
        return in_pieces(fn, *arrays)

    return run


def in_pieces(fn, *arrays: np.ndarray):
    """fn on same-shape NumPy arrays, PIECE elements at a time, written into output arrays of
    their shape; arrays of 4 pieces or more split across the cores as BLAS spreads the matmuls
    (ufuncs release the GIL). fn's temporaries stay piece-sized (in cache, and a fixed amount of
    memory however long the array). fn must be elementwise; it may return one array or a tuple
    of them (``layers.gelu_and_slope``).
    -> fn(*arrays), the same numbers as one call."""
    flat = [np.require(a, requirements="C").reshape(-1) for a in arrays]  # contiguous (0-d stays 0-d)
    size = flat[0].size
    first = fn(*(a[:PIECE] for a in flat))  # the first piece says how many outputs, and their dtype
    several = isinstance(first, tuple)

    def outputs(result) -> tuple:  # fn's result as a tuple of arrays, one output or several
        return result if several else (result,)

    outs = [np.empty(arrays[0].shape, dtype=piece.dtype) for piece in outputs(first)]
    outs_flat = [out.reshape(-1) for out in outs]

    def run(start_stop):  # one core's share, a piece at a time
        start, stop = start_stop
        for begin in range(start, stop, PIECE):
            end = min(begin + PIECE, stop)
            result = fn(*(a[begin:end] for a in flat))
            for out_flat, piece in zip(outs_flat, outputs(result)):
                out_flat[begin:end] = piece

    for out_flat, piece in zip(outs_flat, outputs(first)):
        out_flat[:PIECE] = piece
    if size < 5 * PIECE:
        run((PIECE, size))
    else:
        bounds = PIECE + np.linspace(0, size - PIECE, CPU_THREADS + 1).astype(int)
        list(_thread_pool().map(run, itertools.pairwise(bounds)))
    return tuple(outs) if several else outs[0]


def rowwise(fn):
    """Decorator for a function that treats each row (the last axis) of its arrays on its own,
    apart from sums over rows that it returns in a dict (layer norm and its backward, whose dγ
    and dβ sum over every row). NumPy's loops run on one core and make whole-array temporaries;
    float32 NumPy arrays of more than one PIECE here go through fn a block of rows at a time
    (about a PIECE of numbers), written into one output array, the blocks shared across the
    cores (ufuncs release the GIL); dict entries are summed over the blocks. The same numbers as
    the plain call (``fn.__wrapped__``), except that those sums add in another order; memory
    beyond the output stays block-sized however long the array. Arrays of the first array's shape
    are cut; anything else (weights, eps, keywords) goes to every block."""

    @functools.wraps(fn)
    def run(*args, **options):
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        first = arrays[0] if arrays else None
        if (first is None or first.dtype != np.float32 or first.size <= PIECE
                or any(array_module(a) is not np for a in args if hasattr(a, "shape"))):
            return fn(*args, **options)
        return in_row_blocks(fn, first.shape, args, options)

    return run


def in_row_blocks(fn, shape: tuple, args: tuple, options: dict):
    """``rowwise``'s work: fn on blocks of rows of the args of this ``shape`` -> fn's result for
    all rows (an array, or an (array, {name: sum}) pair)."""
    C = shape[-1]
    rows = math.prod(shape[:-1])
    block = max(1, PIECE // C)  # rows per block

    def call(start: int, stop: int):
        return fn(*(a.reshape(-1, C)[start:stop] if isinstance(a, np.ndarray) and a.shape == shape else a
                    for a in args), **options)

    first = call(0, block)  # the first block's result says the output's width and dtype
    first_rows = first[0] if isinstance(first, tuple) else first
    out = np.empty((rows, first_rows.shape[-1]), dtype=first_rows.dtype)
    out[:block] = first_rows

    def run(start_stop):  # one core's share of the remaining rows, a block at a time -> its sums
        start, stop = start_stop
        sums = {}
        for begin in range(start, stop, block):
            result = call(begin, min(begin + block, stop))
            if isinstance(result, tuple):
                out[begin : begin + len(result[0])] = result[0]
                sums = {name: sums.get(name, 0) + value for name, value in result[1].items()}
            else:
                out[begin : begin + len(result)] = result
        return sums

    remaining = rows - block
    threads = CPU_THREADS if remaining >= 4 * block else 1
    bounds = block + np.linspace(0, remaining, threads + 1).astype(int)
    shares = list(_thread_pool().map(run, itertools.pairwise(bounds))) if threads > 1 else [run((block, rows))]
    out = out.reshape(shape[:-1] + (out.shape[-1],))
    if isinstance(first, tuple):  # (rows, {name: sum over rows})
        return out, {name: value + sum(share[name] for share in shares if name in share)
                     for name, value in first[1].items()}
    return out


PIECE = 1 << 16  # elements per piece of work: 256 KB of float32, so its temporaries stay in cache

# Abramowitz & Stegun, Handbook of Mathematical Functions (1964), formula 7.1.26, for x >= 0:
# erf(x) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-x^2), t = 1 / (1 + p x); |error| <= 1.5e-7.
AS_P = 0.3275911
AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)  # a1 .. a5


def erf_float32(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """erf of a float32 array by A&S 7.1.26, in place in ``out`` and one scratch array.

    Measured against float64 erf on 20 M points in [-6, 6]: max abs error 6.5e-7 (the formula's
    1.5e-7 plus float32 rounding, largest near 0, where 1 - poly * exp(-x^2) cancels); GELU
    multiplies it by x / 2. ~5 ns an element on one core against scipy's 26 for float32.
    Odd symmetry gives x < 0.
    """
    a = np.abs(x)  # |x|, later exp(-x^2)
    t = np.multiply(a, np.float32(AS_P), out=out)
    t += 1
    np.reciprocal(t, out=t)  # t = 1 / (1 + p|x|)
    poly = np.empty_like(t)
    np.multiply(t, np.float32(AS_A[4]), out=poly)
    for coefficient in reversed(AS_A[:4]):  # Horner: poly = t (a1 + t (a2 + ...))
        poly += np.float32(coefficient)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)  # exp(-x^2)
    np.multiply(poly, a, out=out)
    np.subtract(1, out, out=out)
    return np.copysign(out, x, out=out)


CPU_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One pool for the process, made on first use (nothing runs at import time)."""
    return concurrent.futures.ThreadPoolExecutor(CPU_THREADS)


def device_module(device: str) -> types.ModuleType:
    """The array module for a device name: "cpu" -> numpy, "cuda" -> cupy."""
    if device == "cpu":
        return np
    if device == "cuda":
        try:
            import cupy
        except ImportError:
            raise InputError("device='cuda' needs CuPy: pip install -e \".[cuda]\" (or the cupy-cuda12x / "
                             "cupy-cuda13x wheel that matches your CUDA)") from None
        try:  # CuPy installs without a GPU; the first call that needs one says so
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDARuntimeError, a missing driver library, ...
            raise InputError(f"device='cuda': CuPy is installed but finds no usable GPU ({type(e).__name__}: "
                             f"{str(e)[:120]}); use device='cpu'") from e
        if count < 1:
            raise InputError("device='cuda': CuPy is installed but finds no GPU; use device='cpu'")
        return cupy
    raise InputError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def to_numpy(x) -> np.ndarray:
    """Bring an array back to host memory as a NumPy array."""
    if array_module(x) is np:
        return np.asarray(x)
    return x.get()
