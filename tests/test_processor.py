"""The processor speaks both ways, as transformers' Speech2Text2Processor: audio in, German text
in as labels (ids then </s>, padded with -100), ids out as text. The labels give transformers'
own loss."""

import pytest
import torch
from transformers import Speech2Text2Tokenizer, SpeechEncoderDecoderModel

import minis2t2
from tests.goldens import GOLDEN
from tests.signals import speech_like

MODEL = GOLDEN / "large_layer_stable_proj" / "model"
TEXTS = ["drei und zwanzig", "einhundert", "zwei"]


@pytest.fixture(scope="module")
def model():
    return minis2t2.load(MODEL)


def test_text_in_matches_the_hf_tokenizer(model):
    hf = Speech2Text2Tokenizer(str(MODEL / "vocab.json"), merges_file=str(MODEL / "merges.txt"))
    out = model.processor(text=TEXTS)
    assert out["input_ids"] == hf(TEXTS)["input_ids"]
    eos = hf.eos_token_id
    for row, ids in zip(out["labels"], out["input_ids"]):
        assert list(row[: len(ids) + 1]) == [*ids, eos] and set(row[len(ids) + 1 :]) <= {-100}
    assert model.processor(text="zwei")["input_ids"] == hf("zwei")["input_ids"]
    assert model.processor.batch_decode([[2, *ids, 2] for ids in out["input_ids"]], skip_special_tokens=True) == \
        hf.batch_decode([[2, *ids, 2] for ids in out["input_ids"]], skip_special_tokens=True)


def test_labels_from_text_give_transformers_loss(model):
    waves = [speech_like(n, seed) for n, seed in ((5000, 1), (3000, 2), (4000, 3))]
    inputs = model.processor(waves, sampling_rate=16000, text=TEXTS)
    ours = model(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"]).loss
    hf = SpeechEncoderDecoderModel.from_pretrained(str(MODEL)).eval()
    with torch.no_grad():
        theirs = hf(input_values=torch.from_numpy(inputs["input_values"]),
                    attention_mask=torch.from_numpy(inputs["attention_mask"]).long(),
                    labels=torch.from_numpy(inputs["labels"])).loss.item()
    assert abs(ours - theirs) < 1e-5, (ours, theirs)  # a mean cross-entropy of order 1, in fp32


def test_processor_needs_audio_or_text(model):
    with pytest.raises(ValueError, match="give audio"):
        model.processor()
    assert model.processor.sampling_rate == 16000
