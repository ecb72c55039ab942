"""Notebook 13 builds CTC by hand (loss, lattice recursions, gradient, Viterbi); here its own
functions, taken from the notebook, are held against torch's ctc_loss and autograd on random
lattices (repeated words included, where the skip rule matters), and its Viterbi against the best
of every path. float64 throughout: agreement to 1e-9 relative on losses of a few nats."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from minis2t2.layers import log_softmax, softmax
from tools.notebook_code import definitions

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "13_ctc_by_hand.ipynb"
NAMES = ["BLANK", "NEG", "collapse", "extend", "skip_allowed", "ctc_alpha", "ctc_beta", "ctc_loss_and_grad", "viterbi"]


@pytest.fixture(scope="module")
def ctc():
    return definitions(NOTEBOOK, NAMES, {"np": np, "log_softmax": log_softmax, "softmax": softmax})


def random_case(rng):
    V = int(rng.integers(3, 7))
    L = int(rng.integers(1, 5))
    target = [int(k) for k in rng.integers(1, V, size=L)]
    if L > 1 and rng.random() < 0.5:
        target[1] = target[0]  # a repeated word: its blank cannot be skipped
    repeats = sum(a == b for a, b in itertools.pairwise(target))
    T = L + repeats + int(rng.integers(0, 6))  # the fewest frames that can say it, and a few more
    return rng.standard_normal((T, V)) * 2, target


def test_loss_and_gradient_equal_torch(ctc):
    rng = np.random.default_rng(13)
    for _ in range(40):
        logits, target = random_case(rng)
        loss, grad, gamma = ctc["ctc_loss_and_grad"](logits, target)
        z = torch.tensor(logits, requires_grad=True)
        expected = torch.nn.functional.ctc_loss(z.log_softmax(-1)[:, None], torch.tensor([target]),
                                                torch.tensor([len(logits)]), torch.tensor([len(target)]),
                                                blank=0, reduction="sum")
        expected.backward()
        np.testing.assert_allclose(loss, expected.item(), rtol=1e-9)
        np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(gamma.sum(axis=1), 1, atol=1e-9)


def test_viterbi_is_the_best_path(ctc):
    rng = np.random.default_rng(7)
    for _ in range(6):
        V, T = 3, 7
        logits = rng.standard_normal((T, V)) * 2
        target = [1, 1] if rng.random() < 0.5 else [1, 2]
        logp = log_softmax(logits)
        best = max(sum(logp[t, k] for t, k in enumerate(p)) for p in itertools.product(range(V), repeat=T)
                   if ctc["collapse"](p) == target)
        states, score = ctc["viterbi"](logp, target)
        np.testing.assert_allclose(score, best, rtol=1e-12)
        ext = ctc["extend"](target)
        assert ctc["collapse"](ext[states]) == target
        np.testing.assert_allclose(sum(logp[t, k] for t, k in enumerate(ext[states])), best, rtol=1e-12)


def test_definitions_names_what_is_missing():
    with pytest.raises(KeyError, match="no_such_function"):
        definitions(NOTEBOOK, ["ctc_alpha", "no_such_function"], {"np": np})
