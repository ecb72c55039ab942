"""Bad input gets a clear error naming the problem, never a wrong answer or a deep traceback."""

import json
import shutil

import numpy as np
import pytest

import minis2t2
from minis2t2 import AudioError, ConfigError, WeightsError
from tests.goldens import GOLDEN

MODEL = GOLDEN / "large_layer_stable_proj" / "model"


@pytest.fixture(scope="module")
def model():
    return minis2t2.load(MODEL)


@pytest.fixture
def folder(tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(MODEL, dst)
    return dst


def test_wrong_sampling_rate(model):
    with pytest.raises(AudioError, match="8000 Hz"):
        model.processor(np.zeros(16000, np.float32), sampling_rate=8000)


@pytest.mark.parametrize("audio,match", [
    (np.zeros(0, np.float32), "empty"),
    (np.array([0.1, np.nan] * 800, np.float32), "NaN"),
    (np.array([0.1, np.inf] * 800, np.float32), "NaN or inf"),
    (np.zeros((1600, 2), np.float32), "mono"),
])
def test_bad_waveforms(model, audio, match):
    with pytest.raises(AudioError, match=match):
        model.translate(audio, sampling_rate=16000)


def test_too_short_audio(model):
    with pytest.raises(ValueError, match="too short"):
        model.translate(np.ones(30, np.float32), sampling_rate=16000)  # this tiny model needs 40 samples for one frame


def test_unreadable_file(model, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(AudioError, match="cannot read audio"):
        model.translate(bad)
    with pytest.raises(AudioError, match="no such file"):
        model.translate(tmp_path / "missing.wav")


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json", "vocab.json"])
def test_missing_model_file(folder, name):
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        minis2t2.load(folder)


def test_missing_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        minis2t2.load(folder)


def test_corrupt_safetensors_header(folder):
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:20] = b"not json!!!!"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt safetensors header"):
        minis2t2.load(folder)


def test_header_longer_than_file(folder):
    path = folder / "model.safetensors"
    path.write_bytes((10**9).to_bytes(8, "little") + path.read_bytes()[8:])
    with pytest.raises(WeightsError, match="header claims"):
        minis2t2.load(folder)


def test_truncated_safetensors(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        minis2t2.load(folder)


def _rewrite_weights(folder, edit):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def test_missing_unexpected_and_misshaped_keys_listed_together(folder):
    def edit(t):
        del t["encoder.encoder.layers.0.attention.q_proj.bias"]
        t["encoder.extra.weight"] = np.zeros(3, np.float32)
        t["decoder.model.decoder.layers.0.fc1.weight"] = np.zeros((5, 5), np.float32)

    _rewrite_weights(folder, edit)
    with pytest.raises(WeightsError) as e:
        minis2t2.load(folder)
    message = str(e.value)
    assert "missing    encoder.encoder.layers.0.attention.q_proj.bias [32]" in message
    assert "unexpected encoder.extra.weight [3]" in message
    assert "mis-shaped decoder.model.decoder.layers.0.fc1.weight: file [5, 5], config expects [48, 24]" in message


def test_config_shape_mismatch(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["encoder"]["intermediate_size"] = 99
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="intermediate_dense.weight"):
        minis2t2.load(folder)


def test_unknown_config_field(folder):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["decoder"]["decoder_layerz"] = 3
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="decoder_layerz"):
        minis2t2.load(folder)


def test_invalid_json(folder):
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        minis2t2.load(folder)


def test_unsupported_generation_setting(model):
    with pytest.raises(ConfigError, match="do_sample"):
        model.generate(np.zeros((1, 1600), np.float32), do_sample=True)
    with pytest.raises(ConfigError, match="num_beamz"):
        model.generate(np.zeros((1, 1600), np.float32), num_beamz=3)


def test_decoder_ids_out_of_range(model):
    with pytest.raises(ValueError, match=r"\[0, "):
        model(np.zeros((1, 1600), np.float32), decoder_input_ids=[[2, 10_000]])


def test_arrays_need_their_sampling_rate(model):
    wave = np.zeros(16000, np.float32)
    with pytest.raises(AudioError, match="an array carries no sampling rate: pass sampling_rate="):
        model.translate(wave)
    with pytest.raises(AudioError, match="pass sampling_rate= with the audio"):
        model.processor(wave)
    with pytest.raises(AudioError, match="sampling_rate must be an integer number of Hz"):
        model.translate(wave, sampling_rate=16000.0)
    with pytest.raises(AudioError, match="sampling_rate must be an integer number of Hz"):
        model.translate(wave, sampling_rate=2**31)
    assert model.translate(wave, sampling_rate=np.int64(16000)) == model.translate(wave, sampling_rate=16000)
