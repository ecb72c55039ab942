"""Training: the optimiser, gradient clipping and the learning-rate schedule, as torch and
transformers define them, over {name: array} dicts (``model.trainable_parameters()`` and the
gradients of ``model.loss_and_grads``).

    params = model.trainable_parameters()
    optimizer = AdamW(lr=1e-4, weight_decay=0.01)
    for step in range(steps):
        loss, grads = model.loss_and_grads(inputs, mask, labels=labels)
        clip_grad_norm(grads, 1.0)
        optimizer.step(params, grads, lr=linear_warmup_decay(step, warmup, steps) * 1e-4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .backend import array_module

FEATURE_ENCODER = "encoder.feature_extractor."  # the conv stack: what freeze_feature_encoder stops training


@dataclass
class AdamW:
    """torch.optim.AdamW: Adam with decoupled weight decay and bias correction, step for step as
    torch 2.13 computes it (its single-tensor loop):

        p ← p (1 - lr λ)                     decoupled weight decay
        m ← β1 m + (1 - β1) g                v ← β2 v + (1 - β2) g²
        p ← p - lr / (1 - β1ᵗ) · m / (√v / √(1 - β2ᵗ) + ε)
    """

    lr: float = 1e-3
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    exp_avg: dict = field(default_factory=dict)  # m, per parameter name
    exp_avg_sq: dict = field(default_factory=dict)  # v, per parameter name
    steps: dict = field(default_factory=dict)  # t, per parameter name: the steps it had a gradient in

    def step(self, params: dict, grads: dict, lr: float | None = None, frozen: tuple = ()) -> None:
        """Update every array of ``params`` that has a gradient, in place; names starting with one of
        ``frozen`` are left alone (and get no optimiser state), as torch skips parameters without
        a gradient: no decay, no moment update, and their step count t stays (a layer LayerDrop
        skipped has no gradient)."""
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        for name, p in params.items():
            if name not in grads or name.startswith(frozen):
                continue
            xp = array_module(p)
            g = grads[name]
            if name not in self.exp_avg:
                self.exp_avg[name], self.exp_avg_sq[name] = xp.zeros_like(p), xp.zeros_like(p)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            t = self.steps[name] = self.steps.get(name, 0) + 1
            bias_correction1 = 1 - beta1**t
            bias_correction2_sqrt = math.sqrt(1 - beta2**t)
            p *= 1 - lr * self.weight_decay
            m += (g - m) * (1 - beta1)  # torch's lerp: m + (g - m)(1 - β1)
            v *= beta2
            v += (1 - beta2) * g * g
            p -= (lr / bias_correction1) * m / (xp.sqrt(v) / bias_correction2_sqrt + self.eps)

    def moments(self) -> dict:
        """m and v of every parameter as one flat dict, "m." / "v." + its name (what a checkpoint stores)."""
        return {f"m.{n}": a for n, a in self.exp_avg.items()} | {f"v.{n}": a for n, a in self.exp_avg_sq.items()}

    def load_moments(self, arrays: dict, steps: dict) -> None:
        """The state ``moments`` wrote (other names are left alone), with each parameter's step count."""
        for name, array in arrays.items():
            kind, param = name.split(".", 1)
            if kind in ("m", "v"):
                (self.exp_avg if kind == "m" else self.exp_avg_sq)[param] = array
        self.steps = dict(steps)


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖
    the 2-norm of all gradients together. In place; returns ‖g‖ before clipping."""
    total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    scale = min(1.0, max_norm / (total + 1e-6))
    for g in grads.values():
        g *= scale
    return total


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """transformers' get_linear_schedule_with_warmup as a factor of the peak learning rate:
    step / warmup while warming up, then a straight line down to 0 at ``total``."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The demo recipe's schedule (torch's LambdaLR with this factor) as a factor of the peak
    learning rate: a linear warm-up reaching 1 at step warmup - 1, times a half cosine from 1 at
    step 0 down to 0 at ``total``:  min(1, (step + 1) / warmup) · (1 + cos(π · min(1, step / total))) / 2."""
    return min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
