"""The command line, run as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pytest

import minis2t2
from minis2t2.cli import main
from tests import reference as R
from tests.goldens import GOLDEN
from tests.signals import speech_like

MODEL = GOLDEN / "large_layer_stable_proj" / "model"


def test_translate_json_matches_transformers(tmp_path, capsys):
    import soundfile

    audio = speech_like(4000, seed=3)
    soundfile.write(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
    assert main(["translate", str(tmp_path / "a.wav"), "--model", str(MODEL), "--json", "--num-beams", "2"]) == 0
    line = json.loads(capsys.readouterr().out)

    from transformers import Speech2Text2Tokenizer, SpeechEncoderDecoderModel

    hf = SpeechEncoderDecoderModel.from_pretrained(str(MODEL)).eval()
    inputs = R.feature_extractor(MODEL)(audio, sampling_rate=16000, return_tensors="np")
    ids = R.generate(hf, inputs["input_values"], inputs["attention_mask"], num_beams=2)
    expected = Speech2Text2Tokenizer.from_pretrained(str(MODEL)).batch_decode(ids, skip_special_tokens=True)[0]
    assert line == {"file": str(tmp_path / "a.wav"), "text": expected}


def test_missing_file_is_a_clear_error(capsys):  # the default model itself: tests/test_demo_model.py
    assert main(["translate", "does-not-exist.wav"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "minis2t2", "translate", "--help"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0 and "--num-beams" in out.stdout


def test_array_and_file_at_8khz_translate_alike(tmp_path):
    import soundfile

    model = minis2t2.load(MODEL)
    at_8k = speech_like(16000, seed=4)[::2]
    soundfile.write(tmp_path / "a.wav", at_8k, 8000, subtype="FLOAT")
    assert model.translate(at_8k.astype(np.float64), sampling_rate=8000) == model.translate(tmp_path / "a.wav")


def test_inspect_prints_every_activation_and_the_steps(tmp_path, capsys):
    import soundfile

    soundfile.write(tmp_path / "a.wav", speech_like(4000, seed=4), 16000, subtype="FLOAT")
    assert main(["inspect", str(tmp_path / "a.wav"), "--model", str(MODEL)]) == 0
    out = capsys.readouterr().out
    model = minis2t2.load(MODEL)
    inputs = model.processor(speech_like(4000, seed=4), sampling_rate=16000)
    record = {}
    ids = model.generate(inputs["input_values"], inputs["attention_mask"], record=record)
    names = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in record]
    assert names == list(record), "every recorded activation, in model order"
    conv0 = next(line for line in out.splitlines() if line.startswith("encoder.feature_extractor.conv_layers.0 "))
    assert f"{record['encoder.feature_extractor.conv_layers.0'].max():.4g}" in conv0
    assert f"ids {ids[0].tolist()}" in out
    assert sum(line.startswith("step ") for line in out.splitlines()) == ids.shape[1] - 1


def test_a_bad_file_does_not_stop_the_batch(tmp_path, capsys):
    import soundfile

    soundfile.write(tmp_path / "a.wav", speech_like(4000, seed=3), 16000, subtype="FLOAT")
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wav")
    (tmp_path / "adir").mkdir()
    files = [tmp_path / "a.wav", tmp_path / "bad.wav", tmp_path / "adir", tmp_path / "a.wav"]
    assert main(["translate", *map(str, files), "--model", str(MODEL)]) == 2
    captured = capsys.readouterr()
    good = [line for line in captured.out.splitlines() if line.startswith(str(tmp_path / "a.wav"))]
    assert len(good) == 2 and len(captured.out.splitlines()) == 2, "both good files translated"
    errors = captured.err.splitlines()
    assert len(errors) == 2 and str(tmp_path / "bad.wav") in errors[0] and "is a directory" in errors[1]
    assert main(["translate", *map(str, files), "--model", str(MODEL), "--json"]) == 2
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [sorted(e) for e in entries] == [["file", "text"], ["error", "file"], ["error", "file"], ["file", "text"]]


def test_version_typo_paths_and_exit_codes(tmp_path, capsys):
    with_version = subprocess.run([sys.executable, "-m", "minis2t2", "--version"], capture_output=True, text=True,
                                  check=False)
    assert with_version.returncode == 0 and with_version.stdout.strip() == f"minis2t2 {minis2t2.__version__}"
    usage = subprocess.run([sys.executable, "-m", "minis2t2", "--help"], capture_output=True, text=True,
                           check=False).stdout
    assert "2 bad input or usage, 3 internal error" in " ".join(usage.split())
    typo = str(MODEL.parent / "modell")  # looks like a path: never a hub lookup
    assert main(["translate", "x.wav", "--model", typo]) == 2
    assert capsys.readouterr().err.strip() == f"minis2t2: error: {typo}: no such model folder"


def test_options_are_checked_once_before_any_file(tmp_path, capsys):
    """A bad option is named, once, with exit 2, before any file is read (the files here do not exist)."""
    missing = [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", *missing, "--num-beams", "0"])
    assert exit_info.value.code == 2 and "argument --num-beams: must be a whole number >= 1" in capsys.readouterr().err
    assert main(["translate", *missing, "--max-seconds", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("--max-seconds 0.01") == 1 and "a.wav" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "a", "b", "--atol", "-1"])
    assert exit_info.value.code == 2 and "argument --atol: must be a number >= 0" in capsys.readouterr().err


def test_debug_is_accepted_anywhere(tmp_path, capsys):
    missing = str(tmp_path / "nothing.wav")
    for argv in (["--debug", "translate", missing], ["translate", "--debug", missing], ["translate", missing, "--debug"]):
        assert main(argv) == 2
        assert "nothing.wav: no such file" in capsys.readouterr().err
