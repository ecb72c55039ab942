"""Audio in: files -> 16 kHz mono float32, and the Wav2Vec2FeatureExtractor equivalent.

Dimension legend: B batch, N samples.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
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


def resample_in_blocks(read, length: int, orig_rate: int, target_rate: int, out: np.ndarray,
                       block_seconds: float = 60.0) -> np.ndarray:
    """``resample`` of a signal too long to hold, a block at a time: ``read(start, stop)`` gives its
    samples [start, stop) (N = ``length`` in all), ``out`` (N') receives the result.

    Plain form: ``out[:] = resample(read(0, length), orig_rate, target_rate)``. Output sample k sits
    at input time k * down / up (up/down the reduced ratio), so a block that starts at a multiple of
    ``down`` maps to whole output samples; each block is read with ``margin`` extra input samples
    on both sides, more than the filter's half-length (10 * max(up, down) taps at the upsampled
    rate), so every kept output sample sees the same inputs as in one pass (tests/test_long_audio.py
    holds the two equal).
    """
    g = math.gcd(orig_rate, target_rate)
    up, down = target_rate // g, orig_rate // g
    if up == down:
        for start in range(0, length, int(block_seconds * orig_rate)):
            stop = min(length, start + int(block_seconds * orig_rate))
            out[start:stop] = read(start, stop)
        return out
    block = down * max(1, round(block_seconds * orig_rate / down))  # input samples per block
    margin = down * math.ceil((10 * max(up, down) / up + 2) / down)  # input samples, a multiple of down
    for start in range(0, length, block):
        stop = min(length, start + block)
        a, b = max(0, start - margin), min(length, stop + margin)
        y = scipy.signal.resample_poly(read(a, b), up, down).astype(np.float32)
        first, last = start * up // down, (stop * up // down if stop < length else len(out))
        out[first:last] = y[first - a * up // down : last - a * up // down]
    return out


# What a file may declare before anything is decoded or resampled: a header is only a claim, and
# a 3 KB file can claim 2**31 Hz or 2**36 frames (gigabytes once decoded or resampled).
INPUT_RATES = (1000, 768000)  # Hz; telephone 8 kHz to 768 kHz studio audio
MODEL_RATES = (1000, 192000)  # Hz a model's preprocessor_config.json may ask for
MAX_SECONDS = 4 * 3600  # longest file read, per channel
MAX_CHANNELS = 64
IN_MEMORY_SECONDS = 600  # a longer recording is resampled into a temporary file on disk, mapped as the array
MAX_FLOAT_PEAK = 1e10  # float samples beyond this (int32 PCM read as floats peaks at 2.1e9) overflow the processor


def load_audio(path: str | Path, sampling_rate: int = 16000) -> np.ndarray:
    """Read any file soundfile reads (wav/flac/ogg, int or float samples, any channel count), or a
    named pipe; the name may be any bytes the file system allows.

    Channels are averaged to mono, then resampled to ``sampling_rate``.   -> (N,) float32
    The file is decoded and resampled a block at a time (``resample_in_blocks``); a recording
    longer than IN_MEMORY_SECONDS goes into a temporary file on disk that the returned array maps,
    so memory stays that of one block whatever the length (the file is deleted when the array is).
    """
    import soundfile  # here, not at the top: only reading files needs libsndfile (a GPU box may lack it)

    if not (isinstance(sampling_rate, (int, np.integer)) and not isinstance(sampling_rate, bool)
            and MODEL_RATES[0] <= sampling_rate <= MODEL_RATES[1]):
        raise AudioError(f"load_audio: sampling_rate is the rate to resample to, an integer number of Hz in "
                         f"{MODEL_RATES[0]}-{MODEL_RATES[1]}; got {sampling_rate!r}")
    if not isinstance(path, (str, Path)):
        raise AudioError(f"load_audio: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        with seekable(path) as file, soundfile.SoundFile(file) as sound:
            rate, channels, frames = sound.samplerate, sound.channels, sound.frames
            if not INPUT_RATES[0] <= rate <= INPUT_RATES[1]:
                raise AudioError(f"{path}: declares a sample rate of {rate} Hz; minis2t2 reads "
                                 f"{INPUT_RATES[0]}-{INPUT_RATES[1]} Hz")
            if not 1 <= channels <= MAX_CHANNELS:
                raise AudioError(f"{path}: declares {channels} channels; minis2t2 reads 1-{MAX_CHANNELS}")
            if frames > MAX_SECONDS * rate:
                raise AudioError(f"{path}: declares {frames} frames ({frames / rate:.0f} s); "
                                 f"minis2t2 reads at most {MAX_SECONDS} s")
            if frames == 0:
                raise AudioError(f"{path}: holds no samples")

            def read(start: int, stop: int) -> np.ndarray:  # mono samples [start, stop) at the file's rate
                sound.seek(start)
                block = sound.read(stop - start, dtype="float32", always_2d=True).mean(axis=1)  # (n,)
                if len(block) != stop - start:
                    raise AudioError(f"{path}: ends after {start + len(block)} of the {frames} frames it declares")
                if not np.isfinite(block).all():
                    raise AudioError(f"{path}: contains NaN or inf samples")
                if len(block) and np.abs(block).max() > MAX_FLOAT_PEAK:
                    raise AudioError(f"{path}: holds samples up to {np.abs(block).max():.1e}; float audio lies "
                                     "within about +-1 (a damaged file, or one written at the wrong scale)")
                return block

            length = -(-frames * sampling_rate // rate)  # resample_poly's output length, ceil(N * up / down)
            out = disk_array(length) if length > IN_MEMORY_SECONDS * sampling_rate else np.empty(length, np.float32)
            return resample_in_blocks(read, frames, rate, sampling_rate, out)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError, OSError) as e:
        if isinstance(e, AudioError):
            raise
        reason = str(e).split("': ", 1)[-1] if str(e).startswith("Error opening") else str(e)  # path said once
        raise AudioError(f"{path}: cannot read audio ({reason})") from e


@contextlib.contextmanager
def seekable(path: Path):
    """The file opened for reading; a named pipe or other stream is first copied to a temporary
    file (libsndfile needs to seek), a block at a time."""
    if path.is_file():
        with open(path, "rb") as f:  # opened by Python: any file name the OS allows, UTF-8 or not
            yield f
        return
    with open(path, "rb") as stream, tempfile.TemporaryFile() as copy:
        shutil.copyfileobj(stream, copy, 1 << 20)
        copy.seek(0)
        yield copy


def disk_array(length: int) -> np.ndarray:
    """A float32 array of ``length`` backed by an unnamed temporary file, not by memory."""
    with tempfile.TemporaryFile() as f:  # the map keeps the file alive after it is closed
        f.truncate(length * 4)
        return np.memmap(f, dtype=np.float32, mode="w+", shape=(length,))


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
