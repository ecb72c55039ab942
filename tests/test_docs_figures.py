"""Figures in docs/ are drawn by code from the shipped config; a committed figure that no longer
matches what that code draws fails here.

docs/architecture.png carries, in its PNG "Description" field, the rows of text it was drawn
from (tools/draw_architecture.py writes them). The test makes those rows again from today's
weights/numbers-en-de/config.json and compares: a changed model, or a changed drawing function,
without a re-drawn figure fails. docs/performance.png is a measurement (benchmarks/speed.py
--plot), not a function of the config, and is not checked here.
"""

import json
from pathlib import Path

import pytest

from minis2t2.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
matplotlib = pytest.importorskip("matplotlib")  # the figures' code needs it; the test extra installs it


def test_architecture_png_is_what_the_code_draws_from_the_shipped_config():
    from PIL import Image

    from minis2t2.plots import architecture_rows

    cfg = ModelConfig.from_file(ROOT / "weights" / "numbers-en-de" / "config.json")
    stored = Image.open(ROOT / "docs" / "architecture.png").text.get("Description")
    assert stored is not None, "docs/architecture.png has no Description: run python -m tools.draw_architecture"
    expected = [list(row) for row in architecture_rows(cfg)]
    assert json.loads(stored) == expected, "docs/architecture.png is stale: run python -m tools.draw_architecture"


def test_architecture_rows_follow_the_config():
    """The rows are derived, not restated: another frame hop or layer order shows in them."""
    import dataclasses

    from minis2t2.plots import architecture_rows

    cfg = ModelConfig.from_file(ROOT / "weights" / "numbers-en-de" / "config.json")
    large = dataclasses.replace(cfg.encoder, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                                conv_dim=(512,) * 7, do_stable_layer_norm=False, feat_extract_norm="group")
    rows = architecture_rows(dataclasses.replace(cfg, encoder=large))
    text = "\n".join(" | ".join(row) for row in rows)
    assert "a frame every 320 samples (20 ms, 50 a second), each seeing 400" in text
    assert "(1, T=49, 512)" in text  # (16000 - 400) // 320 + 1
    assert "GroupNorm + GELU after conv 0, GELU alone after the others" in text
    titles = [row[1] for row in rows]
    assert titles.index("final LayerNorm") < titles.index(f"{large.num_hidden_layers} encoder layers")  # post-LN


def test_frame_timing_refuses_another_models_frame_length():
    """The plots' guard: the demo model's frames on a time axis with wav2vec2-large's 20 ms (the
    bug notebooks 04/05 had) raise; the model's own frame length passes."""
    import numpy as np

    import minis2t2
    from minis2t2 import plots
    from minis2t2.encoder import FrameTiming, frame_timing

    model = minis2t2.load(ROOT / "weights" / "numbers-en-de")
    timing = model.frame_timing
    assert timing == frame_timing(model.config.encoder, 16000)
    for n in (timing.field, timing.field + timing.hop - 1, timing.field + timing.hop, 15047, 16000):
        frames = model.encode(np.zeros((1, n), np.float32))[0].shape[1]
        assert timing.count(n) == frames
        timing.check(frames, n / 16000)
    wrong = FrameTiming(hop=320, field=400, sampling_rate=16000)
    T, duration = timing.count(15047), 15047 / 16000
    with pytest.raises(ValueError, match="do not fit"):
        wrong.check(T, duration)
    _, axes = plots.figure(1, 1)
    with pytest.raises(ValueError, match="do not fit"):
        plots.cross_attention(axes[0, 0], np.full((2, T), 1 / T), ["a", "b"], wrong, duration)
    plots.cross_attention(axes[0, 0], np.full((2, T), 1 / T), ["a", "b"], timing, duration)


def test_model_card_states_the_frames_of_its_config():
    """The model card's frame hop and receptive field are what the shipped config gives."""
    import re

    from minis2t2.encoder import frame_timing

    folder = ROOT / "weights" / "numbers-en-de"
    timing = frame_timing(ModelConfig.from_file(folder / "config.json").encoder, 16000)
    card = (folder / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"one frame per (\d+) ms, receptive field (\d+) samples", card)
    assert stated, "the card no longer states its frame length and receptive field in the expected words"
    assert (int(stated[1]), int(stated[2])) == (round(timing.seconds * 1000), timing.field)
