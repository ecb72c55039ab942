"""Check minis2t2 against the published facebook/s2t-wav2vec2-large-en-de (needs network).

    pip install -e ".[test,hub]" datasets
    python -m tools.verify_published [--model facebook/s2t-wav2vec2-large-en-de] [--revision REV]

Downloads the real model (pytorch_model.bin, read without torch by minis2t2) and the LibriSpeech
sample HF's pipeline test uses (hf-internal-testing/librispeech_asr_dummy, clean, validation,
sorted by id, item 40: "A MAN SAID TO THE UNIVERSE SIR I EXIST"), then checks that

1. minis2t2 and transformers 4.40.2 generate the same ids with the model's own generation
   settings, and every traced tensor agrees (fp32, atol = rtol = 1e-4, reported layer by layer);
2. the text is the published output  Ein Mann sagte zum Universum : " Sir, ich existiert! "

Exit status 0 when all holds. Not run in CI: the hubs are unreachable there.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

PUBLISHED = 'Ein Mann sagte zum Universum : " Sir, ich existiert! "'
SOURCE_TEXT = "A MAN SAID TO THE UNIVERSE SIR I EXIST"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="facebook/s2t-wav2vec2-large-en-de", help="hub id or downloaded folder")
    p.add_argument("--revision")
    args = p.parse_args()

    import datasets
    import soundfile

    import minis2t2
    from minis2t2.checkpoint import from_hub
    from tools.trace_transformers import trace_transformers

    ds = datasets.load_dataset("hf-internal-testing/librispeech_asr_dummy", "clean", split="validation").sort("id")
    item = ds[40]
    print(f"sample: {item['id']}  {item['text']!r}")
    if item["text"] != SOURCE_TEXT:
        print(f"unexpected sample text, wanted {SOURCE_TEXT!r}")
        return 1
    folder = Path(args.model) if Path(args.model).is_dir() else from_hub(args.model, revision=args.revision)
    model = minis2t2.load(folder)
    print(f"model: {folder}\ngeneration: {model.generation_config}")

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "sample.wav"
        soundfile.write(wav, np.asarray(item["audio"]["array"], dtype=np.float32), item["audio"]["sampling_rate"],
                        subtype="FLOAT")
        ours = minis2t2.trace(wav, model=model)
        theirs = trace_transformers(wav, folder)
    result = minis2t2.compare(theirs, ours)
    print(result)
    text = ours[1]["text"]
    print(f"\nminis2t2:      {text!r}\ntransformers:  {theirs[1]['text']!r}\npublished:     {PUBLISHED!r}")
    ok = result.ok and text == PUBLISHED
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
