"""One training step (forward, backward, AdamW) of minis2t2 against torch + transformers, one process.

    pip install -e ".[test]" && python -m benchmarks.train_speed [--threads 2] [--rounds 4] [--repeats 3] [--skip-fullsize]

- the demo model (weights/numbers-en-de) on a batch of 10 clips of 2.5 s (its training batch);
- the full-size s2t-wav2vec2-large-en-de architecture (tests/test_fullsize.py, random weights) on
  one clip of 5 s.

Both sides get the same inputs, labels and thread count and compute the same thing: torch in
eval() mode (autograd still runs; no dropout, LayerDrop or SpecAugment: minis2t2's training mode
is checked against torch's in tests/test_training_mode.py, not timed here), and their first
losses must agree.
Reported: the best and the median of ``--rounds`` x ``--repeats`` steps on each side (rounds of
``--repeats`` steps a side, in turn, so that a busy stretch of a shared machine is likely to miss
some rounds of each), the ratios of the bests and of the medians (minis2t2 / torch, lower is
faster; on a shared machine a run's best can be a lucky step, its median is steadier), and
minis2t2's peak NumPy memory during a step (tracemalloc). Absolute times depend on
the machine and its load; compare ratios, and name the CPU. Then minis2t2's peak memory of
``loss_and_grads`` on the demo model for one clip of 2.5 to 40 s: what a step needs beyond the
weights, per second of audio (tracemalloc counts every NumPy allocation; the weights are
memory-mapped or allocated before it starts, so they are not in it).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

import minis2t2
from minis2t2.optim import AdamW
from tests import reference as R
from tests.fullsize import DECODER, ENCODER, write_vocab
from tests.signals import speech_like

ROOT = Path(__file__).resolve().parents[1]
from transformers import SpeechEncoderDecoderModel

DEMO = ROOT / "weights" / "numbers-en-de"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def step_pair(folder: Path, audio: list, texts: list, rounds: int, repeats: int) -> dict:
    """Time one training step on each side; -> figures."""
    ours = minis2t2.load(folder)
    inputs = ours.processor(audio, sampling_rate=16000, text=texts)
    hf = SpeechEncoderDecoderModel.from_pretrained(str(folder)).eval()  # eval: no dropout, LayerDrop or SpecAugment
    optimizer = torch.optim.AdamW(hf.parameters(), lr=1e-5)
    mask = inputs.get("attention_mask")

    def torch_step():
        optimizer.zero_grad()
        loss = hf(input_values=torch.from_numpy(inputs["input_values"]),
                  attention_mask=None if mask is None else torch.from_numpy(mask),
                  labels=torch.from_numpy(inputs["labels"])).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    params, ours_optimizer = ours.trainable_parameters(), AdamW(lr=1e-5)

    def ours_step():
        loss, grads = ours.loss_and_grads(inputs["input_values"], mask, labels=inputs["labels"])
        ours_optimizer.step(params, grads)
        return loss

    theirs, mine = [], []
    for _ in range(rounds):  # rounds in turn, so that a busy stretch of the machine misses some of each side's;
        theirs += [timed(torch_step) for _ in range(repeats)]  # in blocks, not alternating: torch's OpenMP
        mine += [timed(ours_step) for _ in range(repeats)]  # threads spin after a step and would slow the next
    tracemalloc.start()
    ours_step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(mine[0][1], theirs[0][1], rtol=1e-4)  # the first step's loss: the same model
    t_torch, t_ours = [t for t, _ in theirs], [t for t, _ in mine]
    return {"torch_s": min(t_torch), "minis2t2_s": min(t_ours), "ratio": min(t_ours) / min(t_torch),
            "torch_median_s": float(np.median(t_torch)), "minis2t2_median_s": float(np.median(t_ours)),
            "median_ratio": float(np.median(t_ours) / np.median(t_torch)), "minis2t2_peak_mb": peak / 1e6}


def peak_memory(model, audio: np.ndarray, text: str) -> int:
    """Bytes of NumPy memory at the peak of one loss_and_grads call (tracemalloc)."""
    inputs = model.processor(audio, sampling_rate=16000, text=text)
    tracemalloc.start()
    model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=inputs["labels"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def timed(fn) -> tuple[float, float]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads (set OMP/OPENBLAS_NUM_THREADS alike)")
    p.add_argument("--rounds", type=int, default=4, help="rounds of steps per side, in turn (default 4)")
    p.add_argument("--repeats", type=int, default=3, help="steps per side in a round (default 3)")
    p.add_argument("--skip-fullsize", action="store_true", help="only the demo model")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    texts = ["dreiundsiebzig", "vierhundertneunundvierzig", "zwölf", "null", "hundert", "achtzehn",
             "neunhundertneunundneunzig", "sechzig", "einundzwanzig", "fünf"]
    demo_audio = [speech_like(40000, seed=i) for i in range(10)]  # 10 x 2.5 s
    rows["demo model, batch 10 x 2.5 s"] = step_pair(DEMO, demo_audio, texts, args.rounds, args.repeats)
    print(rows, flush=True)
    if not args.skip_fullsize:
        hf = R.build_model(dict(ENCODER), dict(DECODER), seed=0, weight_std=None)
        with tempfile.TemporaryDirectory() as d:
            R.save_model(hf, Path(d), return_attention_mask=True)
            write_vocab(Path(d))
            del hf
            rows["full-size architecture, batch 1 x 5 s"] = step_pair(Path(d), [speech_like(80000, seed=3)],
                                                                      ["t1 t2 t3 t4 t5 t6"], args.rounds,
                                                                      args.repeats)
    print(f"\n{cpu_name()}, {args.threads} threads, torch {torch.__version__}, numpy {np.__version__}\n")
    print("| one training step | torch + transformers, best / median | minis2t2, best / median "
          "| ratio of bests / of medians | minis2t2 peak memory |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['torch_s']:.2f} / {r['torch_median_s']:.2f} s | {r['minis2t2_s']:.2f} / "
              f"{r['minis2t2_median_s']:.2f} s | {r['ratio']:.2f}x / {r['median_ratio']:.2f}x | "
              f"{r['minis2t2_peak_mb']:.0f} MB |")
    demo = minis2t2.load(DEMO)
    print("\n| audio (demo model, one clip) | minis2t2 peak memory of loss_and_grads | per second of audio |")
    print("| --- | --- | --- |")
    for seconds in (2.5, 5, 10, 20, 40):
        peak = peak_memory(demo, speech_like(int(seconds * 16000), seed=1), "dreiundsiebzig")
        print(f"| {seconds:g} s | {peak / 1e6:.1f} MB | {peak / 1e6 / seconds:.2f} MB |")


if __name__ == "__main__":
    main()
