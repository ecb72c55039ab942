"""The demo model's recipe pieces: number spellers (checked against num2words, an independent
well-kept package), the BPE learner (its files read by transformers' tokenizer), the training-speed
feature encoder and 40 ms frames against HF's, the clean-start curriculum, and the recorded
evaluation words' usage error when their Debian package is missing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from num2words import num2words
from transformers import Speech2Text2Tokenizer

import minis2t2
from minis2t2.loading import DEFAULT_MODEL_NAME
from tools.demo import data, train
from tools.demo.bpe import SPECIALS, learn_merges
from tools.demo.spell import english, german, german_parts
from tools.demo.train import Batches, build_model, channels_last_feature_encoder

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "weights" / DEFAULT_MODEL_NAME


def test_german_matches_num2words():
    for n in range(1000):
        assert german(n) == num2words(n, lang="de"), n
        assert "".join(german_parts(n)) == german(n)


def test_english_matches_num2words():
    for n in range(1000):
        assert english(n, british_and=True) == num2words(n, lang="en").replace("-", " "), n
        assert english(n) == english(n, british_and=True).replace(" and ", " ")


def test_bpe_pieces_are_morphemes(tmp_path):
    merges = learn_merges([german_parts(n) for n in range(1000)], num_merges=1000)
    (tmp_path / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in merges))
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(SPECIALS)}))
    probe = Speech2Text2Tokenizer(str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt"))
    for n in range(1000):
        assert [t.rstrip("@") for t in probe.tokenize(german(n))] == german_parts(n), n


def minis2t2_encode(model, folder: Path, audio: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Save ``model`` as a demo-model folder (its tokenizer and processor files) and return what
    minis2t2, loading that folder, encodes ``audio`` to: decoder-width frames (B, T, 96)."""
    shutil.copytree(DEMO, folder, dirs_exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)  # over config.json and the weights
    ours, _ = minis2t2.load(folder).encode(audio.numpy(), attention_mask=mask.numpy())
    return ours


def test_channels_last_feature_encoder_matches_hf():
    """The training-speed feature encoder against HF's own, forward and backward, on a fresh model."""
    torch.manual_seed(0)
    reference = build_model(44).train()
    fast = build_model(44).train()
    fast.load_state_dict(reference.state_dict())
    channels_last_feature_encoder(fast)
    audio = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 12345)).astype(np.float32))
    results = []
    for model in (reference, fast):
        features = model.encoder.feature_extractor(audio)  # (batch, channels, frames)
        (features * torch.linspace(-1, 1, features.shape[-1])).sum().backward()
        results.append((features.detach(), {n: p.grad for n, p in model.encoder.feature_extractor.named_parameters()}))
    (theirs, their_grads), (ours, our_grads) = results
    assert ours.shape == theirs.shape == (3, 144, 38)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)  # fp32, unit scale after LayerNorm + GELU
    assert our_grads.keys() == their_grads.keys() and len(our_grads) == 16  # conv and norm, weight and bias, x 4
    for name, grad in their_grads.items():  # sums over ~10^4 positions: tolerance relative to each one's scale
        torch.testing.assert_close(our_grads[name], grad, atol=1e-4 * grad.abs().max().item(), rtol=0, msg=name)


def test_40_ms_frames_model(tmp_path):
    """train.py --frame-ms 40: half the frames of the 20 ms model, the time masks and positional
    conv as long in seconds, and a folder that minis2t2 reads and computes as transformers does."""
    torch.manual_seed(0)
    model, base = build_model(44, frame_ms=40).eval(), build_model(44).eval()
    lengths = torch.tensor([16000, 12345])
    assert model.encoder._get_feat_extract_output_lengths(lengths).tolist() == [24, 19]
    assert base.encoder._get_feat_extract_output_lengths(lengths).tolist() == [49, 38]
    assert (model.config.encoder.mask_time_length, base.config.encoder.mask_time_length) == (3, 5)
    assert (model.config.encoder.num_conv_pos_embeddings, base.config.encoder.num_conv_pos_embeddings) == (16, 32)

    audio = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 16000)).astype(np.float32))
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 12345:] = 0
    with torch.no_grad():
        theirs = model.enc_to_dec_proj(model.encoder(audio, attention_mask=mask).last_hidden_state).numpy()
    ours = minis2t2_encode(model, tmp_path, audio, mask)
    assert ours.shape == theirs.shape == (2, 24, 96)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-4)  # fp32, activations of unit scale
    np.testing.assert_allclose(ours[1, :19], theirs[1, :19], atol=1e-4)  # the frames the mask keeps


def test_clean_start_batches_begin_clean(monkeypatch):
    """--clean-start N: batch 0 holds the clips as synthesized (only silence around them), batch N
    and later go through the augmentation chain."""
    monkeypatch.setattr(train, "P_WORD_BANK", 0.0)
    monkeypatch.setattr(train, "P_NON_SPEECH", 0.0)
    rng = np.random.default_rng(0)
    clips = [(rng.uniform(-1, 1, int(rng.integers(4000, 8000))) * 3000).astype(np.int16) | 1 for _ in range(40)]
    items = [{"number": i, "british_and": False} for i in range(40)]
    word_id = {w: i + 1 for i, w in enumerate(data.WORDS)}
    labels_of = {n: [5, 2] for n in range(40)}
    unpadded = lambda waves, **_: {"input_values": waves, "attention_mask": None}
    batches = Batches(clips, items, [], [], labels_of, word_id, unpadded, 8, 100, 3, clean_start=50)
    sources = {clip.tobytes() for clip in clips}

    def clean(wave):
        spoken = np.flatnonzero(wave)
        return (wave[spoken[0] : spoken[-1] + 1] * 32768).astype(np.int16).tobytes() in sources

    assert all(clean(w) for w in batches[0][0])
    assert not any(clean(w) for w in batches[50][0] + batches[99][0])


def test_recorded_words_missing_package_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "one.wav").write_bytes(b"")
    monkeypatch.setattr(data, "RECORDED_WORDS", {"some-data": (str(tmp_path), {"one.wav": 1, "two.wav": 2})})
    with pytest.raises(SystemExit) as exit_:
        data.recorded_words()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == f"{tmp_path}: two.wav missing; install them with apt-get install some-data\n"
