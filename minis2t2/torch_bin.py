"""Read PyTorch ``.bin`` checkpoints (torch.save's zip format) without torch, and safely.

A ``pytorch_model.bin`` is a zip archive:
    <name>/data.pkl        a pickle of the state dict; each tensor is a call
                           _rebuild_tensor_v2(storage, offset, size, stride, ...) whose storage is a
                           "persistent id" ("storage", <dtype>Storage, key, location, numel)
    <name>/data/<key>      the raw little-endian bytes of storage <key>, stored uncompressed
    <name>/byteorder       "little" or "big" (absent in old files: little)

Unpickling can run arbitrary code: a pickle names Python callables (GLOBAL) and calls them
(REDUCE). This unpickler resolves only the names a tensor state dict needs and maps each to
a small function of ours; any other name (``os.system``, ``builtins.eval``, ...) stops the
load with an error naming it, before anything is called. Nor may the pickle modify what it
built: its BUILD opcode (set an object's state) is refused on everything but the state dict
itself (torch stores the state dict's ``_metadata`` that way). Storages are memory-mapped straight
from the zip file, so a 1.3 GB checkpoint is not read into memory twice; their CRC-32 is checked
against the archive's as torch does, which reads each byte once (about a second for 1.3 GB).
"""

from __future__ import annotations

import collections
import functools
import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import WeightsError

STORAGE_DTYPES = {
    "FloatStorage": ("F32", np.float32),
    "DoubleStorage": ("F64", np.float64),
    "HalfStorage": ("F16", np.float16),
    "BFloat16Storage": ("BF16", np.uint16),  # raw bits; widened by weights.to_float
    "LongStorage": ("I64", np.int64),
    "IntStorage": ("I32", np.int32),
    "ShortStorage": ("I16", np.int16),
    "CharStorage": ("I8", np.int8),
    "ByteStorage": ("U8", np.uint8),
    "BoolStorage": ("BOOL", np.bool_),
}


MAX_DIMS = 64  # torch's own limit on a tensor's dimensions


class BuildRefused(Exception):
    """The pickle applied BUILD (set state) to an object a state dict never modifies."""


class RefusesBuild:
    """Every object this unpickler hands to a pickle refuses BUILD: without this, BUILD could set
    attributes on it (a tensor's dtype name, a rebuild function's defaults)."""

    def __setstate__(self, state):
        raise BuildRefused(type(self).__name__)


class StorageType(RefusesBuild):
    """Stands in for torch.FloatStorage etc.: only its name is used."""

    def __init__(self, name: str):
        self.name = name


class Tensor(RefusesBuild):
    """A tensor read from the pickle: a strided view of a memory-mapped storage."""

    def __init__(self, array: np.ndarray, dtype_name: str):
        self.array = array
        self.dtype_name = dtype_name


