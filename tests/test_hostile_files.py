"""Hostile and damaged weight files: each ends in a WeightsError naming the file, or in the load
torch / safetensors would give. Nothing in one file can change how another loads, hang the
reader or make it open files outside the model folder.

Files are built byte by byte here (pickles opcode by opcode, zips patched in place); the
hypothesis tests flip and cut bytes of real files written by torch.save and safetensors.
"""

import collections
import io
import json
import pickle
import shutil
import signal
import struct
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import minis2t2
from minis2t2 import InputError, WeightsError
from minis2t2.torch_bin import read_torch_bin
from minis2t2.weights import read_safetensors
from tests.goldens import GOLDEN

MODEL = GOLDEN / "large_layer_stable_proj" / "model"


@pytest.fixture(autouse=True)
def no_hang():
    """Any single test here that runs for 60 s is a hang."""
    def fail(*_):
        raise TimeoutError("the reader hung")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def torch_bin_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


GOOD_STATE = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([7, -8], dtype=torch.int64)}


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def assert_same_as_torch(path):
    ours = read_torch_bin(path)
    theirs = torch.load(path, weights_only=True)
    assert sorted(ours) == sorted(theirs)
    for name, (array, _) in ours.items():
        np.testing.assert_array_equal(np.asarray(array), theirs[name].numpy())  # bit-exact: same bytes


def zip_with(members: dict, compress: dict | None = None) -> bytes:
    """A torch-style zip from {name: bytes}; ``compress`` names members to deflate."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data, compress_type=(compress or {}).get(name, zipfile.ZIP_STORED))
    return buffer.getvalue()


def members_of(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def with_pickle(pkl: bytes) -> bytes:
    """The good file's archive with data.pkl replaced."""
    members = members_of(torch_bin_bytes(GOOD_STATE))
    name = next(n for n in members if n.endswith("/data.pkl"))
    members[name] = pkl
    return zip_with(members)


# ---- pickles --------------------------------------------------------------------------------

POISONS = [
    # BUILD on the storage type find_class returned: {"name": "IntStorage"}
    b"\x80\x02ctorch\nFloatStorage\n}(X\x04\x00\x00\x00nameX\x0a\x00\x00\x00IntStorageub.",
    b"\x80\x02ctorch\nFloatStorage\n}(X\x04\x00\x00\x00nameX\x0f\x00\x00\x00BFloat16Storageub.",
    # BUILD with slot state on the rebuild function: (None, {"__defaults__": (True,)})
    b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__\x88\x85s\x86b.",
    # BUILD on OrderedDict itself
    b"\x80\x02ccollections\nOrderedDict\n}X\x03\x00\x00\x00fooK\x01sb.",
]


@pytest.mark.parametrize("pkl", POISONS)
def test_a_refused_pickle_cannot_poison_the_next_load(tmp_path, pkl):
    good = write(tmp_path / "good.bin", torch_bin_bytes(GOOD_STATE))
    assert_same_as_torch(good)
    with pytest.raises(WeightsError, match="hostile.bin"):
        read_torch_bin(write(tmp_path / "hostile.bin", with_pickle(pkl)))
    assert_same_as_torch(good)


def test_persistent_id_is_never_formatted(tmp_path):
    """A memo-shared list nested 40 deep (2**40 elements if printed), then one 200,000 deep."""
    shared = []
    for _ in range(40):
        shared = [shared, shared]
    wide = pickle.dumps(shared, protocol=2)[:-1] + b"Q."  # BINPERSID on it
    deep = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"Q."
    for pkl in (wide, deep):
        with pytest.raises(WeightsError, match="malformed storage reference"):
            read_torch_bin(write(tmp_path / "pid.bin", with_pickle(pkl)))


def test_foreign_globals_are_refused_by_name(tmp_path):
    pkl = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x85R."
    with pytest.raises(WeightsError, match="references os.system"):
        read_torch_bin(write(tmp_path / "evil.bin", with_pickle(pkl)))


@pytest.mark.parametrize("protocol", [2, 4])
def test_eval_is_refused_in_either_spelling(tmp_path, protocol):
    """Protocol 2 spells builtins as Python 2's __builtin__, protocols 3+ as builtins."""
    class Evil:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    spelled = "__builtin__.eval" if protocol == 2 else "builtins.eval"
    with pytest.raises(WeightsError, match=f"references {spelled}"):
        read_torch_bin(write(tmp_path / "evil.bin", with_pickle(pickle.dumps({"w": Evil()}, protocol=protocol))))


def test_the_allowed_globals_are_exactly_what_a_state_dict_needs():
    """Pinned: adding a name to the unpickler's allow-list must be a deliberate change here too."""
    from minis2t2.torch_bin import ALLOWED_GLOBALS

    storages = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
                "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage"}
    assert set(ALLOWED_GLOBALS) == {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                                    ("torch._utils", "_rebuild_parameter")} | {("torch", s) for s in storages}


