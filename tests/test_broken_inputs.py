"""A corpus of broken audio files (tests/broken_inputs/, written by tools/make_broken_inputs.py):
each must give its one-line error naming the file (expected.json holds a fragment of it), with
exit status 2, and a batch that mixes them with a good file still translates the good one."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minis2t2.cli import main
from tests.goldens import GOLDEN

CORPUS = Path(__file__).resolve().parent / "broken_inputs"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
MODEL = str(GOLDEN / "large_layer_stable_proj" / "model")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_file_gets_its_error(name, capsys):
    path = CORPUS / name
    assert main(["translate", "--model", MODEL, str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"minis2t2: error: {path}: ")
    assert EXPECTED[name] in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err


def test_a_batch_of_broken_files_still_translates_the_good_one(tmp_path, capsys):
    good = tmp_path / "good.wav"
    soundfile.write(good, (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32), 16000)
    broken = [str(CORPUS / name) for name in sorted(EXPECTED)]
    assert main(["translate", "--model", MODEL, "--json", *broken[:5], str(good), *broken[5:]]) == 2
    captured = capsys.readouterr()
    entries = [json.loads(line) for line in captured.out.splitlines()]
    assert [e["file"] for e in entries] == [*broken[:5], str(good), *broken[5:]]
    assert [("error" in e) for e in entries] == [True] * 5 + [False] + [True] * (len(broken) - 5)
    assert len(captured.err.strip().splitlines()) == len(broken)


def _encoded(fmt: str, subtype: str) -> bytes:
    import io

    buffer = io.BytesIO()
    soundfile.write(buffer, (0.1 * np.random.default_rng(3).standard_normal(4000)).astype(np.float32), 16000,
                    format=fmt, subtype=subtype)
    return buffer.getvalue()


GOOD_FILES = {"wav": _encoded("WAV", "PCM_16"), "flac": _encoded("FLAC", "PCM_16"), "ogg": _encoded("OGG", "VORBIS")}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(GOOD_FILES)), cut=st.integers(0, 3000),
       flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
def test_fuzzed_audio_headers_give_audio_or_our_error(tmp_path, kind, cut, flips):
    """Bytes flipped in the first 200 (the headers) and the end cut off: the reader gives finite
    mono samples or an AudioError naming the file, never another exception."""
    from minis2t2 import AudioError, load_audio

    data = bytearray(GOOD_FILES[kind])
    for at, value in flips:
        data[at % len(data)] = value
    path = tmp_path / f"fuzzed.{kind}"
    path.write_bytes(bytes(data[: len(data) - cut]))
    try:
        audio = load_audio(path, 16000)
    except AudioError as e:
        assert str(e).startswith(str(path))
        return
    assert audio.ndim == 1 and audio.dtype == np.float32 and np.isfinite(audio).all()
