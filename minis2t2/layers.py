"""Building blocks shared by the encoder and the decoder.

Dimension legend (used in every shape comment of this package):
    B batch      N audio samples   T encoder frames   S decoder steps
    C channels   H heads           D head dim (C // H) W kernel width (taps)
    G groups     V vocabulary      K beams (generation)  *  any leading dims

Every function is pure: arrays in, arrays out, weights passed as the checkpoint's own
subtree (``p.weight``, ``p.bias``), so stored arrays stay bit-identical to the file.
"""

from __future__ import annotations

import math

from .backend import array_module, elementwise, erf, rowwise


def record_to(record: dict | None, name: str, value) -> None:
    """Store an activation under its HF module path when the caller asked for a record."""
    if record is not None:
        record[name] = value


def linear(p, x):
    """nn.Linear: x @ weight.T + bias.   (*, C_in) -> (*, C_out); weight is stored (C_out, C_in)."""
    y = x.reshape(-1, x.shape[-1]) @ p.weight.T  # (M, C_out), M = all leading positions: one matrix
    y = y.reshape(*x.shape[:-1], y.shape[-1])  # product (a 3-d x would run one per batch row)  (*, C_out)
    if "bias" in p:
        y += p.bias  # in place: y is our own fresh array, so no second (*, C_out) temporary
    return y


def linear_backward(p, x, dy):
    """Gradients of y = x @ weight.T + bias.   x (*, C_in), dy (*, C_out) -> dx (*, C_in), {name: grad}

        dx = dy @ weight            dweight = dyᵀ x  (summed over every leading position)
        dbias = Σ dy
    """
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # (M, C_in), (M, C_out)
    grads = {"weight": dy2.T @ x2}  # (C_out, C_in)
    if "bias" in p:
        grads["bias"] = dy2.sum(axis=0)  # (C_out,)
    return (dy2 @ p.weight).reshape(*dy.shape[:-1], x.shape[-1]), grads  # (*, C_in)


@rowwise  # float32 arrays of more than a PIECE: blocks of rows on every core (backend.rowwise)
def layer_norm(p, x, eps: float):
    """nn.LayerNorm over the last axis (biased variance, as torch).   (*, C) -> (*, C)"""
    xp = array_module(x)
    C = x.shape[-1]
    centered = x - row_mean(x)  # (*, C)
    # Each row's dot product with itself, as one batched (1, C) @ (C, 1) product: no squared
    # (*, C) copy, and on CuPy one cuBLAS call (einsum spent ~0.2 ms a call parsing, on the host).
    var = (centered[..., None, :] @ centered[..., :, None])[..., 0] / C  # (*, 1)
    # The rest in place on `centered`, our own array: one (*, C) buffer instead of four (the
    # first conv layer's output on 10 s of audio is 32,000 x 512 numbers, 64 MB a buffer).
    centered /= xp.sqrt(var + eps)
    centered *= p.weight
    centered += p.bias
    return centered  # (*, C)


def row_mean(x):
    """The mean of each row (the last axis), as a matrix-vector product with (1/C, ..., 1/C):
    x.mean(axis=-1, keepdims=True) in other rounding. NumPy's mean over a short last axis runs
    a loop per row: at C = 32 (the demo's first conv layer) the product is 8x faster.
    (*, C) -> (*, 1)"""
    C = x.shape[-1]
    return (x @ array_module(x).full(C, 1 / C, dtype=x.dtype))[..., None]


@rowwise
def layer_norm_backward(p, x, dy, eps: float):
    """Gradients of LayerNorm over the last axis.   x, dy (*, C) -> dx (*, C), {"weight", "bias"}

    With x̂ = (x - mean) / σ, σ = sqrt(var + eps), y = x̂ γ + β, and g = dy γ:
        dγ = Σ dy x̂,   dβ = Σ dy   (over every leading position)
        dx = (g - mean(g) - x̂ mean(g x̂)) / σ     (the three terms: through x, the mean, the variance)
    Row sums with γ inside are products with γ: mean(g) = (dy @ γ) / C, mean(g x̂) = ((dy x̂) @ γ) / C.
    """
    xp = array_module(x)
    C = x.shape[-1]
    x_hat = x - row_mean(x)  # (*, C) centred, normalised in place below
    sigma = xp.sqrt((x_hat[..., None, :] @ x_hat[..., :, None])[..., 0] / C + eps)  # (*, 1), rows' dot as in layer_norm
    x_hat /= sigma
    dy_x_hat = dy * x_hat  # (*, C)
    grads = {"weight": dy_x_hat.reshape(-1, C).sum(axis=0), "bias": dy.reshape(-1, C).sum(axis=0)}
    mean_g_x_hat = (dy_x_hat @ p.weight)[..., None] / C  # (*, 1)
    dx = dy * p.weight  # g, then the three terms in place
    dx -= (dy @ p.weight)[..., None] / C  # mean(g)
    x_hat *= mean_g_x_hat
    dx -= x_hat
    dx /= sigma
    return dx, grads


