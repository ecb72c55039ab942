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
CMAPS = {"attention": "Purples", "encoder": "Greens", "conv": "Oranges", "decoder": "Reds"}
FRAME_SECONDS = 0.02  # one encoder frame: the conv stack's total stride, 5*2*2*2*2*2*2 = 320 samples at 16 kHz


def figure(rows: int = 1, cols: int = 1, width: float = 10, height: float = 2.6, **kwargs):
    """A figure with ``rows`` x ``cols`` axes, ``height`` inches per row -> (fig, axes[rows][cols])."""
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **kwargs)


def waveform(ax, audio: np.ndarray, sampling_rate: int = 16000, color: str = COLORS["audio"], label=None,
             spans=(), title: str | None = None):
    """A waveform on a seconds axis; ``spans`` = [(start_s, end_s, text), ...] are shaded."""
    t = np.arange(len(audio)) / sampling_rate
    ax.plot(t, audio, color=color, linewidth=0.6, label=label)
    for start, end, text in spans:
        ax.axvspan(start, end, color=COLORS["attention"], alpha=0.15)
        ax.text((start + end) / 2, ax.get_ylim()[1] * 0.85, text, ha="center", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_xlim(0, max(len(audio) / sampling_rate, 1e-3))
    if title:
        ax.set_title(title)
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


def attention_heads(weights: np.ndarray, title: str, tokens=None, x_seconds: float | None = None,
                    xlabel: str = "key", ylabel: str = "query", y_seconds: float | None = None):
    """One layer's attention, one panel per head: weights (H, Lq, Lk) -> figure."""
    H = weights.shape[0]
    fig, axes = figure(1, H, width=3.2 * H, height=3.0)
    for h in range(H):
        heatmap(axes[0, h], weights[h], x_seconds=x_seconds, y_seconds=y_seconds, xlabel=xlabel,
                ylabel=ylabel if h == 0 else "",
                yticklabels=tokens if h == 0 else None, title=f"head {h}", colorbar=h == H - 1, vmin=0)
        if h and tokens is not None:
            axes[0, h].set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def cross_attention(ax, weights: np.ndarray, tokens: list[str], frame_seconds: float = FRAME_SECONDS,
                    title: str = "cross-attention", path: bool = True):
    """The token x time picture: weights (S, T) of each output token over the encoder frames,
    x axis in seconds, y axis the tokens; with ``path`` the most attended frame of each token
    is marked (the alignment the decoder found)."""
    heatmap(ax, weights, x_seconds=frame_seconds, ylabel="output token", yticklabels=tokens, title=title, vmin=0)
    if path:
        peaks = (weights.argmax(axis=1) + 0.5) * frame_seconds
        ax.plot(peaks, range(len(tokens)), "o-", color=COLORS["decoder"], markersize=4, linewidth=1)
    return ax


def feature_map(ax, features: np.ndarray, frame_seconds: float, title: str, cmap: str = "RdBu_r"):
    """Frames x channels activations (T, C) as channels (rows) over seconds (columns)."""
    limit = float(np.abs(features).max()) or 1.0
    return heatmap(ax, features.T, x_seconds=frame_seconds, ylabel="channel", title=title, cmap=cmap,
                   vmin=-limit, vmax=limit)
