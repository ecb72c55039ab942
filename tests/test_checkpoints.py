"""Weights from everywhere a user gets them: PyTorch .bin (read without torch), shards, F16/BF16/F64
safetensors, convert, float64 mode and the hub cache. The reference logits come from transformers.

Tolerances: fp32 logits atol = rtol = 1e-4 as elsewhere; float64 mode vs HF in float64:
atol = rtol = 1e-10 (observed ~1e-14); weights read from any format must be bit-identical.
"""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import soundfile
import torch

import minis2t2
from minis2t2.checkpoint import convert, load_state_dict
from minis2t2.cli import main
from minis2t2.torch_bin import read_torch_bin
from minis2t2.weights import WeightsError, read_safetensors, to_float
from tests import reference as R
from tests.goldens import GOLDEN
from tests.signals import speech_like

VOCAB = R.vocab_size()
ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, conv_dim=(16, 16),
               conv_kernel=(10, 4), conv_stride=(5, 3), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
               feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
DECODER = dict(vocab_size=VOCAB, d_model=24, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=40,
               max_target_positions=32, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def hf_model():
    return R.build_model(dict(ENCODER), dict(DECODER), seed=5)


@pytest.fixture(scope="module")
def inputs():
    audio = [speech_like(2000, 0), speech_like(1500, 1)]
    return R.feature_extractor(GOLDEN / "large_layer_stable_proj" / "model")(audio, sampling_rate=16000, padding=True,
                                                                           return_tensors="np")


def _logits_hf(model, inputs, ids):
    _, out = R.record(model, inputs["input_values"].astype(np.float64 if next(model.parameters()).dtype == torch.float64
                                                           else np.float32), inputs["attention_mask"],
                      decoder_input_ids=ids)
    return out.logits.numpy()


IDS = np.array([[2, 5, 6, 7], [2, 8, 9, 10]])


def _check_logits(folder, hf_model, inputs, **load_kwargs):
    model = minis2t2.load(folder, **load_kwargs)
    got = model(inputs["input_values"], inputs["attention_mask"], decoder_input_ids=IDS).logits
    np.testing.assert_allclose(got, _logits_hf(hf_model, inputs, IDS), atol=1e-4, rtol=1e-4)
    return model


def test_pytorch_bin_matches_safetensors(tmp_path, hf_model, inputs):
    hf_model.save_pretrained(tmp_path / "st", safe_serialization=True)
    hf_model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin").is_file() and not (tmp_path / "bin" / "model.safetensors").exists()
    a, b = load_state_dict(tmp_path / "st"), load_state_dict(tmp_path / "bin")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][1] == b[name][1] and np.array_equal(a[name][0], b[name][0]), name
    for folder in ("st", "bin"):
        R.save_model(hf_model, tmp_path / folder, return_attention_mask=True) if folder == "st" else None
    for name in ("preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(tmp_path / "st" / name, tmp_path / "bin" / name)
    _check_logits(tmp_path / "bin", hf_model, inputs)


def _legacy_bin_folder(hf_model, folder):
    """The 2021 layout: pos-conv weight norm stored as weight_g / weight_v in a .bin."""
    R.save_model(hf_model, folder, return_attention_mask=True)
    (folder / "model.safetensors").unlink()
    state = {}
    for name, value in hf_model.state_dict().items():
        name = name.replace("parametrizations.weight.original0", "weight_g")
        name = name.replace("parametrizations.weight.original1", "weight_v")
        state[name] = value
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_legacy_weight_norm_names(tmp_path, hf_model, inputs):
    folder = _legacy_bin_folder(hf_model, tmp_path / "legacy")
    assert any("weight_g" in k for k in read_torch_bin(folder / "pytorch_model.bin"))
    _check_logits(folder, hf_model, inputs)


def test_tensor_layouts_in_bin(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"a": base, "transposed": base.t(), "slice": base[1:, 2:4], "row": base[2],
             "half": torch.randn(3, 5).half(),
             "bf16": torch.randn(7).bfloat16(), "double": torch.randn(2, 2).double(), "long": torch.arange(5),
             "param": torch.nn.Parameter(torch.ones(3)), "empty": torch.zeros(0, 4)}
    torch.save(state, tmp_path / "x.bin")
    got = read_torch_bin(tmp_path / "x.bin")
    for name, tensor in state.items():
        array, kind = got[name]
        assert array.shape == tuple(tensor.shape)
        np.testing.assert_array_equal(to_float(array, kind, np.float64), tensor.detach().double().numpy())
    # the four views of `base` share one memory-mapped storage
    assert all(np.shares_memory(got["a"][0], got[n][0]) for n in ("transposed", "slice", "row"))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"weight": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(WeightsError, match=r"refusing to load: the pickle references (posix|os)\.system"):
        read_torch_bin(tmp_path / "evil.bin")
    assert not marker.exists()

    class Sneaky:  # any other global is refused by name too
        def __reduce__(self):
            return eval, ("1 + 1",)

    torch.save({"weight": Sneaky()}, tmp_path / "eval.bin")
    with pytest.raises(WeightsError, match=r"(__builtin__|builtins)\.eval"):
        read_torch_bin(tmp_path / "eval.bin")


def test_truncated_and_corrupt_bin(tmp_path, hf_model):
    hf_model.save_pretrained(tmp_path, safe_serialization=False)
    path = tmp_path / "pytorch_model.bin"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a zip archive|corrupt"):
        read_torch_bin(path)
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(WeightsError, match="not a zip archive"):
        read_torch_bin(path)


def test_storage_shorter_than_tensor(tmp_path):
    torch.save({"w": torch.ones(100)}, tmp_path / "x.bin")
    with zipfile.ZipFile(tmp_path / "x.bin") as src, zipfile.ZipFile(tmp_path / "y.bin", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:40] if "/data/" in info.filename else data)
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        read_torch_bin(tmp_path / "y.bin")


