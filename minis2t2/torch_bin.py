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
load with an error naming it, before anything is called. Storages are memory-mapped straight
from the zip file, so a 1.3 GB checkpoint is not read into memory twice.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from .weights import WeightsError

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


class StorageType:
    """Stands in for torch.FloatStorage etc.: only its name is used."""

    def __init__(self, name: str):
        self.name = name


class Tensor:
    """A tensor read from the pickle: a strided view of a memory-mapped storage."""

    def __init__(self, array: np.ndarray, dtype_name: str):
        self.array = array
        self.dtype_name = dtype_name


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """torch._utils._rebuild_tensor_v2: element ``offset + sum(i_k * stride_k)`` of the storage."""
    data, dtype_name = storage
    size, stride = tuple(size), tuple(stride)
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


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


def _member_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored zip member's data: after its 30-byte local header, name and extra field."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise WeightsError(f"{path}: corrupt zip entry {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, path: Path, prefix: str, byteorder: str):
        super().__init__(file)
        self.archive, self.path, self.prefix, self.byteorder = archive, path, prefix, byteorder
        self.storages: dict[str, tuple[np.ndarray, str]] = {}  # tensors sharing a storage share its map

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise WeightsError(f"{self.path}: refusing to load: the pickle references {module}.{name}, which a "
                               "state dict of tensors never needs (possibly malicious)")
        return ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise WeightsError(f"{self.path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            dtype_name, dtype = STORAGE_DTYPES[storage_type.name]
            dtype = np.dtype(dtype).newbyteorder("<" if self.byteorder == "little" else ">")
            try:
                info = self.archive.getinfo(f"{self.prefix}/data/{key}")
            except KeyError:
                raise WeightsError(f"{self.path}: storage {key} is missing from the archive") from None
            if info.file_size < numel * dtype.itemsize:
                raise WeightsError(f"{self.path}: storage {key} holds {info.file_size} bytes, needs "
                                   f"{numel * dtype.itemsize} (truncated or corrupt file)")
            if info.compress_type == zipfile.ZIP_STORED and numel:
                offset = _member_offset(self.path, info)
                data = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=(numel,))
            else:
                data = np.frombuffer(self.archive.read(info), dtype=dtype, count=numel)
            if self.byteorder != "little":
                data = data.astype(data.dtype.newbyteorder("<"))
            self.storages[key] = (data, dtype_name)
        return self.storages[key]


def read_torch_bin(path: str | Path) -> dict[str, tuple[np.ndarray, str]]:
    """{name: (array view, safetensors dtype name)} from a torch.save zip checkpoint, torch not needed."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: not a zip archive; only torch.save's zip format (torch >= 1.6) is supported "
                           "(truncated file, or a legacy checkpoint: re-save it with a recent torch)")
    try:
        archive = zipfile.ZipFile(path)
        pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
        if pkl is None:
            raise WeightsError(f"{path}: no data.pkl in the archive: not a torch checkpoint")
        prefix = pkl[: -len("/data.pkl")]
        byteorder = "little"
        if f"{prefix}/byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}/byteorder").decode().strip()
        with archive.open(pkl) as f:
            state = _Unpickler(f, archive, path, prefix, byteorder).load()
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, struct.error) as e:
        raise WeightsError(f"{path}: corrupt checkpoint ({e})") from e
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: the pickle is not a flat state dict of tensors")
    return {name: (t.array, t.dtype_name) for name, t in state.items()}
