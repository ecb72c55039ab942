"""The demo recipe's model growth (tools/demo/train.py --grow-encoder-layers) keeps the trained model's outputs.

Growing appends encoder layers whose output projections are zero, so the grown model must compute
exactly what the trained one did before any training step: checked in transformers (the recipe
trains there) and through minis2t2, which must read the grown folder's new layer count.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import minis2t2
from minis2t2.model import DEFAULT_MODEL_NAME

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "weights" / DEFAULT_MODEL_NAME


@pytest.fixture(scope="module")
def grow_encoder():
    sys.path.insert(0, str(ROOT / "tools" / "demo"))
    try:
        from train import grow_encoder
    finally:
        sys.path.remove(str(ROOT / "tools" / "demo"))
    return grow_encoder


def test_grown_encoder_computes_what_the_trained_one_did(grow_encoder, tmp_path):
    from transformers import SpeechEncoderDecoderModel

    model = SpeechEncoderDecoderModel.from_pretrained(str(DEMO)).eval()
    layers = model.config.encoder.num_hidden_layers
    audio = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32))
    mask = torch.ones(2, 16000, dtype=torch.long)
    with torch.no_grad():
        before = model.encoder(audio, attention_mask=mask).last_hidden_state
        grow_encoder(model, 2)
        after = model.encoder(audio, attention_mask=mask).last_hidden_state
        projected = model.enc_to_dec_proj(before).numpy()  # what minis2t2's encode returns: decoder-width frames
    assert len(model.encoder.encoder.layers) == model.config.encoder.num_hidden_layers == layers + 2
    assert torch.equal(before, after)  # the new layers add exact zeros to the residual stream
    assert model.encoder.encoder.layers[-1].attention.q_proj.weight.abs().sum() > 0  # the rest is initialised

    for name in ("preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                 "special_tokens_map.json"):
        shutil.copy(DEMO / name, tmp_path)
    model.save_pretrained(str(tmp_path), safe_serialization=True)  # config.json (new layer count), weights
    grown = minis2t2.load(tmp_path)
    ours, _ = grown.encode(audio.numpy(), attention_mask=mask.numpy())
    np.testing.assert_allclose(ours, projected, atol=1e-4)  # fp32, activations of unit scale after layer norm
