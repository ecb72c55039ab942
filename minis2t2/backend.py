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
import os
import sys
import types

import numpy as np
import scipy.special

from .errors import InputError


def array_module(x) -> types.ModuleType:
    """The array library that owns ``x``: numpy for NumPy arrays and Python numbers, else the
    module that defines x's type (cupy for cupy.ndarray)."""
    package = type(x).__module__.split(".")[0]
    if package in ("numpy", "builtins"):
        return np
    if package.startswith("cupy"):
        import cupy

        return cupy
    return sys.modules[package]


def erf(x):
    """Elementwise error function on the array's own device.

    scipy.special.erf runs on one thread; on the CPU large arrays are split across the cores
    (ufuncs release the GIL), as BLAS spreads the matmuls. The values are scipy's exactly. On 2
    cores this took the GELUs of wav2vec2-large's encoder layers on 10 s of audio from 0.97 s to 0.58 s."""
    xp = array_module(x)
    if xp is np:
        if x.size < 1 << 16:
            return scipy.special.erf(x)
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        pieces = zip(np.array_split(x.reshape(-1), CPU_THREADS), np.array_split(out.reshape(-1), CPU_THREADS))
        list(_thread_pool().map(lambda piece: scipy.special.erf(piece[0], out=piece[1]), pieces))
        return out
    if hasattr(xp, "erf"):  # an array module that has its own
        return xp.erf(x)
    import cupyx.scipy.special

    return cupyx.scipy.special.erf(x)


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
        return cupy
    raise InputError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def to_numpy(x) -> np.ndarray:
    """Bring an array back to host memory as a NumPy array."""
    if array_module(x) is np:
        return np.asarray(x)
    return x.get()
