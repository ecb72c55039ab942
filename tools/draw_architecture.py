"""Draw docs/architecture.png: the whole pipeline with the shapes of the shipped demo model.

    pip install -e ".[notebooks]" && python tools/draw_architecture.py

Shapes come from the model's config.json (B = 1 utterance of 1 s at 16 kHz, S decoder steps),
colours from minis2t2.plots (one per component, as in the notebooks).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from minis2t2.config import ModelConfig  # noqa: E402
from minis2t2.encoder import conv_output_length  # noqa: E402
from minis2t2.plots import COLORS  # noqa: E402


def boxes(cfg: ModelConfig) -> list[tuple[str, str, str, str]]:
    """(component, title, what it does, output shape) from input to text."""
    e, d = cfg.encoder, cfg.decoder
    N = 16000
    T = conv_output_length(N, e)
    conv = "→".join(f"{c}" for c in e.conv_dim)
    layer_kind = "pre-LN (stable)" if e.do_stable_layer_norm else "post-LN"
    conv_text = (f"{len(e.conv_dim)} conv1d layers, channels {conv}\nkernels {e.conv_kernel}, "
                 f"strides {e.conv_stride}\n{e.feat_extract_norm} norm, GELU")
    pos_text = (f"grouped conv, K={e.num_conv_pos_embeddings}, G={e.num_conv_pos_embedding_groups},"
                "\nweight norm, GELU; added")
    enc_text = f"{layer_kind}: self-attention, {e.num_attention_heads} heads\n+ feed-forward {e.intermediate_size}"
    rows = [
        ("audio", "waveform", "any file → mono, 16 kHz\nnormalise over valid samples", f"(1, N={N})"),
        ("conv", "conv feature encoder", conv_text, f"(1, T={T}, {e.conv_dim[-1]})"),
        ("encoder", "feature projection", "LayerNorm + Linear", f"(1, T, C={e.hidden_size})"),
        ("encoder", "positional conv", pos_text, f"(1, T, {e.hidden_size})"),
        ("encoder", f"{e.num_hidden_layers} encoder layers", enc_text, f"(1, T, {e.hidden_size})"),
    ]
    if cfg.has_enc_to_dec_proj:
        rows.append(("encoder", "enc_to_dec_proj", "Linear to the decoder width", f"(1, T, {d.d_model})"))
    dec_text = (f"post-LN: causal self-attention (KV cache)\n+ cross-attention over T frames, "
                f"{d.decoder_attention_heads} heads\n+ feed-forward {d.decoder_ffn_dim}")
    rows += [
        ("decoder", "embeddings", f"tokens × √{d.d_model} + sinusoidal positions\n(start token </s>, offset 2)",
         f"(1, S, {d.d_model})"),
        ("decoder", f"{d.decoder_layers} decoder layers", dec_text, f"(1, S, {d.d_model})"),
        ("decoder", "lm_head", "Linear, no bias", f"(1, S, V={d.vocab_size})"),
        ("text", "search + BPE", "greedy / beam search\njoin \"@@ \" pieces", "'dreiundsiebzig'"),
    ]
    return rows


def main() -> None:
    folder = ROOT / "weights" / "numbers-en-de"
    cfg = ModelConfig.from_file(folder / "config.json")
    rows = boxes(cfg)
    fig, ax = plt.subplots(figsize=(9, 0.95 * len(rows) + 0.6))
    ax.set_xlim(-1.6, 10.6)
    ax.set_ylim(-len(rows), 0.8)
    ax.axis("off")
    ax.text(5, 0.45, "Speech2Text2 = Wav2Vec2 encoder + Speech2Text2 decoder (weights/numbers-en-de)",
            ha="center", fontsize=11, weight="bold")
    for i, (component, title, what, shape) in enumerate(rows):
        y = -i - 0.4
        ax.add_patch(FancyBboxPatch((0.3, y - 0.35), 7.0, 0.7, boxstyle="round,pad=0.02", facecolor=COLORS[component],
                                    alpha=0.25, edgecolor=COLORS[component]))
        ax.text(0.45, y, title, va="center", fontsize=10, weight="bold")
        ax.text(3.45, y, what, va="center", fontsize=7.5)
        ax.text(7.5, y, shape, va="center", fontsize=9, family="monospace")
        if i:
            ax.annotate("", xy=(1.2, y + 0.36), xytext=(1.2, y + 0.64), arrowprops=dict(arrowstyle="->", color="grey"))
    source = max(i for i, row in enumerate(rows) if row[0] == "encoder")  # the encoder output the decoder reads
    target = next(i for i, row in enumerate(rows) if row[1].endswith("decoder layers"))
    ax.annotate("", xy=(0.28, -target - 0.4), xytext=(0.28, -source - 0.4),
                arrowprops=dict(arrowstyle="->", color=COLORS["attention"], connectionstyle="arc3,rad=0.5"))
    ax.text(-0.2, -(source + target) / 2 - 0.4, "cross-\nattention", ha="right", va="center", fontsize=8,
            color=COLORS["attention"])
    out = ROOT / "docs" / "architecture.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
