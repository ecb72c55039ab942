"""Pictures for the teaching notebooks and the docs (optional: ``pip install -e ".[notebooks]"``).

matplotlib is imported inside each function, so ``import minis2t2`` never needs it. Every
picture uses physical units (seconds, samples, tokens) and one colour per component, the same
in every notebook:

    audio   blue      conv feature encoder   orange    transformer encoder   green
    decoder red       attention              purple    text / tokens         brown
"""

from __future__ import annotations

import numpy as np

COLORS = {
    "audio": "#4C72B0",
    "conv": "#DD8452",
    "encoder": "#55A868",
    "decoder": "#C44E52",
    "attention": "#8172B3",
    "text": "#937860",
}
CMAPS = {"attention": "Purples", "encoder": "Greens", "conv": "Oranges", "decoder": "Reds",
         "signed": "RdBu_r"}  # "signed": diverging, white at zero, for activations of either sign
# No frame length lives here: every seconds axis over encoder frames takes a FrameTiming
# (minis2t2.encoder.frame_timing, or model.frame_timing), derived from the model's conv strides.


def figure(rows: int = 1, cols: int = 1, width: float = 10, height: float = 2.6, **kwargs):
    """A figure with ``rows`` x ``cols`` axes, ``height`` inches per row -> (fig, axes[rows][cols])."""
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **kwargs)


def waveform(ax, audio: np.ndarray, sampling_rate: int = 16000, color: str = COLORS["audio"], label=None,
             spans=(), title: str | None = None):
    """A waveform on a seconds axis; ``spans`` = [(start_s, end_s, text), ...] are shaded."""
    t = np.arange(len(audio)) / sampling_rate
    ax.plot(t, audio, color=color, linewidth=0.6, label=label)
    shade(ax, spans)
    ax.set_xlabel("seconds")
    ax.set_xlim(0, max(len(audio) / sampling_rate, 1e-3))
    if title:
        ax.set_title(title)
    return ax


