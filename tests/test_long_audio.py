"""Attention over long audio in bounded memory: queries go through in blocks, so without the
attention maps no (T, T) matrix for all heads is built, and the result is the same."""

import tracemalloc

import numpy as np
import pytest

from minis2t2 import layers
from minis2t2.layers import attend, padding_bias


def test_blocked_attention_is_the_same_and_linear_in_memory(monkeypatch):
    rng = np.random.default_rng(0)
    B, H, T, D = 1, 4, 3000, 8  # 3000 frames = 60 s of audio; all scores at once: 4 * 3000**2 * 4 B = 144 MB
    q, k, v = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(3))
    mask = np.ones((B, T), np.int32)
    mask[:, 2900:] = 0
    bias = padding_bias(mask, np.float32)  # (B, 1, 1, T)

    tracemalloc.start()
    blocked, weights = attend(q, k, v, bias, keep_weights=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert weights is None
    assert peak < 6 * layers.ATTENTION_BLOCK_BYTES, f"peak {peak / 2**20:.0f} MiB: a (T, T) matrix was built"

    monkeypatch.setattr(layers, "ATTENTION_BLOCK_BYTES", 1 << 40)  # one block: the plain textbook form
    whole, whole_weights = attend(q, k, v, bias)
    assert whole_weights.shape == (B, H, T, T)
    # the same sums in another BLAS blocking: fp32 rounding over 3000 keys, ~sqrt(3000) * 6e-8 * max|v| ~ 1e-5
    np.testing.assert_allclose(blocked, whole, atol=1e-5, rtol=0)


def test_blocks_of_a_causal_bias():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 3, 50, 4)) for _ in range(3))  # float64
    causal = np.triu(np.full((50, 50), np.finfo(np.float64).min), 1)[None, None]  # (1, 1, Lq, Lk)
    whole, w = attend(q, k, v, causal)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(layers, "ATTENTION_BLOCK_BYTES", 2 * 3 * 50 * 8 * 7)  # 7 query rows per block
        blocked, wb = attend(q, k, v, causal)
    np.testing.assert_allclose(blocked, whole, atol=1e-12)
    np.testing.assert_allclose(wb, w, atol=1e-12)


def test_conv_stack_in_slices_gives_the_same_frames(monkeypatch):
    """A layer-norm conv stack run on overlapping slices of the audio (7 frames each, so the slice
    borders fall everywhere) gives the frames of one pass, for every padded item of a batch."""
    import minis2t2
    from conftest import GOLDEN

    from minis2t2 import encoder

    model = minis2t2.load(GOLDEN / "large_layer_stable_proj" / "model")
    assert model.config.encoder.feat_extract_norm == "layer"
    rng = np.random.default_rng(2)
    inputs = model.processor([rng.standard_normal(n).astype(np.float32) for n in (9000, 6100)], sampling_rate=16000)
    values, cfg = inputs["input_values"], model.config.encoder
    whole = encoder.feature_encoder(model.params.encoder.feature_extractor, values, cfg)  # (B, T, C)
    whole_out, _ = model.encode(values, inputs["attention_mask"])
    monkeypatch.setattr(encoder, "CONV_CHUNK_FRAMES", 7)
    sliced = encoder.feature_encoder(model.params.encoder.feature_extractor, values, cfg)
    sliced_out, _ = model.encode(values, inputs["attention_mask"])
    assert sliced.shape == whole.shape and sliced_out.shape == whole_out.shape
    # the same sums, but BLAS may block a shorter matrix differently: a few fp32 ulps (~1e-6 on
    # unit-scale frames, measured 1.2e-6), a little more after the transformer layers
    np.testing.assert_allclose(sliced, whole, atol=1e-5, rtol=0)
    np.testing.assert_allclose(sliced_out, whole_out, atol=1e-5, rtol=0)
