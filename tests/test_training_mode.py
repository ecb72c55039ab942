"""Training mode (dropout, LayerDrop, SpecAugment) against transformers 4.40.2 in ``train()`` mode,
with the same random draws: minis2t2 draws them (``Training``), and the torch side is handed the
very same ones:

- dropout: ``torch.nn.functional.dropout`` is replaced by one that multiplies by minis2t2's mask
  for the call at hand. Which call it is comes from forward hooks that track the module being
  run: an ``nn.Dropout`` module, an attention module (its probabilities), the decoder (after the
  embeddings) or a decoder layer (its four functional calls, in the order the code makes them);
- LayerDrop: ``torch.rand`` (one draw per layer, compared with layerdrop) returns 0 for a layer
  minis2t2 skipped and 1 for one it ran;
- SpecAugment: ``_compute_mask_indices`` returns minis2t2's time mask, then its channel mask.

Every golden variant runs with all of these switched on (probabilities raised so that each
mechanism acts on these small inputs), one encoder or decoder layer dropped by injection, a padded
batch of two. Tolerances as in test_loss_and_grads: float64 1e-9, float32 1e-4, relative to the
largest gradient. Every mask minis2t2 drew must have been used by torch, and vice versa.
"""

import json
import shutil
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from transformers import SpeechEncoderDecoderModel
from transformers.models.hubert import modeling_hubert
from transformers.models.wav2vec2 import modeling_wav2vec2

import minis2t2
from minis2t2 import Training
from tests import reference as R
from tests.goldens import GOLDEN
from tests.signals import speech_like

VARIANTS = sorted(p.name for p in GOLDEN.iterdir() if (p / "model").is_dir())
ENCODER_TRAINING = {"hidden_dropout": 0.2, "activation_dropout": 0.15, "attention_dropout": 0.25,
                    "feat_proj_dropout": 0.1, "layerdrop": 0.3, "apply_spec_augment": True, "mask_time_prob": 0.3,
                    "mask_time_length": 2, "mask_time_min_masks": 1, "mask_feature_prob": 0.25,
                    "mask_feature_length": 3, "mask_feature_min_masks": 1}
DECODER_TRAINING = {"dropout": 0.2, "attention_dropout": 0.15, "activation_dropout": 0.1, "decoder_layerdrop": 0.3}
DECODER_LAYER_CALLS = ("dropout_after_self_attn", "dropout_after_encoder_attn", "activation_dropout",
                       "dropout_after_fc2")  # the functional dropouts of Speech2Text2DecoderLayer.forward, in order


@pytest.fixture(scope="module", params=VARIANTS)
def folder(request, tmp_path_factory):
    """A golden model with every training-mode probability switched on."""
    out = tmp_path_factory.mktemp(request.param) / "model"
    shutil.copytree(GOLDEN / request.param / "model", out)
    config = json.loads((out / "config.json").read_text())
    config["encoder"] |= ENCODER_TRAINING
    config["decoder"] |= DECODER_TRAINING
    (out / "config.json").write_text(json.dumps(config))
    return out


def minis2t2_name(module_name: str, module: nn.Module, call: int) -> str:
    """The name minis2t2 gives the dropout that torch applies in ``module`` at its ``call``-th call."""
    if isinstance(module, nn.Dropout):
        return module_name
    if module_name.endswith((".attention", ".self_attn", ".encoder_attn")) or module_name == "decoder.model.decoder":
        return f"{module_name}.dropout"
    if ".decoder.layers." in module_name:
        return f"{module_name}.{DECODER_LAYER_CALLS[call]}"
    raise AssertionError(f"a dropout in {module_name} minis2t2 does not know")


