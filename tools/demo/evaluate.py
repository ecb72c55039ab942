"""Evaluate the demo model on held-out voices with minis2t2, check transformers agrees, write samples.

    python tools/demo/evaluate.py        # after tools/demo/train.py; same --work and --out defaults

Writes <out>/eval.json (exact-match accuracy of minis2t2's NumPy inference on the held-out set,
and how many outputs transformers reproduces token for token) and <out>/samples/: a few
held-out recordings saved at various sample rates and formats, with expected.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from spell import english, german  # noqa: E402
from train import SAMPLE_RATE, datasets  # noqa: E402

import minis2t2  # noqa: E402
from minis2t2.audio import resample  # noqa: E402

# (sample rate, format, subtype) for the shipped samples: most not at 16 kHz on purpose
SAMPLE_FORMATS = [(8000, "WAV", "PCM_16"), (11025, "FLAC", "PCM_16"), (22050, "FLAC", "PCM_16"),
                  (44100, "OGG", "VORBIS"), (16000, "WAV", "PCM_16"), (32000, "FLAC", "PCM_24")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "weights" / "numbers-en-de")
    p.add_argument("--work", type=Path, default=Path("/tmp/minis2t2-demo"))
    p.add_argument("--copies", type=int, default=12)
    p.add_argument("--eval-size", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(2)
    _, (items, audio), _ = datasets(args.work, args.copies, args.eval_size, random.Random(args.seed))

    model = minis2t2.load(args.out)
    from transformers import SpeechEncoderDecoderModel

    hf = SpeechEncoderDecoderModel.from_pretrained(str(args.out)).eval()
    waves = [a.astype(np.float32) / 32768 for a in audio]
    ours, theirs, seconds = [], [], 0.0
    for start in range(0, len(waves), args.batch_size):
        inputs = model.processor(waves[start : start + args.batch_size], sampling_rate=SAMPLE_RATE)
        t = time.time()
        ids = model.generate(inputs["input_values"], inputs["attention_mask"])
        seconds += time.time() - t
        ours += [row[row != model.config.decoder.pad_token_id].tolist() for row in ids]
        with torch.no_grad():
            hf_ids = hf.generate(input_values=torch.from_numpy(inputs["input_values"]),
                                 attention_mask=torch.from_numpy(inputs["attention_mask"])).numpy()
        theirs += [row[row != model.config.decoder.pad_token_id].tolist() for row in hf_ids]
    texts = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in ours]
    correct = [t == german(item["number"]) for t, item in zip(texts, items)]
    identical = sum(a == b for a, b in zip(ours, theirs))
    errors = [{"number": it["number"], "voice": it["voice"], "got": t} for t, it, ok in zip(texts, items, correct)
              if not ok]
    report = {
        "held_out_utterances": len(items),
        "exact_match": round(float(np.mean(correct)), 4),
        "transformers_token_identical": f"{identical}/{len(items)}",
        "minis2t2_generate_seconds": round(seconds, 1),
        "voices": "accents " + ", ".join(sorted({it['voice'].split('+')[0] for it in items})) + " with variants "
                  + ", ".join(sorted({it['voice'].split('+')[1] for it in items})),
        "errors": errors,
    }
    (args.out / "eval.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "errors"}, indent=1), f"{len(errors)} errors")

    samples = args.out / "samples"
    samples.mkdir(exist_ok=True)
    expected, used = {}, set()
    # Correctly translated held-out recordings, each from a different voice: first numbers whose
    # units and tens swap places in German, then hundreds; kept only if the resampled file still
    # translates correctly.
    wanted = [i for i, it in enumerate(items) if correct[i] and it["number"] % 10 and it["number"] % 100 > 20]
    wanted += [i for i, it in enumerate(items) if correct[i] and it["number"] >= 100 and it["number"] % 100 < 20]
    for i in wanted:
        if len(expected) == len(SAMPLE_FORMATS) or items[i]["voice"] in used:
            continue
        rate, fmt, subtype = SAMPLE_FORMATS[len(expected)]
        name = f"{items[i]['number']:03d}_{items[i]['voice'].replace('+', '_')}_{rate}.{fmt.lower()}"
        soundfile.write(samples / name, resample(waves[i], SAMPLE_RATE, rate), rate, format=fmt, subtype=subtype)
        if model.translate(samples / name) != german(items[i]["number"]):  # the resampled file must still work
            (samples / name).unlink()
            continue
        used.add(items[i]["voice"])
        expected[name] = {"english": english(items[i]["number"], items[i]["british_and"]),
                          "german": german(items[i]["number"])}
    (samples / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(expected)} samples to {samples}")


if __name__ == "__main__":
    main()