def shade(ax, spans=()):
    """Shade ``spans`` = [(start_s, end_s, text), ...] on a seconds axis, the text at the top."""
    for start, end, text in spans:
        ax.axvspan(start, end, color=COLORS["attention"], alpha=0.15)
        if text:
            ax.text((start + end) / 2, 0.97, text, ha="center", va="top", fontsize=8, transform=ax.get_xaxis_transform(),
                    bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
    return ax


def log_mel(audio: np.ndarray, sampling_rate: int = 16000, n_mels: int = 64, window_seconds: float = 0.025,
            hop_seconds: float = 0.010) -> tuple[np.ndarray, np.ndarray]:
    """A log-mel spectrogram, for pictures only (the model reads raw samples, not this).

    audio (N,) -> dB (n_mels, F) with F = 1 + (N - window) // hop frames, and the band centres (n_mels,) in Hz.
    Hann-windowed FFT power, n_mels triangular filters evenly spaced on the mel scale
    (mel = 2595 log10(1 + f / 700)) up to the Nyquist frequency, 10 log10.
    """
    window, hop = int(window_seconds * sampling_rate), int(hop_seconds * sampling_rate)
    audio = np.pad(audio, (0, max(0, window - len(audio))))
    starts = np.arange(0, len(audio) - window + 1, hop)  # (F,)
    frames = audio[starts[:, None] + np.arange(window)] * np.hanning(window)  # (F, window)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (F, window // 2 + 1)
    freqs = np.fft.rfftfreq(window, 1 / sampling_rate)  # (window // 2 + 1,)
    top_mel = 2595 * np.log10(1 + sampling_rate / 2 / 700)  # the Nyquist frequency on the mel scale
    edges = 700 * (10 ** (np.linspace(0, top_mel, n_mels + 2) / 2595) - 1)  # (n_mels + 2,) Hz, evenly spaced in mel
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    filters = np.clip(np.minimum((freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)), 0, None)
    energy = filters @ power.T  # (n_mels, F)
    return 10 * np.log10(np.maximum(energy, 1e-10)), edges[1:-1]


def spectrogram(ax, audio: np.ndarray, sampling_rate: int = 16000, spans=(), title: str | None = None,
                colorbar: bool = False):
    """The log-mel spectrogram on a seconds axis (y: band centre in Hz), 60 dB of range shown;
    ``spans`` as in ``waveform``; ``colorbar`` (in dB) keeps it aligned under pictures that have one."""
    db, centres = log_mel(audio, sampling_rate)  # (n_mels, F), (n_mels,)
    duration = len(audio) / sampling_rate
    left = (0.025 - 0.010) / 2  # log_mel's frame f is centred at f * hop + window / 2: each column spans one hop
    im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 60, vmax=db.max(),
                   extent=(left, left + db.shape[1] * 0.010, -0.5, len(centres) - 0.5), interpolation="nearest")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.025, pad=0.01, label="dB")
    ticks = np.linspace(0, len(centres) - 1, 5).round().astype(int)
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{centres[i]:.0f}" for i in ticks])
    ax.set_ylabel("Hz (mel)")
    ax.set_xlabel("seconds")
    ax.set_xlim(0, duration)
    shade(ax, spans)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def heatmap(ax, matrix: np.ndarray, x_seconds: float | None = None, xlabel: str = "", ylabel: str = "",
            yticklabels=None, xticklabels=None, cmap: str = CMAPS["attention"], title: str | None = None,
            colorbar: bool = True, vmin=None, vmax=None, y_seconds: float | None = None):
    """One matrix as an image, row 0 at the top. With ``x_seconds`` the x axis is time: column j
    spans [j, j+1) * x_seconds seconds (``y_seconds`` likewise for rows). Used for every
    attention map and feature map."""
    rows, cols = matrix.shape
    extent = None
    if x_seconds is not None or y_seconds is not None:
        right = cols * x_seconds if x_seconds is not None else cols - 0.5
        left = 0 if x_seconds is not None else -0.5
        bottom, top = (rows * y_seconds, 0) if y_seconds is not None else (rows - 0.5, -0.5)
        extent = (left, right, bottom, top)
        xlabel = xlabel or ("seconds" if x_seconds is not None else "")
    im = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=cmap, extent=extent, vmin=vmin, vmax=vmax)
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)))
        ax.set_yticklabels(yticklabels)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)))
        ax.set_xticklabels(xticklabels, rotation=90)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
    return im


def attention_heads(weights: np.ndarray, title: str, tokens=None, timing=None, duration: float | None = None,
                    query_time: bool = True, xlabel: str = "key", ylabel: str = "query", audio=None,
                    sampling_rate: int = 16000):
    """One layer's attention, one panel per head, each with its own colour bar (heads have their
    own scales): weights (H, Lq, Lk) -> figure.

    With ``timing`` (a FrameTiming) and ``duration`` (seconds of audio) the key axis is in seconds,
    and the query axis too when ``query_time`` (self-attention over frames); the frame count is
    checked against the duration first. With ``audio`` (N,) its spectrogram is drawn under each
    head, on the same seconds axis.
    """
    H, _, Lk = weights.shape  # (H, Lq, Lk)
    x_seconds = y_seconds = None
    if timing is not None:
        timing.check(Lk, duration)
        x_seconds = timing.seconds
        y_seconds = timing.seconds if query_time else None
    rows = 1 if audio is None else 2
    fig, axes = figure(rows, H, width=3.4 * H, height=3.0 if rows == 1 else 2.2,
                       gridspec_kw=None if rows == 1 else {"height_ratios": [2.6, 1]})
    for h in range(H):
        heatmap(axes[0, h], weights[h], x_seconds=x_seconds, y_seconds=y_seconds, xlabel=xlabel,
                ylabel=ylabel if h == 0 else "", yticklabels=tokens if h == 0 else None, title=f"head {h}", vmin=0)
        if h and tokens is not None:
            axes[0, h].set_yticks([])
        if timing is not None:
            axes[0, h].set_xlim(0, duration)
        if audio is not None:
            spectrogram(axes[1, h], audio, sampling_rate, colorbar=True)
            if h:
                axes[1, h].set_ylabel("")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def cross_attention(ax, weights: np.ndarray, tokens: list[str], timing, duration: float,
                    title: str = "cross-attention", path: bool = True):
    """The token x time picture: weights (S, T) of each output token over the encoder frames,
    x axis in seconds (``timing``: the model's FrameTiming, checked against ``duration``), y axis
    the tokens; with ``path`` the most attended frame of each token is marked (the alignment the
    decoder found), at the frame's centre."""
    timing.check(weights.shape[1], duration)
    heatmap(ax, weights, x_seconds=timing.seconds, ylabel="output token", yticklabels=tokens, title=title, vmin=0)
    if path:
        peaks = (weights.argmax(axis=1) + 0.5) * timing.seconds
        ax.plot(peaks, range(len(tokens)), "o-", color=COLORS["decoder"], markersize=4, linewidth=1)
    ax.set_xlim(0, duration)
    return ax


