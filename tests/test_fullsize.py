"""The published checkpoint's architecture at full size, random weights.

facebook/s2t-wav2vec2-large-en-de, per transformers' conversion script: encoder =
wav2vec2-large-lv60 (1024 wide, 24 layers, 16 heads, FFN 4096, layer-norm convs with bias,
stable layer norm, positional conv 128/16), decoder = Speech2Text2 (vocab 10224, d_model 256,
7 layers, 4 heads, FFN 2048, relu, scaled embeddings, 1024 positions, untied lm_head),
enc_to_dec_proj 1024 -> 256. Saved both as model.safetensors and as a 2021-style
pytorch_model.bin (positional conv as weight_g / weight_v); minis2t2 loaded from each must
match HF on every intermediate and on greedy and 5-beam ids, for 6 s of audio.

Tolerance: atol = rtol = 1e-4 on every intermediate, as for the tiny models; the measured max
abs error is 2.8e-5 (tools/fullsize_report.py prints the fp32/fp64 error table).
"""

import numpy as np
import pytest
import torch

import minis2t2
from minis2t2.compare import compare_dicts, first_divergence, report
from tests import reference as R
from tests.fullsize import DECODER, ENCODER, write_vocab
from tests.signals import speech_like

ATOL = RTOL = 1e-4


@pytest.fixture(scope="module")
def fullsize(tmp_path_factory):
    root = tmp_path_factory.mktemp("fullsize")
    model = R.build_model(dict(ENCODER), dict(DECODER), seed=0, weight_std=None)
    st, legacy = root / "safetensors", root / "legacy"
    for folder in (st, legacy):
        R.save_model(model, folder, return_attention_mask=True)
        write_vocab(folder)
    (legacy / "model.safetensors").unlink()
    state = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                               "weight_v"): v
             for k, v in model.state_dict().items()}
    torch.save(state, legacy / "pytorch_model.bin")
    del state
    audio = speech_like(96000, seed=11)  # 6 s
    inputs = R.feature_extractor(st)(audio, sampling_rate=16000, return_tensors="np")
    prefix = np.array([[2, 5, 77, 1000, 9]])
    acts, _ = R.record(model, inputs["input_values"], inputs["attention_mask"], decoder_input_ids=prefix)
    greedy = R.generate(model, inputs["input_values"], inputs["attention_mask"], max_new_tokens=12)
    beam = R.generate(model, inputs["input_values"], inputs["attention_mask"], max_new_tokens=12, num_beams=5)
    return {"folders": {"safetensors": st, "legacy_bin": legacy}, "inputs": inputs, "acts": acts,
            "greedy": greedy, "beam": beam}


@pytest.mark.parametrize("fmt", ["safetensors", "legacy_bin"])
def test_fullsize_matches_transformers(fullsize, fmt):
    model = minis2t2.load(fullsize["folders"][fmt])
    inputs = fullsize["inputs"]
    assert model.config.has_enc_to_dec_proj and not model.config.decoder.tie_word_embeddings
    record = {}
    model(inputs["input_values"], inputs["attention_mask"], decoder_input_ids=np.array([[2, 5, 77, 1000, 9]]),
          record=record)
    rows = compare_dicts(fullsize["acts"], record, atol=ATOL, rtol=RTOL)
    assert len(rows) == len(fullsize["acts"]) == len(record)
    assert first_divergence(rows) is None, report(rows)
    print(f"\n{fmt}: max abs error over all intermediates {max(r.max_abs for r in rows):.2e}")
    kwargs = dict(max_new_tokens=12)
    np.testing.assert_array_equal(model.generate(inputs["input_values"], inputs["attention_mask"], **kwargs),
                                  fullsize["greedy"])
    np.testing.assert_array_equal(model.generate(inputs["input_values"], inputs["attention_mask"], num_beams=5,
                                                 **kwargs), fullsize["beam"])
