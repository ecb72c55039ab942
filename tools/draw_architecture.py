"""Draw docs/architecture.png: the whole pipeline with the shapes of the shipped demo model.

    pip install -e ".[notebooks]" && python -m tools.draw_architecture

Every number in it comes from weights/numbers-en-de/config.json through
minis2t2.plots.architecture_rows (1 s of audio at the feature extractor's rate); the rows'
text is stored in the PNG's "Description" field, and tests/test_docs_figures.py fails when it
no longer matches what that function makes of the shipped config: run this script then.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from minis2t2.config import ModelConfig
from minis2t2.plots import architecture, architecture_rows

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "weights" / "numbers-en-de"
OUT = ROOT / "docs" / "architecture.png"


def main() -> None:
    matplotlib.use("Agg")
    cfg = ModelConfig.from_file(FOLDER / "config.json")
    fig = architecture(cfg, "Speech2Text2 = Wav2Vec2 encoder + Speech2Text2 decoder (weights/numbers-en-de)")
    description = json.dumps(architecture_rows(cfg), ensure_ascii=False)
    fig.savefig(OUT, dpi=110, bbox_inches="tight", metadata={"Description": description})
    print(OUT)


if __name__ == "__main__":
    main()
