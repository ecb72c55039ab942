"""Audio in: files -> 16 kHz mono float32, and the Wav2Vec2FeatureExtractor equivalent.

Dimension legend: B batch, N samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal

from .errors import AudioError, ConfigError
from .validate import check_fields, read_json, show


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) by the reduced ratio target/orig.   (N,) -> (N')"""
    if orig_rate == target_rate:
        return audio
    g = math.gcd(orig_rate, target_rate)
    return scipy.signal.resample_poly(audio, target_rate // g, orig_rate // g).astype(np.float32)


# What a file may declare before anything is decoded or resampled: a header is only a claim, and
# a 3 KB file can claim 2**31 Hz or 2**36 frames (gigabytes once decoded or resampled).
INPUT_RATES = (1000, 768000)  # Hz; telephone 8 kHz to 768 kHz studio audio
MODEL_RATES = (1000, 192000)  # Hz a model's preprocessor_config.json may ask for
MAX_SECONDS = 4 * 3600  # longest file read, per channel
MAX_CHANNELS = 64


def load_audio(path: str | Path, sampling_rate: int = 16000) -> np.ndarray:
    """Read any file soundfile reads (wav/flac/ogg, int or float samples, any channel count).

    Channels are averaged to mono, then resampled to ``sampling_rate``.   -> (N,) float32 in [-1, 1]
    """
    import soundfile  # here, not at the top: only reading files needs libsndfile (a GPU box may lack it)

    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        info = soundfile.info(str(path))
        if not INPUT_RATES[0] <= info.samplerate <= INPUT_RATES[1]:
            raise AudioError(f"{path}: declares a sample rate of {info.samplerate} Hz; minis2t2 reads "
                             f"{INPUT_RATES[0]}-{INPUT_RATES[1]} Hz")
        if not 1 <= info.channels <= MAX_CHANNELS:
            raise AudioError(f"{path}: declares {info.channels} channels; minis2t2 reads 1-{MAX_CHANNELS}")
        if info.frames > MAX_SECONDS * info.samplerate:
            raise AudioError(f"{path}: declares {info.frames} frames ({info.frames / info.samplerate:.0f} s); "
                             f"minis2t2 reads at most {MAX_SECONDS} s")
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError) as e:
        if isinstance(e, AudioError):
            raise
        reason = str(e).split("': ", 1)[-1] if str(e).startswith("Error opening") else str(e)  # path said once
        raise AudioError(f"{path}: cannot read audio ({reason})") from e
    if len(audio) == 0:
        raise AudioError(f"{path}: holds no samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: contains NaN or inf samples")
    return resample(audio.mean(axis=1), rate, sampling_rate)  # (N,)


def check_waveform(audio, where: str = "audio") -> np.ndarray:
    """One mono waveform as a 1-D float array; empty, NaN/inf and multi-channel input are errors."""
    audio = np.asarray(audio)
    if audio.dtype.kind not in "fiu":
        raise AudioError(f"{where}: expected numbers, got dtype {audio.dtype}")
    if audio.ndim != 1:
        raise AudioError(
            f"{where}: expected one mono waveform (N,), got shape {audio.shape}; "
            "downmix channels first (minis2t2.load_audio does) or pass a list for a batch"
        )
    if audio.size == 0:
        raise AudioError(f"{where}: is empty")
    if not np.isfinite(audio).all():
        raise AudioError(f"{where}: contains NaN or inf")
    return audio


def waveform(audio, sampling_rate: int | None, target_rate: int) -> np.ndarray:
    """A file path, or a mono waveform sampled at ``sampling_rate`` -> float32 samples at ``target_rate``.

    A file carries its own rate; an array must be told its rate, so that 22.05 kHz audio is never
    silently read as 16 kHz."""
    if isinstance(audio, (str, Path)):
        return load_audio(audio, target_rate)
    if sampling_rate is None:
        raise AudioError("an array carries no sampling rate: pass sampling_rate= (the rate it was recorded at)")
    if not (isinstance(sampling_rate, (int, np.integer)) and not isinstance(sampling_rate, bool)
            and INPUT_RATES[0] <= sampling_rate <= INPUT_RATES[1]):
        raise AudioError(f"sampling_rate must be an integer number of Hz in {INPUT_RATES[0]}-{INPUT_RATES[1]}, "
                         f"got {sampling_rate!r}")
    return resample(check_waveform(audio).astype(np.float32), sampling_rate, target_rate)


class BatchFeature(dict):
    """A dict whose keys are also attributes, as transformers' BatchFeature: ``inputs.input_values``
    and ``inputs["input_values"]`` are the same array, and ``model(**inputs)`` works."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this output has no {name!r}; it has {sorted(self)}") from None


def check_return_tensors(return_tensors) -> None:
    """transformers' return_tensors: minis2t2 returns NumPy arrays, so only None or "np" make sense."""
    if return_tensors not in (None, "np"):
        raise ValueError(f"return_tensors={return_tensors!r}: minis2t2 returns NumPy arrays; use "
                         "return_tensors='np' (or leave it out)")


