"""Audio reading and the feature extractor.

The processor is compared with transformers' Wav2Vec2FeatureExtractor on random batches and
every padding option (atol 1e-6: identical float32 arithmetic). File reading is checked
against soundfile's own decoding of what it wrote.
"""

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import Wav2Vec2FeatureExtractor

from minis2t2.audio import FeatureExtractor, load_audio


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 500), min_size=1, max_size=4),
    padding=st.sampled_from([True, "longest", "max_length"]),
    max_length=st.integers(50, 600),
    truncation=st.booleans(),
    multiple=st.sampled_from([None, 7, 64]),
    mask=st.booleans(),
    normalize=st.booleans(),
    seed=st.integers(0, 1000),
    float64=st.booleans(),
)
def test_processor_matches_hf(lengths, padding, max_length, truncation, multiple, mask, normalize, seed, float64):
    rng = np.random.default_rng(seed)
    audio = [(rng.standard_normal(n) * 0.3 + 0.1).astype(np.float64 if float64 else np.float32) for n in lengths]
    kwargs = dict(sampling_rate=16000, padding=padding, max_length=max_length, truncation=truncation,
                  pad_to_multiple_of=multiple)
    hf = Wav2Vec2FeatureExtractor(return_attention_mask=mask, do_normalize=normalize)
    ours = FeatureExtractor(return_attention_mask=mask, do_normalize=normalize)
    target = max_length if multiple is None else -(-max_length // multiple) * multiple
    if padding == "max_length" and not truncation and len({max(n, target) for n in lengths}) > 1:
        # Some inputs exceed max_length, the others are padded to it: HF builds a ragged batch
        # (an object array, or a ValueError inside its normalisation); minis2t2 refuses clearly.
        with pytest.raises(ValueError, match="truncation=True"):
            ours(audio, **kwargs)
        return
    expected = hf(audio, return_tensors="np", **kwargs)
    got = ours(audio, **kwargs)
    assert got["input_values"].dtype == np.float32
    np.testing.assert_allclose(got["input_values"], expected["input_values"], atol=1e-6, rtol=0)
    assert ("attention_mask" in got) == mask
    if mask:
        np.testing.assert_array_equal(got["attention_mask"], expected["attention_mask"])


def test_list_and_array_input_agree():
    fe = FeatureExtractor(return_attention_mask=True)
    x = np.random.default_rng(0).standard_normal(1000)
    one = fe(x, sampling_rate=16000)["input_values"]
    np.testing.assert_array_equal(one, fe([x], sampling_rate=16000)["input_values"])
    np.testing.assert_array_equal(one, fe(x.tolist(), sampling_rate=16000)["input_values"])


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
                                          ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_reads_formats_and_downmixes(tmp_path, fmt, subtype):
    t = np.arange(16000) / 16000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 440 * t)], axis=1)
    path = tmp_path / f"a.{fmt.lower()}"
    soundfile.write(path, stereo, 16000, format=fmt, subtype=subtype)
    decoded, _ = soundfile.read(path, dtype="float32", always_2d=True)
    got = load_audio(path)
    assert got.dtype == np.float32 and got.shape == (16000,)
    np.testing.assert_allclose(got, decoded.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(tmp_path, rate):
    t = np.arange(rate) / rate
    soundfile.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate, subtype="FLOAT")
    got = load_audio(tmp_path / "a.wav")
    assert abs(len(got) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(got[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s of audio: bin k is k Hz
