"""``model.loss_and_grads`` against torch autograd through transformers 4.40.2, on every golden
variant (group/layer-norm convs, post-LN and stable-LN encoders, HuBERT without its projection
LayerNorm, enc_to_dec_proj, gelu_new/silu, scale_embedding off, tied and untied heads), a padded
batch with its labels as the processor makes them.

Names: exactly the trainable parameters of ``named_parameters()`` (tied weights once, the weight
norm's original0/original1). Values: |ours - torch| <= tol * (|torch| + scale), with scale the
largest gradient anywhere in the model. The scale term matters for gradients whose true value is
zero, such as every attention layer's k_proj.bias (softmax ignores a constant added to a row of
scores): both sides then hold rounding noise. float64: tol 1e-9 (the two differ only in summation
order); float32: tol 1e-4, as for activations of unit scale.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SpeechEncoderDecoderModel

import minis2t2
from tests import reference as R
from tests.goldens import GOLDEN
from tests.signals import speech_like

VARIANTS = sorted(p.name for p in GOLDEN.iterdir() if (p / "model").is_dir())


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_and_grads_match_torch_autograd(variant, dtype, tol):
    folder = GOLDEN / variant / "model"
    model = minis2t2.load(folder, dtype=dtype)
    inputs = model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000,
                             text=["a b c", "d"])
    loss, grads = model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"])
    expected_loss, expected, _ = R.torch_step(folder, dtype, inputs)
    # a parameter the loss does not reach (masked_spec_embed outside training) has no torch gradient: zeros
    expected = {name: np.zeros(grads[name].shape) if g is None else g for name, g in expected.items()}
    np.testing.assert_allclose(loss, expected_loss, rtol=tol)
    assert sorted(grads) == sorted(expected)
    scale = max(float(np.abs(g).max()) for g in expected.values())
    for name, value in expected.items():
        assert grads[name].shape == value.shape and grads[name].dtype == np.dtype(dtype), name
        np.testing.assert_allclose(grads[name], value, rtol=tol, atol=tol * scale, err_msg=name)


def parameter(model, name: str):
    """The array a transformers parameter name refers to in minis2t2's weight tree (the weight norm's
    original0/original1 are stored as weight_g/weight_v)."""
    name = name.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                  "weight_v")
    node = model.params
    for part in name.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    return node


@pytest.mark.parametrize("variant", ["base_group_postln", "large_layer_stable_proj"])
def test_loss_and_grads_match_finite_differences(variant):
    """float64 central differences of minis2t2's own loss, on three elements of every parameter
    (h = 1e-5: truncation ~1e-10, rounding ~1e-16 * loss / h ~ 1e-10): an independent check of the
    derivation that does not rely on torch."""
    model = minis2t2.load(GOLDEN / variant / "model", dtype="float64")
    inputs = model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000,
                             text=["a b c", "d"])
    args = (inputs["input_values"], inputs.get("attention_mask"))
    _, grads = model.loss_and_grads(*args, labels=inputs["labels"])
    rng = np.random.default_rng(0)
    h = 1e-5
    for name, grad in grads.items():
        array = parameter(model, name)
        for _ in range(3):
            i = tuple(int(rng.integers(n)) for n in array.shape)
            original = array[i]
            array[i] = original + h
            up = model(*args, labels=inputs["labels"]).loss
            array[i] = original - h
            down = model(*args, labels=inputs["labels"]).loss
            array[i] = original
            np.testing.assert_allclose(grad[i], (up - down) / (2 * h), atol=1e-8, rtol=1e-5, err_msg=f"{name}{list(i)}")


def torch_activation_grads(folder: Path, inputs, names) -> dict:
    """d loss / d output of each named transformers module (float64), by tensor hooks."""
    hf = SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval().double()
    modules = dict(hf.named_modules())
    grads, handles = {}, []

    def keep(name):
        def hook(module, args, out):
            tensor = out[0] if isinstance(out, (tuple, list)) or hasattr(out, "last_hidden_state") else out
            tensor.register_hook(lambda g: grads.__setitem__(name, g.numpy()))
            # hand a copy on: HF zeroes padded frames in place further on, which would detach a hook
            # from the tensor it was set on
            if isinstance(out, tuple):
                return (tensor.clone(), *out[1:])
            return tensor.clone() if isinstance(out, torch.Tensor) else None
        return hook

    for name in names:
        handles.append(modules[name].register_forward_hook(keep(name)))
    mask = inputs.get("attention_mask")
    torch.set_default_dtype(torch.float64)
    try:
        hf(input_values=torch.tensor(inputs["input_values"], dtype=torch.float64),
           attention_mask=None if mask is None else torch.from_numpy(mask),
           labels=torch.from_numpy(inputs["labels"])).loss.backward()
    finally:
        torch.set_default_dtype(torch.float32)
        for h in handles:
            h.remove()
    return grads


@pytest.mark.parametrize("variant", VARIANTS)
def test_activation_gradients_match_torch(variant):
    """The gradient reaching every recorded activation (what ``trace --labels`` writes as "grad.<name>")
    against torch's, float64, within 1e-9 of the largest."""
    folder = GOLDEN / variant / "model"
    model = minis2t2.load(folder, dtype="float64")
    inputs = model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000,
                             text=["a b c", "d"])
    record = {}
    model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"], record=record)
    names = [name[len("grad."):] for name in record]
    assert "encoder.encoder.layers.0" in names and "decoder.lm_head" in names
    expected = torch_activation_grads(folder, inputs, names)
    assert sorted(expected) == sorted(names)
    for name in names:
        theirs = expected[name]
        np.testing.assert_allclose(record[f"grad.{name}"], theirs, rtol=1e-9, atol=1e-9 * np.abs(theirs).max(),
                                   err_msg=name)