def _storage_pickle(types_and_keys) -> bytes:
    """A state dict {"t<i>": 4 elements of storage key k as type T} pickled as torch does."""
    class Ref:
        def __init__(self, storage_type, key):
            self.storage_type, self.key = storage_type, key

    class T:
        def __init__(self, ref):
            self.ref = ref

        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (self.ref, 0, (2,), (1,), False, collections.OrderedDict())

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", obj.storage_type, obj.key, "cpu", 2) if isinstance(obj, Ref) else None

    buffer = io.BytesIO()
    P(buffer, protocol=2).dump(collections.OrderedDict(
        (f"t{i}", T(Ref(t, k))) for i, (t, k) in enumerate(types_and_keys)))
    return buffer.getvalue()


def test_build_on_a_tensor_is_refused(tmp_path):
    """BUILD {"dtype_name": "F64"} on a rebuilt tensor would have changed its dtype silently."""
    pkl = _storage_pickle([(torch.FloatStorage, "0")])
    tensor_end = pkl.rindex(b"R")  # the REDUCE that calls _rebuild_tensor_v2
    build = b"}X\x0a\x00\x00\x00dtype_nameX\x03\x00\x00\x00F64sb"
    members = members_of(torch_bin_bytes(GOOD_STATE))
    members[next(n for n in members if n.endswith("/data.pkl"))] = pkl[: tensor_end + 1] + build + pkl[tensor_end + 1 :]
    with pytest.raises(WeightsError, match=r"build.bin: refusing to load: the pickle sets the state of a Tensor"):
        read_torch_bin(write(tmp_path / "build.bin", zip_with(members)))


def test_more_than_64_dimensions_are_refused(tmp_path):
    members = members_of(torch_bin_bytes({"a": torch.zeros(1)}))
    name = next(n for n in members if n.endswith("/data.pkl"))
    pkl = members[name]
    assert b"K\x01\x85" in pkl  # size (1,) and stride (1,), pickled as one-tuples
    members[name] = pkl.replace(b"K\x01\x85", b"(" + b"K\x01" * 65 + b"t")
    with pytest.raises(WeightsError, match="65 dimensions"):
        read_torch_bin(write(tmp_path / "deep.bin", zip_with(members)))


def test_one_storage_with_two_dtypes_is_refused(tmp_path):
    members = members_of(torch_bin_bytes(GOOD_STATE))
    name = next(n for n in members if n.endswith("/data.pkl"))
    members[name] = _storage_pickle([(torch.FloatStorage, "0"), (torch.IntStorage, "0")])
    with pytest.raises(WeightsError, match="declared as both F32 and I32"):
        read_torch_bin(write(tmp_path / "two.bin", zip_with(members)))


# ---- the zip around it ------------------------------------------------------------------------

def test_byteorder(tmp_path):
    little = members_of(torch_bin_bytes(GOOD_STATE))
    prefix = next(n for n in little if n.endswith("/data.pkl"))[: -len("/data.pkl")]
    garbage = dict(little, **{f"{prefix}/byteorder": b"\xffmiddle"})
    with pytest.raises(WeightsError, match="expected 'little' or 'big'"):
        read_torch_bin(write(tmp_path / "garbage.bin", zip_with(garbage)))
    big = dict(little, **{f"{prefix}/byteorder": b"big"})
    sizes = {"0": 4, "1": 8}  # torch.save numbers storages in order: a (float32), b (int64)
    for key, item in sizes.items():
        raw = np.frombuffer(little[f"{prefix}/data/{key}"], np.uint8).reshape(-1, item)
        big[f"{prefix}/data/{key}"] = raw[:, ::-1].tobytes()
    path = write(tmp_path / "big.bin", zip_with(big))
    assert_same_as_torch(path)  # torch converts big-endian files to native order; so do we


def test_compressed_and_misdirected_members(tmp_path):
    members = members_of(torch_bin_bytes(GOOD_STATE))
    prefix = next(n for n in members if n.endswith("/data.pkl"))[: -len("/data.pkl")]
    packed = zip_with(members, compress={f"{prefix}/data/0": zipfile.ZIP_DEFLATED})
    with pytest.raises(WeightsError, match="is compressed"):
        read_torch_bin(write(tmp_path / "deflated.bin", packed))

    data = bytearray(zip_with(members))
    offsets = {}
    at = data.find(b"PK\x01\x02")
    while at != -1:  # central directory entries: name length at +28, local header offset at +42
        n = struct.unpack_from("<H", data, at + 28)[0]
        offsets[bytes(data[at + 46 : at + 46 + n]).decode()] = at
        at = data.find(b"PK\x01\x02", at + 1)
    target = struct.unpack_from("<I", data, offsets[f"{prefix}/data/1"] + 42)[0]
    struct.pack_into("<I", data, offsets[f"{prefix}/data/0"] + 42, target)  # data/0 -> data/1's bytes
    with pytest.raises(WeightsError, match="local header does not match"):
        read_torch_bin(write(tmp_path / "misdirected.bin", bytes(data)))


