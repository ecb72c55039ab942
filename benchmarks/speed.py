"""minis2t2 against transformers on the full-size s2t-wav2vec2-large-en-de architecture, one process.

    pip install -e ".[test]" && python -m benchmarks.speed [--seconds 5 10 20 30] [--threads 2] [--repeats 3]

The architecture of tests/test_fullsize.py (wav2vec2-large encoder, 7-layer Speech2Text2 decoder,
315 M parameters) with random weights from a fixed seed, saved as HF saves it and loaded by both.
Both sides get the same inputs and the same thread count; every generated id must agree.

- encoder: the best of ``--repeats`` runs of the speech encoder (plus enc_to_dec_proj) for each
  audio length; minis2t2's peak NumPy memory during it (tracemalloc: the arrays it allocates,
  not the memory-mapped weights).
- greedy per token: (time for 40 new tokens - time for 8) / 32 on 5 s of audio, EOS suppressed
  by min_new_tokens, so the encoder and the set-up cancel out; 5-beam per step likewise. Both
  sides encode the audio once and reuse that output in every decoding run: otherwise the
  encoder's run-to-run jitter (a few tenths of a second) would swamp 32 steps of a few ms.
- load: minis2t2.load of the memory-mapped model.safetensors.

Absolute times depend on the machine and its load; the ratios (minis2t2 / transformers, lower
is faster) are the figures to compare. Prints a Markdown table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

import minis2t2
from tests import reference as R
from tests.fullsize import DECODER, ENCODER, write_vocab
from tests.signals import speech_like

SHORT, LONG = 8, 40  # new tokens of the two decoding runs whose difference gives the per-token cost


def best_of(repeats: int, fn) -> tuple[float, object]:
    """The fastest of ``repeats`` calls (the least disturbed by other work) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def hf_encoder(model, inputs):
    with torch.no_grad():
        out = model.encoder(torch.from_numpy(inputs["input_values"]),
                            attention_mask=torch.from_numpy(inputs["attention_mask"]))
        return model.enc_to_dec_proj(out.last_hidden_state)


def hf_generate(model, inputs, new_tokens: int, beams: int) -> np.ndarray:
    return R.generate(model, inputs["input_values"], inputs["attention_mask"], max_new_tokens=new_tokens,
                      min_new_tokens=new_tokens, num_beams=beams)


def ours_generate(model, inputs, new_tokens: int, beams: int) -> np.ndarray:
    return model.generate(inputs["input_values"], inputs["attention_mask"], max_new_tokens=new_tokens,
                          min_new_tokens=new_tokens, num_beams=beams)


def reuse_encoder_output(hf, ours, inputs) -> None:
    """Make both models' encoders return their output for ``inputs`` at once, for every call
    (transformers' beam search expands the output object in place, so it gets a fresh one)."""
    from transformers.modeling_outputs import BaseModelOutput

    with torch.no_grad():
        theirs = hf.encoder(torch.from_numpy(inputs["input_values"]),
                            attention_mask=torch.from_numpy(inputs["attention_mask"])).last_hidden_state
    mine = ours.encode(inputs["input_values"], inputs["attention_mask"])
    hf.encoder.forward = lambda *args, **kwargs: BaseModelOutput(last_hidden_state=theirs)
    ours.encode = lambda *args, **kwargs: mine


