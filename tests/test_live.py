"""Live differential tests: hypothesis draws a small config and inputs, transformers builds the
model inside the test, minis2t2 loads what HF saved, and both must agree.

Logits and attention probabilities (HF's output_attentions, in [0, 1]): atol = rtol = 1e-4
(fp32, unit-scale activations). Generated ids: exactly, unless the search met a tie. Weights are
drawn with std 0.2 (tests/reference.py) so the logits are peaked and near ties are rare; rare is
not never (one draw in many thousands): where ids differ, ``assert_same_ids_or_tie`` requires that
minis2t2's search met candidates closer than ``TIE`` for that input, else it is a real divergence.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minis2t2
from minis2t2 import generation
from tests import reference as R
from tests.goldens import GOLDEN
from tests.signals import speech_like
from tools.trace_transformers import attention_tensors

VOCAB = R.vocab_size()
# Two candidates closer than this may be ranked either way: the two implementations' fp32 log-probs
# differ by ~1e-6 here (max abs over these models' logits; asserted only to 1e-4), summed over at most
# 8 steps. An ordinary search's smallest margin is ~1e-4 to 1e-2 (test_the_tie_check_is_not_a_free_pass).
TIE = 1e-5


def search_margins(model, input_values, mask, **kwargs) -> list[float]:
    """Per input, the smallest gap minis2t2's search saw between candidates next to each other in
    rank, over all steps: among the n best beam totals and the first one left out (n = 2K, what
    beam search keeps), or between the best two processed logits (greedy). 0 is an exact tie;
    ties with -inf (forbidden tokens) are exact in every implementation and are left out."""
    margins = [np.inf] * np.shape(input_values)[0]

    def watch(values, n):  # (B, M): rows are inputs
        top = -np.sort(-np.asarray(values, dtype=np.float64), axis=1)[:, : n + 1]  # (B, n + 1) best first
        with np.errstate(invalid="ignore"):
            gaps = top[:, :-1] - top[:, 1:]
        for b, row in enumerate(gaps):
            finite = row[np.isfinite(row)]
            margins[b] = min(margins[b], finite.min(initial=np.inf))

    real_best_first, real_process_logits = generation.best_first, generation.process_logits

    def best_first(totals, n):
        watch(totals, n)
        return real_best_first(totals, n)

    def process_logits(ids, logits, s):
        processed = real_process_logits(ids, logits, s)
        if s.num_beams == 1:
            watch(processed, 1)
        return processed

    with pytest.MonkeyPatch.context() as m:
        m.setattr(generation, "best_first", best_first)
        m.setattr(generation, "process_logits", process_logits)
        model.generate(input_values, mask, **kwargs)
    return margins


def assert_same_ids_or_tie(model, model_hf, input_values, mask, **kwargs) -> bool:
    """minis2t2's ids must equal transformers' exactly, except for an input whose search met a tie
    (a margin below TIE), where float32 rounding or torch.topk's unspecified order of equal values
    may pick the other candidate. Returns whether a tie excused a difference."""
    ours = model.generate(input_values, mask, **kwargs)
    theirs = R.generate(model_hf, input_values, mask, **kwargs)
    if ours.shape == theirs.shape and np.array_equal(ours, theirs):
        return False
    per_input = kwargs.get("num_return_sequences", 1)
    if ours.shape == theirs.shape:
        differ = sorted({row // per_input for row in np.flatnonzero((ours != theirs).any(axis=1))})
    else:
        differ = list(range(np.shape(input_values)[0]))
    margins = search_margins(model, input_values, mask, **kwargs)
    for b in differ:
        assert margins[b] < TIE, (f"input {b}: ids differ from transformers' with no tie in the search (smallest "
                                  f"margin {margins[b]:.2e} >= {TIE}): a real divergence\nours   {ours.tolist()}"
                                  f"\ntheirs {theirs.tolist()}")
    return True


@st.composite
def configs(draw):
    n_conv = draw(st.integers(1, 3))
    kernels = [draw(st.integers(4, 10))] + [draw(st.integers(2, 4)) for _ in range(n_conv - 1)]
    strides = [draw(st.integers(2, 5))] + [draw(st.integers(1, 3)) for _ in range(n_conv - 1)]
    heads = draw(st.sampled_from([2, 4]))
    hidden = heads * draw(st.sampled_from([4, 6, 8]))
    model_type = draw(st.sampled_from(["wav2vec2", "hubert"]))
    encoder = dict(
        model_type=model_type,
        hidden_size=hidden,
        num_hidden_layers=draw(st.integers(1, 2)),
        num_attention_heads=heads,
        intermediate_size=draw(st.sampled_from([16, 40])),
        conv_dim=[draw(st.sampled_from([8, 12, 16])) for _ in range(n_conv)],
        conv_kernel=kernels,
        conv_stride=strides,
        conv_bias=draw(st.booleans()),
        feat_extract_norm=draw(st.sampled_from(["group", "layer"])),
        do_stable_layer_norm=draw(st.booleans()),
        hidden_act=draw(st.sampled_from(["gelu", "gelu_new", "relu", "silu"])),
        feat_extract_activation=draw(st.sampled_from(["gelu", "relu"])),
        num_conv_pos_embeddings=draw(st.integers(2, 12)),
        num_conv_pos_embedding_groups=draw(st.sampled_from([1, 2])),
    )
    if model_type == "hubert":
        encoder["feat_proj_layer_norm"] = draw(st.booleans())
    dheads = draw(st.sampled_from([2, 4]))
    decoder = dict(
        vocab_size=VOCAB,
        d_model=dheads * draw(st.sampled_from([4, 6, 8])),
        decoder_layers=draw(st.integers(1, 2)),
        decoder_attention_heads=dheads,
        decoder_ffn_dim=draw(st.sampled_from([16, 40])),
        activation_function=draw(st.sampled_from(["relu", "gelu", "silu"])),
        scale_embedding=draw(st.booleans()),
        tie_word_embeddings=draw(st.booleans()),
        max_target_positions=32,
    )
    lengths = draw(st.lists(st.integers(600, 2400), min_size=1, max_size=3))
    use_mask = draw(st.booleans())
    return encoder, decoder, lengths, use_mask, draw(st.integers(0, 2**16))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_random_models_match_transformers(case):
    encoder, decoder, lengths, use_mask, seed = case
    model_hf = R.build_model(dict(encoder), dict(decoder), seed=seed)
    with tempfile.TemporaryDirectory() as d:
        R.save_model(model_hf, Path(d), return_attention_mask=use_mask)
        fe = R.feature_extractor(Path(d))
        model = minis2t2.load(d)
    audio = [speech_like(n, seed + i) for i, n in enumerate(lengths)]
    inputs = fe(audio, sampling_rate=16000, padding=True, return_tensors="np")
    mask = inputs.get("attention_mask")
    ours = model.processor(audio, sampling_rate=16000)
    np.testing.assert_allclose(ours["input_values"], inputs["input_values"], atol=1e-6, rtol=0)

    rng = np.random.default_rng(seed)
    labels = rng.integers(3, VOCAB, size=(len(audio), 6))
    labels[:, -1] = -100
    _, out_hf = R.record(model_hf, inputs["input_values"], mask, labels=labels)
    out = model(inputs["input_values"], mask, labels=labels, output_attentions=True)
    np.testing.assert_allclose(out.logits, out_hf.logits.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out.loss, out_hf.loss.item(), atol=1e-4, rtol=1e-4)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        ours, theirs = getattr(out, name), getattr(out_hf, name)
        assert len(ours) == len(theirs), name
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)

    for kwargs in ({"max_new_tokens": 8}, {"num_beams": 3, "max_new_tokens": 8, "num_return_sequences": 2}):
        assert_same_ids_or_tie(model, model_hf, inputs["input_values"], mask, **kwargs)


SMALL_ENCODER = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, conv_dim=[8],
                     conv_kernel=[8], conv_stride=[4], num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
SMALL_DECODER = dict(vocab_size=VOCAB, d_model=16, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=16,
                     tie_word_embeddings=False, max_target_positions=32)


def small_pair(tmp_path, seed: int, twins: bool = False):
    """A small random HF model and minis2t2's load of it; with ``twins`` every token from 4 on has
    the lm_head row of the token before it (4 = 5, 6 = 7, ...), so every step's candidates come
    in exactly tied pairs."""
    model_hf = R.build_model(dict(SMALL_ENCODER), dict(SMALL_DECODER), seed=seed)
    if twins:
        with torch.no_grad():
            weight = model_hf.decoder.lm_head.weight  # (V, d_model)
            weight[5::2] = weight[4 : 4 + len(weight[5::2]) * 2 : 2]
    R.save_model(model_hf, tmp_path, return_attention_mask=False)
    return minis2t2.load(tmp_path), model_hf


def test_exact_ties_are_recognised_and_broken_by_index(tmp_path):
    """Where candidates tie exactly, minis2t2 takes the lower token index first (greedy: argmax's first
    maximum, as torch.argmax documents; beam search: a stable sort). transformers' greedy search agrees;
    its beam search ranks with torch.topk, whose order of equal values is unspecified, so there the
    ids may differ, and the live test's tie check must accept that, naming a margin of 0."""
    model, model_hf = small_pair(tmp_path, seed=3, twins=True)
    audio = model.processor([speech_like(3000, 1), speech_like(2200, 2)], sampling_rate=16000)["input_values"]
    greedy = model.generate(audio, None, max_new_tokens=8)
    np.testing.assert_array_equal(greedy, R.generate(model_hf, audio, None, max_new_tokens=8))
    generated = greedy[:, 1:][greedy[:, 1:] >= 4]
    assert generated.size and np.all(generated % 2 == 0)  # always the first of a pair of twins
    beams = dict(num_beams=3, max_new_tokens=8, num_return_sequences=2)
    assert search_margins(model, audio, None, **beams) == [0.0, 0.0]
    assert search_margins(model, audio, None, max_new_tokens=8) == [0.0, 0.0]
    # torch 2.13's topk does rank these twins otherwise, so the ids differ and only the tie excuses it
    assert assert_same_ids_or_tie(model, model_hf, audio, None, **beams) is True


