"""The KV cache changes nothing, and for layer-norm models padding changes nothing.

Cached vs uncached logits: atol 1e-5 (same arithmetic, only the attention's key count
differs by the masked future, so differences are a few float32 ulps).
Padded batch vs alone: atol 1e-4 (different matmul shapes reorder float32 sums).
"""

import numpy as np
import pytest
from safetensors.numpy import load_file

import minis2t2
from minis2t2 import decoder as dec
from minis2t2.layers import padding_bias
from tests.goldens import GOLDEN

LAYER_NORM_MODELS = ["large_layer_stable_proj", "hubert_noprojln", "noscale_gelunew_silu"]


@pytest.mark.parametrize("variant", ["base_group_postln", *LAYER_NORM_MODELS])
def test_cached_steps_equal_uncached_forward(variant):
    model = minis2t2.load(GOLDEN / variant / "model")
    golden = load_file(str(GOLDEN / variant / "golden.safetensors"))
    values, mask = golden["batch/input_values"], golden.get("batch/attention_mask")
    ids = golden["generate/beam4_never_norepeat"]  # (B, L) a varied token sequence
    full = model(values, mask, decoder_input_ids=ids).logits  # (B, L, V) one uncached pass

    hidden, frames = model.encode(values, mask)
    cache = dec.cross_attention_cache(model.params.decoder, hidden, model.config.decoder)
    bias = None if frames is None else padding_bias(frames, hidden.dtype)
    for t in range(ids.shape[1]):
        step, cache = dec.decode(model.params.decoder, ids[:, t : t + 1], cache, bias, model.positions_table,
                                 model.config.decoder)
        np.testing.assert_allclose(step[:, 0], full[:, t], atol=1e-5, rtol=1e-5, err_msg=f"step {t}")
    assert cache[0]["self_k"].shape[2] == ids.shape[1]


@pytest.mark.parametrize("variant", LAYER_NORM_MODELS)
def test_padded_batch_item_equals_item_alone(variant):
    model = minis2t2.load(GOLDEN / variant / "model")
    golden = load_file(str(GOLDEN / variant / "golden.safetensors"))
    audio = [golden["raw/0"], golden["raw/1"]]  # item 1 is shorter: padded in the batch
    ids = np.array([[2, 5, 6, 7], [2, 8, 9, 10]])
    batch_in = model.processor(audio, sampling_rate=16000)
    batch = model(batch_in["input_values"], batch_in["attention_mask"], decoder_input_ids=ids)
    for i in range(2):
        alone_in = model.processor(audio[i], sampling_rate=16000)
        alone = model(alone_in["input_values"], alone_in["attention_mask"], decoder_input_ids=ids[i : i + 1])
        np.testing.assert_allclose(batch.logits[i], alone.logits[0], atol=1e-4, rtol=1e-4)
        T = alone.encoder_last_hidden_state.shape[1]
        np.testing.assert_allclose(batch.encoder_last_hidden_state[i, :T], alone.encoder_last_hidden_state[0],
                                   atol=1e-4, rtol=1e-4)
    generated = model.generate(batch_in["input_values"], batch_in["attention_mask"], num_beams=3)
    for i in range(2):
        alone_in = model.processor(audio[i], sampling_rate=16000)
        single = model.generate(alone_in["input_values"], alone_in["attention_mask"], num_beams=3)[0]
        np.testing.assert_array_equal(generated[i, : len(single)], single)


def test_cross_attend_folds_beams_as_the_plain_form_reads():
    """cross_attend with K beams per input equals the plain form: each row attending to its own
    input's keys and values, copied per beam."""
    from minis2t2.decoder import cross_attend
    from minis2t2.layers import attend

    rng = np.random.default_rng(0)
    B_in, K, H, S, T, D = 2, 3, 2, 4, 7, 5
    q = rng.standard_normal((B_in * K, H, S, D))
    k, v = rng.standard_normal((B_in, H, T, D)), rng.standard_normal((B_in, H, T, D))
    bias = np.zeros((B_in, 1, 1, T))
    bias[1, ..., 5:] = np.finfo(np.float64).min  # input 1 has two padded frames
    rows = np.arange(B_in * K) // K  # the input each row belongs to
    plain_out, plain_w = attend(q, k[rows], v[rows], bias[rows])
    out, w = cross_attend(q, k, v, bias)
    np.testing.assert_allclose(out, plain_out, atol=1e-12)
    np.testing.assert_allclose(w, plain_w, atol=1e-12)