class Rebuild(RefusesBuild):
    """One of torch._utils' rebuild functions, as the pickle calls it."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args):
        return self.function(*args)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """torch._utils._rebuild_tensor_v2: element ``offset + sum(i_k * stride_k)`` of the storage."""
    data, dtype_name = storage
    size, stride = tuple(size), tuple(stride)
    if len(size) > MAX_DIMS:
        raise WeightsError(f"malformed tensor record: {len(size)} dimensions (at most {MAX_DIMS})")
    if len(size) != len(stride) or storage_offset < 0 or any(s < 0 for s in stride):
        raise WeightsError(f"malformed tensor record: offset {storage_offset}, size {size}, stride {stride}")
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else storage_offset - 1
    if last >= len(data):
        raise WeightsError(f"tensor of size {size} at offset {storage_offset} runs past its storage of {len(data)} "
                           "elements (truncated or corrupt file)")
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(data[storage_offset:], shape=size, strides=[s * item for s in stride],
                                           writeable=False) if all(size) else np.zeros(size, data.dtype)
    return Tensor(view, dtype_name)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """torch._utils._rebuild_parameter: an nn.Parameter is just its tensor here."""
    return data


# The only names a state dict's pickle may use, each as a factory: find_class hands out a fresh
# object for every reference, so that nothing one file does to what it got can reach the next
# load; and each refuses BUILD (RefusesBuild). OrderedDict is an immutable built-in type: BUILD
# on the class fails; BUILD on an OrderedDict *instance* is how torch stores ``_metadata``.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: Rebuild(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): lambda: Rebuild(_rebuild_parameter),
    **{("torch", name): functools.partial(StorageType, name) for name in STORAGE_DTYPES},
}


def _member_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored zip member's data: after its 30-byte local header, name and extra
    field. The local header must carry the member's own name (the central directory could point
    at another member's bytes)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        flags, method = struct.unpack("<HH", header[6:10]) if len(header) == 30 else (0, 0)
        name_len, extra_len = struct.unpack("<HH", header[26:30]) if len(header) == 30 else (0, 0)
        name = f.read(name_len)
    if (len(header) < 30 or header[:4] != b"PK\x03\x04" or name != info.orig_filename.encode("utf-8", "replace")
            or method != info.compress_type or flags & 0x1 != info.flag_bits & 0x1):
        raise WeightsError(f"{path}: corrupt zip entry {info.filename[:100]!r} (its local header does not match "
                           "the central directory)")
    return info.header_offset + 30 + name_len + extra_len


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    """torch.save stores members uncompressed and unencrypted; anything else is refused (it also
    keeps a small zip from inflating to gigabytes)."""
    if info.flag_bits & 0x1:
        raise WeightsError(f"{path}: zip member {info.filename[:100]!r} is encrypted; torch.save never encrypts")
    if info.compress_type != zipfile.ZIP_STORED:
        raise WeightsError(f"{path}: zip member {info.filename[:100]!r} is compressed (method {info.compress_type}); "
                           "torch.save stores members uncompressed")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, path: Path, prefix: str, byteorder: str):
        super().__init__(file)
        self.archive, self.path, self.prefix, self.byteorder = archive, path, prefix, byteorder
        self.storages: dict[str, tuple[np.ndarray, str]] = {}  # tensors sharing a storage share its map

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise WeightsError(f"{self.path}: refusing to load: the pickle references {module[:100]}.{name[:100]}, "
                               "which a state dict of tensors never needs (possibly malicious)")
        return ALLOWED_GLOBALS[(module, name)]()

    def persistent_load(self, pid):
        # The id is checked field by field and never printed: it is the pickle's own data, and
        # formatting a deeply nested or self-referencing structure could take forever.
        ok = isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[0], str) and pid[0] == "storage"
        ok = ok and isinstance(pid[1], StorageType) and isinstance(pid[2], str) and type(pid[4]) is int
        if not ok or not (0 <= pid[4] < 1 << 48) or not pid[2].isalnum():
            raise WeightsError(f"{self.path}: malformed storage reference in data.pkl (expected ('storage', "
                               "<dtype>Storage, key, location, numel))")
        _, storage_type, key, _location, numel = pid
        dtype_name, dtype = STORAGE_DTYPES[storage_type.name]
        if key in self.storages:
            if self.storages[key][1] != dtype_name:
                raise WeightsError(f"{self.path}: storage {key} is declared as both {self.storages[key][1]} and "
                                   f"{dtype_name}")
            return self.storages[key]
        dtype = np.dtype(dtype).newbyteorder("<" if self.byteorder == "little" else ">")
        try:
            info = self.archive.getinfo(f"{self.prefix}/data/{key}")
        except KeyError:
            raise WeightsError(f"{self.path}: storage {key} is missing from the archive") from None
        _check_member(self.path, info)
        if info.file_size < numel * dtype.itemsize:
            raise WeightsError(f"{self.path}: storage {key} holds {info.file_size} bytes, needs "
                               f"{numel * dtype.itemsize} (truncated or corrupt file)")
        offset = _member_offset(self.path, info)
        if offset + numel * dtype.itemsize > self.path.stat().st_size:
            raise WeightsError(f"{self.path}: storage {key} runs past the end of the file (truncated or corrupt file)")
        data = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=(numel,)) if numel else np.zeros(0, dtype)
        stored = np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset, shape=(info.file_size,)) \
            if info.file_size else b""
        if zlib.crc32(stored) != info.CRC:  # as torch does: damaged bytes, or bytes read from the wrong place
            raise WeightsError(f"{self.path}: storage {key} fails its CRC-32 check (corrupt file)")
        if self.byteorder == "big":
            data = data.astype(data.dtype.newbyteorder("<"))  # as torch.load does for big-endian files
        self.storages[key] = (data, dtype_name)
        return self.storages[key]


def read_torch_bin(path: str | Path) -> dict[str, tuple[np.ndarray, str]]:
    """{name: (array view, safetensors dtype name)} from a torch.save zip checkpoint, torch not needed."""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):  # inside the guard: is_zipfile itself can fail on a damaged file
            raise WeightsError(f"{path}: not a zip archive; only torch.save's zip format (torch >= 1.6) is supported "
                               "(truncated file, or a legacy checkpoint: re-save it with a recent torch)")
        archive = zipfile.ZipFile(path)
        pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
        if pkl is None:
            raise WeightsError(f"{path}: no data.pkl in the archive: not a torch checkpoint")
        prefix = pkl[: -len("/data.pkl")]
        byteorder = "little"
        if f"{prefix}/byteorder" in archive.namelist():
            _check_member(path, archive.getinfo(f"{prefix}/byteorder"))
            byteorder = archive.read(f"{prefix}/byteorder")[:16].decode("ascii", "replace")
            if byteorder not in ("little", "big"):
                raise WeightsError(f"{path}: byteorder record is {byteorder!r}; expected 'little' or 'big'")
        _check_member(path, archive.getinfo(pkl))
        pickled = archive.read(pkl)  # read whole, so that zipfile checks its CRC-32 as torch does
        state = _Unpickler(io.BytesIO(pickled), archive, path, prefix, byteorder).load()
    except WeightsError:
        raise
    except BuildRefused as e:
        raise WeightsError(f"{path}: refusing to load: the pickle sets the state of a {e} (BUILD), which a state "
                           "dict of tensors never does (possibly malicious)") from None
    except Exception as e:  # a hostile file can raise anything; every failure is the file's fault
        raise WeightsError(f"{path}: corrupt checkpoint ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise WeightsError(f"{path}: the pickle is not a flat state dict of tensors")
    return {name: (t.array, t.dtype_name) for name, t in state.items()}
