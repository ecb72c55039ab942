"""Code written the transformers way runs on minis2t2 and gives transformers 4.40.2's answers: the
processor's BatchFeature (attribute access, return_tensors="np"), ``model(**processor(audio,
text=...))``, ``generate(inputs=..., return_dict_in_generate=True, output_scores=True)`` with
``sequences``, ``scores`` and ``sequences_scores``, ``output_hidden_states=True`` and outputs
indexable like ModelOutput. Tolerances: fp32 activations and scores atol 1e-4 (unit scale), ids exact."""

import numpy as np
import pytest
import torch
from transformers import SpeechEncoderDecoderModel, Wav2Vec2FeatureExtractor

import minis2t2
from tests.goldens import GOLDEN
from tests.signals import speech_like

VARIANTS = ["base_group_postln", "large_layer_stable_proj"]
AUDIO = [speech_like(3200, seed=0), speech_like(2400, seed=1)]


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request):
    folder = GOLDEN / request.param / "model"
    return minis2t2.load(folder), SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval(), folder


def test_processor_output_is_a_batch_feature(pair):
    model, _, folder = pair
    inputs = model.processor(AUDIO, sampling_rate=16000, return_tensors="np")
    theirs = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))(AUDIO, sampling_rate=16000, padding=True,
                                                                   return_tensors="np")
    np.testing.assert_allclose(inputs.input_values, theirs.input_values, atol=1e-6)
    assert inputs.input_values is inputs["input_values"]
    assert sorted(inputs) == sorted(theirs)
    with pytest.raises(AttributeError, match="has no 'labels'"):
        _ = inputs.labels
    with pytest.raises(ValueError, match="return_tensors='np'"):
        model.processor(AUDIO, sampling_rate=16000, return_tensors="pt")


def test_model_of_the_processor_output_computes_the_loss(pair):
    model, hf, _ = pair
    texts = ["a b", "c"]
    inputs = model.processor(AUDIO, sampling_rate=16000, text=texts)
    assert "input_ids" not in inputs and inputs.labels.shape[0] == 2
    out = model(**inputs)
    with torch.no_grad():
        expected = hf(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()})
    assert abs(out.loss - expected.loss.item()) < 1e-5
    assert out[0] == out.loss and out["logits"] is out.logits and out.keys()[:2] == ["loss", "logits"]
    np.testing.assert_allclose(out[1], expected[1].numpy(), atol=1e-4)
    assert len(out.to_tuple()) == len(expected.to_tuple()) - 1  # transformers also returns its KV cache


@pytest.mark.parametrize("kwargs", [{}, {"num_beams": 3}, {"num_beams": 3, "num_return_sequences": 2}])
def test_generate_returns_transformers_scores(pair, kwargs):
    model, hf, _ = pair
    inputs = model.processor(AUDIO, sampling_rate=16000)
    ours = model.generate(inputs=inputs.input_values, attention_mask=inputs.get("attention_mask"),
                          return_dict_in_generate=True, output_scores=True, max_new_tokens=6, **kwargs)
    with torch.no_grad():
        theirs = hf.generate(inputs=torch.from_numpy(inputs.input_values),
                             attention_mask=None if "attention_mask" not in inputs else
                             torch.from_numpy(inputs.attention_mask), return_dict_in_generate=True,
                             output_scores=True, max_new_tokens=6, **kwargs)
    np.testing.assert_array_equal(ours.sequences, theirs.sequences.numpy())
    assert len(ours.scores) == len(theirs.scores)
    for mine, expected in zip(ours.scores, theirs.scores):
        finite = np.isfinite(expected.numpy())
        np.testing.assert_array_equal(np.isfinite(mine), finite)
        np.testing.assert_allclose(mine[finite], expected.numpy()[finite], atol=1e-4)
    if kwargs:
        np.testing.assert_allclose(ours.sequences_scores, theirs.sequences_scores.numpy(), atol=1e-5)
    else:
        assert ours.sequences_scores is None
    np.testing.assert_array_equal(ours[0], ours.sequences)
    plain = model.generate(input_values=inputs.input_values, attention_mask=inputs.get("attention_mask"),
                           max_new_tokens=6, **kwargs)
    np.testing.assert_array_equal(plain, ours.sequences)


def test_output_hidden_states_are_transformers_tuples(pair):
    model, hf, _ = pair
    inputs = model.processor(AUDIO, sampling_rate=16000, text=["a b", "c"])
    out = model(**inputs, output_hidden_states=True)
    with torch.no_grad():
        expected = hf(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}, output_hidden_states=True)
    for name in ("encoder_hidden_states", "decoder_hidden_states"):
        mine, theirs = getattr(out, name), getattr(expected, name)
        assert len(mine) == len(theirs), name
        for i, (a, b) in enumerate(zip(mine, theirs)):
            np.testing.assert_allclose(a, b.numpy(), atol=1e-4, err_msg=f"{name}[{i}]")


def test_generate_takes_its_input_once(pair):
    model, _, _ = pair
    values = model.processor(AUDIO[0], sampling_rate=16000).input_values
    with pytest.raises(ValueError, match="once"):
        model.generate(values, input_values=values)
    with pytest.raises(ValueError, match="once"):
        model.generate()