@contextmanager
def injected(model: SpeechEncoderDecoderModel, draws: dict, dtype):
    """torch's dropout, LayerDrop and SpecAugment use ``draws``; yields the set of names used."""
    used, stack = set(), []
    hooks = []
    for name, module in model.named_modules():
        def push(module, args, name=name):
            stack.append([name, module, 0])

        def pop(module, args, output):
            stack.pop()

        hooks += [module.register_forward_pre_hook(push), module.register_forward_hook(pop)]
    original_dropout = nn.functional.dropout

    def dropout(x, p=0.5, training=True, inplace=False):
        if not training or p == 0:
            return x
        frame = stack[-1]
        key = minis2t2_name(frame[0], frame[1], frame[2])
        frame[2] += 1
        used.add(key)
        return x * torch.as_tensor(np.asarray(draws[key]), dtype=dtype).reshape(x.shape)  # HF: (B * H, Lq, Lk)

    layer_order = [f"encoder.encoder.layers.{i}" for i in range(model.config.encoder.num_hidden_layers)] + \
                  [f"decoder.model.decoder.layers.{i}" for i in range(model.config.decoder.decoder_layers)]
    layers = iter(layer_order)
    original_rand = torch.rand

    def rand(*size, **kwargs):
        assert list(size) in ([[]], []), size
        key = f"{next(layers)}.layerdrop"
        used.add(key)
        return torch.tensor(0.0 if draws[key] else 1.0)

    spec = [k for k in ("encoder.mask_time_indices", "encoder.mask_feature_indices") if k in draws]
    queue = list(spec)

    def compute_mask_indices(shape, mask_prob, mask_length, attention_mask=None, min_masks=0):
        key = queue.pop(0)
        used.add(key)
        assert draws[key].shape == tuple(shape), (key, shape)
        return draws[key]

    nn.functional.dropout, torch.rand = dropout, rand
    saved = modeling_wav2vec2._compute_mask_indices, modeling_hubert._compute_mask_indices
    modeling_wav2vec2._compute_mask_indices = modeling_hubert._compute_mask_indices = compute_mask_indices
    try:
        yield used
    finally:
        nn.functional.dropout, torch.rand = original_dropout, original_rand
        modeling_wav2vec2._compute_mask_indices, modeling_hubert._compute_mask_indices = saved
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 1e-4)])
def test_train_mode_loss_and_grads_match_transformers_with_the_same_draws(folder, dtype, tol):
    model = minis2t2.load(folder, dtype=dtype)
    inputs = model.processor([speech_like(3000, 5), speech_like(2400, 6)], sampling_rate=16000,
                             text=["a b c", "d"])
    skipped = "encoder.encoder.layers.0" if "hubert" in folder.parent.name else "decoder.model.decoder.layers.0"
    training = Training(seed=1, draws={f"{skipped}.layerdrop": True})
    loss, grads = model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"],
                                       training=training)
    expected_loss, expected, used = R.torch_step(folder, dtype, inputs, train=True,
                                                 around=lambda model, dt: injected(model, training.draws, dt))
    expected = {name: g for name, g in expected.items() if g is not None}  # LayerDrop: skipped layers have none
    assert used == set(training.draws), "draws one side made and the other never used"
    assert {"encoder.mask_time_indices", "encoder.mask_feature_indices"} <= used
    np.testing.assert_allclose(loss, expected_loss, rtol=tol)
    assert not [n for n in expected if n.startswith(skipped + ".")], "torch trained a skipped layer"
    assert sorted(grads) == sorted(expected), "a parameter torch gives no gradient (LayerDrop) must have none"
    scale = max(float(np.abs(g).max()) for g in expected.values())
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=tol, atol=tol * scale, err_msg=name)


def test_the_same_seed_gives_the_same_loss_and_eval_mode_is_untouched(folder):
    model = minis2t2.load(folder)
    inputs = model.processor([speech_like(3000, 5)], sampling_rate=16000, text=["a b"])
    args = (inputs["input_values"], inputs.get("attention_mask"))
    losses = [model(*args, labels=inputs["labels"], training=Training(seed=s)).loss for s in (3, 3, 4)]
    assert losses[0] == losses[1] != losses[2]
    assert model(*args, labels=inputs["labels"]).loss == model(*args, labels=inputs["labels"]).loss


@given(st.integers(1, 4), st.integers(1, 60), st.floats(0.01, 1.0), st.integers(1, 12), st.integers(0, 5),
       st.data())
def test_span_masks_are_transformers_compute_mask_indices(batch, size, prob, span, min_spans, data):
    """The same random numbers give the same SpecAugment mask: transformers' own function runs
    with NumPy's global generator replaced by the one minis2t2 draws from (same calls, same order)."""
    span = min(span, size)  # both refuse a span longer than the axis
    lengths = data.draw(st.lists(st.integers(0, size), min_size=batch, max_size=batch))
    lengths[0] = size  # right-padded batches: the longest input fills the axis
    ours = Training(seed=7).span_mask("m", lengths, size, prob, span, min_spans)
    rng = np.random.default_rng(7)
    shim = SimpleNamespace(**vars(np))
    shim.random = SimpleNamespace(rand=lambda n: np.array([rng.random() for _ in range(n)]),
                                  choice=lambda a, k, replace: rng.choice(a, k, replace=replace))
    saved, modeling_wav2vec2.np = modeling_wav2vec2.np, shim
    try:
        theirs = modeling_wav2vec2._compute_mask_indices((batch, size), prob, span, torch.tensor(
            [[1] * n + [0] * (size - n) for n in lengths]), min_spans)
    finally:
        modeling_wav2vec2.np = saved
    np.testing.assert_array_equal(ours, theirs)


def test_a_training_object_is_one_steps_draws():
    """Reused on a batch of another shape, a Training says so instead of broadcasting old masks."""
    model = minis2t2.load(GOLDEN / VARIANTS[0] / "model")
    training = Training(seed=0)
    short = model.processor([speech_like(3000, 5)], sampling_rate=16000, text=["a b"])
    model(short["input_values"], labels=short["labels"], training=training)
    longer = model.processor([speech_like(5000, 6)], sampling_rate=16000, text=["a b"])
    with pytest.raises(ValueError, match="a Training holds one step's draws"):
        model(longer["input_values"], labels=longer["labels"], training=training)
