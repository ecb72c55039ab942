"""Reading checkpoints: flat safetensors -> a weight tree with the checkpoint's own names.

safetensors layout: 8 bytes little-endian header size n, n bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, then
the raw little-endian tensor bytes. We parse the header ourselves so every way a file can
be damaged gets a clear error, and map the data with ``np.memmap`` so nothing is read until
a tensor is used.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .errors import WeightsError
from .validate import is_count

SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # bfloat16 has no NumPy type: read the bits, widen in to_float
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on the JSON header


def _no_duplicate_keys(pairs: list) -> dict:
    """json object_pairs_hook: a name given twice would let one entry point at another's bytes."""
    out = dict(pairs)
    if len(out) != len(pairs):
        twice = sorted({k for k, _ in pairs if sum(1 for k2, _ in pairs if k2 == k) > 1})[:3]
        raise WeightsError(f"the header names {twice} more than once")
    return out


def read_safetensors(path: str | Path) -> dict[str, tuple[np.ndarray, str]]:
    """Map a .safetensors file: {name: (array view into the file, safetensors dtype)}.

    Checked as the safetensors library checks (and a little more): a header of at most 100 MB
    that is a JSON object without repeated names; each entry a known dtype, a shape of counts and
    two offsets; the tensors' byte ranges, sorted, tile the data exactly (no gap, no overlap, no
    trailing bytes), so no tensor can read another's bytes.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise WeightsError(f"{path}: {size} bytes is too short to be a safetensors file")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8:
            raise WeightsError(f"{path}: header claims {n} bytes but the file holds {size - 8} after the length")
        if n > MAX_HEADER_BYTES:
            raise WeightsError(f"{path}: header of {n} bytes exceeds the safetensors limit of {MAX_HEADER_BYTES}")
        raw = f.read(n)
    try:
        header = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except WeightsError as e:
        raise WeightsError(f"{path}: corrupt safetensors header ({e})") from e
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, deep nesting, huge integers
        raise WeightsError(f"{path}: corrupt safetensors header ({str(e)[:200]})") from e
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise WeightsError(f"{path}: corrupt safetensors header (__metadata__ must map names to strings)")
    data_size = size - 8 - n
    entries = []
    for name, info in header.items():
        ok = isinstance(info, dict) and isinstance(info.get("dtype"), str) and isinstance(info.get("shape"), list)
        ok = ok and all(map(is_count, info["shape"])) and isinstance(info.get("data_offsets"), list)
        ok = ok and len(info["data_offsets"]) == 2 and all(map(is_count, info["data_offsets"]))
        if not ok:
            raise WeightsError(f"{path}: tensor {name!r} has a malformed header entry (expected dtype, a shape of "
                               "counts and two data_offsets)")
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise WeightsError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype'][:20]!r}")
        (begin, end), shape = info["data_offsets"], info["shape"]
        expected = math.prod(shape) * np.dtype(SAFETENSORS_DTYPES[info["dtype"]]).itemsize
        if end - begin != expected:
            raise WeightsError(f"{path}: tensor {name!r} {info['dtype']}{shape} needs {expected} bytes but its "
                               f"offsets [{begin}, {end}) span {end - begin} (corrupt file)")
        entries.append((begin, end, name))
    covered = 0
    for begin, end, name in sorted(entries):
        if begin != covered:
            problem = "overlaps the tensor before it" if begin < covered else f"leaves bytes {covered}-{begin} unused"
            raise WeightsError(f"{path}: tensor {name!r} at [{begin}, {end}) {problem} (corrupt file)")
        covered = end
    if covered != data_size:
        raise WeightsError(f"{path}: the tensors cover {covered} bytes but the file holds {data_size} after the header "
                           "(truncated or corrupt file)")
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n, shape=(data_size,)) if data_size else None
    out = {}
    for begin, end, name in entries:
        info = header[name]
        dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
        view = data[begin:end] if end > begin else np.zeros(0, np.uint8)
        out[name] = (view.view(dtype).reshape(info["shape"]), info["dtype"])
    return out


def write_safetensors(path: str | Path, tensors: dict[str, tuple[np.ndarray, str]],
                      metadata: dict | None = None) -> None:
    """Write {name: (array, safetensors dtype name)} in the safetensors layout (see the module docstring)."""
    header, offset = {}, 0
    for name, (array, dtype_name) in tensors.items():
        size = array.size * array.dtype.itemsize
        header[name] = {"dtype": dtype_name, "shape": list(array.shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # pad the header so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for array, _ in tensors.values():
            f.write(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


def to_float(array: np.ndarray, dtype_name: str, dtype) -> np.ndarray:
    """A stored tensor as the compute dtype (bfloat16 widened exactly by a 16-bit shift)."""
    if dtype_name == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(array, dtype=dtype)


# The positional conv is weight-normalised. torch's old nn.utils.weight_norm stored it as
# weight_g / weight_v; the newer parametrizations API stores the same two tensors as
# parametrizations.weight.original0 / original1. This is the one place names change: the
# new spelling is read as the old, so the layer code sees weight_g and weight_v only.
WEIGHT_NORM_ALIASES = {
    "conv.parametrizations.weight.original0": "conv.weight_g",
    "conv.parametrizations.weight.original1": "conv.weight_v",
}


def normalise_weight_norm_names(tensors: dict) -> dict:
    out = {}
    for name, value in tensors.items():
        for new, old in WEIGHT_NORM_ALIASES.items():
            if name.endswith("pos_conv_embed." + new):
                name = name[: -len(new)] + old
        out[name] = value
    return out


def check_shapes(tensors: dict, expected: dict[str, tuple], optional: frozenset = frozenset()) -> None:
    """Strict loading: every expected key present with its shape, nothing else.

    ``optional`` names keys that may be absent (a tied lm_head). One error lists every
    missing, unexpected and mis-shaped key with its shape.
    """
    lines = []
    for name in sorted(set(expected) - set(tensors) - optional):
        lines.append(f"  missing    {name} {list(expected[name])}")
    for name in sorted(set(tensors) - set(expected)):
        lines.append(f"  unexpected {name} {list(tensors[name][0].shape)}")
    for name in sorted(set(expected) & set(tensors)):
        got = tuple(tensors[name][0].shape)
        if got != tuple(expected[name]):
            lines.append(f"  mis-shaped {name}: file {list(got)}, config expects {list(expected[name])}")
    if lines:
        raise WeightsError("checkpoint does not match config.json:\n" + "\n".join(lines))


class Tree(dict):
    """Nested weights with attribute access: ``p.layers[0].attention.q_proj.weight``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def unflatten(flat: dict) -> Tree:
    """{"a.0.b": x} -> Tree(a=[Tree(b=x)]): dots split names, integer parts become list indices."""
    root = Tree()
    for name, value in flat.items():
        node = root
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, Tree())
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if not isinstance(node, Tree):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[str(i)]) for i in range(len(node))]
    return Tree({k: _lists(v) for k, v in node.items()})


def flatten(tree, prefix: str = "") -> dict:
    """The inverse of ``unflatten``: Tree(a=[Tree(b=x)]) -> {"a.0.b": x}."""
    items = enumerate(tree) if isinstance(tree, list) else tree.items()
    flat = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (Tree, list)):
            flat |= flatten(value, name + ".")
        else:
            flat[name] = value
    return flat
