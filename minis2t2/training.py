"""Training mode: the randomness transformers applies after ``model.train()``, made explicit.

In train() mode a SpeechEncoderDecoderModel draws, on every forward pass:

    dropout       zero each element with probability p, scale the rest by 1 / (1 - p) (inverted
                  dropout, so eval mode needs no rescaling): after the feature projection
                  (feat_proj_dropout), after the positional conv's sum (hidden_dropout), on every
                  attention's probabilities (attention_dropout), after each attention and each
                  feed-forward (hidden_dropout / the decoder's dropout), after the feed-forward's
                  activation (activation_dropout), after the decoder's embeddings (dropout)
    LayerDrop     skip a whole layer (its output is its input) with probability layerdrop
                  (encoder) or decoder_layerdrop (decoder)
    SpecAugment   replace random spans of encoder frames by the learned ``masked_spec_embed``
                  (mask_time_prob, mask_time_length, mask_time_min_masks) and zero random spans
                  of channels (mask_feature_*), after the feature projection

``Training`` holds a generator and every draw it made, under a name: the HF module path of the
layer (``encoder.encoder.layers.3.feed_forward.output_dropout``), or of the module whose code
makes the draw plus what it drops (``decoder.model.decoder.layers.0.dropout_after_fc2``). A name
is drawn once and then kept, so the backward pass, which recomputes each layer's forward, meets
the same masks; and a test can hand the same masks to torch (tests/test_training_mode.py).

Dropout is linear, y = x * m, so its backward is the same multiplication: dx = dy * m. A dropped
layer passes its gradient through unchanged. A time-masked frame's gradient goes to
``masked_spec_embed`` (summed over the masked frames) and not to the projection below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import array_module


@dataclass
class Training:
    """Training mode's random draws for one step: ``Training(seed=0)``, or ``Training(draws=...)``
    to inject them. Make a new one for every batch (``minis2t2 finetune --train-mode`` seeds each
    with the run's seed and the step): its draws are kept, so a reused one would reuse its masks.

    ``draws`` maps a name to a dropout mask (already scaled: 0 or 1 / (1 - p)), a LayerDrop
    decision (True: the layer is skipped) or a SpecAugment mask (B, T) / (B, C) of bools.
    """

    seed: int | list | None = None  # anything np.random.default_rng takes
    draws: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def mask(self, name: str, shape: tuple, p: float, like):
        """The dropout mask ``name`` of ``shape``: 0 with probability p, else 1 / (1 - p)."""
        if name not in self.draws:
            keep = self.rng.random(shape) >= p
            scaled = keep.astype(like.dtype) / like.dtype.type(1 - p) if p < 1 else np.zeros(shape, like.dtype)
            self.draws[name] = array_module(like).asarray(scaled)  # p = 1 drops everything, as torch does
        return self.drawn(name, shape)

    def drawn(self, name: str, shape: tuple):
        """The kept draw ``name``, which must have ``shape``."""
        if self.draws[name].shape != tuple(shape):
            raise ValueError(f"Training: the mask {name} was drawn for shape {self.draws[name].shape}, not "
                             f"{tuple(shape)}: a Training holds one step's draws; make a new one for each batch")
        return self.draws[name]

    def skips_layer(self, name: str, layerdrop: float) -> bool:
        """LayerDrop: whether layer ``name`` is skipped on this pass (probability ``layerdrop``)."""
        key = f"{name}.layerdrop"
        if key not in self.draws:
            self.draws[key] = bool(self.rng.random() < layerdrop)
        return self.draws[key]

    def span_mask(self, name: str, lengths: list[int], size: int, prob: float, span: int, min_spans: int):
        """A SpecAugment mask (B, size) of bools, drawn as transformers' ``_compute_mask_indices``.

        For an input of ``length`` valid positions, int(prob * length / span + u) spans start at
        distinct random positions in [0, length - span], u ~ U(0, 1) shared by the batch (random
        rounding), at least ``min_spans``, at most what fits; each covers ``span`` positions
        (clipped at ``size``). Inputs with fewer spans than the longest repeat their first start,
        and one with none at all masks the batch's last position (a padded one), as HF does.
        """
        if name in self.draws:
            return self.drawn(name, (len(lengths), size))
        u = self.rng.random()

        def count(length: int) -> int:
            n = max(int(prob * length / span + u), min_spans)
            if n * span > size:
                n = size // span
            return min(n, max(length - (span - 1), 0))

        most = count(size)
        mask = np.zeros((len(lengths), size), dtype=bool)
        if most > 0:
            for b, length in enumerate(lengths):
                n = count(length)
                starts = self.rng.choice(max(length - (span - 1), 0), n, replace=False)
                padded = np.full(most, starts[0] if n else size - 1)
                padded[:n] = starts
                covered = np.minimum(padded[:, None] + np.arange(span)[None, :], size - 1)  # (most, span)
                mask[b, covered.ravel()] = True
        self.draws[name] = mask
        return mask


def dropout(training: Training | None, name: str, x, p: float):
    """torch's dropout in train() mode, with the mask ``name``; the identity in eval mode
    (``training`` None) or for p = 0. Also its own backward: dropout(training, name, dy, p) = dx."""
    if training is None or p == 0:
        return x
    return x * training.mask(name, x.shape, p, x)


def attention_mask(training: Training | None, name: str, shape: tuple, p: float, like):
    """The dropout mask for attention probabilities (B, H, Lq, Lk), or None in eval mode."""
    if training is None or p == 0:
        return None
    return training.mask(name, shape, p, like)


def skips_layer(training: Training | None, name: str, layerdrop: float) -> bool:
    """LayerDrop's decision for one layer; never in eval mode."""
    return training is not None and layerdrop > 0 and training.skips_layer(name, layerdrop)