def test_bytes_read_from_elsewhere_fail_the_crc(tmp_path):
    """A local header whose extra-field length was changed points at shifted bytes, and a flipped
    byte inside a storage. torch 2.13 loads both, damaged numbers and all (it does not check a
    storage's CRC-32); minis2t2 checks it and refuses: a wrong weight is worse than an error."""
    good = torch_bin_bytes(GOOD_STATE)
    prefix = next(n for n in members_of(good) if n.endswith("/data.pkl"))[: -len("/data.pkl")]
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        info = z.getinfo(f"{prefix}/data/0")
    shifted = bytearray(good)
    struct.pack_into("<H", shifted, info.header_offset + 28, struct.unpack_from("<H", good, info.header_offset + 28)[0] - 4)
    flipped = bytearray(good)
    data_at = info.header_offset + 30 + len(info.orig_filename) + struct.unpack_from("<H", good, info.header_offset + 28)[0]
    flipped[data_at] ^= 0x40
    for name, data in (("shifted.bin", shifted), ("flipped.bin", flipped)):
        path = write(tmp_path / name, bytes(data))
        assert not torch.equal(torch.load(path, weights_only=True)["a"], GOOD_STATE["a"])
        with pytest.raises(WeightsError, match=f"{name}: storage 0 fails its CRC-32 check"):
            read_torch_bin(path)


def test_shards_stay_inside_the_model_folder(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(MODEL, folder)
    (folder / "model.safetensors").rename(tmp_path / "outside.safetensors")
    names = list(read_safetensors(tmp_path / "outside.safetensors"))
    for shard in (str(tmp_path / "outside.safetensors"), "../outside.safetensors", "sub/x.safetensors", 3):
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: shard for n in names}}))
        with pytest.raises(WeightsError, match="is not a plain file name in the model folder"):
            minis2t2.load(folder)


# ---- safetensors ------------------------------------------------------------------------------

def safetensors_file(header: dict, data: bytes) -> bytes:
    blob = json.dumps(header).encode()
    return len(blob).to_bytes(8, "little") + blob + data


F32x2 = {"dtype": "F32", "shape": [2]}


@pytest.mark.parametrize("header,data,message", [
    ({"a": F32x2 | {"data_offsets": [0, 8]}, "b": F32x2 | {"data_offsets": [4, 12]}}, bytes(12), "overlaps"),
    ({"a": F32x2 | {"data_offsets": [0, 8]}, "b": F32x2 | {"data_offsets": [12, 20]}}, bytes(20), "unused"),
    ({"a": F32x2 | {"data_offsets": [0, 8]}}, bytes(12), "cover 8 bytes but the file holds 12"),
    ({"a": F32x2 | {"data_offsets": [0, 8]}, "b": F32x2 | {"data_offsets": [8, 8]}}, bytes(8), "needs 8 bytes"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), "malformed header entry"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": ["0", 8]}}, bytes(8), "malformed header entry"),
    ({"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, bytes(8), "malformed header entry"),
    ({"a": F32x2 | {"data_offsets": [0, 8]}, "__metadata__": {"k": 1}}, bytes(8), "__metadata__"),
    ({"a": None}, b"", "malformed header entry"),
])
def test_safetensors_tiling(tmp_path, header, data, message):
    with pytest.raises(WeightsError, match=message):
        read_safetensors(write(tmp_path / "x.safetensors", safetensors_file(header, data)))


def test_safetensors_duplicate_names(tmp_path):
    blob = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}'
    with pytest.raises(WeightsError, match="names \\['a'\\] more than once"):
        read_safetensors(write(tmp_path / "x.safetensors", len(blob).to_bytes(8, "little") + blob + bytes(16)))
    for blob in (b"[" * 100_000, b'{"a": 1' + b"0" * 5000 + b"}", b"\xff\xfe"):
        with pytest.raises(WeightsError, match="corrupt safetensors header"):
            read_safetensors(write(tmp_path / "x.safetensors", len(blob).to_bytes(8, "little") + blob))


GOOD_SAFETENSORS = st_save({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7, -8], np.int64),
                            "c": np.zeros((0, 3), np.float16)}, metadata={"format": "np"})


def damaged(data: bytes, flips, cut) -> bytes:
    out = bytearray(data)
    for at, value in flips:
        out[at % len(out)] = value
    return bytes(out[: len(out) - cut % len(out)] if cut else out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4), cut=st.integers(0, 400))
