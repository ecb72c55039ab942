"""Generation settings that the goldens never exercise, each against transformers 4.40.2 live:

- ``forced_bos_token_id`` / ``forced_eos_token_id`` (greedy and beam search);
- settings read from config.json when a checkpoint has no generation_config.json (what older hub
  checkpoints do; HF's GenerationConfig.from_model_config);
- the decoder's sinusoidal table computed when a checkpoint does not store it.

Ids exactly; logits atol = rtol = 1e-4 (fp32, unit-scale activations).
"""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import SpeechEncoderDecoderModel

import minis2t2
from tests import reference as R
from tests.goldens import GOLDEN
from tests.signals import speech_like

VARIANT = GOLDEN / "large_layer_stable_proj" / "model"


def inputs_for(model):
    return model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000)


def hf_generate(hf, inputs, **kwargs):
    return R.generate(hf, inputs["input_values"], inputs.get("attention_mask"), **kwargs)


@pytest.mark.parametrize("kwargs", [
    {"forced_bos_token_id": 5, "max_new_tokens": 6},
    {"forced_eos_token_id": 7, "max_new_tokens": 6},
    {"forced_bos_token_id": 5, "forced_eos_token_id": 7, "num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 6},
])
def test_forced_tokens_match_transformers(kwargs):
    model, hf = minis2t2.load(VARIANT), SpeechEncoderDecoderModel.from_pretrained(str(VARIANT)).eval()
    inputs = inputs_for(model)
    ids = model.generate(inputs["input_values"], inputs.get("attention_mask"), **kwargs)
    np.testing.assert_array_equal(ids, hf_generate(hf, inputs, **kwargs))
    if "forced_bos_token_id" in kwargs:
        assert (ids[:, 1] == kwargs["forced_bos_token_id"]).all()


def test_generation_settings_from_config_json(tmp_path):
    """No generation_config.json: the defaults come from config.json's top level, then from its
    decoder section for what the top level leaves at HF's default."""
    folder = tmp_path / "model"
    shutil.copytree(VARIANT, folder)
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    config.update(num_beams=3, length_penalty=0.5, max_length=9, num_return_sequences=2)  # top level
    config["decoder"].update(no_repeat_ngram_size=2)  # only in the decoder section
    (folder / "config.json").write_text(json.dumps(config))
    model, hf = minis2t2.load(folder), SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval()
    g = model.generation_config
    assert (g.num_beams, g.length_penalty, g.max_length, g.no_repeat_ngram_size, g.num_return_sequences) == \
        (3, 0.5, 9, 2, 2) == (hf.generation_config.num_beams, hf.generation_config.length_penalty,
                              hf.generation_config.max_length, hf.generation_config.no_repeat_ngram_size,
                              hf.generation_config.num_return_sequences)
    inputs = inputs_for(model)
    np.testing.assert_array_equal(model.generate(inputs["input_values"], inputs.get("attention_mask")),
                                  hf_generate(hf, inputs))


def test_positions_table_computed_when_the_checkpoint_lacks_it(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(VARIANT, folder)
    tensors = load_file(folder / "model.safetensors")
    stored = tensors.pop("decoder.model.decoder.embed_positions.weights")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    model, hf = minis2t2.load(folder), SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval()
    np.testing.assert_allclose(model.positions_table, stored, atol=1e-4, rtol=0)  # see test_live: float32 sin
    inputs = inputs_for(model)
    labels = np.array([[5, 6, 7, 2], [8, 9, 2, -100]])
    out = model(inputs["input_values"], inputs.get("attention_mask"), labels=labels)
    with torch.no_grad():
        mask = inputs.get("attention_mask")
        theirs = hf(input_values=torch.from_numpy(inputs["input_values"]),
                    attention_mask=None if mask is None else torch.from_numpy(mask), labels=torch.from_numpy(labels))
    np.testing.assert_allclose(out.logits, theirs.logits.numpy(), atol=1e-4, rtol=1e-4)