def feature_map(ax, features: np.ndarray, timing, duration: float, title: str, cmap: str = CMAPS["signed"]):
    """Frames x channels activations (T, C) as channels (rows) over seconds (columns). ``timing`` is
    the FrameTiming of the layer that made them (``frame_timing(cfg, rate, num_layers)``), checked
    against ``duration``; the diverging colour map is centred on zero."""
    timing.check(features.shape[0], duration)
    limit = float(np.abs(features).max()) or 1.0
    im = heatmap(ax, features.T, x_seconds=timing.seconds, ylabel="channel", title=title, cmap=cmap,
                 vmin=-limit, vmax=limit)
    ax.set_xlim(0, duration)
    return im


def architecture_rows(cfg, seconds: float = 1.0, sampling_rate: int = 16000) -> list[tuple[str, str, str, str]]:
    """The pipeline from waveform to text as (component, title, what it does, output shape) rows,
    every number taken from ``cfg`` (a ModelConfig) for ``seconds`` of audio: the text of
    docs/architecture.png, which a test compares with the committed picture."""
    from .encoder import frame_timing

    e, d = cfg.encoder, cfg.decoder
    timing = frame_timing(e, sampling_rate)
    N = round(seconds * sampling_rate)
    T = timing.count(N)
    act = e.feat_extract_activation.upper()
    norm = (f"LayerNorm + {act} after every conv" if e.feat_extract_norm == "layer"
            else f"GroupNorm + {act} after conv 0, {act} alone after the others")
    conv_text = (f"channels {'→'.join(map(str, e.conv_dim))}, kernels {e.conv_kernel}, strides {e.conv_stride}\n"
                 f"{norm}\na frame every {timing.hop} samples ({timing.seconds * 1000:g} ms, "
                 f"{timing.per_second:g} a second), each seeing {timing.field}")
    pos_text = (f"grouped conv, K={e.num_conv_pos_embeddings}, G={e.num_conv_pos_embedding_groups},"
                f"\nweight norm, {act}; added to the frames")
    if e.do_stable_layer_norm:
        layer_text = "pre-LN (stable): x + attn(LN(x)), then x + ffn(LN(x))"
    else:
        layer_text = "post-LN: LN(x + attn(x)), then LN(x + ffn(x))"
    enc_text = f"{layer_text}\n{e.num_attention_heads} heads, feed-forward {e.intermediate_size}, {e.hidden_act}"
    final_norm = ("final LayerNorm", "encoder.layer_norm, over channels", f"(1, T, {e.hidden_size})")
    rows = [
        ("audio", "waveform", f"any file → mono, {sampling_rate} Hz\nnormalise over valid samples", f"(1, N={N})"),
        ("conv", f"{len(e.conv_dim)} conv layers", conv_text, f"(1, T={T}, {e.conv_dim[-1]})"),
        ("encoder", "feature projection", ("LayerNorm + " if e.feat_proj_layer_norm else "") + "Linear",
         f"(1, T, C={e.hidden_size})"),
        ("encoder", "positional conv", pos_text, f"(1, T, {e.hidden_size})"),
    ]
    if not e.do_stable_layer_norm:
        rows.append(("encoder",) + final_norm)  # post-LN: the "final" LayerNorm comes before the layers
    rows.append(("encoder", f"{e.num_hidden_layers} encoder layers", enc_text, f"(1, T, {e.hidden_size})"))
    if e.do_stable_layer_norm:
        rows.append(("encoder",) + final_norm)
    if cfg.has_enc_to_dec_proj:
        rows.append(("encoder", "enc_to_dec_proj", "Linear to the decoder width", f"(1, T, {d.d_model})"))
    scale = f"tokens × √{d.d_model}" if d.scale_embedding else "tokens"
    dec_text = (f"post-LN: causal self-attention (KV cache)\n+ cross-attention over the T frames, "
                f"{d.decoder_attention_heads} heads\n+ feed-forward {d.decoder_ffn_dim}, {d.activation_function}")
    rows += [
        ("decoder", "embeddings", f"{scale} + sinusoidal positions\n(start token </s>, positions from {d.pad_token_id + 1})",
         f"(1, S, {d.d_model})"),
        ("decoder", f"{d.decoder_layers} decoder layers", dec_text, f"(1, S, {d.d_model})"),
        ("decoder", "lm_head", "Linear, no bias", f"(1, S, V={d.vocab_size})"),
        ("text", "search + BPE", "greedy / beam search\njoin \"@@ \" pieces", "text"),
    ]
    return rows


