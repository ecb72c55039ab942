"""Write tests/broken_inputs/: small audio files that are broken in the ways real files are.

    python -m tools.make_broken_inputs

Each file's expected error (a fragment of minis2t2's one-line message) is in expected.json;
tests/test_broken_inputs.py translates every file and checks it. Regenerating gives the same bytes.
"""

import io
import json
import struct
from pathlib import Path

import numpy as np
import soundfile

OUT = Path(__file__).resolve().parents[1] / "tests" / "broken_inputs"


def wav(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytearray:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return bytearray(buffer.getvalue())


def with_rate(data: bytearray, rate: int) -> bytes:
    """A WAV whose fmt chunk declares another sample rate (and the matching byte rate)."""
    block_align = struct.unpack_from("<H", data, 32)[0]
    struct.pack_into("<II", data, 24, rate, (rate * block_align) & 0xFFFFFFFF)
    return bytes(data)


def flac_claiming_frames(frames: int) -> bytes:
    """A FLAC whose STREAMINFO declares ``frames`` samples (36-bit field) it does not hold."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(1600, np.float32), 16000, format="FLAC")
    data = bytearray(buffer.getvalue())
    info = 8  # "fLaC" + 4-byte block header, then STREAMINFO
    packed = int.from_bytes(data[info + 10 : info + 18], "big")  # rate 20 | channels-1 3 | bits-1 5 | frames 36
    packed = (packed & ~((1 << 36) - 1)) | frames
    data[info + 10 : info + 18] = packed.to_bytes(8, "big")
    return bytes(data)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    speech_like = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    good = wav(speech_like)
    nan = speech_like.copy()
    nan[100] = np.nan
    files = {
        "zero_bytes.wav": (b"", "cannot read audio"),
        "not_audio.wav": (b"this is a text file, not a recording\n" * 20, "cannot read audio"),
        "header_only.wav": (bytes(good[:44]), "holds no samples"),
        "truncated_header.wav": (bytes(good[:30]), "cannot read audio"),
        "rate_1092676hz.wav": (with_rate(bytearray(good), 1_092_676), "declares a sample rate of 1092676 Hz"),
        "rate_2147483647hz.wav": (with_rate(bytearray(good), 2_147_483_647), "declares a sample rate of 2147483647 Hz"),
        "rate_1hz.wav": (with_rate(bytearray(good), 1), "declares a sample rate of 1 Hz"),
        "frames_2e36.flac": (flac_claiming_frames((1 << 36) - 1), "declares 68719476735 frames"),
        "nan_samples.wav": (bytes(wav(nan, subtype="FLOAT")), "contains NaN or inf"),
        "ten_samples.wav": (bytes(wav(speech_like[:10])), "is too short"),
    }
    expected = {}
    for name, (content, message) in files.items():
        (OUT / name).write_bytes(content)
        expected[name] = message
    (OUT / "a_directory.wav").mkdir(exist_ok=True)
    (OUT / "a_directory.wav" / "README").write_text("A folder named like an audio file.\n")
    expected["a_directory.wav"] = "is a directory, not an audio file"
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {len(expected)} broken inputs to {OUT}")


if __name__ == "__main__":
    main()