def per_token(repeats: int, run) -> tuple[float, np.ndarray, np.ndarray]:
    t_short, ids_short = best_of(repeats, lambda: run(SHORT))
    t_long, ids_long = best_of(repeats, lambda: run(LONG))
    return (t_long - t_short) / (LONG - SHORT), ids_short, ids_long


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[5, 10, 20, 30], help="audio lengths for the encoder")
    p.add_argument("--threads", type=int, default=2, help="torch threads (set OMP/OPENBLAS_NUM_THREADS alike)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--plot", type=Path, help="draw encoder time and memory against audio length here (matplotlib)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    hf = R.build_model(dict(ENCODER), dict(DECODER), seed=0, weight_std=None).eval()
    with tempfile.TemporaryDirectory() as d:
        R.save_model(hf, Path(d), return_attention_mask=True)
        write_vocab(Path(d))
        start = time.perf_counter()
        ours = minis2t2.load(d)
        load_seconds = time.perf_counter() - start
        extractor = R.feature_extractor(Path(d))
        rows = []
        for seconds in args.seconds:
            audio = speech_like(int(seconds * 16000), seed=11)
            inputs = extractor(audio, sampling_rate=16000, return_tensors="np")
            values, mask = inputs["input_values"], inputs["attention_mask"]
            t_hf, theirs = best_of(args.repeats, lambda x=inputs: hf_encoder(hf, x))
            t_ours, (mine, _) = best_of(args.repeats, lambda v=values, m=mask: ours.encode(v, m))
            tracemalloc.start()
            ours.encode(values, mask)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            error = float(np.abs(mine - theirs.numpy()).max())
            rows.append({"seconds": seconds, "transformers_s": t_hf, "minis2t2_s": t_ours, "ratio": t_ours / t_hf,
                         "minis2t2_peak_mb": peak / 1e6, "max_abs_error": error})
            print(f"encoder {seconds:>4.0f} s: transformers {t_hf:.2f} s, minis2t2 {t_ours:.2f} s "
                  f"(x{t_ours / t_hf:.2f}), peak {peak / 1e6:.0f} MB, max abs err {error:.1e}", flush=True)

        inputs = extractor(speech_like(80000, seed=12), sampling_rate=16000, return_tensors="np")
        reuse_encoder_output(hf, ours, inputs)
        decoding = {}
        for beams in (1, 5):
            t_hf, hf_short, hf_long = per_token(args.repeats, lambda n, b=beams: hf_generate(hf, inputs, n, b))
            t_ours, our_short, our_long = per_token(args.repeats, lambda n, b=beams: ours_generate(ours, inputs, n, b))
            same = np.array_equal(hf_short, our_short) and np.array_equal(hf_long, our_long)
            assert same, f"{beams}-beam ids differ between transformers and minis2t2"
            decoding[beams] = {"transformers_ms": 1e3 * t_hf, "minis2t2_ms": 1e3 * t_ours, "ratio": t_ours / t_hf}
            print(f"{beams}-beam per step: transformers {1e3 * t_hf:.1f} ms, minis2t2 {1e3 * t_ours:.1f} ms "
                  f"(x{t_ours / t_hf:.2f}), ids identical", flush=True)

    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, " \
              f"numpy {np.__version__}, python {platform.python_version()}"
    print(f"\n{machine}\n")
    print("| figure | transformers | minis2t2 | ratio |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| encoder, {r['seconds']:.0f} s audio | {r['transformers_s']:.2f} s | {r['minis2t2_s']:.2f} s "
              f"| {r['ratio']:.2f}x |")
    for beams, name in ((1, "greedy decoding, per token"), (5, "5-beam search, per step")):
        r = decoding[beams]
        print(f"| {name} | {r['transformers_ms']:.1f} ms | {r['minis2t2_ms']:.1f} ms | {r['ratio']:.2f}x |")
    print(f"| load model.safetensors (1.26 GB) | — | {load_seconds:.3f} s | mmap |")
    print("\nminis2t2 encoder peak NumPy memory: "
          + ", ".join(f"{r['seconds']:.0f} s: {r['minis2t2_peak_mb']:.0f} MB" for r in rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "encoder": rows, "decoding": decoding,
                                         "load_seconds": load_seconds}, indent=1) + "\n")
    if args.plot:
        plot(rows, machine, args.plot)


def plot(rows: list[dict], machine: str, path: Path) -> None:
    """Encoder seconds (both) and minis2t2's peak memory against seconds of audio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [r["seconds"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(seconds, [r["transformers_s"] for r in rows], "o-", label="transformers (torch)")
    left.plot(seconds, [r["minis2t2_s"] for r in rows], "s-", label="minis2t2 (NumPy)")
    left.set(xlabel="audio (s)", ylabel="encoder time (s)", title="encoder time")
    left.legend()
    right.plot(seconds, [r["minis2t2_peak_mb"] for r in rows], "s-", color="tab:orange")
    right.set(xlabel="audio (s)", ylabel="peak NumPy memory (MB)", title="minis2t2 encoder memory")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, max(seconds) * 1.05)
        ax.set_ylim(bottom=0)
    fig.suptitle(machine, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
