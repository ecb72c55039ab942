"""minis2t2.ctc, the batched CTC loss of the demo recipe's NumPy engine, against torch's ctc_loss
(reduction="mean", zero_infinity=True) and autograd through log_softmax, on random batches that
mix clip lengths, word counts, repeated words (the skip rule), clips without words (the target of
the recipe's non-speech clips) and clips too short to say their words (zero_infinity). float64:
the two agree to 1e-10 relative on losses of a few nats."""

import itertools

import numpy as np
import pytest
import torch

from minis2t2.ctc import ctc_loss_and_grad


def random_batch(rng, B=6):
    V = int(rng.integers(3, 8))
    targets, frames = [], []
    for _ in range(B):
        L = int(rng.integers(0, 5))
        words = [int(k) for k in rng.integers(1, V, size=L)]
        if L > 1 and rng.random() < 0.5:
            words[1] = words[0]  # a repeated word: its blank cannot be skipped
        targets.append(words)
        fewest = L + sum(a == b for a, b in itertools.pairwise(words))
        frames.append(max(1, fewest + int(rng.integers(-1, 6))))  # sometimes one frame too few
    T = max(frames) + int(rng.integers(0, 3))  # padding frames past the longest clip, sometimes
    return rng.standard_normal((B, T, V)) * 2, np.array(frames), targets


def torch_reference(logits, frames, targets):
    z = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.ctc_loss(
        z.log_softmax(-1).transpose(0, 1), torch.tensor([w for t in targets for w in t], dtype=torch.long),
        torch.tensor(frames), torch.tensor([len(t) for t in targets]), blank=0, reduction="mean", zero_infinity=True)
    loss.backward()
    return loss.item(), z.grad.numpy()


@pytest.mark.parametrize("seed", range(8))
def test_loss_and_gradient_equal_torch(seed):
    logits, frames, targets = random_batch(np.random.default_rng(seed))
    loss, grad = ctc_loss_and_grad(logits, frames, targets)
    expected_loss, expected_grad = torch_reference(logits, frames, targets)
    assert loss == pytest.approx(expected_loss, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-12)


def test_an_impossible_clip_contributes_nothing():
    logits = np.random.default_rng(0).standard_normal((2, 4, 3))
    loss, grad = ctc_loss_and_grad(logits, np.array([4, 2]), [[1, 1], [1, 2, 1]])  # 2 frames cannot say 3 words
    assert np.all(grad[1] == 0) and np.any(grad[0] != 0)
    assert loss == pytest.approx(torch_reference(logits, np.array([4, 2]), [[1, 1], [1, 2, 1]])[0], rel=1e-10)


def test_float32_logits_get_a_float32_gradient():
    logits, frames, targets = random_batch(np.random.default_rng(1))
    loss32, grad32 = ctc_loss_and_grad(logits.astype(np.float32), frames, targets)
    assert grad32.dtype == np.float32
    loss64, grad64 = ctc_loss_and_grad(logits.astype(np.float32).astype(np.float64), frames, targets)
    assert loss32 == loss64 and np.array_equal(grad32, grad64.astype(np.float32))  # computed in float64 either way
