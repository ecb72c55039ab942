"""Each layer's backward beside its forward (minis2t2/layers.py), checked two ways:

- against torch autograd on the same float64 inputs: the same derivative, so only summation order
  differs (atol 1e-10 on gradients of unit scale);
- by central finite differences in float64 (h = 1e-6: truncation ~h² and rounding ~1e-16/h,
  both under 1e-8 on these unit-scale functions, so atol 1e-6 leaves room), on a projection of
  the output onto a random direction.

Shapes are small and odd, so that a transposed axis or a wrong reduction cannot cancel out.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minis2t2 import layers as L
from minis2t2.weights import Tree

RNG = np.random.default_rng(0)
ATOL = 1e-10  # against autograd, float64


def rand(*shape):
    return RNG.standard_normal(shape)


def t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def autograd(fn, inputs: list, dy):
    """Gradients of sum(fn(*inputs) * dy) with respect to every input, by torch."""
    ts = [t(a) for a in inputs]
    (fn(*ts) * torch.tensor(dy)).sum().backward()
    return [x.grad.numpy() for x in ts]


def finite_difference(fn, x, dy, h=1e-6):
    """d/dx of sum(fn(x) * dy), one element at a time, central differences."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = ((fn(up) - fn(down)) * dy).sum() / (2 * h)
    return grad


def test_linear_backward():
    x, w, b = rand(2, 3, 5), rand(4, 5), rand(4)
    dy = rand(2, 3, 4)
    dx, grads = L.linear_backward(Tree(weight=w, bias=b), x, dy)
    ex, ew, eb = autograd(lambda x, w, b: F.linear(x, w, b), [x, w, b], dy)
    np.testing.assert_allclose(dx, ex, atol=ATOL)
    np.testing.assert_allclose(grads["weight"], ew, atol=ATOL)
    np.testing.assert_allclose(grads["bias"], eb, atol=ATOL)
    np.testing.assert_allclose(dx, finite_difference(lambda x: L.linear(Tree(weight=w, bias=b), x), x, dy), atol=1e-6)
    _, no_bias = L.linear_backward(Tree(weight=w), x, dy)
    assert set(no_bias) == {"weight"}


def test_layer_norm_backward():
    x, gamma, beta = rand(2, 3, 7) * 3 + 1, rand(7), rand(7)
    dy = rand(2, 3, 7)
    dx, grads = L.layer_norm_backward(Tree(weight=gamma, bias=beta), x, dy, 1e-5)
    ex, eg, eb = autograd(lambda x, g, b: F.layer_norm(x, (7,), g, b, 1e-5), [x, gamma, beta], dy)
    np.testing.assert_allclose(dx, ex, atol=ATOL)
    np.testing.assert_allclose(grads["weight"], eg, atol=ATOL)
    np.testing.assert_allclose(grads["bias"], eb, atol=ATOL)
    fd = finite_difference(lambda x: L.layer_norm(Tree(weight=gamma, bias=beta), x.copy(), 1e-5), x, dy)
    np.testing.assert_allclose(dx, fd, atol=1e-6)


@pytest.mark.parametrize("groups", [6, 2, 1])
def test_group_norm_backward(groups):
    x, gamma, beta = rand(2, 5, 6) * 2, rand(6), rand(6)
    dy = rand(2, 5, 6)
    dx, grads = L.group_norm_backward(Tree(weight=gamma, bias=beta), x, groups, dy)
    ex, eg, eb = autograd(lambda x, g, b: F.group_norm(x.transpose(1, 2), groups, g, b, 1e-5).transpose(1, 2),
                          [x, gamma, beta], dy)
    np.testing.assert_allclose(dx, ex, atol=ATOL)
    np.testing.assert_allclose(grads["weight"], eg, atol=ATOL)
    np.testing.assert_allclose(grads["bias"], eb, atol=ATOL)


@pytest.mark.parametrize("stride,padding,groups,bias", [(1, 0, 1, True), (3, 0, 1, False), (2, 2, 1, True),
                                                          (1, 3, 2, True), (4, 1, 3, False)])