def test_fuzzed_safetensors_refused_whenever_the_library_refuses(tmp_path, flips, cut):
    data = damaged(GOOD_SAFETENSORS, flips, cut)
    path = write(tmp_path / "f.safetensors", data)
    try:
        theirs = st_load(data)
    except Exception:  # noqa: BLE001 -- the library refused it, whatever its reason
        theirs = None
    try:
        ours = read_safetensors(path)
    except WeightsError:
        return
    assert theirs is not None, "safetensors refuses this file, minis2t2 loaded it"
    assert sorted(ours) == sorted(theirs)
    for name, (array, _) in ours.items():
        np.testing.assert_array_equal(np.asarray(array), theirs[name])


GOOD_BIN = torch_bin_bytes(GOOD_STATE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4), cut=st.integers(0, 2000))
@example(flips=[(1494, 0), (11870, 0)], cut=0)  # stored bytes flipped: loaded silently before the CRC check
@example(flips=[(len(GOOD_BIN) - 38, 0xFF)], cut=0)  # in the ZIP64 end-of-directory locator: is_zipfile raised
@example(flips=[(18033, 16)], cut=0)  # a central-directory byte: torch 2.13 reads b as [140029562039792, ...]
def test_fuzzed_bin_refused_or_undamaged(tmp_path, flips, cut):
    """A damaged file is refused, or loads as the tensors it was written with: every byte minis2t2
    uses (data.pkl, byteorder, each storage) is read whole or CRC-checked, so what loads is what
    torch.save wrote. (torch itself is no oracle here: it loads some damaged files with other
    numbers, as the last example shows.)"""
    path = write(tmp_path / "f.bin", damaged(GOOD_BIN, flips, cut))
    try:
        ours = read_torch_bin(path)
    except WeightsError:
        return
    assert sorted(ours) == sorted(GOOD_STATE)
    for name, (array, _) in ours.items():
        np.testing.assert_array_equal(np.asarray(array), GOOD_STATE[name].numpy())


OPCODES = [b"(", b")", b"]", b"}", b"N", b"\x88", b"\x89", b"K\x01", b"J\xff\xff\xff\xff", b"X\x01\x00\x00\x00a",
           b"X\x07\x00\x00\x00storage", b"ctorch\nFloatStorage\n", b"ctorch._utils\n_rebuild_tensor_v2\n",
           b"ccollections\nOrderedDict\n", b"cos\nsystem\n", b"t", b"l", b"d", b"a", b"e", b"s", b"u", b"b", b"R",
           b"Q", b"\x85", b"\x86", b"\x87", b"q\x00", b"h\x00", b"0", b"2", b"1", b"\x94", b"\x93"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.sampled_from(OPCODES), max_size=30))
def test_random_opcode_pickles_give_our_error(tmp_path, ops):
    path = write(tmp_path / "p.bin", with_pickle(b"\x80\x02" + b"".join(ops) + b"."))
    try:
        read_torch_bin(path)
    except InputError as e:
        assert "p.bin" in str(e)


@pytest.mark.parametrize("opcode,size", [(b"\x8e", struct.pack("<Q", 1 << 34)), (b"\x8d", struct.pack("<Q", 1 << 34)),
                                         (b"\x96", struct.pack("<Q", 1 << 34)), (b"\x8a", struct.pack("<i", 2**31 - 1))])
def test_declared_sizes_beyond_the_file_are_refused(tmp_path, opcode, size):
    """BINBYTES8 / BINUNICODE8 / BYTEARRAY8 / LONG4 claiming 16 GiB or 2 GiB in a 1 KB file: the
    pickle is read from the stored member and ends as truncated, nothing is allocated up front."""
    with pytest.raises(WeightsError, match="pickle data was truncated"):
        read_torch_bin(write(tmp_path / "huge.bin", with_pickle(b"\x80\x05" + opcode + size + b"abc")))


def test_encrypted_member_and_bad_utf8_in_the_pickle(tmp_path):
    members = members_of(torch_bin_bytes(GOOD_STATE))
    prefix = next(n for n in members if n.endswith("/data.pkl"))[: -len("/data.pkl")]
    data = bytearray(zip_with(members))
    name = f"{prefix}/data/0".encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):  # local and central headers
        at = data.find(signature)
        while data[at + name_at : at + name_at + len(name)] != name:
            at = data.find(signature, at + 1)
        data[at + flags_at] |= 0x1  # general purpose flag bit 0: encrypted
    with pytest.raises(WeightsError, match="is encrypted"):
        read_torch_bin(write(tmp_path / "encrypted.bin", bytes(data)))
    pkl = b"\x80\x02X\x02\x00\x00\x00\xff\xfe."  # BINUNICODE whose bytes are not UTF-8
    with pytest.raises(WeightsError, match="UnicodeDecodeError"):
        read_torch_bin(write(tmp_path / "utf8.bin", with_pickle(pkl)))
