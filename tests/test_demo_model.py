"""The shipped demo model (weights/numbers-en-de): its samples translate correctly, and exactly
as transformers translates them.

The samples are held-out recordings (unseen utterances; the flite awb and Piper voices were
never trained on), from several synthesizers, written at several sample rates and formats by
tools/demo/evaluate.py; expected.json holds the German text spelled by rule
(tools/demo/spell.py), not anything a model produced. Both sides read and resample the file with
minis2t2.load_audio (transformers has no audio reader of its own); from the 16 kHz waveform on,
the reference side is transformers' feature extractor, generate and tokenizer.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import minis2t2
from minis2t2.cli import main
from minis2t2.loading import DEFAULT_MODEL_NAME

DEMO = Path(__file__).resolve().parents[1] / "weights" / DEFAULT_MODEL_NAME
EXPECTED = json.loads((DEMO / "samples" / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def models():
    from transformers import Speech2Text2Tokenizer, SpeechEncoderDecoderModel, Wav2Vec2FeatureExtractor

    hf = SpeechEncoderDecoderModel.from_pretrained(str(DEMO)).eval()
    return minis2t2.load(DEMO), hf, Wav2Vec2FeatureExtractor.from_pretrained(str(DEMO)), \
        Speech2Text2Tokenizer.from_pretrained(str(DEMO))


def test_shipped_folder_is_small_and_complete():
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size < 10 * 2**20
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json", "special_tokens_map.json", "model.safetensors", "README.md"):
        assert (DEMO / name).is_file(), name
    assert len(EXPECTED) >= 5
    assert len({e["source"] for e in EXPECTED.values()}) >= 3, "samples from at least three synthesizers"
    assert "dreiundsiebzig" in {e["german"] for e in EXPECTED.values()}, "the notebooks' 'seventy three'"
    rates = {soundfile.info(DEMO / "samples" / name).samplerate for name in EXPECTED}
    assert len(rates) >= 4 and rates != {16000}
    assert all((DEMO / "samples" / name).stat().st_size < 100_000 for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_translates_correctly_and_as_transformers(models, name):
    model, hf, fe, tok = models
    path = DEMO / "samples" / name
    assert model.translate(path) == EXPECTED[name]["german"]

    audio = minis2t2.load_audio(path, 16000)
    ours = model.processor(audio, sampling_rate=16000)
    ids = model.generate(ours["input_values"], ours.get("attention_mask"))
    theirs = fe(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hf_ids = hf.generate(input_values=theirs["input_values"], attention_mask=theirs["attention_mask"]).numpy()
    np.testing.assert_array_equal(ids, hf_ids)
    assert tok.batch_decode(hf_ids, skip_special_tokens=True) == [EXPECTED[name]["german"]]


def test_cli_default_model_translates_a_sample(capsys):
    name = min(EXPECTED)
    assert main(["translate", str(DEMO / "samples" / name)]) == 0
    assert capsys.readouterr().out == f"{DEMO / 'samples' / name}\t{EXPECTED[name]['german']}\n"