def test_padding_row_gets_no_gradient_even_when_read():
    """transformers' embed_tokens has padding_idx = pad: its row never learns. A pad id inside the
    labels (so the decoder reads it before a labelled position) would give that row a gradient
    through the positions after it; torch's is zero, and so must ours be (float64)."""
    variant = "large_layer_stable_proj"
    folder = GOLDEN / variant / "model"
    model = minis2t2.load(folder, dtype="float64")
    pad = model.config.decoder.pad_token_id
    inputs = model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000)
    inputs["labels"] = np.array([[5, pad, 7, 2], [8, 9, 2, -100]])
    _, grads = model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"])
    _, expected, _ = R.torch_step(folder, "float64", inputs)
    name = "decoder.model.decoder.embed_tokens.weight"
    assert np.all(expected[name][pad] == 0) and np.all(grads[name][pad] == 0)
    np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-12)


def test_frozen_feature_encoder_skips_its_backward():
    """freeze_feature_encoder=True: the parameters torch still trains after transformers'
    freeze_feature_encoder(), and the same gradients for them as the full backward gives."""
    variant = "large_layer_stable_proj"
    folder = GOLDEN / variant / "model"
    model = minis2t2.load(folder, dtype="float64")
    inputs = model.processor([speech_like(3000, 5), speech_like(2000, 6)], sampling_rate=16000, text=["a b c", "d"])
    args = (inputs["input_values"], inputs.get("attention_mask"))
    loss, full = model.loss_and_grads(*args, labels=inputs["labels"])
    frozen_loss, frozen = model.loss_and_grads(*args, labels=inputs["labels"], freeze_feature_encoder=True)
    hf = SpeechEncoderDecoderModel.from_pretrained(str(folder))
    hf.freeze_feature_encoder()
    assert sorted(frozen) == sorted(name for name, p in hf.named_parameters() if p.requires_grad)
    assert not any(name.startswith("encoder.feature_extractor.") for name in frozen)
    assert frozen_loss == loss
    for name, g in frozen.items():
        np.testing.assert_array_equal(g, full[name], err_msg=name)
