"""The one seam between layer code and the array library.

Layer code never names ``numpy`` on the hot path: it asks ``array_module(x)`` for the
module that owns its input and uses that. Weights are placed on a device once, at load
time, by ``to_device``; afterwards every array flowing through the model lives there.
NumPy is the default and the reference; CuPy is picked up when arrays are CuPy arrays.
"""

from __future__ import annotations

import types

import numpy as np
import scipy.special


def array_module(x) -> types.ModuleType:
    """The array library that owns ``x`` (numpy, or cupy for cupy arrays)."""
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def erf(x):
    """Elementwise error function on the array's own device."""
    if array_module(x) is np:
        return scipy.special.erf(x)
    import cupyx.scipy.special

    return cupyx.scipy.special.erf(x)


def device_module(device: str) -> types.ModuleType:
    """The array module for a device name: "cpu" -> numpy, "cuda" -> cupy."""
    if device == "cpu":
        return np
    if device == "cuda":
        try:
            import cupy
        except ImportError as e:
            raise RuntimeError("device='cuda' needs CuPy: pip install cupy-cuda12x") from e
        return cupy
    raise ValueError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def to_numpy(x) -> np.ndarray:
    """Bring an array back to host memory as a NumPy array."""
    if array_module(x) is np:
        return np.asarray(x)
    return x.get()
