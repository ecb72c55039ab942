"""Speech2Text2 decoder: token ids + encoder frames -> next-token logits, with an explicit KV cache.

Dimension legend: B batch (times beams during beam search), S decoder steps, T encoder frames,
C d_model, H heads, D head dim, V vocabulary.
Mirrors transformers 4.40.2 ``Speech2Text2ForCausalLM`` in eval mode:

    ids (B, S) -> embed_tokens * embed_scale + sinusoidal positions        (B, S, C)
      -> layers: post-LN [causal self-attn] [cross-attn] [FFN]              (B, S, C)
      -> lm_head (no bias; no final LayerNorm before it)                    (B, S, V)

The cache is a plain list with one dict per layer:
    {"self_k", "self_v": (B, H, S_past, D)  grown by one step per call,
     "cross_k", "cross_v": (B_in, H, T, D)  computed once per utterance}
B_in is the number of inputs: B itself, or B / K in beam search, where the K beams of an input
(K consecutive rows) share its encoder frames.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_module
from .config import DecoderConfig
from .layers import (
    ACTIVATIONS,
    activation_and_slope,
    attend,
    attention_backward,
    attention_keeping,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    merge_heads,
    prefixed,
    record_to,
    split_heads,
)
from .training import attention_mask, dropout, skips_layer

LAYER_NORM_EPS = 1e-5  # Speech2Text2 builds nn.LayerNorm(d_model) with torch's default eps
POSITION_OFFSET = 2  # HF's table has max_target_positions + 2 rows; real positions start at padding_idx + 1


def sinusoidal_table(num_positions: int, dim: int, padding_idx: int) -> np.ndarray:
    """Speech2Text2SinusoidalPositionalEmbedding.get_embedding, computed in float32 as HF does.

    Row i = [sin(i * f_0..f_{h-1}), cos(i * f_0..f_{h-1})] (two halves, not interleaved), with
    h = dim // 2 and f_j = exp(-j * log(10000) / (h - 1)); an odd dim gets a zero last column;
    row ``padding_idx`` is all zeros.   -> (num_positions, dim)
    """
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * np.float32(-step))  # (h,)
    angles = np.arange(num_positions, dtype=np.float32)[:, None] * freqs[None, :]  # (P, h)
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # (P, 2h)
    if dim % 2 == 1:
        table = np.concatenate([table, np.zeros((num_positions, 1), np.float32)], axis=1)  # (P, dim)
    table[padding_idx] = 0
    return table


def position_ids(ids, padding_idx: int, past_length: int):
    """create_position_ids_from_input_ids: (B, S) -> (B, S).

    Non-pad tokens count up from padding_idx + 1 (+ past_length); pad tokens keep position
    padding_idx, whose table row is zero.
    """
    xp = array_module(ids)
    not_pad = (ids != padding_idx).astype(xp.int64)  # (B, S)
    return (xp.cumsum(not_pad, axis=1) + past_length) * not_pad + padding_idx  # (B, S)


def position_rows(positions_table, ids, cfg: DecoderConfig, past_length: int):
    """The sinusoidal rows of ``ids`` (B, S) after ``past_length`` steps -> (B, S, C).

    A sequence longer than the table (max_target_positions + 2 rows) gets a longer table, computed
    by the same formula, as transformers' Speech2Text2SinusoidalPositionalEmbedding grows its own
    (it does so for teacher-forced labels; in cached generation it would index past its table and
    fail, where this goes on)."""
    pos = position_ids(ids, cfg.pad_token_id, past_length)  # (B, S)
    needed = int(pos.max()) + 1
    if needed > positions_table.shape[0]:
        grown = sinusoidal_table(needed, cfg.d_model, cfg.pad_token_id).astype(positions_table.dtype)
        positions_table = array_module(ids).asarray(grown)
    return positions_table[pos]


def causal_bias(S: int, past_length: int, dtype, xp):
    """Step i (absolute position past_length + i) may see keys 0 .. past_length + i.   -> (1, 1, S, past + S)"""
    future = xp.arange(past_length + S)[None, :] > (past_length + xp.arange(S))[:, None]  # (S, past + S)
    return (future * xp.finfo(dtype).min).astype(dtype)[None, None]


def cross_attention_cache(p, encoder_hidden, cfg: DecoderConfig) -> list[dict]:
    """Project the encoder output to every layer's cross-attention K/V once per utterance.

    encoder_hidden (B, T, C) -> one dict per layer with cross_k/cross_v (B, H, T, D) and an
    empty self-attention cache (B, H, 0, D).
    """
    H = cfg.decoder_attention_heads
    xp = array_module(encoder_hidden)
    B, C = encoder_hidden.shape[0], cfg.d_model
    empty = xp.zeros((B, H, 0, C // H), dtype=encoder_hidden.dtype)  # (B, H, 0, D)
    cache = []
    for layer in p.model.decoder.layers:
        cache.append({
            "self_k": empty,
            "self_v": empty,
            "cross_k": split_heads(linear(layer.encoder_attn.k_proj, encoder_hidden), H),  # (B, H, T, D)
            "cross_v": split_heads(linear(layer.encoder_attn.v_proj, encoder_hidden), H),  # (B, H, T, D)
        })
    return cache


def reorder_cache(cache: list[dict], index) -> list[dict]:
    """Pick self-attention cache rows for the surviving beams: rows ``index`` (B,) along axis 0.
    ``index`` may live on the host; it is moved to the cache's device once.

    The cross-attention K/V stay as they are: they hold one row per input, and a beam never moves
    to another input. (Only the rows of an input that has already finished differ from
    transformers': they point at row 0, as HF's do, while their cross K/V remain their own
    input's; they decode nothing but padding.)
    """
    index = array_module(cache[0]["self_k"]).asarray(index)  # (B,)
    return [dict(layer, self_k=layer["self_k"][index], self_v=layer["self_v"][index]) for layer in cache]


def cross_attend(q, k, v, bias, dropout_mask=None):
    """Attention of the decoder rows to their input's encoder frames.

    q (B, H, S, D) with B = B_in * K (K beams of each input, consecutive rows); k, v (B_in, H, T, D)
    and bias (B_in, 1, 1, T) or None, one row per input.   -> (B, H, S, D), weights (B, H, S, T)

    Plain form: row b attends to input b // K's frames, i.e. ``attend(q, k[b // K], v[b // K], ...)``.
    Rather than copying each input's keys and values once per beam, its K beams go in as K*S query
    rows of that input (``fold_beams``), so the keys and values are read once (wav2vec2-large's
    decoder, 5 beams on 5 s: 14 MB less to read a step). Without beams (B == B_in) it is ``attend``,
    the only case training mode's ``dropout_mask`` (B, H, S, T) meets.
    """
    B_in = k.shape[0]
    if q.shape[0] == B_in:
        return attend(q, k, v, bias, dropout_mask=dropout_mask)
    heads, weights = attend(fold_beams(q, B_in), k, v, bias)  # (B_in, H, K*S, D), (B_in, H, K*S, T)
    return unfold_beams(heads, q.shape[2]), unfold_beams(weights, q.shape[2])


def fold_beams(q, B_in: int):
    """The K beams of each input as K*S query rows of it: (B_in * K, H, S, D) -> (B_in, H, K*S, D)."""
    B, H, S, D = q.shape
    K = B // B_in
    return q.reshape(B_in, K, H, S, D).transpose(0, 2, 1, 3, 4).reshape(B_in, H, K * S, D)


def unfold_beams(a, S: int):
    """Back to one row per beam: (B_in, H, K*S, X) -> (B_in * K, H, S, X)."""
    B_in, H, KS, X = a.shape
    K = KS // S
    return a.reshape(B_in, H, K, S, X).transpose(0, 2, 1, 3, 4).reshape(B_in * K, H, S, X)


def decoder_layer(p, x, cache: dict, self_bias, cross_bias, cfg: DecoderConfig, training=None, name: str = ""):
    """Speech2Text2DecoderLayer, post-LN throughout: (B, S, C) -> (B, S, C), updated cache.

    x = LN(x + self_attn(x))          causal, keys = cached steps + these steps
    x = LN(x + cross_attn(x, enc))    keys/values precomputed in the cache
    x = LN(x + fc2(act(fc1(x))))
    Returns the layer output, the new cache and, for recording, a dict of the sublayer outputs
    (before their dropout and residual add) and attention weights under their names relative to
    the layer: "self_attn", "self_attn.attn_weights" (B, H, S, S_past + S), "encoder_attn",
    "encoder_attn.attn_weights" (B, H, S, T), "fc2". In training mode (``training``, named by
    the layer's HF path ``name``) dropout acts on both attentions' probabilities (attention_dropout),
    on each sublayer's output (dropout) and after the activation (activation_dropout).
    """
    H = cfg.decoder_attention_heads
    D = cfg.d_model // H
    xp = array_module(x)
    B, S, _ = x.shape
    a = p.self_attn
    q = split_heads(linear(a.q_proj, x) * D**-0.5, H)  # (B, H, S, D)  scaled after the bias
    k = xp.concatenate([cache["self_k"], split_heads(linear(a.k_proj, x), H)], axis=2)  # (B, H, S_past + S, D)
    v = xp.concatenate([cache["self_v"], split_heads(linear(a.v_proj, x), H)], axis=2)  # (B, H, S_past + S, D)
    mask = attention_mask(training, f"{name}.self_attn.dropout", (B, H, S, k.shape[2]), cfg.attention_dropout, x)
    heads, self_weights = attend(q, k, v, self_bias, dropout_mask=mask)  # (B, H, S, D), (B, H, S, S_past + S)
    self_out = linear(a.out_proj, merge_heads(heads))  # (B, S, C)
    h = dropout(training, f"{name}.dropout_after_self_attn", self_out, cfg.dropout)
    x = layer_norm(p.self_attn_layer_norm, x + h, LAYER_NORM_EPS)  # (B, S, C)

    c = p.encoder_attn
    q = split_heads(linear(c.q_proj, x) * D**-0.5, H)  # (B, H, S, D)
    T = cache["cross_k"].shape[2]
    mask = attention_mask(training, f"{name}.encoder_attn.dropout", (B, H, S, T), cfg.attention_dropout, x)
    heads, cross_weights = cross_attend(q, cache["cross_k"], cache["cross_v"], cross_bias, mask)  # (B, H, S, D), (B, H, S, T)
    cross_out = linear(c.out_proj, merge_heads(heads))  # (B, S, C)
    h = dropout(training, f"{name}.dropout_after_encoder_attn", cross_out, cfg.dropout)
    x = layer_norm(p.encoder_attn_layer_norm, x + h, LAYER_NORM_EPS)  # (B, S, C)

    hidden = ACTIVATIONS[cfg.activation_function](linear(p.fc1, x))  # (B, S, F)
    hidden = dropout(training, f"{name}.activation_dropout", hidden, cfg.activation_dropout)
    ffn_out = linear(p.fc2, hidden)  # (B, S, C)
    h = dropout(training, f"{name}.dropout_after_fc2", ffn_out, cfg.dropout)
    x = layer_norm(p.final_layer_norm, x + h, LAYER_NORM_EPS)  # (B, S, C)
    new_cache = dict(cache, self_k=k, self_v=v)
    parts = {"self_attn.attn_weights": self_weights, "self_attn": self_out, "encoder_attn.attn_weights": cross_weights,
             "encoder_attn": cross_out, "fc2": ffn_out}  # in the order HF computes them
    return x, new_cache, parts


def decode(p, ids, cache: list[dict], cross_bias, positions_table, cfg: DecoderConfig, record=None, training=None):
    """Run the decoder on new tokens ``ids`` (B, S) after ``S_past`` cached steps.

    cross_bias (B_in, 1, 1, T) or None masks padded encoder frames. positions_table (P, C).
    -> logits (B, S, V), the cache grown by S steps. ``training``: dropout and LayerDrop
    (training.py); a layer LayerDrop skips keeps its cache as it was.
    """
    xp = array_module(ids)
    past = cache[0]["self_k"].shape[2]
    S = ids.shape[1]
    embed = p.model.decoder.embed_tokens.weight[ids]  # (B, S, C)
    record_to(record, "decoder.model.decoder.embed_tokens", embed)
    scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
    positions = position_rows(positions_table, ids, cfg, past)  # (B, S, C)
    record_to(record, "decoder.model.decoder.embed_positions", positions)
    x = embed * scale + positions  # (B, S, C)
    record_to(record, "decoder.model.decoder.layers.0.input", x)  # what the first layer reads (in eval mode)
    x = dropout(training, "decoder.model.decoder.dropout", x, cfg.dropout)
    self_bias = causal_bias(S, past, x.dtype, xp)  # (1, 1, S, past + S)
    new_cache = []
    for i, layer in enumerate(p.model.decoder.layers):
        name = f"decoder.model.decoder.layers.{i}"
        if skips_layer(training, name, cfg.decoder_layerdrop):
            new_cache.append(cache[i])
            continue
        x, layer_cache, parts = decoder_layer(layer, x, cache[i], self_bias, cross_bias, cfg, training, name)
        new_cache.append(layer_cache)
        for part, value in parts.items():
            record_to(record, f"{name}.{part}", value)
        record_to(record, name, x)
    logits = x @ p.lm_head.weight.T  # (B, S, V)  lm_head has no bias; tied models share embed_tokens
    record_to(record, "decoder.lm_head", logits)
    return logits, new_cache


def decoder_layer_backward(p, x, encoder_hidden, self_bias, cross_bias, cfg: DecoderConfig, d_out, training=None,
                           name: str = ""):
    """Gradients of ``decoder_layer`` run on all S steps at once (teacher forcing: no past steps).
    x, d_out (B, S, C), encoder_hidden (B, T, C) -> dx, d_encoder_hidden, {name: grad}

    Forward: x1 = LN1(x + self_attn(x)), x2 = LN2(x1 + cross_attn(x1, frames)),
    y = LN3(x2 + fc2(act(fc1(x2)))), recomputed here from the layer's input, each attention by
    ``attention_keeping`` so that its backward reuses q, k, v and the weights. Each LN backward
    hands its input's gradient to both the sublayer and the residual. In training mode each
    dropout's mask (the forward's, by name), applied to the gradient, is its backward.
    """
    H, act, B, S = cfg.decoder_attention_heads, cfg.activation_function, x.shape[0], x.shape[1]
    T = encoder_hidden.shape[1]
    self_mask = attention_mask(training, f"{name}.self_attn.dropout", (B, H, S, S), cfg.attention_dropout, x)
    self_attn, self_kept = attention_keeping(p.self_attn, x, x, self_bias, H, self_mask)  # (B, S, C)
    self_out = dropout(training, f"{name}.dropout_after_self_attn", self_attn, cfg.dropout)  # as added to x
    x1 = layer_norm(p.self_attn_layer_norm, x + self_out, LAYER_NORM_EPS)
    cross_mask = attention_mask(training, f"{name}.encoder_attn.dropout", (B, H, S, T), cfg.attention_dropout, x)
    cross_attn, cross_kept = attention_keeping(p.encoder_attn, x1, encoder_hidden, cross_bias, H, cross_mask)
    cross_out = dropout(training, f"{name}.dropout_after_encoder_attn", cross_attn, cfg.dropout)
    x2 = layer_norm(p.encoder_attn_layer_norm, x1 + cross_out, LAYER_NORM_EPS)
    activated, slope = activation_and_slope(act, linear(p.fc1, x2))  # (B, S, F) each
    activated = dropout(training, f"{name}.activation_dropout", activated, cfg.activation_dropout)
    ffn_out = dropout(training, f"{name}.dropout_after_fc2", linear(p.fc2, activated), cfg.dropout)

    d_sum3, g_ln3 = layer_norm_backward(p.final_layer_norm, x2 + ffn_out, d_out, LAYER_NORM_EPS)
    d_ffn = dropout(training, f"{name}.dropout_after_fc2", d_sum3, cfg.dropout)
    d_act, g_fc2 = linear_backward(p.fc2, activated, d_ffn)
    d_act = dropout(training, f"{name}.activation_dropout", d_act, cfg.activation_dropout)
    d_x2, g_fc1 = linear_backward(p.fc1, x2, d_act * slope)  # d_hidden = d_act · act'(hidden)
    d_sum2, g_ln2 = layer_norm_backward(p.encoder_attn_layer_norm, x1 + cross_out, d_x2 + d_sum3, LAYER_NORM_EPS)
    d_cross = dropout(training, f"{name}.dropout_after_encoder_attn", d_sum2, cfg.dropout)
    d_x1, d_encoder, g_cross = attention_backward(p.encoder_attn, x1, encoder_hidden, cross_bias, H, d_cross,
                                                  cross_mask, cross_kept)
    d_sum1, g_ln1 = layer_norm_backward(p.self_attn_layer_norm, x + self_out, d_x1 + d_sum2, LAYER_NORM_EPS)
    d_self = dropout(training, f"{name}.dropout_after_self_attn", d_sum1, cfg.dropout)
    d_q, d_kv, g_self = attention_backward(p.self_attn, x, x, self_bias, H, d_self, self_mask, self_kept)
    grads = (prefixed("self_attn", g_self) | prefixed("self_attn_layer_norm", g_ln1) | prefixed("encoder_attn", g_cross)
             | prefixed("encoder_attn_layer_norm", g_ln2) | prefixed("fc1", g_fc1) | prefixed("fc2", g_fc2)
             | prefixed("final_layer_norm", g_ln3))
    return d_sum1 + d_q + d_kv, d_encoder, grads


def decode_keeping_inputs(p, ids, encoder_hidden, cross_bias, positions_table, cfg: DecoderConfig, training=None):
    """``decode`` on all S steps at once (teacher forcing: no past steps), keeping what
    ``decode_backward`` needs: each layer's input (one (B, S, C) array per layer) and the last
    layer's output.   -> logits (B, S, V), saved"""
    xp = array_module(encoder_hidden)
    S = ids.shape[1]
    scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
    x = p.model.decoder.embed_tokens.weight[ids] * scale + position_rows(positions_table, ids, cfg, 0)  # (B, S, C)
    x = dropout(training, "decoder.model.decoder.dropout", x, cfg.dropout)
    self_bias = causal_bias(S, 0, x.dtype, xp)  # (1, 1, S, S)
    cache = cross_attention_cache(p, encoder_hidden, cfg)  # no past steps; cross K/V once
    inputs = []
    for i, (layer, layer_cache) in enumerate(zip(p.model.decoder.layers, cache)):
        inputs.append(x)
        name = f"decoder.model.decoder.layers.{i}"
        if not skips_layer(training, name, cfg.decoder_layerdrop):
            x = decoder_layer(layer, x, layer_cache, self_bias, cross_bias, cfg, training, name)[0]  # (B, S, C)
    logits = x @ p.lm_head.weight.T  # (B, S, V)
    return logits, {"inputs": inputs, "output": x, "self_bias": self_bias}


def decode_backward(p, ids, encoder_hidden, cross_bias, saved: dict, cfg: DecoderConfig, d_logits, record=None,
                    training=None):
    """Gradients of ``decode`` on all steps at once, from what ``decode_keeping_inputs`` kept:
    ids (B, S), encoder_hidden (B, T, C), d_logits (B, S, V) -> d_encoder_hidden (B, T, C),
    {name: grad} under the checkpoint's names without the leading "decoder.".

    Each layer's backward recomputes its own insides from the layer's input. embed_tokens'
    gradient is scattered back to the rows the ids read (np.add.at), except the padding row,
    which nn.Embedding(padding_idx=pad) never updates; the sinusoidal table is not trained. A
    tied lm_head adds its gradient to embed_tokens' (one parameter, two uses).
    """
    xp = array_module(encoder_hidden)
    B, S = ids.shape
    embed = p.model.decoder.embed_tokens.weight  # (V, C)
    scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
    inputs, x, self_bias = saved["inputs"], saved["output"], saved["self_bias"]
    names = [f"decoder.model.decoder.layers.{i}" for i in range(len(inputs))]
    record_to(record, "grad.decoder.lm_head", d_logits)
    d_x = d_logits @ p.lm_head.weight  # (B, S, C)
    d_head = d_logits.reshape(B * S, -1).T @ x.reshape(B * S, -1)  # (V, C)
    grads, d_encoder = {}, xp.zeros_like(encoder_hidden)
    for i in reversed(range(len(p.model.decoder.layers))):
        if skips_layer(training, names[i], cfg.decoder_layerdrop):
            continue  # LayerDrop skipped it: the gradient passes through
        record_to(record, f"grad.{names[i]}", d_x)
        d_x, d_enc, g = decoder_layer_backward(p.model.decoder.layers[i], inputs[i], encoder_hidden, self_bias,
                                               cross_bias, cfg, d_x, training, names[i])
        d_encoder += d_enc
        grads |= prefixed(f"model.decoder.layers.{i}", g)
    d_x = dropout(training, "decoder.model.decoder.dropout", d_x, cfg.dropout)
    d_embed = xp.zeros_like(embed)  # (V, C)
    xp.add.at(d_embed, ids.reshape(-1), (d_x * scale).reshape(B * S, -1))  # rows read twice add up
    d_embed[cfg.pad_token_id] = 0
    if cfg.tie_word_embeddings:
        d_embed += d_head
    else:
        grads["lm_head.weight"] = d_head
    grads["model.decoder.embed_tokens.weight"] = d_embed
    return d_encoder, grads


def decoder_weight_shapes(cfg: DecoderConfig, prefix: str = "decoder.") -> dict[str, tuple]:
    """Every tensor the decoder reads, under its HF name, with the shape config.json implies."""
    C, F, V = cfg.d_model, cfg.decoder_ffn_dim, cfg.vocab_size
    shapes = {
        "model.decoder.embed_tokens.weight": (V, C),
        "model.decoder.embed_positions.weights": (cfg.max_target_positions + POSITION_OFFSET, C),
        "lm_head.weight": (V, C),
    }
    for i in range(cfg.decoder_layers):
        layer = f"model.decoder.layers.{i}."
        for attn in ("self_attn", "encoder_attn"):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                shapes[layer + f"{attn}.{proj}.weight"] = (C, C)
                shapes[layer + f"{attn}.{proj}.bias"] = (C,)
        for norm in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            shapes[layer + f"{norm}.weight"] = (C,)
            shapes[layer + f"{norm}.bias"] = (C,)
        shapes[layer + "fc1.weight"] = (F, C)
        shapes[layer + "fc1.bias"] = (F,)
        shapes[layer + "fc2.weight"] = (C, F)
        shapes[layer + "fc2.bias"] = (C,)
    return {prefix + name: shape for name, shape in shapes.items()}