def test_conv1d_backward(stride, padding, groups, bias):
    C_in, C_out, W = 6, 12, 4
    x, w = rand(2, 17, C_in), rand(C_out, C_in // groups, W)
    b = rand(C_out) if bias else None
    y = L.conv1d(x, w, b, stride=stride, padding=padding, groups=groups)
    dy = rand(*y.shape)
    dx, dw, db = L.conv1d_backward(x, w, b, dy, stride=stride, padding=padding, groups=groups)

    def torch_conv(x, w, *b):
        return F.conv1d(x.transpose(1, 2), w, b[0] if b else None, stride=stride, padding=padding,
                        groups=groups).transpose(1, 2)
    expected = autograd(torch_conv, [x, w] + ([b] if bias else []), dy)
    np.testing.assert_allclose(dx, expected[0], atol=ATOL)
    np.testing.assert_allclose(dw, expected[1], atol=ATOL)
    if bias:
        np.testing.assert_allclose(db, expected[2], atol=ATOL)
    else:
        assert db is None


@pytest.mark.parametrize("name,torch_fn", [
    ("gelu", lambda x: F.gelu(x)), ("gelu_new", lambda x: F.gelu(x, approximate="tanh")),
    ("relu", F.relu), ("silu", F.silu),
])
def test_activation_backward(name, torch_fn):
    x = rand(3, 11) * 3
    x[0, :3] = [0.0, 1e-3, -1e-3]  # around relu's kink: torch's gradient at 0 is 0, ours too
    dy = rand(3, 11)
    dx = L.ACTIVATION_BACKWARDS[name](x, dy)
    np.testing.assert_allclose(dx, autograd(torch_fn, [x], dy)[0], atol=ATOL)
    if name != "relu":  # finite differences straddle the kink at 0
        np.testing.assert_allclose(dx, finite_difference(L.ACTIVATIONS[name], x, dy), atol=1e-6)
    assert set(L.ACTIVATION_BACKWARDS) == set(L.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(L.ACTIVATIONS))
@pytest.mark.parametrize("dtype,size", [(np.float64, 33), (np.float32, 33), (np.float32, 5 * 65536 + 3)])
def test_activation_and_slope_is_the_activation_and_its_backward(name, dtype, size):
    """activation_and_slope(name, x) -> (act(x), act'(x)), what conv_stack_keeping_inputs and
    feed_forward_backward keep instead of running the activation's backward on the saved input:
    the plain pair act(x), act_backward(x, 1). GELU's comes from one erf (gelu_and_slope, in pieces
    on every core past 64 K float32 numbers) and gives the same bits; the others are that pair."""
    x = (np.random.default_rng(3).standard_normal(size) * 3).astype(dtype)
    y, slope = L.activation_and_slope(name, x)
    np.testing.assert_array_equal(y, L.ACTIVATIONS[name](x))
    np.testing.assert_array_equal(slope, L.ACTIVATION_BACKWARDS[name](x, np.ones_like(x)))
    assert y.dtype == slope.dtype == dtype


def test_softmax_backward():
    x, dy = rand(2, 3, 8), rand(2, 3, 8)
    dx = L.softmax_backward(L.softmax(x), dy)
    np.testing.assert_allclose(dx, autograd(lambda x: torch.softmax(x, -1), [x], dy)[0], atol=ATOL)


def test_attend_backward_with_a_mask():
    B, H, Lq, Lk, D = 2, 3, 4, 6, 5
    q, k, v = rand(B, H, Lq, D), rand(B, H, Lk, D), rand(B, H, Lk, D)
    mask = np.ones((B, Lk))
    mask[1, 4:] = 0  # padded keys of item 1
    bias = L.padding_bias(mask, np.float64)  # (B, 1, 1, Lk)
    out, weights = L.attend(q, k, v, bias)
    d_out = rand(*out.shape)
    dq, dk, dv = L.attend_backward(q, k, v, weights, d_out)

    def torch_attend(q, k, v):
        return torch.softmax(q @ k.transpose(-1, -2) + torch.tensor(bias), -1) @ v
    eq, ek, ev = autograd(torch_attend, [q, k, v], d_out)
    np.testing.assert_allclose(dq, eq, atol=ATOL)
    np.testing.assert_allclose(dk, ek, atol=ATOL)
    np.testing.assert_allclose(dv, ev, atol=ATOL)
    assert np.abs(dk[1, :, 4:]).max() == 0 and np.abs(dv[1, :, 4:]).max() == 0  # padding gets no gradient
