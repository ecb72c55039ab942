"""Memory and time of translating a long recording from the command line.

    python -m benchmarks.long_audio [--minutes 240] [--model DIR | --full-size] [--segments]
        [--max-new-tokens N]

Builds a recording of the demo model's samples one after another, 0.6-1.2 s of quiet noise
between them, at 22.05 kHz mono 16-bit (so it is decoded and resampled), written to a temporary
folder; runs ``minis2t2 translate`` on it in a child process and on a one-second file for the
baseline (the model, NumPy, SciPy loaded, nothing else), polling the child's /proc status every
0.1 s. It reports the wall time and two peaks:

    anonymous   memory the process holds (RssAnon): the model, one piece's work, the loudness
                of every 10 ms frame
    resident    everything resident (VmRSS), which also counts the pages of the temporary file
                that holds the resampled recording while they are mapped: clean file pages the
                system drops when it needs the room

``--full-size`` runs facebook/s2t-wav2vec2-large-en-de's architecture with random weights
(``minis2t2.random_init``, tests/fullsize.py's configs; 315 M parameters, written to the temporary
folder): it translates nothing sensible, so give ``--max-new-tokens`` to bound each piece's search.
Linux only (/proc). Prints the CPU model: times depend on it, memory does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

import minis2t2
from tests.fullsize import DECODER, ENCODER, write_vocab

DEMO = Path(__file__).resolve().parents[1] / "weights" / "numbers-en-de"
RATE = 22050


def write_recording(path: Path, minutes: float) -> int:
    """The demo samples with gaps, repeated to ``minutes``, written block by block. -> utterances"""
    samples = DEMO / "samples"
    expected = json.loads((samples / "expected.json").read_text(encoding="utf-8"))
    clips = [minis2t2.load_audio(samples / name, RATE) for name in sorted(expected)]
    rng = np.random.default_rng(0)
    written, count, total = 0, 0, int(minutes * 60 * RATE)
    with soundfile.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        while written < total:
            for clip in clips:
                gap = rng.normal(0, 3e-4, int(rng.uniform(0.6, 1.2) * RATE)).astype(np.float32)
                piece = np.concatenate([gap, clip])[: total - written]  # exactly ``minutes`` long
                f.write(piece)
                written += len(piece)
                count += 1
                if written == total:
                    break
    return count


def status_kb(pid: int) -> dict:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmRSS"):
                fields[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def run(command: list[str]) -> dict:
    """Run ``command``; its wall time and the peaks of RssAnon and VmRSS (MB)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peaks = {"RssAnon": 0, "VmRSS": 0}
    while child.poll() is None:
        for key, value in status_kb(child.pid).items():
            peaks[key] = max(peaks[key], value)
        time.sleep(0.1)
    output = child.stdout.read()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit status {child.returncode}")
    return {"seconds": time.perf_counter() - start, "anonymous_mb": peaks["RssAnon"] / 1024,
            "resident_mb": peaks["VmRSS"] / 1024, "lines": len(output.splitlines())}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=240, help="length of the recording (default 240: 4 h)")
    parser.add_argument("--model", default=str(DEMO), help="model folder (default: the demo model)")
    parser.add_argument("--full-size", action="store_true", help="the full-size architecture, random weights")
    parser.add_argument("--max-new-tokens", type=int, help="passed to minis2t2 translate")
    parser.add_argument("--segments", action="store_true", help="translate with --segments")
    args = parser.parse_args()
    print(f"{cpu_name()}, {os.cpu_count()} CPUs; minis2t2 {minis2t2.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        long_file, short_file = Path(folder) / "long.wav", Path(folder) / "short.wav"
        utterances = write_recording(long_file, args.minutes)
        soundfile.write(short_file, np.zeros(RATE, np.float32), RATE, subtype="PCM_16")
        model = args.model
        if args.full_size:
            model = Path(folder) / "full-size"
            model.mkdir()
            write_vocab(model)
            minis2t2.random_init(ENCODER, DECODER, seed=0, tokenizer=model).save_pretrained(model)
        command = [sys.executable, "-m", "minis2t2", "translate", "--model", str(model)]
        command += ["--segments"] if args.segments else []
        command += ["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens else []
        baseline = run(command + [str(short_file)])
        result = run(command + [str(long_file)])
    print(f"baseline (1 s of silence): {baseline['seconds']:.1f} s, anonymous {baseline['anonymous_mb']:.0f} MB, "
          f"resident {baseline['resident_mb']:.0f} MB")
    print(f"{'full-size architecture' if args.full_size else Path(args.model).name}, "
          f"{args.minutes:g} min, {utterances} utterances{' (--segments)' if args.segments else ''}: "
          f"{result['seconds']:.0f} s, anonymous {result['anonymous_mb']:.0f} MB "
          f"(+{result['anonymous_mb'] - baseline['anonymous_mb']:.0f} MB over the baseline), "
          f"resident {result['resident_mb']:.0f} MB, {result['lines']} output lines")


if __name__ == "__main__":
    main()
