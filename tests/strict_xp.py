"""A strict stand-in for CuPy, so that the CuPy backend is proven on machines without a GPU.

Its arrays (``strict_xp.ndarray``) hold a NumPy array but are their own type, and behave like
CuPy's where ports usually break:

- converting one to NumPy implicitly raises TypeError, as CuPy does: ``np.asarray(x)``, any
  NumPy function or ufunc applied to it, mixing it with a NumPy array in an operator or as an
  index; ``.get()`` is the only way back to the host (``float(x)``/``int(x)``/``bool(x)`` of a
  single element and ``.tolist()`` work, as in CuPy: they are explicit, tiny transfers);
- the module offers only the functions below, each computing with NumPy on the held arrays, so a
  missing one is an AttributeError, as it would be for a function CuPy lacks;
- ``transfers`` counts the arrays brought back with ``.get()``, to check that generation moves
  only a few numbers per step.

It does not imitate: asynchronous execution and streams, device memory limits, CuPy's own
rounding (its reductions and BLAS differ from NumPy's in the last bits), dtype promotion rules
where CuPy departs from NumPy, or the speed of anything.
"""

from __future__ import annotations

import numpy as np
import scipy.special

transfers = 0  # arrays brought back to the host with .get()


def _unwrap(x, where: str):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)} in {where}: a NumPy array mixed with a device array")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    return x  # Python and NumPy scalars, slices, None, Ellipsis, dtypes


def _wrap(a):
    return ndarray(a) if isinstance(a, np.ndarray) else (ndarray(np.asarray(a)) if isinstance(a, np.generic) else a)


class ndarray:
    __array_ufunc__ = None  # NumPy ufuncs refuse it, and np_array + x defers to x.__radd__
    __array_priority__ = 1000

    def __init__(self, a: np.ndarray):
        self._a = a

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __array_function__(self, func, types, args, kwargs):
        return NotImplemented  # np.concatenate(x), np.mean(x), ...: TypeError

    def get(self) -> np.ndarray:
        global transfers
        transfers += 1
        return self._a.copy()

    def tolist(self):
        return self._a.tolist()

    def __repr__(self):
        return f"strict_xp.ndarray(shape={self.shape}, dtype={self.dtype})"

    # attributes
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    itemsize = property(lambda self: self._a.itemsize)
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "an index")])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "an index")] = _unwrap(value, "an assignment")


def _method(name):
    def method(self, *args, **kwargs):
        return _wrap(getattr(self._a, name)(*_unwrap(args, name), **{k: _unwrap(v, name) for k, v in kwargs.items()}))
    method.__name__ = name
    return method


for _name in ("reshape", "transpose", "astype", "copy", "mean", "sum", "max", "min", "argmax", "argmin", "cumsum",
              "any", "all", "ravel", "squeeze", "var", "std", "__neg__", "__abs__", "__invert__",
              "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__matmul__",
              "__rmatmul__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__and__", "__rand__",
              "__or__", "__ror__", "__xor__", "__iand__", "__ior__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
              "__lshift__", "__rshift__"):
    setattr(ndarray, _name, _method(_name))
ndarray.__hash__ = None


def _function(fn, name):
    def function(*args, **kwargs):
        return _wrap(fn(*_unwrap(args, name), **{k: _unwrap(v, name) for k, v in kwargs.items()}))
    function.__name__ = name
    return function


def asarray(a, dtype=None):
    """Host (or device) data -> a device array: the one way in."""
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype)
    return ndarray(np.array(a, dtype=dtype))


array = asarray

def argsort(a, axis=-1, kind=None):
    """CuPy sorts stably and accepts no other kind."""
    if kind not in (None, "stable"):
        raise ValueError(f"kind={kind!r} is not supported: CuPy's sort is always stable")
    return ndarray(np.argsort(_unwrap(a, "argsort"), axis=axis, kind="stable"))


def nonzero(a):
    return tuple(ndarray(i) for i in np.nonzero(_unwrap(a, "nonzero")))


for _name in ("zeros", "ones", "full", "empty", "arange", "exp", "log", "sqrt", "square", "tanh", "maximum", "minimum",
              "where", "concatenate", "stack", "pad", "array_equal", "repeat", "take_along_axis", "isfinite",
              "isin", "cumsum", "triu", "zeros_like", "ones_like", "full_like", "argmax", "abs", "einsum", "log1p",
              "sin", "cos", "clip", "sort", "partition", "logical_not", "expand_dims", "broadcast_to"):
    globals()[_name] = _function(getattr(np, _name), _name)

class add:
    """``add.at(a, indices, values)``: unbuffered in-place addition, rows named twice add up (CuPy
    has ufunc.at for add; cupyx.scatter_add is its older spelling)."""

    @staticmethod
    def at(a, indices, values):
        np.add.at(_unwrap(a, "add.at"), _unwrap(indices, "add.at"), _unwrap(values, "add.at"))


erf = _function(scipy.special.erf, "erf")  # CuPy has it in cupyx.scipy.special; backend.erf finds either

finfo, iinfo, dtype = np.finfo, np.iinfo, np.dtype
float16, float32, float64, int32, int64, uint8, uint16, uint32, bool_ = (
    np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.bool_)
inf, nan, newaxis = np.inf, np.nan, np.newaxis


class lib:
    class stride_tricks:
        sliding_window_view = staticmethod(_function(np.lib.stride_tricks.sliding_window_view, "sliding_window_view"))
        as_strided = staticmethod(_function(np.lib.stride_tricks.as_strided, "as_strided"))