@pytest.mark.parametrize("safe", [True, False])
def test_sharded_checkpoints(tmp_path, hf_model, inputs, safe):
    R.save_model(hf_model, tmp_path, return_attention_mask=True)
    (tmp_path / "model.safetensors").unlink()
    hf_model.save_pretrained(tmp_path, safe_serialization=safe, max_shard_size="20KB")
    index = "model.safetensors.index.json" if safe else "pytorch_model.bin.index.json"
    assert len(set(json.loads((tmp_path / index).read_text())["weight_map"].values())) > 2
    _check_logits(tmp_path, hf_model, inputs)


@pytest.mark.parametrize("torch_dtype,name", [(torch.float16, "F16"), (torch.bfloat16, "BF16")])
def test_half_precision_safetensors(tmp_path, hf_model, inputs, torch_dtype, name):
    R.save_model(hf_model, tmp_path, return_attention_mask=True)
    low = R.build_model(dict(ENCODER), dict(DECODER), seed=5).to(torch_dtype)
    low.save_pretrained(tmp_path, safe_serialization=True)
    assert {kind for _, kind in read_safetensors(tmp_path / "model.safetensors").values()} == {name}
    rounded = low.float()  # the reference: HF computing in float32 with the rounded weights
    _check_logits(tmp_path, rounded, inputs)


def test_float64_mode_matches_hf_float64(tmp_path, hf_model, inputs):
    R.save_model(hf_model, tmp_path, return_attention_mask=True)
    model = minis2t2.load(tmp_path, dtype="float64")
    got = model(inputs["input_values"], inputs["attention_mask"], decoder_input_ids=IDS).logits
    assert got.dtype == np.float64
    hf64 = R.build_model(dict(ENCODER), dict(DECODER), seed=5).double()
    torch.set_default_dtype(torch.float64)  # HF builds its causal mask in the default dtype
    try:
        expected = _logits_hf(hf64, inputs, IDS)
    finally:
        torch.set_default_dtype(torch.float32)
    np.testing.assert_allclose(got, expected, atol=1e-10, rtol=1e-10)


def test_convert_round_trip(tmp_path, hf_model, inputs):
    src = _legacy_bin_folder(hf_model, tmp_path / "src")
    assert main(["convert", str(src), str(tmp_path / "dst")]) == 0
    a, b = load_state_dict(src), load_state_dict(tmp_path / "dst")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][1] == b[name][1] and np.array_equal(a[name][0], b[name][0]), name
    assert isinstance(b[name][0], np.memmap) or isinstance(b[name][0].base, np.memmap)
    _check_logits(tmp_path / "dst", hf_model, inputs)


def test_convert_failure_writes_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "pytorch_model.bin").write_bytes(b"broken")
    with pytest.raises(WeightsError):
        convert(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def _fill_cache(cache, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    """Lay out a model the way huggingface_hub's cache stores it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def test_hub_id_resolves_from_offline_cache(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "hub"
    _fill_cache(cache, "someone/tiny-s2t", GOLDEN / "large_layer_stable_proj" / "model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    model = minis2t2.load("someone/tiny-s2t")
    reference = minis2t2.load(GOLDEN / "large_layer_stable_proj" / "model")
    audio = speech_like(3000, 9)
    assert model.translate(audio, sampling_rate=16000) == reference.translate(audio, sampling_rate=16000)
    assert main(["download", "someone/tiny-s2t"]) == 0
    assert "models--someone--tiny-s2t/snapshots" in capsys.readouterr().out
    soundfile.write(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
    assert main(["translate", "--model", "someone/tiny-s2t", "--json", str(tmp_path / "a.wav")]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == reference.translate(tmp_path / "a.wav")
    with pytest.raises(FileNotFoundError, match="not in the local HF cache"):
        minis2t2.load("someone/not-cached")
