"""Training with minis2t2 alone against torch + transformers, step for step (llm.c's check): the
same golden model, batch and labels, AdamW (decoupled weight decay, bias correction), global-norm
clipping and a warm-up + linear-decay schedule on both sides; the loss must agree at every one of
ten steps. float64: the two differ only in summation order, so the losses agree to 1e-9 after
ten updates; float32: to 1e-4.
"""

import numpy as np
import pytest
import torch
from transformers import SpeechEncoderDecoderModel, get_linear_schedule_with_warmup

import minis2t2
from minis2t2.optim import FEATURE_ENCODER, AdamW, clip_grad_norm, linear_warmup_decay
from tests.goldens import GOLDEN
from tests.signals import speech_like

STEPS, WARMUP, LR, WEIGHT_DECAY, MAX_NORM = 10, 3, 3e-3, 0.01, 0.5


def torch_losses(folder, inputs, dtype, freeze):
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    hf = SpeechEncoderDecoderModel.from_pretrained(str(folder)).to(torch_dtype).eval()  # eval: no dropout
    if freeze:
        hf.freeze_feature_encoder()
    params = [p for p in hf.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = get_linear_schedule_with_warmup(optimizer, WARMUP, STEPS)
    mask = inputs.get("attention_mask")
    losses = []
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        for _ in range(STEPS):
            optimizer.zero_grad()
            loss = hf(input_values=torch.tensor(inputs["input_values"], dtype=torch_dtype),
                      attention_mask=None if mask is None else torch.from_numpy(mask),
                      labels=torch.from_numpy(inputs["labels"])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    finally:
        torch.set_default_dtype(previous)
    return losses


def minis2t2_losses(model, inputs, freeze):
    params = model.trainable_parameters()
    optimizer = AdamW(lr=LR, weight_decay=WEIGHT_DECAY)
    frozen = (FEATURE_ENCODER,) if freeze else ()
    losses = []
    for step in range(STEPS):
        loss, grads = model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"])
        grads = {name: g for name, g in grads.items() if not name.startswith(frozen)}  # as requires_grad=False
        clip_grad_norm(grads, MAX_NORM)
        optimizer.step(params, grads, lr=LR * linear_warmup_decay(step, WARMUP, STEPS))
        losses.append(loss)
    return losses


@pytest.mark.parametrize("variant,dtype,freeze,rtol", [
    ("large_layer_stable_proj", "float64", False, 1e-9),
    ("base_group_postln", "float64", True, 1e-9),
    ("noscale_gelunew_silu", "float32", False, 1e-4),
])
def test_ten_training_steps_match_torch(variant, dtype, freeze, rtol):
    folder = GOLDEN / variant / "model"
    model = minis2t2.load(folder, dtype=dtype)
    inputs = model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000,
                             text=["a b c", "d"])
    ours = minis2t2_losses(model, inputs, freeze)
    theirs = torch_losses(folder, inputs, dtype, freeze)
    np.testing.assert_allclose(ours, theirs, rtol=rtol)
    assert ours[-1] < 0.75 * ours[0], f"ten steps on one batch should lower its loss by a quarter: {ours}"


def test_trainable_parameters_are_the_models_own_and_tied_once():
    model = minis2t2.load(GOLDEN / "noscale_gelunew_silu" / "model")  # a tied head
    params = model.trainable_parameters()
    assert "decoder.lm_head.weight" not in params
    assert params["decoder.model.decoder.embed_tokens.weight"] is model.params.decoder.lm_head.weight
    assert params["encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original0"] is \
        model.params.encoder.encoder.pos_conv_embed.conv.weight_g
    assert all(a.flags.writeable for a in params.values())
    hf = SpeechEncoderDecoderModel.from_pretrained(str(GOLDEN / "noscale_gelunew_silu" / "model"))
    assert sorted(params) == sorted(n for n, p in hf.named_parameters() if p.requires_grad)


def test_step_memory_grows_linearly_with_audio_length():
    """loss_and_grads keeps per layer what its backward needs, each proportional to the frames (an
    encoder layer's T x T attention weights exist only while that layer runs): 4 more seconds cost
    the same memory whether they come on top of 4 or of 8 (within 10%; measured 1.00 from 5 to
    40 s by benchmarks/train_speed.py). tracemalloc counts NumPy's allocations: bytes, not time."""
    import tracemalloc

    model = minis2t2.load("numbers-en-de")
    peaks = {}
    for seconds in (4, 8, 12):
        inputs = model.processor(speech_like(seconds * 16000, 1), sampling_rate=16000, text="dreiundsiebzig")
        tracemalloc.start()
        model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"])
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    first, second = peaks[8] - peaks[4], peaks[12] - peaks[8]
    assert 0.9 < second / first < 1.1, peaks


@pytest.mark.parametrize("max_norm", [0.05, 1e3])
def test_clip_grad_norm_matches_torch_above_and_below_the_limit(max_norm):
    """Gradients whose global norm is above max_norm are scaled down to it; below it they are left
    exactly as they are (the training tests' norms are always above their limit)."""
    rng = np.random.default_rng(0)
    grads = {f"p{i}": rng.standard_normal(shape).astype(np.float32) for i, shape in enumerate([(3, 4), (5,), (2, 2, 2)])}
    tensors = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.from_numpy(g.copy())
    expected_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm).item()
    ours = {k: g.copy() for k, g in grads.items()}
    norm = clip_grad_norm(ours, max_norm)
    np.testing.assert_allclose(norm, expected_norm, rtol=1e-6)
    for t, g in zip(tensors, ours.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-6, atol=0)
    if max_norm > norm:
        assert all(np.array_equal(ours[k], grads[k]) for k in grads)
