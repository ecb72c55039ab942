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


@pytest.mark.parametrize("call,error,match", [
    (lambda m: minis2t2.load(123), ConfigError, "expected a model folder.*got int"),
    (lambda m: minis2t2.load_audio(MODEL / "config.json", 0), AudioError, "sampling_rate is the rate to resample to"),
    (lambda m: m.processor(text=123), ValueError, "text must be a string or a non-empty list of strings, got 123"),
    (lambda m: m.processor(text=["a", 5]), ValueError, "text must be a string or a non-empty list of strings"),
    (lambda m: m.processor([np.ones(4000, np.float32)] * 2, sampling_rate=16000, text="a"), ValueError,
     "2 audio input.s. but 1 text"),
    (lambda m: m(np.ones((2, 4000), np.float32), labels=[[5, 2]]), ValueError, r"labels \(1, 2\) do not match"),
    (lambda m: m.loss_and_grads(np.ones((2, 4000), np.float32), labels=[[5, 2]]), ValueError, "do not match"),
])
def test_transformers_style_mistakes_are_named(model, call, error, match):
    with pytest.raises(error, match=match):
        call(model)


def test_a_list_of_inputs_is_a_list_of_results(model, tmp_path):
    import soundfile

    from tests.signals import speech_like

    path = tmp_path / "a.wav"
    soundfile.write(path, speech_like(4000, seed=3), 16000, subtype="FLOAT")
    texts = model.translate([path, str(path)])
    assert texts == [model.translate(path)] * 2
    assert model.segments([path]) == [model.segments(path)]


def test_labels_longer_than_the_position_table_match_transformers(tmp_path):
    """transformers grows its sinusoidal table for teacher-forced labels longer than
    max_target_positions; minis2t2 grows it the same way (loss to 1e-5)."""
    import torch
    from transformers import SpeechEncoderDecoderModel

    config = json.loads((MODEL / "config.json").read_text())
    config["decoder"]["max_target_positions"] = 6
    short = tmp_path / "short"
    shutil.copytree(MODEL, short)
    (short / "config.json").write_text(json.dumps(config))
    for name in ("model.safetensors",):  # the stored table has the old length: let both recompute it
        from safetensors.numpy import load_file, save_file

        tensors = load_file(short / name)
        tensors.pop("decoder.model.decoder.embed_positions.weights", None)
        save_file(tensors, short / name, metadata={"format": "pt"})
    ours = minis2t2.load(short)
    audio = np.random.default_rng(0).standard_normal((1, 6000)).astype(np.float32)
    labels = np.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 2]])  # 10 positions: past the table's 6 + 2 rows
    hf = SpeechEncoderDecoderModel.from_pretrained(str(short)).eval()
    with torch.no_grad():
        expected = hf(input_values=torch.from_numpy(audio), labels=torch.from_numpy(labels)).loss.item()
    assert abs(ours(audio, labels=labels).loss - expected) < 1e-5
    assert ours.generate(audio, max_new_tokens=12).shape[1] >= 2  # cached generation goes past the table too