def architecture(cfg, title: str):
    """docs/architecture.png: one box per row of ``architecture_rows(cfg)``, coloured by component,
    and the cross-attention arrow from the encoder output to the decoder layers -> figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    rows = architecture_rows(cfg)
    fig, ax = plt.subplots(figsize=(10, 0.95 * len(rows) + 0.6))
    ax.set_xlim(-1.6, 12.2)
    ax.set_ylim(-len(rows), 0.8)
    ax.axis("off")
    ax.text(5.3, 0.45, title, ha="center", fontsize=11, weight="bold")
    for i, (component, name, what, shape) in enumerate(rows):
        y = -i - 0.4
        ax.add_patch(FancyBboxPatch((0.3, y - 0.37), 8.65, 0.74, boxstyle="round,pad=0.02",
                                    facecolor=COLORS[component], alpha=0.25, edgecolor=COLORS[component]))
        ax.text(0.45, y, name, va="center", fontsize=10, weight="bold")
        ax.text(3.35, y, what, va="center", fontsize=7)
        ax.text(9.1, y, shape, va="center", fontsize=9, family="monospace")
        if i:
            ax.annotate("", xy=(1.2, y + 0.36), xytext=(1.2, y + 0.64), arrowprops={"arrowstyle": "->", "color": "grey"})
    source = max(i for i, row in enumerate(rows) if row[0] == "encoder")  # the encoder output the decoder reads
    target = next(i for i, row in enumerate(rows) if row[1].endswith("decoder layers"))
    ax.annotate("", xy=(0.28, -target - 0.4), xytext=(0.28, -source - 0.4),
                arrowprops={"arrowstyle": "->", "color": COLORS["attention"],
                            "connectionstyle": "arc3,rad=0.5"})
    ax.text(-0.2, -(source + target) / 2 - 0.4, "cross-\nattention", ha="right", va="center", fontsize=8,
            color=COLORS["attention"])
    return fig
