"""Wav2Vec2 / HuBERT speech encoder: waveform -> frame features.

Dimension legend: B batch, N samples, T frames, C channels, H heads, D head dim, W kernel width (taps).
Mirrors transformers 4.40.2 ``Wav2Vec2Model`` / ``HubertModel`` in eval mode, or in training mode
(dropout, LayerDrop, SpecAugment) when a ``Training`` (training.py) is passed. Activations are channels-last (B, T, C) throughout; the conv layers are
recorded in HF's own (B, C, T) layout so traces line up with forward hooks on the reference.

    input_values (B, N)
      -> feature_extractor: conv layers, N -> T = ~N/320     (B, T, conv_dim[-1])
      -> feature_projection: [LayerNorm] + Linear             (B, T, C)
      -> (training: SpecAugment's time and channel masks)     (B, T, C)
      -> encoder: zero padded frames, + pos_conv_embed, layers (post-LN or pre-LN)  (B, T, C)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .backend import array_module, to_numpy
from .config import EncoderConfig
from .layers import (
    ACTIVATION_BACKWARDS,
    ACTIVATIONS,
    activation_and_slope,
    attend,
    attention_backward,
    attention_keeping,
    conv1d,
    conv1d_backward,
    group_norm,
    group_norm_backward,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    merge_heads,
    padding_bias,
    prefixed,
    record_to,
    split_heads,
)
from .training import attention_mask, dropout, skips_layer


def conv_output_length(length, cfg: EncoderConfig):
    """Frames the conv stack makes of ``length`` samples: per layer L -> (L - k) // s + 1.

    Works on ints and integer arrays alike. Default stack: 400 samples -> 1 frame, then one
    more frame every 320 samples.
    """
    for kernel, stride in zip(cfg.conv_kernel, cfg.conv_stride):
        length = (length - kernel) // stride + 1
    return length


def frame_mask(sample_mask, num_frames: int, cfg: EncoderConfig):
    """Sample keep-mask (B, N) -> frame keep-mask (B, T): ones up to each item's frame count.

    HF ``_get_feature_vector_attention_mask``: the length is the count of ones in the mask.
    """
    xp = array_module(sample_mask)
    frames = conv_output_length(sample_mask.sum(axis=-1).astype(xp.int64), cfg)  # (B,)
    return (xp.arange(num_frames)[None, :] < frames[:, None]).astype(xp.int64)  # (B, T)


CONV_CHUNK_FRAMES = 500  # output frames per pass through the conv stack: 10 s of 16 kHz audio
CONV_LAYER_NORM_EPS = 1e-5  # HF's layer-norm conv layers use torch's default, whatever layer_norm_eps says


def feature_encoder(p, input_values, cfg: EncoderConfig, record=None):
    """Wav2Vec2FeatureEncoder: (B, N) -> (B, T, conv_dim[-1]).

    "group": conv -> GroupNorm(C groups, i.e. per channel over time) -> act on layer 0 only,
             conv -> act on the others.
    "layer": conv -> LayerNorm over channels (eps 1e-5, torch's default) -> act on every layer.

    The plain form is ``conv_stack`` on the whole input. Long audio through a "layer" stack goes
    through it in overlapping slices instead (``conv_stack_in_slices``): every output frame depends
    on its receptive field alone, so the frames are the same, and the first layers' wide
    activations (512 x 3200 per second in wav2vec2-large) exist for one slice at a time. GroupNorm
    normalises over all of time, so "group" stacks always run whole.
    """
    T = conv_output_length(input_values.shape[1], cfg)
    if cfg.feat_extract_norm == "layer" and T > CONV_CHUNK_FRAMES and slices_see_every_frame(cfg):
        return conv_stack_in_slices(p, input_values, cfg, record)
    return conv_stack(p, input_values, cfg, record)


def slices_see_every_frame(cfg: EncoderConfig) -> bool:
    """Does a slice cut for the last layer's frames also hold every earlier layer's frames that
    belong to it? Yes unless a later layer's kernel is shorter than its stride (it skips samples)."""
    hop, field = math.prod(cfg.conv_stride), min_samples(cfg)
    return all(field - min_samples(cfg, i) >= hop - math.prod(cfg.conv_stride[:i]) for i in range(1, len(cfg.conv_stride)))


def conv_stack_in_slices(p, input_values, cfg: EncoderConfig, record=None):
    """``conv_stack`` on overlapping slices of CONV_CHUNK_FRAMES output frames each -> the same
    (B, T, conv_dim[-1]). Slice j makes output frames [j*F, (j+1)*F) (F = CONV_CHUNK_FRAMES); of
    conv layer i's frames it keeps those that start in the same stretch of samples,
    [j*F*hop, (j+1)*F*hop), so each layer's record is whole and in order, as from one pass.
    (B, N) -> (B, T, conv_dim[-1])"""
    xp = array_module(input_values)
    T = conv_output_length(input_values.shape[1], cfg)
    hop, field = math.prod(cfg.conv_stride), min_samples(cfg)  # a frame every `hop` samples, each seeing `field`
    layer_hops = [math.prod(cfg.conv_stride[: i + 1]) for i in range(len(cfg.conv_stride))]
    outputs, records = [], []
    for start in range(0, T, CONV_CHUNK_FRAMES):
        end = min(start + CONV_CHUNK_FRAMES, T)
        stop = input_values.shape[1] if end == T else (end - 1) * hop + field  # the last slice: to the end,
        piece = input_values[:, start * hop : stop]  # so earlier layers keep their tail frames too
        piece_record = None if record is None else {}
        outputs.append(conv_stack(p, piece, cfg, piece_record))  # (B, end - start, conv_dim[-1])
        if record is not None:
            last = end == T
            records.append({name: value if last else value[:, :, : (end - start) * hop // layer_hops[int(name.split(".")[3])]]
                            for name, value in piece_record.items()})  # ...conv_layers.<i>[.conv], HF (B, C, T_i)
    for name in records[0] if records else ():
        record_to(record, name, xp.concatenate([r[name] for r in records], axis=2))  # (B, C_i, T_i)
    return xp.concatenate(outputs, axis=1)  # (B, T, conv_dim[-1])


def conv_stack(p, input_values, cfg: EncoderConfig, record=None):
    """The conv layers on one stretch of audio: (B, N) -> (B, T, conv_dim[-1])."""
    act = ACTIVATIONS[cfg.feat_extract_activation]
    x = input_values[:, :, None]  # (B, N, 1)
    for i, layer in enumerate(p.conv_layers):
        x = conv1d(x, layer.conv.weight, layer.conv.get("bias"), stride=cfg.conv_stride[i])  # (B, T_i, C_i)
        record_to(record, f"encoder.feature_extractor.conv_layers.{i}.conv", x.transpose(0, 2, 1))  # before norm, act
        if cfg.feat_extract_norm == "layer":
            x = layer_norm(layer.layer_norm, x, eps=CONV_LAYER_NORM_EPS)  # (B, T_i, C_i)
        elif i == 0:
            x = group_norm(layer.layer_norm, x, num_groups=x.shape[-1])  # (B, T_0, C_0)
        x = act(x)  # (B, T_i, C_i)
        record_to(record, f"encoder.feature_extractor.conv_layers.{i}", x.transpose(0, 2, 1))  # HF layout (B, C, T)
    return x


def conv_stack_keeping_inputs(p, input_values, cfg: EncoderConfig):
    """``conv_stack``, keeping what its backward needs: (B, N) -> (B, T, conv_dim[-1]) and, per
    layer, (its input, the conv output, the activation's slope at the norm's output)."""
    x, saved = input_values[:, :, None], []  # (B, N, 1)
    for i, layer in enumerate(p.conv_layers):
        conv = conv1d(x, layer.conv.weight, layer.conv.get("bias"), stride=cfg.conv_stride[i])  # (B, T_i, C_i)
        if cfg.feat_extract_norm == "layer":
            normed = layer_norm(layer.layer_norm, conv, eps=CONV_LAYER_NORM_EPS)
        elif i == 0:
            normed = group_norm(layer.layer_norm, conv, num_groups=conv.shape[-1])
        else:
            normed = conv
        activated, slope = activation_and_slope(cfg.feat_extract_activation, normed)  # (B, T_i, C_i) each
        saved.append((x, conv, slope))
        x = activated
    return x, saved


def conv_stack_backward(p, saved, cfg: EncoderConfig, d_out, record=None) -> dict:
    """Gradients of ``conv_stack``'s parameters from what ``conv_stack_keeping_inputs`` kept and
    d_out (B, T, conv_dim[-1]) -> {name: grad}. Last layer first: activation, norm, conv (no
    gradient is needed for the audio itself)."""
    grads, d = {}, d_out
    for i in reversed(range(len(p.conv_layers))):
        layer, (x, conv, slope) = p.conv_layers[i], saved[i]
        record_to(record, f"grad.encoder.feature_extractor.conv_layers.{i}", d.transpose(0, 2, 1))  # HF (B, C, T)
        d = d * slope  # (B, T_i, C_i) gradient of the norm's output: the activation's backward
        if cfg.feat_extract_norm == "layer":
            d, g = layer_norm_backward(layer.layer_norm, conv, d, eps=CONV_LAYER_NORM_EPS)
            grads |= prefixed(f"conv_layers.{i}.layer_norm", g)
        elif i == 0:
            d, g = group_norm_backward(layer.layer_norm, conv, conv.shape[-1], d)
            grads |= prefixed(f"conv_layers.{i}.layer_norm", g)
        d, d_weight, d_bias = conv1d_backward(x, layer.conv.weight, layer.conv.get("bias"), d, stride=cfg.conv_stride[i],
                                              input_gradient=i > 0)  # layer 0's input is the audio
        grads[f"conv_layers.{i}.conv.weight"] = d_weight
        if d_bias is not None:
            grads[f"conv_layers.{i}.conv.bias"] = d_bias
    return grads


def feature_projection(p, x, cfg: EncoderConfig):
    """Wav2Vec2FeatureProjection / HubertFeatureProjection: (B, T, C_conv) -> (B, T, C).

    LayerNorm over conv channels (config eps), then Linear. HuBERT skips the LayerNorm when
    ``feat_proj_layer_norm`` is false.
    """
    if cfg.feat_proj_layer_norm:
        x = layer_norm(p.layer_norm, x, cfg.layer_norm_eps)  # (B, T, C_conv)
    return linear(p.projection, x)  # (B, T, C)


def feature_projection_backward(p, x, cfg: EncoderConfig, d_out):
    """Gradients of ``feature_projection``: x (B, T, C_conv), d_out (B, T, C) -> dx, {name: grad}"""
    normed = layer_norm(p.layer_norm, x, cfg.layer_norm_eps) if cfg.feat_proj_layer_norm else x
    d, grads = linear_backward(p.projection, normed, d_out)
    grads = prefixed("projection", grads)
    if cfg.feat_proj_layer_norm:
        d, g = layer_norm_backward(p.layer_norm, x, d, cfg.layer_norm_eps)
        grads |= prefixed("layer_norm", g)
    return d, grads


def weight_norm(g, v):
    """torch weight_norm with dim=2: w = g * v / ||v||, the norm taken over every axis but the kernel axis.

    v (C_out, C_in/G, W), g (1, 1, W) -> w (C_out, C_in/G, W)
    """
    xp = array_module(v)
    norm = xp.sqrt(xp.square(v).sum(axis=(0, 1), keepdims=True))  # (1, 1, W)
    return v * (g / norm)  # (C_out, C_in/G, W)


def weight_norm_backward(g, v, d_w):
    """Gradients of w = g v / ‖v‖ (norm over every axis but the kernel's):
        dg = Σ d_w v / ‖v‖,   dv = (g / ‖v‖) (d_w - v Σ(d_w v) / ‖v‖²)    (sums over C_out, C_in/G)
    g (1, 1, W), v and d_w (C_out, C_in/G, W) -> dg (1, 1, W), dv (C_out, C_in/G, W)"""
    xp = array_module(v)
    norm = xp.sqrt(xp.square(v).sum(axis=(0, 1), keepdims=True))  # (1, 1, W)
    dot = (d_w * v).sum(axis=(0, 1), keepdims=True)  # (1, 1, W)
    return dot / norm, (g / norm) * (d_w - v * dot / norm**2)


def positional_conv_embedding(p, x, cfg: EncoderConfig):
    """Wav2Vec2PositionalConvEmbedding: a wide grouped conv over time gives each frame its position.

    (B, T, C) -> (B, T, C). Kernel W (128), G groups (16), padding W//2 on both sides, so an
    even W yields T + 1 frames and Wav2Vec2SamePadLayer drops the last one. Then the feature
    extractor's activation (not hidden_act).
    """
    W = cfg.num_conv_pos_embeddings
    w = weight_norm(p.conv.weight_g, p.conv.weight_v)  # (C, C/G, W)
    y = conv1d(x, w, p.conv.bias, padding=W // 2, groups=cfg.num_conv_pos_embedding_groups)  # (B, T + 1 - W%2, C)
    if W % 2 == 0:
        y = y[:, :-1]  # (B, T, C)
    return ACTIVATIONS[cfg.feat_extract_activation](y)  # (B, T, C)


def positional_conv_embedding_backward(p, x, cfg: EncoderConfig, d_out):
    """Gradients of ``positional_conv_embedding``: x, d_out (B, T, C) -> dx, {name: grad}, the weight
    norm's two parameters under the names transformers 4.40.2 gives them with torch's
    parametrizations (original0 = g, original1 = v)."""
    xp = array_module(x)
    W = cfg.num_conv_pos_embeddings
    weight = weight_norm(p.conv.weight_g, p.conv.weight_v)  # (C, C/G, W)
    y = conv1d(x, weight, p.conv.bias, padding=W // 2, groups=cfg.num_conv_pos_embedding_groups)  # (B, T + 1 - W%2, C)
    d_y = ACTIVATION_BACKWARDS[cfg.feat_extract_activation](y[:, : x.shape[1]], d_out)  # (B, T, C)
    if W % 2 == 0:  # the frame Wav2Vec2SamePadLayer dropped gets no gradient
        d_y = xp.concatenate([d_y, xp.zeros_like(d_y[:, :1])], axis=1)  # (B, T + 1, C)
    dx, d_weight, d_bias = conv1d_backward(x, weight, p.conv.bias, d_y, padding=W // 2,
                                           groups=cfg.num_conv_pos_embedding_groups)
    d_g, d_v = weight_norm_backward(p.conv.weight_g, p.conv.weight_v, d_weight)
    return dx, {"conv.bias": d_bias, "conv.parametrizations.weight.original0": d_g,
                "conv.parametrizations.weight.original1": d_v}


def self_attention(p, x, bias, num_heads: int, keep_weights: bool = True, dropout_mask=None):
    """Wav2Vec2Attention (BART-style) without cache: (B, T, C) -> (B, T, C), weights (B, H, T, T)
    (None without ``keep_weights``: then attention memory grows linearly with T).

    q is scaled by D**-0.5 after its bias is added, as HF does. ``dropout_mask`` (B, H, T, T):
    attention dropout in training mode.
    """
    D = x.shape[-1] // num_heads
    q = split_heads(linear(p.q_proj, x) * D**-0.5, num_heads)  # (B, H, T, D)
    k = split_heads(linear(p.k_proj, x), num_heads)  # (B, H, T, D)
    v = split_heads(linear(p.v_proj, x), num_heads)  # (B, H, T, D)
    heads, weights = attend(q, k, v, bias, keep_weights, dropout_mask)  # (B, H, T, D), (B, H, T, T)
    return linear(p.out_proj, merge_heads(heads)), weights  # (B, T, C), (B, H, T, T)


def attention_dropout(training, name: str, x, cfg: EncoderConfig):
    """The attention-probability dropout mask (B, H, T, T) of the layer ``name``, or None in eval mode."""
    B, T, _ = x.shape
    return attention_mask(training, f"{name}.attention.dropout", (B, cfg.num_attention_heads, T, T),
                          cfg.attention_dropout, x)


def feed_forward(p, x, cfg: EncoderConfig, training=None, name: str = ""):
    """Wav2Vec2FeedForward: Linear -> act -> (dropout) -> Linear -> (dropout).   (B, T, C) -> (B, T, C)"""
    hidden = ACTIVATIONS[cfg.hidden_act](linear(p.intermediate_dense, x))  # (B, T, intermediate_size)
    hidden = dropout(training, f"{name}.intermediate_dropout", hidden, cfg.activation_dropout)
    return dropout(training, f"{name}.output_dropout", linear(p.output_dense, hidden), cfg.hidden_dropout)


def encoder_layer(p, x, bias, cfg: EncoderConfig, record=None, training=None, name: str = ""):
    """Wav2Vec2EncoderLayer, post-LN: x = LN(x + attn(x)); x = LN(x + ffn(x)).   (B, T, C) -> (B, T, C)

    ``name`` is the layer's HF path: ``record`` receives its attention probabilities (B, H, T, T),
    the attention's and the feed-forward's outputs (B, T, C) before their residual add under it.
    In training mode (``training``, training.py) dropout acts on the attention probabilities and
    on each sublayer's output, its masks named after the layer too.
    """
    mask = attention_dropout(training, name, x, cfg)
    attn, weights = self_attention(p.attention, x, bias, cfg.num_attention_heads, record is not None, mask)
    record_to(record, f"{name}.attention.attn_weights", weights)  # HF encoder_attentions[i]
    record_to(record, f"{name}.attention", attn)  # (B, T, C)
    attn = dropout(training, f"{name}.dropout", attn, cfg.hidden_dropout)
    x = layer_norm(p.layer_norm, x + attn, cfg.layer_norm_eps)  # (B, T, C)
    ffn = feed_forward(p.feed_forward, x, cfg, training, f"{name}.feed_forward")  # (B, T, C)
    record_to(record, f"{name}.feed_forward", ffn)
    return layer_norm(p.final_layer_norm, x + ffn, cfg.layer_norm_eps)


def encoder_layer_stable(p, x, bias, cfg: EncoderConfig, record=None, training=None, name: str = ""):
    """Wav2Vec2EncoderLayerStableLayerNorm, pre-LN: x += attn(LN(x)); x += ffn(LN(x)).

    (B, T, C) -> (B, T, C); ``record``, ``training`` and ``name`` as in encoder_layer.
    """
    eps = cfg.layer_norm_eps
    h = layer_norm(p.layer_norm, x, eps)  # (B, T, C)
    mask = attention_dropout(training, name, h, cfg)
    attn, weights = self_attention(p.attention, h, bias, cfg.num_attention_heads, record is not None, mask)
    record_to(record, f"{name}.attention.attn_weights", weights)  # HF encoder_attentions[i]
    record_to(record, f"{name}.attention", attn)  # (B, T, C)
    x = x + dropout(training, f"{name}.dropout", attn, cfg.hidden_dropout)  # (B, T, C)
    ffn = feed_forward(p.feed_forward, layer_norm(p.final_layer_norm, x, eps), cfg, training, f"{name}.feed_forward")
    record_to(record, f"{name}.feed_forward", ffn)
    return x + ffn


def feed_forward_backward(p, x, cfg: EncoderConfig, d_out, training=None, name: str = ""):
    """Gradients of ``feed_forward``: x, d_out (B, T, C) -> dx, {name: grad}. A dropout's
    backward is the same mask applied to the gradient."""
    activated, slope = activation_and_slope(cfg.hidden_act, linear(p.intermediate_dense, x))  # (B, T, I) each
    activated = dropout(training, f"{name}.intermediate_dropout", activated, cfg.activation_dropout)
    d_out = dropout(training, f"{name}.output_dropout", d_out, cfg.hidden_dropout)
    d_act, g_out = linear_backward(p.output_dense, activated, d_out)
    d_act = dropout(training, f"{name}.intermediate_dropout", d_act, cfg.activation_dropout)
    dx, g_in = linear_backward(p.intermediate_dense, x, d_act * slope)  # the activation's backward: d * slope
    return dx, prefixed("intermediate_dense", g_in) | prefixed("output_dense", g_out)


def encoder_layer_backward(p, x, bias, cfg: EncoderConfig, d_out, training=None, name: str = ""):
    """Gradients of the post-LN ``encoder_layer``: x, d_out (B, T, C) -> dx, {name: grad}

    Forward: x1 = LN1(x + attn(x)), y = LN2(x1 + ffn(x1)); backward in the reverse order.
    """
    eps, H = cfg.layer_norm_eps, cfg.num_attention_heads
    mask = attention_dropout(training, name, x, cfg)
    attn, kept = attention_keeping(p.attention, x, x, bias, H, mask)  # (B, T, C), what its backward needs
    attn = dropout(training, f"{name}.dropout", attn, cfg.hidden_dropout)
    x1 = layer_norm(p.layer_norm, x + attn, eps)  # (B, T, C)
    ffn = feed_forward(p.feed_forward, x1, cfg, training, f"{name}.feed_forward")  # (B, T, C)
    d_sum2, g_ln2 = layer_norm_backward(p.final_layer_norm, x1 + ffn, d_out, eps)
    d_x1, g_ff = feed_forward_backward(p.feed_forward, x1, cfg, d_sum2, training, f"{name}.feed_forward")
    d_sum1, g_ln1 = layer_norm_backward(p.layer_norm, x + attn, d_x1 + d_sum2, eps)
    d_attn = dropout(training, f"{name}.dropout", d_sum1, cfg.hidden_dropout)
    d_q, d_kv, g_attn = attention_backward(p.attention, x, x, bias, H, d_attn, mask, kept)
    grads = prefixed("attention", g_attn) | prefixed("layer_norm", g_ln1) | prefixed("feed_forward", g_ff)
    return d_sum1 + d_q + d_kv, grads | prefixed("final_layer_norm", g_ln2)


def encoder_layer_stable_backward(p, x, bias, cfg: EncoderConfig, d_out, training=None, name: str = ""):
    """Gradients of the pre-LN ``encoder_layer_stable``: x, d_out (B, T, C) -> dx, {name: grad}

    Forward: h = LN1(x), x1 = x + attn(h), y = x1 + ffn(LN2(x1)); the residuals pass d_out through.
    """
    eps, H = cfg.layer_norm_eps, cfg.num_attention_heads
    h = layer_norm(p.layer_norm, x, eps)  # (B, T, C)
    mask = attention_dropout(training, name, h, cfg)
    attn, kept = attention_keeping(p.attention, h, h, bias, H, mask)  # (B, T, C), what its backward needs
    x1 = x + dropout(training, f"{name}.dropout", attn, cfg.hidden_dropout)  # (B, T, C)
    d_h2, g_ff = feed_forward_backward(p.feed_forward, layer_norm(p.final_layer_norm, x1, eps), cfg, d_out,
                                       training, f"{name}.feed_forward")
    d_x1, g_ln2 = layer_norm_backward(p.final_layer_norm, x1, d_h2, eps)
    d_x1 = d_x1 + d_out
    d_attn = dropout(training, f"{name}.dropout", d_x1, cfg.hidden_dropout)
    d_q, d_kv, g_attn = attention_backward(p.attention, h, h, bias, H, d_attn, mask, kept)
    d_x, g_ln1 = layer_norm_backward(p.layer_norm, x, d_q + d_kv, eps)
    grads = prefixed("attention", g_attn) | prefixed("layer_norm", g_ln1) | prefixed("feed_forward", g_ff)
    return d_x + d_x1, grads | prefixed("final_layer_norm", g_ln2)


def transformer_encoder(p, x, mask, cfg: EncoderConfig, record=None, training=None):
    """Wav2Vec2Encoder / Wav2Vec2EncoderStableLayerNorm: (B, T, C), keep-mask (B, T) or None -> (B, T, C).

    Padded frames are zeroed before the positional conv and masked out as keys. The post-LN
    variant applies its LayerNorm before the layers, the stable (pre-LN) one after them. In
    training mode the sum with the positions gets dropout and LayerDrop may skip a layer.
    """
    bias = None
    if mask is not None:
        x = x * mask[:, :, None].astype(x.dtype)  # (B, T, C) padded frames -> 0
        bias = padding_bias(mask, x.dtype)  # (B, 1, 1, T)
    pos = positional_conv_embedding(p.pos_conv_embed, x, cfg)  # (B, T, C)
    record_to(record, "encoder.encoder.pos_conv_embed", pos)
    x = x + pos  # (B, T, C)
    if not cfg.do_stable_layer_norm:
        x = layer_norm(p.layer_norm, x, cfg.layer_norm_eps)  # (B, T, C)
        record_to(record, "encoder.encoder.layer_norm", x)
    x = dropout(training, "encoder.encoder.dropout", x, cfg.hidden_dropout)
    record_to(record, "encoder.encoder.layers.0.input", x)  # what the first layer reads
    layer_fn = encoder_layer_stable if cfg.do_stable_layer_norm else encoder_layer
    for i, layer in enumerate(p.layers):
        name = f"encoder.encoder.layers.{i}"
        if skips_layer(training, name, cfg.layerdrop):
            continue  # LayerDrop: the layer's output is its input
        x = layer_fn(layer, x, bias, cfg, record, training, name)  # (B, T, C)
        record_to(record, name, x)
    if cfg.do_stable_layer_norm:
        x = layer_norm(p.layer_norm, x, cfg.layer_norm_eps)  # (B, T, C)
        record_to(record, "encoder.encoder.layer_norm", x)
    return x


def transformer_encoder_keeping_inputs(p, x, mask, cfg: EncoderConfig, training=None):
    """``transformer_encoder`` keeping what its backward needs: each layer's input (one (B, T, C)
    array per layer; each layer's backward recomputes its own insides from it, so activation
    memory grows with the layers and the audio's length, not with every intermediate).
    x (B, T, C), keep-mask (B, T) or None -> output (B, T, C), saved"""
    bias = None
    if mask is not None:
        x = x * mask[:, :, None].astype(x.dtype)  # (B, T, C) padded frames -> 0
        bias = padding_bias(mask, x.dtype)  # (B, 1, 1, T)
    summed = x + positional_conv_embedding(p.pos_conv_embed, x, cfg)  # (B, T, C)
    h = summed if cfg.do_stable_layer_norm else layer_norm(p.layer_norm, summed, cfg.layer_norm_eps)
    h = dropout(training, "encoder.encoder.dropout", h, cfg.hidden_dropout)
    layer_fn = encoder_layer_stable if cfg.do_stable_layer_norm else encoder_layer
    inputs = []
    for i, layer in enumerate(p.layers):
        inputs.append(h)
        name = f"encoder.encoder.layers.{i}"
        if not skips_layer(training, name, cfg.layerdrop):
            h = layer_fn(layer, h, bias, cfg, None, training, name)  # (B, T, C)
    out = layer_norm(p.layer_norm, h, cfg.layer_norm_eps) if cfg.do_stable_layer_norm else h
    return out, {"x": x, "mask": mask, "bias": bias, "summed": summed, "inputs": inputs, "last": h}


def transformer_encoder_backward(p, saved: dict, cfg: EncoderConfig, d_out, record=None, training=None):
    """Gradients of ``transformer_encoder`` from what ``transformer_encoder_keeping_inputs`` kept:
    d_out (B, T, C) -> dx (B, T, C) (the feature projection's output's gradient), {name: grad}.
    A layer LayerDrop skipped passes the gradient through and gets none."""
    x, mask, bias, summed, inputs, h = (saved[k] for k in ("x", "mask", "bias", "summed", "inputs", "last"))
    layer_backward = encoder_layer_stable_backward if cfg.do_stable_layer_norm else encoder_layer_backward
    names = [f"encoder.encoder.layers.{i}" for i in range(len(p.layers))]
    grads, d = {}, d_out
    if cfg.do_stable_layer_norm:  # the encoder's LayerNorm after the layers
        record_to(record, "grad.encoder.encoder.layer_norm", d)
        d, g = layer_norm_backward(p.layer_norm, h, d, cfg.layer_norm_eps)
        grads |= prefixed("layer_norm", g)
    for i in reversed(range(len(p.layers))):
        if skips_layer(training, names[i], cfg.layerdrop):
            continue
        record_to(record, f"grad.{names[i]}", d)  # the gradient reaching layer i's output
        d, g = layer_backward(p.layers[i], inputs[i], bias, cfg, d, training, names[i])
        grads |= prefixed(f"layers.{i}", g)
    d = dropout(training, "encoder.encoder.dropout", d, cfg.hidden_dropout)
    if not cfg.do_stable_layer_norm:  # ... or before them
        record_to(record, "grad.encoder.encoder.layer_norm", d)
        d, g = layer_norm_backward(p.layer_norm, summed, d, cfg.layer_norm_eps)
        grads |= prefixed("layer_norm", g)
    record_to(record, "grad.encoder.encoder.pos_conv_embed", d)  # the sum x + pos passes d to pos unchanged
    d_x, g_pos = positional_conv_embedding_backward(p.pos_conv_embed, x, cfg, d)
    d_x = d_x + d  # x feeds the positional conv and the sum
    if mask is not None:
        d_x = d_x * mask[:, :, None].astype(d_x.dtype)  # padded frames were zeroed
    return d_x, grads | prefixed("pos_conv_embed", g_pos)


def spec_augment_masks(training, shape: tuple, mask, cfg: EncoderConfig):
    """SpecAugment's masks for hidden states of ``shape`` (B, T, C): time (B, T) and channels
    (B, C), bools (True: masked), each None when its probability is 0 (Wav2Vec2Model._mask_hidden_states).
    Time spans start only inside each input's valid frames (keep-mask ``mask`` (B, T) or None)."""
    B, T, C = shape
    time = channels = None
    if cfg.mask_time_prob > 0:
        lengths = [T] * B if mask is None else [int(n) for n in to_numpy(mask.sum(axis=1))]
        if cfg.mask_time_length > T:
            raise ValueError(f"SpecAugment: mask_time_length={cfg.mask_time_length} is longer than the {T} "
                             "encoder frames of this batch (transformers refuses it too): use longer audio")
        time = training.span_mask("encoder.mask_time_indices", lengths, T, cfg.mask_time_prob,
                                  cfg.mask_time_length, cfg.mask_time_min_masks)
    if cfg.mask_feature_prob > 0:
        if cfg.mask_feature_length > C:
            raise ValueError(f"SpecAugment: mask_feature_length={cfg.mask_feature_length} is longer than "
                             f"hidden_size={C}")
        channels = training.span_mask("encoder.mask_feature_indices", [C] * B, C, cfg.mask_feature_prob,
                                      cfg.mask_feature_length, cfg.mask_feature_min_masks)
    return time, channels


def spec_augment(p, x, mask, cfg: EncoderConfig, training=None):
    """SpecAugment in training mode: masked frames become ``masked_spec_embed`` (C,), masked
    channels 0.   x (B, T, C), keep-mask (B, T) or None -> (B, T, C); the identity in eval mode."""
    if training is None or not cfg.apply_spec_augment:
        return x
    xp = array_module(x)
    time, channels = spec_augment_masks(training, x.shape, mask, cfg)
    if time is not None:
        x = xp.where(xp.asarray(time)[:, :, None], p.masked_spec_embed, x)  # (B, T, C)
    if channels is not None:
        x = xp.where(xp.asarray(channels)[:, None, :], x.dtype.type(0), x)  # (B, T, C)
    return x


def spec_augment_backward(mask, cfg: EncoderConfig, d_out, training=None):
    """Gradients of ``spec_augment``: d_out (B, T, C) -> dx (B, T, C), d masked_spec_embed (C,) or None.

    A masked channel passes no gradient; a masked frame passes its (unmasked channels')
    gradient to masked_spec_embed instead of x: d_embed = Σ over masked (b, t) of d_out[b, t].
    """
    if training is None or not cfg.apply_spec_augment:
        return d_out, None
    xp = array_module(d_out)
    time, channels = spec_augment_masks(training, d_out.shape, mask, cfg)
    if channels is not None:
        d_out = xp.where(xp.asarray(channels)[:, None, :], d_out.dtype.type(0), d_out)
    if time is None:
        return d_out, None
    time = xp.asarray(time)[:, :, None]  # (B, T, 1)
    return xp.where(time, d_out.dtype.type(0), d_out), (d_out * time).sum(axis=(0, 1))


def encode(p, input_values, sample_mask, cfg: EncoderConfig, record=None, training=None):
    """Wav2Vec2Model / HubertModel: (B, N), keep-mask (B, N) or None -> hidden (B, T, C), keep-mask (B, T) or None."""
    N = input_values.shape[1]
    if conv_output_length(N, cfg) < 1:
        raise ValueError(f"{N} samples is too short: the conv stack needs at least {min_samples(cfg)}")
    x = feature_encoder(p.feature_extractor, input_values, cfg, record)  # (B, T, C_conv)
    mask = None if sample_mask is None else frame_mask(sample_mask, x.shape[1], cfg)  # (B, T)
    x = feature_projection(p.feature_projection, x, cfg)  # (B, T, C)
    x = dropout(training, "encoder.feature_projection.dropout", x, cfg.feat_proj_dropout)
    record_to(record, "encoder.feature_projection", x)
    x = spec_augment(p, x, mask, cfg, training)  # (B, T, C)
    x = transformer_encoder(p.encoder, x, mask, cfg, record, training)  # (B, T, C)
    record_to(record, "encoder", x)
    return x, mask


def min_samples(cfg: EncoderConfig, num_layers: int | None = None) -> int:
    """The shortest input that yields one frame: the receptive field of the conv stack (400 samples
    by default), or of its first ``num_layers`` layers. Walk back from one output frame: a layer
    needs (L - 1) * stride + kernel inputs to make L outputs."""
    length = 1
    layers = list(zip(cfg.conv_kernel, cfg.conv_stride))[:num_layers]
    for kernel, stride in reversed(layers):
        length = (length - 1) * stride + kernel
    return length


@dataclass(frozen=True)
class FrameTiming:
    """Where the encoder's frames sit in the audio: frame t sees samples [t * hop, t * hop + field).

    Derived from the conv stack alone (``frame_timing``), so every time axis, frame rate and
    "frames = seconds" statement follows the model it describes.
    """

    hop: int  # samples from one frame to the next: the product of the conv strides
    field: int  # samples one frame sees: the receptive field (min_samples)
    sampling_rate: int  # samples per second of the audio the model reads

    @property
    def seconds(self) -> float:
        """The frame length in seconds: hop / sampling rate."""
        return self.hop / self.sampling_rate

    @property
    def per_second(self) -> float:
        """Frames per second of audio."""
        return self.sampling_rate / self.hop

    def count(self, num_samples: int) -> int:
        """Frames made of ``num_samples`` samples: (N - field) // hop + 1, the same number as
        conv_output_length (the per-layer floors nest into one), 0 when N < field."""
        return 0 if num_samples < self.field else (num_samples - self.field) // self.hop + 1

    def check(self, num_frames: int, duration: float) -> None:
        """Raise unless ``num_frames`` frames are what ``duration`` seconds of audio make, to within a
        frame: the guard against a time axis drawn with another model's frame length."""
        expected = self.count(round(duration * self.sampling_rate))
        if abs(num_frames - expected) > 1:
            raise ValueError(f"{num_frames} frames do not fit {duration:.3f} s of audio: this model makes "
                             f"{expected} frames of {self.seconds * 1000:g} ms of it (is the frame length "
                             "from another model?)")


def frame_timing(cfg: EncoderConfig, sampling_rate: int, num_layers: int | None = None) -> FrameTiming:
    """The frame hop (product of the conv strides), receptive field and rate of this encoder's frames,
    or of the frames that come out of its first ``num_layers`` conv layers."""
    return FrameTiming(hop=math.prod(cfg.conv_stride[:num_layers]), field=min_samples(cfg, num_layers),
                       sampling_rate=sampling_rate)


def encoder_weight_shapes(cfg: EncoderConfig, prefix: str = "encoder.") -> dict[str, tuple]:
    """Every tensor the encoder reads, under its HF name, with the shape config.json implies."""
    C = cfg.hidden_size
    shapes = {}
    c_in = 1
    for i, (c, k) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel)):
        layer = f"feature_extractor.conv_layers.{i}."
        shapes[layer + "conv.weight"] = (c, c_in, k)
        if cfg.conv_bias:
            shapes[layer + "conv.bias"] = (c,)
        if cfg.feat_extract_norm == "layer" or i == 0:
            shapes[layer + "layer_norm.weight"] = (c,)
            shapes[layer + "layer_norm.bias"] = (c,)
        c_in = c
    if cfg.feat_proj_layer_norm:
        shapes["feature_projection.layer_norm.weight"] = (c_in,)
        shapes["feature_projection.layer_norm.bias"] = (c_in,)
    shapes["feature_projection.projection.weight"] = (C, c_in)
    shapes["feature_projection.projection.bias"] = (C,)
    W, G = cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
    shapes["encoder.pos_conv_embed.conv.weight_g"] = (1, 1, W)
    shapes["encoder.pos_conv_embed.conv.weight_v"] = (C, C // G, W)
    shapes["encoder.pos_conv_embed.conv.bias"] = (C,)
    shapes["encoder.layer_norm.weight"] = (C,)
    shapes["encoder.layer_norm.bias"] = (C,)
    for i in range(cfg.num_hidden_layers):
        layer = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[layer + f"attention.{proj}.weight"] = (C, C)
            shapes[layer + f"attention.{proj}.bias"] = (C,)
        for norm in ("layer_norm", "final_layer_norm"):
            shapes[layer + f"{norm}.weight"] = (C,)
            shapes[layer + f"{norm}.bias"] = (C,)
        shapes[layer + "feed_forward.intermediate_dense.weight"] = (cfg.intermediate_size, C)
        shapes[layer + "feed_forward.intermediate_dense.bias"] = (cfg.intermediate_size,)
        shapes[layer + "feed_forward.output_dense.weight"] = (C, cfg.intermediate_size)
        shapes[layer + "feed_forward.output_dense.bias"] = (C,)
    if cfg.has_masked_spec_embed:
        shapes["masked_spec_embed"] = (C,)  # SpecAugment's mask vector: stored, unused at inference
    return {prefix + name: shape for name, shape in shapes.items()}


def encode_keeping_inputs(p, input_values, sample_mask, cfg: EncoderConfig, training=None,
                          train_feature_encoder: bool = True):
    """``encode`` keeping what ``encode_backward`` needs: each conv layer's input, conv output and
    norm output (unless the feature encoder is frozen), the features, the projection and the
    transformer stack's layer inputs.
    (B, N), keep-mask (B, N) or None -> hidden (B, T, C), keep-mask (B, T) or None, saved"""
    N = input_values.shape[1]
    if conv_output_length(N, cfg) < 1:
        raise ValueError(f"{N} samples is too short: the conv stack needs at least {min_samples(cfg)}")
    if train_feature_encoder:
        features, conv = conv_stack_keeping_inputs(p.feature_extractor, input_values, cfg)  # (B, T, C_conv), whole
    else:
        features, conv = feature_encoder(p.feature_extractor, input_values, cfg), None  # (B, T, C_conv)
    mask = None if sample_mask is None else frame_mask(sample_mask, features.shape[1], cfg)  # (B, T)
    projected = feature_projection(p.feature_projection, features, cfg)  # (B, T, C)
    projected = dropout(training, "encoder.feature_projection.dropout", projected, cfg.feat_proj_dropout)
    augmented = spec_augment(p, projected, mask, cfg, training)  # (B, T, C)
    hidden, stack = transformer_encoder_keeping_inputs(p.encoder, augmented, mask, cfg, training)  # (B, T, C)
    return hidden, mask, {"conv": conv, "features": features, "mask": mask, "stack": stack}


def encode_backward(p, saved: dict, cfg: EncoderConfig, d_hidden, record=None, training=None) -> dict:
    """Gradients of ``encode``'s parameters from what ``encode_keeping_inputs`` kept and d_hidden
    (B, T, C) -> {name: grad} under the checkpoint's names without the leading "encoder."
    (masked_spec_embed gets SpecAugment's gradient in training mode, zeros in eval mode). With
    ``record``, the gradient reaching each recorded activation is stored as "grad." + its name.
    A frozen feature encoder (kept nothing) stops at the conv stack's output, as torch's autograd
    does after transformers' freeze_feature_encoder(): no gradient for its parameters."""
    xp = array_module(d_hidden)
    record_to(record, "grad.encoder", d_hidden)
    d, grads = transformer_encoder_backward(p.encoder, saved["stack"], cfg, d_hidden, record, training)
    grads = prefixed("encoder", grads)
    d, d_embed = spec_augment_backward(saved["mask"], cfg, d, training)
    record_to(record, "grad.encoder.feature_projection", d)
    d = dropout(training, "encoder.feature_projection.dropout", d, cfg.feat_proj_dropout)
    d, g = feature_projection_backward(p.feature_projection, saved["features"], cfg, d)
    grads |= prefixed("feature_projection", g)
    if saved["conv"] is not None:
        grads |= prefixed("feature_extractor", conv_stack_backward(p.feature_extractor, saved["conv"], cfg, d, record))
    if "masked_spec_embed" in p:
        grads["masked_spec_embed"] = xp.zeros_like(p.masked_spec_embed) if d_embed is None else d_embed
    return grads
