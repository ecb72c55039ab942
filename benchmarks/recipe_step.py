"""The demo recipe's own training step: the torch engine against the NumPy engine, one process.

    python -m benchmarks.recipe_step [--work /tmp/minis2t2-demo2] [--first 1500] [--batches 12] [--rounds 3]

Both engines take the same batches of the recipe (tools/demo/train.py's Batches for phase 1 from
step ``--first``: the clips synthesized into ``--work`` by the recipe, augmented as in training)
and run their whole step on the shipped model's weights: train mode (dropout and SpecAugment,
each engine's masks from its own generator at the same rates), the decoder's loss plus 0.5 x
CTC through a fresh head, clipping, AdamW and the schedule (train.torch_step,
train_numpy.recipe_step); with ``--frozen`` the feature encoder is frozen, as in phase 1's last
third and in phases 2 and 3. Unlike benchmarks/train_speed.py (eval mode, fixed 2.5 s clips) this
is the step the recipe runs: its batches are up to 3.3 s long and differ in length. The batches
are made before timing (in training a second process makes them beside the steps).
Reported: each engine's median step over ``--rounds`` rounds of all batches, in turn, and the
ratio (NumPy / torch). Absolute times depend on the machine and its load; name the CPU.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

import minis2t2
from minis2t2.loading import DEFAULT_MODEL_NAME
from minis2t2.optim import AdamW, warmup_cosine
from tools.demo import train, train_numpy
from tools.demo.data import training_set, word_bank

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/minis2t2-demo2"), help="the recipe's synthesized clips")
    p.add_argument("--first", type=int, default=1500, help="the first phase-1 batch timed")
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frozen", action="store_true", help="the feature encoder frozen")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import SpeechEncoderDecoderModel

    folder = ROOT / "weights" / DEFAULT_MODEL_NAME
    ours = minis2t2.load(folder)
    theirs = SpeechEncoderDecoderModel.from_pretrained(str(folder)).train()
    train.channels_last_feature_encoder(theirs)
    phase = train.PHASES[1] | {"freeze_feature_encoder_after": 0 if args.frozen else 10**9}
    if args.frozen:
        theirs.freeze_feature_encoder()
    items, clips = training_set(args.work, train.DATA_SEED)
    bank_items, bank = word_bank(args.work, train.DATA_SEED)
    labels_of, word_id = train.labels_and_words(ours.tokenizer)
    batches = train.Batches(clips, items, bank, bank_items, labels_of, word_id, ours.processor.feature_extractor,
                            10, phase["steps"], phase["seed"], phase["clean_start"], phase["tight_trim"])
    batches = [batches[k] for k in range(args.first, args.first + args.batches)]

    symbols = len(word_id) + 1
    our_head = train_numpy.new_ctc_head(ours.config.encoder.hidden_size, symbols, np.random.default_rng(0))
    our_optimizer = AdamW(lr=phase["lr"], weight_decay=0.01)
    their_head = torch.nn.Linear(theirs.config.encoder.hidden_size, symbols)
    their_optimizer = torch.optim.AdamW([*theirs.parameters(), *their_head.parameters()], lr=phase["lr"],
                                        weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(their_optimizer,
                                                 lambda s: warmup_cosine(s, phase["warmup"], phase["steps"]))

    def torch_step(k, batch):
        values, mask, labels, words = batch
        train.torch_step(theirs, their_head, their_optimizer, schedule,
                         (torch.from_numpy(values), torch.from_numpy(mask), torch.from_numpy(labels), words),
                         phase["ctc_weight"])

    def numpy_step(k, batch):
        train_numpy.recipe_step(ours, our_head, our_optimizer, batch, phase, k)

    times = {"torch": [], "numpy": []}
    for _ in range(args.rounds):
        for name, step in (("torch", torch_step), ("numpy", numpy_step)):
            for k, batch in enumerate(batches, start=args.first):
                start = time.perf_counter()
                step(k, batch)
                times[name].append(time.perf_counter() - start)
    seconds = [len(b[0][0]) / 16000 for b in batches]
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"numpy {np.__version__}; {len(batches)} batches of 10, {min(seconds):.1f}-{max(seconds):.1f} s, "
          f"feature encoder {'frozen' if args.frozen else 'trained'}")
    torch_median, numpy_median = (float(np.median(times[name])) for name in ("torch", "numpy"))
    print(f"median step: torch {torch_median:.3f} s, NumPy {numpy_median:.3f} s, ratio {numpy_median / torch_median:.2f}x")


if __name__ == "__main__":
    main()