def group_norm(p, x, num_groups: int, eps: float = 1e-5):
    """nn.GroupNorm on channels-last input: statistics over time and the group's channels.

    (B, T, C) -> (B, T, C). wav2vec2 uses num_groups == C: each channel is normalised
    over time on its own.
    """
    xp = array_module(x)
    B, T, C = x.shape
    g = x.reshape(B, T, num_groups, C // num_groups)  # (B, T, G, C/G)
    mean = g.mean(axis=(1, 3), keepdims=True)  # (B, 1, G, 1)
    var = xp.square(g - mean).mean(axis=(1, 3), keepdims=True)  # (B, 1, G, 1)
    g = (g - mean) / xp.sqrt(var + eps)  # (B, T, G, C/G)
    return g.reshape(B, T, C) * p.weight + p.bias  # (B, T, C)


def group_norm_backward(p, x, num_groups: int, dy, eps: float = 1e-5):
    """Gradients of ``group_norm``: layer norm's three terms, with the statistics over time and the
    group's channels.   x, dy (B, T, C) -> dx (B, T, C), {"weight", "bias"}"""
    xp = array_module(x)
    B, T, C = x.shape
    g_x = x.reshape(B, T, num_groups, C // num_groups)  # (B, T, G, C/G)
    centered = g_x - g_x.mean(axis=(1, 3), keepdims=True)
    sigma = xp.sqrt((centered * centered).mean(axis=(1, 3), keepdims=True) + eps)  # (B, 1, G, 1)
    x_hat = centered / sigma  # (B, T, G, C/G)
    g = (dy * p.weight).reshape(B, T, num_groups, C // num_groups)
    dx = (g - g.mean(axis=(1, 3), keepdims=True) - x_hat * (g * x_hat).mean(axis=(1, 3), keepdims=True)) / sigma
    grads = {"weight": (dy * x_hat.reshape(B, T, C)).sum(axis=(0, 1)), "bias": dy.sum(axis=(0, 1))}
    return dx.reshape(B, T, C), grads


def conv1d(x, weight, bias, stride: int = 1, padding: int = 0, groups: int = 1):
    """nn.Conv1d on channels-last input, as one matmul over sliding windows (im2col).

    x (B, L, C_in), weight (C_out, C_in/G, W) as torch stores it -> (B, T, C_out) with
    T = (L + 2*padding - W) // stride + 1. Plain form: y[b, t, o] = bias[o] +
    sum_{c, k} x[b, t*stride + k, c] * weight[o, c, k], summed within o's group only.
    """
    xp = array_module(x)
    if padding:
        x = xp.pad(x, ((0, 0), (padding, padding), (0, 0)))  # (B, L + 2*padding, C_in)
    B, _, C_in = x.shape  # (B, L + 2*padding, C_in)
    C_out, C_group, W = weight.shape
    assert C_in == C_group * groups, f"conv1d: input has {C_in} channels, weight expects {C_group * groups}"
    windows = im2col(x, W, stride, groups)  # (G, B*T, W * C_in/G)
    T = windows.shape[1] // B
    y = windows @ conv_weight_matrix(weight, groups)  # (G, B*T, C_out/G)
    y = y.transpose(1, 0, 2).reshape(B, T, C_out)  # (B, T, C_out)
    if bias is not None:
        y += bias  # in place: y is the matmul's fresh output
    return y


def im2col(x, W: int, stride: int, groups: int):
    """Every window a conv of W taps cuts from x, one row each, grouped by channel group.

    x (B, L, C_in) -> (G, B*T, W * C_in/G), T = (L - W) // stride + 1; row (b, t) holds
    x[b, t*stride : t*stride + W, the group's channels], tap-major: a window's W taps x C_in
    channels lie next to each other in x, so copying them out in (W, C_in) order moves runs of
    C_in numbers rather than single numbers W apart (wav2vec2-large's positional conv on 10 s:
    0.40 s -> 0.23 s; the strided convs unchanged).
    """
    xp = array_module(x)
    B, _, C_in = x.shape
    windows = xp.lib.stride_tricks.sliding_window_view(x, W, axis=1)[:, ::stride]  # (B, T, C_in, W), a view
    T = windows.shape[1]
    windows = windows.transpose(0, 1, 3, 2).reshape(B * T, W, groups, C_in // groups)  # (B*T, W, G, C_in/G)
    return windows.transpose(2, 0, 1, 3).reshape(groups, B * T, W * C_in // groups)  # (G, B*T, W * C_in/G)


def conv_weight_matrix(weight, groups: int):
    """torch's conv weight (C_out, C_in/G, W) as the matrix im2col's rows multiply:
    (G, W * C_in/G, C_out/G), tap-major like the rows."""
    C_out, C_group, W = weight.shape
    w = weight.reshape(groups, C_out // groups, C_group, W).transpose(0, 3, 2, 1)  # (G, W, C_in/G, C_out/G)
    return w.reshape(groups, W * C_group, C_out // groups)


def conv1d_backward(x, weight, bias, dy, stride: int = 1, padding: int = 0, groups: int = 1,
                    input_gradient: bool = True):
    """Gradients of ``conv1d``.   x (B, L, C_in), dy (B, T, C_out) -> dx (B, L, C_in), dweight, dbias

    The forward is y = windows @ w with windows the im2col rows of x, so
        dw = windowsᵀ dy,   dwindows = dy wᵀ,   dbias = Σ dy
    and dx adds each window's gradient back where the window was cut: tap k of output frame t
    came from input sample t * stride + k (col2im, one strided add per tap).
    ``input_gradient=False`` skips dx (None): the first conv layer's input is the audio itself.
    """
    xp = array_module(x)
    if padding:
        x = xp.pad(x, ((0, 0), (padding, padding), (0, 0)))  # (B, L + 2*padding, C_in)
    B, L, C_in = x.shape
    C_out, C_group, W = weight.shape
    T = dy.shape[1]
    dy_g = dy.reshape(B * T, groups, C_out // groups).transpose(1, 0, 2)  # (G, B*T, C_out/G)
    d_w = im2col(x, W, stride, groups).transpose(0, 2, 1) @ dy_g  # (G, W * C_in/G, C_out/G)
    dweight = d_w.reshape(groups, W, C_group, C_out // groups).transpose(0, 3, 2, 1).reshape(C_out, C_group, W)
    dbias = None if bias is None else dy.sum(axis=(0, 1))  # (C_out,)
    if not input_gradient:
        return None, dweight, dbias
    dwindows = dy_g @ conv_weight_matrix(weight, groups).transpose(0, 2, 1)  # (G, B*T, W * C_in/G)
    dwindows = dwindows.reshape(groups, B, T, W, C_group).transpose(1, 2, 3, 0, 4).reshape(B, T, W, C_in)
    dx = xp.zeros_like(x)  # (B, L, C_in)
    for k in range(W):  # col2im: tap k of frame t is sample t * stride + k
        dx[:, k : k + stride * (T - 1) + 1 : stride] += dwindows[:, :, k]  # (B, T, C_in), runs of C_in
    if padding:
        dx = dx[:, padding : L - padding]  # (B, L - 2*padding, C_in)
    return dx, dweight, dbias


@elementwise  # float32 arrays of more than a PIECE: in pieces on every core (backend.in_pieces)
def gelu(x):
    """GELU in its erf form, x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2 (HF "gelu"; torch's default).

    erf is ``backend.erf``: exact, except for float32 arrays on the CPU, where it is an
    approximation at most 6.5e-7 from the exact erf (so this GELU is within 3.3e-7 |x| of the
    exact one; float32 itself rounds GELU's output by about 6e-8 |x|).
    """
    y = erf(x * (1 / math.sqrt(2.0)))  # multiplying by 1/sqrt(2), as torch's kernel does
    y += 1.0  # in place on erf's fresh output: one temporary instead of four
    y *= x
    y *= 0.5
    return y


@elementwise
def gelu_backward(x, dy):
    """d/dx [x Φ(x)] = Φ(x) + x φ(x), with φ the standard normal density.   x, dy (*) -> dx (*)"""
    xp = array_module(x)
    dx = x * x  # (*) then φ(x) x + Φ(x), in place: one temporary besides erf's
    dx *= -0.5
    dx = xp.exp(dx)
    dx *= 1 / math.sqrt(2 * math.pi)  # φ(x)
    dx *= x
    cdf = erf(x * (1 / math.sqrt(2.0)))  # Φ(x) = (1 + erf(x / sqrt 2)) / 2
    cdf += 1.0
    cdf *= 0.5
    dx += cdf
    dx *= dy
    return dx


@elementwise
def gelu_and_slope(x):
    """GELU and its derivative at x from one erf: (gelu(x), gelu_backward(x, 1)), the same numbers.

    A layer that keeps the slope from its forward pays for its backward with one product,
    dx = dy * slope, instead of a second erf (``activation_and_slope``).   x (*) -> y (*), slope (*)
    """
    xp = array_module(x)
    cdf = erf(x * (1 / math.sqrt(2.0)))  # then Φ(x) = (1 + erf(x / sqrt 2)) / 2, in place
    cdf += 1.0
    cdf *= 0.5
    slope = x * x  # then φ(x) x + Φ(x), in place, as gelu_backward
    slope *= -0.5
    slope = xp.exp(slope)
    slope *= 1 / math.sqrt(2 * math.pi)  # φ(x)
    slope *= x
    slope += cdf
    cdf *= x  # x Φ(x): gelu(x)
    return cdf, slope


def activation_and_slope(name: str, x):
    """ACTIVATIONS[name](x) and its derivative at x (the slope): the activation's backward is then
    d_x = d_y * slope. Plain form: (act(x), act_backward(x, 1)); GELU's pair from one erf.
    x (*) -> y (*), slope (*)"""
    if name == "gelu":
        return gelu_and_slope(x)
    return ACTIVATIONS[name](x), ACTIVATION_BACKWARDS[name](x, array_module(x).ones_like(x))


def gelu_tanh(x):
    """Tanh approximation of GELU (HF "gelu_new", "gelu_pytorch_tanh")."""
    xp = array_module(x)
    return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_tanh_backward(x, dy):
    """d/dx of 0.5 x (1 + tanh(u)), u = sqrt(2/π) (x + 0.044715 x³):
    0.5 (1 + tanh u) + 0.5 x (1 - tanh² u) sqrt(2/π) (1 + 3 · 0.044715 x²).   x, dy (*) -> dx (*)"""
    xp = array_module(x)
    c = math.sqrt(2.0 / math.pi)
    t = xp.tanh(c * (x + 0.044715 * x**3))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x))


def relu(x):
    return array_module(x).maximum(x, 0)


def relu_backward(x, dy):
    """1 where x > 0, else 0 (torch's choice at x = 0).   x, dy (*) -> dx (*)"""
    return dy * (x > 0)


def silu(x):
    """x * sigmoid(x) (HF "silu" and "swish")."""
    xp = array_module(x)
    return x / (1.0 + xp.exp(-x))


def silu_backward(x, dy):
    """d/dx [x σ(x)] = σ(x) (1 + x (1 - σ(x))).   x, dy (*) -> dx (*)"""
    xp = array_module(x)
    sig = 1.0 / (1.0 + xp.exp(-x))
    return dy * sig * (1.0 + x * (1.0 - sig))


ACTIVATIONS = {
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": relu,
    "silu": silu,
    "swish": silu,
}

# The derivative of each activation in ACTIVATIONS, under the same HF name
ACTIVATION_BACKWARDS = {
    "gelu": gelu_backward,
    "gelu_new": gelu_tanh_backward,
    "gelu_pytorch_tanh": gelu_tanh_backward,
    "relu": relu_backward,
    "silu": silu_backward,
    "swish": silu_backward,
}


def softmax(x, axis: int = -1):
    xp = array_module(x)
    e = x - x.max(axis=axis, keepdims=True)  # shifted so the largest is 0: exp cannot overflow
    xp.exp(e, out=e)  # in place, as is the division: one temporary instead of three
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_backward(y, dy, axis: int = -1):
    """Softmax's Jacobian-vector product: dx = y (dy - Σ dy y), with y = softmax(x).   y, dy (*) -> dx (*)"""
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax(x, axis: int = -1):
    xp = array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def split_heads(x, num_heads: int):
    """(B, L, C) -> (B, H, L, D)"""
    B, L, C = x.shape
    return x.reshape(B, L, num_heads, C // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, L, D) -> (B, L, C)"""
    B, H, L, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, H * D)


def attend(q, k, v, bias=None, keep_weights: bool = True, dropout_mask=None):
    """Scaled dot-product attention on already-scaled queries:

        scores = q @ kᵀ + bias,  weights = softmax(scores) per row,  output = weights @ v

    q (B, H, Lq, D), k and v (B, H, Lk, D), bias broadcastable to (B, H, Lq, Lk) holding 0 where
    attending is allowed and the dtype's most negative finite value where not (as HF, never
    -inf, so a fully masked row stays finite).
    -> output (B, H, Lq, D) and the attention probabilities (B, H, Lq, Lk), each row summing to
    1 (what HF returns with ``output_attentions=True``), or None without ``keep_weights``.
    In training mode ``dropout_mask`` (B, H, Lq, Lk) multiplies the probabilities before they
    weigh the values (the returned ones are HF's: before dropout).

    When the scores would take more than ATTENTION_BLOCK_BYTES (long audio: about 10 s for
    wav2vec2-large's 16 heads), ``attend_in_blocks`` computes the same a block of queries at a
    time. The size decides, never whether the weights are wanted.
    """
    B, H, Lq, _ = q.shape
    if B * H * Lq * k.shape[2] * q.dtype.itemsize > ATTENTION_BLOCK_BYTES:
        return attend_in_blocks(q, k, v, bias, keep_weights, dropout_mask=dropout_mask)
    scores = q @ k.transpose(0, 1, 3, 2)  # (B, H, Lq, Lk)
    if bias is not None:
        scores += bias
    weights = softmax(scores, axis=-1)  # (B, H, Lq, Lk)
    dropped = weights if dropout_mask is None else weights * dropout_mask  # (B, H, Lq, Lk)
    return dropped @ v, weights if keep_weights else None  # (B, H, Lq, D), (B, H, Lq, Lk)


ATTENTION_BLOCK_BYTES = 1 << 24  # 16 MiB of scores at once (softmax's temporaries: ~4x that)


def attend_backward(q, k, v, weights, d_out, dropout_mask=None):
    """Gradients of ``attend`` (the bias is a constant).   q (B, H, Lq, D), k and v (B, H, Lk, D),
    weights (B, H, Lq, Lk) as the forward returned them, d_out (B, H, Lq, D) -> dq, dk, dv

        dv = weightsᵀ d_out,   dweights = d_out vᵀ,   dscores = softmax_backward(weights, dweights)
        dq = dscores k,        dk = dscoresᵀ q
    (masked scores have weight 0, so no gradient flows to them). With a ``dropout_mask`` M the
    values are weighed by weights * M: dv = (weights * M)ᵀ d_out and dweights = (d_out vᵀ) * M.
    """
    M = 1 if dropout_mask is None else dropout_mask
    dv = (weights * M).transpose(0, 1, 3, 2) @ d_out  # (B, H, Lk, D)
    dscores = softmax_backward(weights, (d_out @ v.transpose(0, 1, 3, 2)) * M)  # (B, H, Lq, Lk)
    return dscores @ k, dscores.transpose(0, 1, 3, 2) @ q, dv  # (B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, D)


def attend_in_blocks(q, k, v, bias=None, keep_weights: bool = True, rows: int | None = None, dropout_mask=None):
    """``attend`` a block of ``rows`` queries at a time (by default as many as fit in
    ATTENTION_BLOCK_BYTES of scores). Softmax is per row, so the result is the same; without
    ``keep_weights`` no (Lq, Lk) matrix for all heads is ever built, and memory grows linearly
    with the audio's length (60 s of audio is 3000 frames: 9 M scores per head, 576 MB for
    wav2vec2-large's 16 heads at once).
    """
    xp = array_module(q)
    B, H, Lq, _ = q.shape
    Lk = k.shape[2]
    rows = rows or max(1, ATTENTION_BLOCK_BYTES // (B * H * Lk * q.dtype.itemsize))  # queries per block
    k_t = k.transpose(0, 1, 3, 2)  # (B, H, D, Lk)
    outputs, weights = [], []
    for start in range(0, Lq, rows):
        scores = q[:, :, start : start + rows] @ k_t  # (B, H, rows, Lk)
        if bias is not None:
            scores += bias[..., start : start + rows, :] if bias.ndim > 1 and bias.shape[-2] > 1 else bias
        probabilities = softmax(scores, axis=-1)  # (B, H, rows, Lk)
        dropped = probabilities if dropout_mask is None else probabilities * dropout_mask[:, :, start : start + rows]
        outputs.append(dropped @ v)  # (B, H, rows, D)
        if keep_weights:
            weights.append(probabilities)
    output = xp.concatenate(outputs, axis=2)  # (B, H, Lq, D)
    return output, xp.concatenate(weights, axis=2) if keep_weights else None  # (B, H, Lq, Lk)


def attention_keeping(p, queries, keys, bias, num_heads: int, dropout_mask=None):
    """BART-style attention (``self_attention``'s arithmetic, with queries and keys apart), also
    returning what ``attention_backward`` needs.
    queries (B, Lq, C), keys (B, Lk, C) -> output (B, Lq, C), kept {q, k, v, weights, merged}"""
    D = queries.shape[-1] // num_heads
    q = split_heads(linear(p.q_proj, queries) * D**-0.5, num_heads)  # (B, H, Lq, D)
    k = split_heads(linear(p.k_proj, keys), num_heads)  # (B, H, Lk, D)
    v = split_heads(linear(p.v_proj, keys), num_heads)  # (B, H, Lk, D)
    heads, weights = attend(q, k, v, bias, dropout_mask=dropout_mask)  # (B, H, Lq, D), (B, H, Lq, Lk)
    merged = merge_heads(heads)  # (B, Lq, C)
    return linear(p.out_proj, merged), {"q": q, "k": k, "v": v, "weights": weights, "merged": merged}


def attention_backward(p, queries, keys, bias, num_heads: int, d_out, dropout_mask=None, kept=None):
    """Gradients of BART-style attention (HF's Wav2Vec2Attention / Speech2Text2Attention without
    cache): q = (queries @ Wqᵀ + bq) D**-0.5, k and v from ``keys``, output ``out_proj`` of
    ``attend``. Self-attention passes the same array as queries and keys; cross-attention the
    decoder states and the encoder frames.
    queries (B, Lq, C), keys (B, Lk, C), d_out (B, Lq, C) -> d_queries, d_keys, {name: grad}

    ``kept`` is what ``attention_keeping`` returned for the same inputs, when the caller ran it for
    the output (the encoder layers' backward do); without it the forward is recomputed here from
    ``queries`` and ``keys`` (cheap beside keeping every layer's attention maps for the backward
    pass). ``dropout_mask`` as in ``attend``.
    """
    D = queries.shape[-1] // num_heads
    if kept is None:
        kept = attention_keeping(p, queries, keys, bias, num_heads, dropout_mask)[1]
    q, k, v, weights, merged = (kept[name] for name in ("q", "k", "v", "weights", "merged"))
    d_merged, g_out = linear_backward(p.out_proj, merged, d_out)  # (B, Lq, C)
    dq, dk, dv = attend_backward(q, k, v, weights, split_heads(d_merged, num_heads), dropout_mask)
    d_queries, g_q = linear_backward(p.q_proj, queries, merge_heads(dq) * D**-0.5)  # the scale after the bias
    d_keys, g_k = linear_backward(p.k_proj, keys, merge_heads(dk))
    d_values, g_v = linear_backward(p.v_proj, keys, merge_heads(dv))
    grads = prefixed("q_proj", g_q) | prefixed("k_proj", g_k) | prefixed("v_proj", g_v) | prefixed("out_proj", g_out)
    return d_queries, d_keys + d_values, grads


def prefixed(prefix: str, grads: dict) -> dict:
    """{name: grad} -> {prefix.name: grad}: gradients named by the parameter's path in the checkpoint."""
    return {f"{prefix}.{name}": g for name, g in grads.items()}


def padding_bias(mask, dtype):
    """Keep-mask (B, Lk) of 0/1 -> additive bias (B, 1, 1, Lk): 0 to keep, finfo.min to drop."""
    xp = array_module(mask)
    return ((1.0 - mask.astype(dtype)) * xp.finfo(dtype).min)[:, None, None, :]