PREPROCESSOR_FIELDS = frozenset(
    "feature_extractor_type feature_size sampling_rate padding_value do_normalize "
    "return_attention_mask padding_side processor_class".split()
)


@dataclass(frozen=True)
class FeatureExtractor:
    """Wav2Vec2FeatureExtractor (transformers 4.40.2) from preprocessor_config.json."""

    sampling_rate: int = 16000
    padding_value: float = 0.0
    do_normalize: bool = True
    return_attention_mask: bool = False  # true for layer-norm ("lv60") models, which were trained with masks
    feature_size: int = 1

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureExtractor:
        d = read_json(path)
        unknown = sorted(set(d) - PREPROCESSOR_FIELDS)
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {unknown}")
        for name in ("feature_extractor_type", "padding_side", "processor_class"):
            if name in d and not isinstance(d[name], str):
                raise ConfigError(f"{path}: {name} must be a string, got {show(d[name])}")
        if d.get("feature_extractor_type", "Wav2Vec2FeatureExtractor") != "Wav2Vec2FeatureExtractor":
            raise ConfigError(f"{path}: feature_extractor_type {d['feature_extractor_type']!r} is not supported")
        if d.get("padding_side", "right") != "right":
            raise ConfigError(f"{path}: only padding_side 'right' is supported")
        if d.get("feature_size", 1) != 1 or isinstance(d.get("feature_size"), bool):
            raise ConfigError(f"{path}: feature_size must be 1 (raw mono waveform), got {show(d['feature_size'])}")
        return cls(**check_fields(cls, d, str(path), {"sampling_rate": MODEL_RATES}))

    def __call__(
        self,
        audio,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """One waveform (N,) or a list of them -> {"input_values": (B, N) float32[, "attention_mask": (B, N) int32]},
        a dict whose keys are also attributes (``inputs.input_values``), as transformers' BatchFeature.

        padding: "longest"/True, "max_length" (to ``max_length``), or "do_not_pad"/False (all
        inputs must then have one length). Normalisation is zero mean / unit variance over each
        item's valid samples, (x - mean) / sqrt(var + 1e-7), when there is an attention mask and
        padding; without a mask HF normalises the whole padded row, zeros included. ``return_tensors``:
        None or "np" (NumPy arrays either way; minis2t2 has no torch, TensorFlow or JAX tensors).
        """
        check_return_tensors(return_tensors)
        if sampling_rate is None:
            raise AudioError(f"pass sampling_rate= with the audio (this model expects {self.sampling_rate} Hz); "
                             "a wrong rate would be misread silently")
        if sampling_rate != self.sampling_rate:
            raise AudioError(
                f"audio sampled at {sampling_rate} Hz, but this model expects {self.sampling_rate} Hz; "
                "resample first (minis2t2.load_audio and Model.translate do)"
            )
        if isinstance(audio, np.ndarray) and audio.ndim == 2:
            audio = list(audio)  # HF reads a 2-D array as a batch of rows
        items = audio if isinstance(audio, (list, tuple)) and len(audio) and np.ndim(audio[0]) == 1 else [audio]
        items = [check_waveform(a, f"audio[{i}]").astype(np.float32) for i, a in enumerate(items)]
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask

        padding = {True: "longest", False: "do_not_pad"}.get(padding, padding)
        if padding not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if (padding == "max_length" or truncation) and max_length is None:
            raise ValueError("padding='max_length' and truncation=True need max_length")
        if truncation and pad_to_multiple_of and max_length % pad_to_multiple_of:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        if truncation:
            items = [a[:max_length] for a in items]
        lengths = [len(a) for a in items]
        if padding == "longest":
            target = max(lengths)
        elif padding == "max_length":
            target = max_length
        else:
            if len(set(lengths)) > 1:
                raise ValueError(f"inputs have different lengths {lengths}: use padding='longest'")
            target = lengths[0]
        if padding != "do_not_pad" and pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        if len({max(n, target) for n in lengths}) > 1:  # HF leaves longer inputs as they are: a ragged batch
            raise ValueError(f"inputs of {max(lengths)} samples exceed max_length={target} while others are "
                             "padded to it; pass truncation=True")
        target = max(target, max(lengths))

        B = len(items)
        values = np.full((B, target), self.padding_value, dtype=np.float32)  # (B, N)
        mask = np.zeros(values.shape, dtype=np.int32)  # (B, N)
        for i, a in enumerate(items):
            values[i, : len(a)] = a
            mask[i, : len(a)] = 1

        if self.do_normalize:
            if return_attention_mask and padding != "do_not_pad":
                for i, n in enumerate(lengths):  # statistics over the valid samples only
                    valid = values[i, :n]
                    values[i] = (values[i] - valid.mean()) / np.sqrt(valid.var() + 1e-7)
                    values[i, n:] = self.padding_value
            else:
                for i in range(B):  # HF without a mask: the whole (padded) row
                    values[i] = (values[i] - values[i].mean()) / np.sqrt(values[i].var() + 1e-7)

        out = BatchFeature(input_values=values)
        if return_attention_mask:
            out["attention_mask"] = mask
        return out
