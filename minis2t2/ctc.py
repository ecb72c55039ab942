"""CTC (connectionist temporal classification) over a batch: the auxiliary loss of joint
CTC-attention training, forward and backward, as torch's ``ctc_loss`` defines it.

The demo recipe (tools/demo/train.py) adds a CTC loss of the English words on the encoder's
output through a linear head used only in training. Notebook 13 builds the same loss by hand for
one clip (the lattice of 2L + 1 states: a blank before, between and after the L words; the
forward recursion α, the backward recursion β, the posteriors γ). Here the recursions run over
a batch at once, clips of different lengths and different word counts side by side:

    ext (B, S)        the lattice of each clip, S = 2 L_max + 1, padded with blanks
    α_t(s)            log Σ over the paths through frames 0..t that end in state s, p_t(ext_s) included
    β_t(s)            log Σ over the paths through frames t..T_b-1 that start in state s, p_t(ext_s) included
    log L_b           = logaddexp(α at the last frame in the last word and in the last blank)
    γ_t(s)            = exp(α_t(s) + β_t(s) - log p_t(ext_s) - log L_b)     (the posteriors)
    ∂(-log L_b)/∂z_t,k = softmax(z_t)_k - Σ_{s: ext_s = k} γ_t(s)          (z: the head's logits)

Padded lattice states sit beyond a clip's last state, and moves only go forward in s: α there
never feeds the clip's own end, and β there is log 0, so they get no posterior. Frames beyond a
clip's length get β = log 0 and so no gradient.

``reduction="mean"`` as torch: each clip's -log L divided by its word count (at least 1), then
the mean over the batch. ``zero_infinity=True`` as torch: a clip that cannot be aligned (fewer
frames than its words need) gets loss 0 and gradient 0 instead of infinity.
"""

from __future__ import annotations

import numpy as np

from .layers import log_softmax, softmax

BLANK = 0
NEG = -np.inf  # log 0


def lattice(targets: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's states (B, S): blank, word 1, blank, word 2, ..., blank (padded with blanks),
    and where a path may skip a blank (B, S): onto a word that differs from the one two states back."""
    S = 2 * max([len(t) for t in targets] + [0]) + 1
    ext = np.full((len(targets), S), BLANK, dtype=np.int64)
    for b, words in enumerate(targets):
        ext[b, 1 : 2 * len(words) : 2] = words
    skip = np.zeros(ext.shape, dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != BLANK) & (ext[:, 2:] != ext[:, :-2])
    return ext, skip


def shifted(x: np.ndarray, by: int) -> np.ndarray:
    """x moved ``by`` states along the last axis, log 0 filling the vacated end
    (by > 0: state s receives s - by; by < 0: state s receives s + |by|)."""
    out = np.full_like(x, NEG)
    if by > 0:
        out[..., by:] = x[..., :-by]
    else:
        out[..., :by] = x[..., -by:]
    return out


def ctc_loss_and_grad(logits: np.ndarray, frames: np.ndarray, targets: list[list[int]]) -> tuple[float, np.ndarray]:
    """torch.nn.functional.ctc_loss(log_softmax(logits), ..., blank=0, reduction="mean",
    zero_infinity=True) and its gradient for the logits.

    logits (B, T, V) float, frames (B,) the valid frames of each clip, targets: each clip's word ids
    (1..V-1; 0 is the blank) -> (loss, d_logits (B, T, V))."""
    B, T, _ = logits.shape
    frames = np.asarray(frames, dtype=np.int64)
    logp = log_softmax(logits.astype(np.float64))  # (B, T, V): float64 whatever the model's dtype
    ext, skip = lattice(targets)  # (B, S)
    S = ext.shape[1]
    emit = np.take_along_axis(logp, np.broadcast_to(ext[:, None, :], (B, T, S)), axis=2)  # (B, T, S): log p_t(ext_s)
    alpha = np.full((T, B, S), NEG)
    alpha[0, :, :2] = emit[:, 0, :2]  # start in the first blank or the first word
    for t in range(1, T):
        prev = alpha[t - 1]
        came = np.logaddexp(prev, shifted(prev, 1))  # stay in s, or step from s - 1
        came = np.where(skip, np.logaddexp(came, shifted(prev, 2)), came)  # or skip from s - 2
        alpha[t] = came + emit[:, t]
    last = 2 * np.array([len(t) for t in targets])  # (B,) each clip's last blank; its last word is one before
    rows = np.arange(B)
    end = alpha[frames - 1, rows]  # (B, S) α at each clip's last frame
    log_likelihood = np.logaddexp(end[rows, last], np.where(last > 0, end[rows, last - 1], NEG))  # (B,)

    skip_from = np.zeros_like(skip)  # may state s skip to s + 2?
    skip_from[:, :-2] = skip[:, 2:]
    beta = np.full((T, B, S), NEG)
    ends = np.full((B, S), NEG)
    ends[rows, last] = 0.0
    ends[rows[last > 0], last[last > 0] - 1] = 0.0  # end in the last blank or the last word
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            nxt = beta[t + 1]
            goes = np.logaddexp(nxt, shifted(nxt, -1))  # stay in s, or step to s + 1
            goes = np.where(skip_from, np.logaddexp(goes, shifted(nxt, -2)), goes)  # or skip to s + 2
        else:
            goes = np.full((B, S), NEG)
        goes = np.where((frames - 1 == t)[:, None], ends, goes)  # each clip's own last frame starts β
        beta[t] = np.where((t < frames)[:, None], goes + emit[:, t], NEG)

    aligned = np.isfinite(log_likelihood)  # zero_infinity: an impossible clip contributes nothing
    safe = np.where(aligned, log_likelihood, 0.0)
    gamma = np.exp(alpha.transpose(1, 0, 2) + beta.transpose(1, 0, 2) - emit - safe[:, None, None])  # (B, T, S)
    one_hot = ext[:, :, None] == np.arange(logits.shape[2])  # (B, S, V)
    used = gamma @ one_hot  # (B, T, V): Σ over each symbol's states of its posterior
    valid = (np.arange(T)[None, :] < frames[:, None])[:, :, None]  # (B, T, 1)
    d = np.where(valid, softmax(logits.astype(np.float64)) - used, 0.0)  # ∂(-log L_b)/∂z
    per_clip = 1.0 / (np.maximum([len(t) for t in targets], 1) * B)  # mean over the batch of loss / words
    weight = np.where(aligned, per_clip, 0.0)
    loss = float(np.sum(-safe * weight))
    return loss, (d * weight[:, None, None]).astype(logits.dtype)