def test_the_tie_check_is_not_a_free_pass(tmp_path):
    """On an ordinary random model the search's margins are far above TIE, and ids that differ
    without a tie (minis2t2 against another seed's model) fail as a real divergence."""
    model, model_hf = small_pair(tmp_path / "a", seed=3)
    _, other_hf = small_pair(tmp_path / "b", seed=4)
    audio = model.processor([speech_like(3000, 1), speech_like(2200, 2)], sampling_rate=16000)["input_values"]
    beams = dict(num_beams=3, max_new_tokens=8, num_return_sequences=2)
    assert min(search_margins(model, audio, None, **beams)) > TIE
    assert min(search_margins(model, audio, None, max_new_tokens=8)) > TIE
    assert assert_same_ids_or_tie(model, model_hf, audio, None, **beams) is False  # identical, no excuse needed
    with pytest.raises(AssertionError, match="a real divergence"):
        assert_same_ids_or_tie(model, other_hf, audio, None, **beams)


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 5}, {"num_beams": 3, "max_new_tokens": 5}])
@pytest.mark.parametrize("variant", ["large_layer_stable_proj", "base_group_postln"])
def test_generation_attentions_match_transformers(variant, kwargs):
    """Every decoding step's self- and cross-attention maps (rows in search order) and the encoder's,
    as generate(output_attentions=True, return_dict_in_generate=True) returns them."""
    from transformers import SpeechEncoderDecoderModel

    folder = GOLDEN / variant / "model"
    model, hf = minis2t2.load(folder), SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval()
    inputs = model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000)
    record = {}
    ids = model.generate(inputs["input_values"], inputs.get("attention_mask"), record=record, **kwargs)
    mask = inputs.get("attention_mask")
    with torch.no_grad():
        out = hf.generate(input_values=torch.from_numpy(inputs["input_values"]),
                          attention_mask=None if mask is None else torch.from_numpy(mask),
                          output_attentions=True, return_dict_in_generate=True, **kwargs)
    np.testing.assert_array_equal(ids, out.sequences.numpy())
    expected = attention_tensors(out)
    assert len(expected) == model.config.encoder.num_hidden_layers + 2 * 2 * (ids.shape[1] - 1)
    for name, value in expected.items():
        np.testing.assert_allclose(record[name], value, atol=1e-4, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("num_positions,dim,padding_idx", [(34, 96, 1), (1026, 256, 1), (20, 7, 1), (12, 10, 0)])
def test_sinusoidal_table_matches_transformers(num_positions, dim, padding_idx):
    """The table minis2t2 computes when a checkpoint does not store embed_positions.weights
    (every test checkpoint stores it, so only this test checks the computation)."""
    from transformers.models.speech_to_text_2.modeling_speech_to_text_2 import (
        Speech2Text2SinusoidalPositionalEmbedding as HFTable,
    )

    from minis2t2.decoder import sinusoidal_table

    expected = HFTable.get_embedding(num_positions, dim, padding_idx).numpy()
    # float32 angles reach ~1000 rad at position 1025, where one ulp is 6e-5: torch's and NumPy's
    # float32 sin round differently by up to that much. A wrong frequency step is off by ~0.25.
    np.testing.assert_allclose(sinusoidal_table(num_positions, dim, padding_idx), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["large_layer_stable_proj", "base_group_postln"])
def test_beam_scoring_matches_transformers(variant):
    """Beam searches whose hypotheses finish at different lengths, so the length penalty's exponent
    and the rule that an EOS counts only from the top K candidates decide the ranking (neither was
    exercised by the goldens, where every hypothesis ends at the same length). EOS is set to tokens
    the model's greedy output contains, so hypotheses do finish early; all returned sequences are
    compared."""
    from transformers import SpeechEncoderDecoderModel

    folder = GOLDEN / variant / "model"
    model, hf = minis2t2.load(folder), SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval()
    inputs = model.processor([speech_like(n, seed) for seed, n in enumerate((3000, 2200, 2600))], sampling_rate=16000)
    mask = inputs.get("attention_mask")
    greedy = R.generate(hf, inputs["input_values"], mask, max_new_tokens=9)
    frequent = [int(t) for t, _ in sorted(zip(*np.unique(greedy[:, 1:], return_counts=True)), key=lambda tc: -tc[1])]
    finished = 0
    for eos in frequent[:4]:
        for kwargs in ({"num_beams": 4, "num_return_sequences": 4, "length_penalty": 2.0},
                       {"num_beams": 5, "num_return_sequences": 3, "length_penalty": 0.3},
                       {"num_beams": 3, "num_return_sequences": 3, "length_penalty": -0.7}):
            kwargs = dict(kwargs, eos_token_id=eos, max_new_tokens=9)
            expected = R.generate(hf, inputs["input_values"], mask, **kwargs)
            np.testing.assert_array_equal(model.generate(inputs["input_values"], mask, **kwargs), expected,
                                          err_msg=str(kwargs))
            finished += int((expected[:, 1:] == eos).any(axis=1).sum())
    assert finished > 20, "too few hypotheses finished with EOS to test their scoring"


def test_eos_at_rank_k_is_not_a_hypothesis():
    """HF keeps an EOS candidate only when it ranks among the top K (rank < K) of the 2K candidates.
    This input and EOS choice put an EOS at rank exactly K (found by searching the golden models
    for a case where accepting rank K changes the output); the expected ids come from transformers."""
    from transformers import SpeechEncoderDecoderModel

    folder = GOLDEN / "large_layer_stable_proj" / "model"
    model, hf = minis2t2.load(folder), SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval()
    inputs = model.processor([speech_like(n, seed) for seed, n in enumerate((3000, 2200, 2600))], sampling_rate=16000)
    kwargs = {"num_beams": 4, "num_return_sequences": 4, "eos_token_id": 14, "max_new_tokens": 9}
    expected = R.generate(hf, inputs["input_values"], inputs["attention_mask"], **kwargs)
    np.testing.assert_array_equal(model.generate(inputs["input_values"], inputs["attention_mask"], **kwargs), expected)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_random_models_gradients_match_torch(case):
    """loss_and_grads on random configs against torch autograd, both in float64: every trainable
    parameter's gradient within 1e-9 of the model's largest gradient scale (as tests/test_loss_and_grads.py)."""
    encoder, decoder, lengths, use_mask, seed = case
    model_hf = R.build_model(dict(encoder), dict(decoder), seed=seed)
    with tempfile.TemporaryDirectory() as d:
        R.save_model(model_hf, Path(d), return_attention_mask=use_mask)
        model = minis2t2.load(d, dtype="float64")
    audio = [speech_like(n, seed + i) for i, n in enumerate(lengths)]
    inputs = model.processor(audio, sampling_rate=16000)
    mask = inputs.get("attention_mask")
    labels = np.random.default_rng(seed).integers(3, VOCAB, size=(len(audio), 5))
    labels[-1, -2:] = -100
    loss, grads = model.loss_and_grads(inputs["input_values"], mask, labels=labels)
    model_hf = model_hf.double()
    torch.set_default_dtype(torch.float64)  # HF builds its attention masks in the default dtype
    try:
        out = model_hf(input_values=torch.from_numpy(inputs["input_values"].astype(np.float64)),
                       attention_mask=None if mask is None else torch.from_numpy(mask),
                       labels=torch.from_numpy(labels))
        out.loss.backward()
    finally:
        torch.set_default_dtype(torch.float32)
    np.testing.assert_allclose(loss, out.loss.item(), rtol=1e-9)
    expected = {n: np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy()
                for n, p in model_hf.named_parameters() if p.requires_grad}
    assert sorted(grads) == sorted(expected)
    scale = max(float(np.abs(g).max()) for g in expected.values())
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-9, atol=1e-9 * scale, err_msg=name)
