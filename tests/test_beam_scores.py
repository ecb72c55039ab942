"""minis2t2's beam search returns, beside the ids, the score of each returned hypothesis: what
transformers 4.40.2 returns as ``sequences_scores`` (sum of log-probs / generated length **
length_penalty). Notebook 06 checks its hand-written search against these scores; here they are
checked against transformers, on the shipped demo model and clips cut short, where hypotheses of
different lengths compete and the length penalty changes the winner.

Ids exactly; scores atol 1e-4: sums of a few float32 log-probs from logits that agree to ~1e-5.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SpeechEncoderDecoderModel

import minis2t2
from minis2t2 import decoder as dec
from minis2t2.generation import SearchSettings, beam_search
from minis2t2.layers import padding_bias

DEMO = Path(__file__).resolve().parents[1] / "weights" / "numbers-en-de"
EXPECTED = json.loads((DEMO / "samples" / "expected.json").read_text(encoding="utf-8"))
PIPER_SAMPLE = DEMO / "samples" / max(name for name, e in EXPECTED.items() if e["source"] == "piper")  # held out


@pytest.fixture(scope="module")
def models():
    return minis2t2.load(DEMO), SpeechEncoderDecoderModel.from_pretrained(str(DEMO)).eval()


def minis2t2_beam_search(model, inputs, **kwargs):
    settings = SearchSettings.resolve(model.generation_config.update(**kwargs))
    hidden, frames = model.encode(inputs["input_values"], inputs["attention_mask"])
    B, K = hidden.shape[0], settings.num_beams
    bias = padding_bias(frames, hidden.dtype)
    cache = dec.reorder_cache(dec.cross_attention_cache(model.params.decoder, hidden, model.config.decoder),
                              np.repeat(np.arange(B), K))

    def step(last_ids, cache):
        logits, cache = dec.decode(model.params.decoder, last_ids, cache, bias, model.positions_table,
                                   model.config.decoder)
        return logits[:, -1], cache

    return beam_search(step, cache, B, settings)


@pytest.mark.parametrize("keep", [0.55, 0.85, 1.0])
@pytest.mark.parametrize("length_penalty,early_stopping", [(0.0, False), (1.0, False), (2.0, True), (1.0, "never")])
def test_sequences_scores_match_transformers(models, keep, length_penalty, early_stopping):
    model, hf = models
    audio = minis2t2.load_audio(PIPER_SAMPLE, 16000)
    inputs = model.processor(audio[: int(len(audio) * keep)], sampling_rate=16000)
    kwargs = {"num_beams": 4, "num_return_sequences": 4, "length_penalty": length_penalty, "early_stopping": early_stopping}
    ids, scores = minis2t2_beam_search(model, inputs, **kwargs)
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(inputs["input_values"]),
                          attention_mask=torch.from_numpy(inputs["attention_mask"]),
                          return_dict_in_generate=True, output_scores=True, **kwargs)
    np.testing.assert_array_equal(ids, out.sequences.numpy())
    np.testing.assert_allclose(scores, out.sequences_scores.numpy(), atol=1e-4, rtol=1e-4)
