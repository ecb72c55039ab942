"""Write notebooks/data/: small files the notebooks read, made by the reference libraries.

    python -m tools.make_notebook_data

- tiny_state_dict.bin: torch.save of a 2-tensor state dict, as a PyTorch checkpoint stores
  it (a zip holding data.pkl and one file per storage), for notebook 07 to take apart
  without torch.
- 439_espeak-en-029+AnxiousAndy_22050.flac: "four hundred thirty nine" by espeak-ng 1.51 (Debian's
  espeak-ng package), voice en-029+AnxiousAndy at 175 words a minute, pitch 50: one of the
  held-out clips the demo model gets wrong in eval.json (it hears "forty nine"), for notebook 05.
- whisper/: English numbers whispered by espeak-ng (its "whisper" and "whisperf" variants on six
  accents), a way of speaking the demo model never heard, for notebook 12 to fine-tune on:
  train/ (60 clips) and held_out/ (40 whispered clips of other numbers, and the same 40 numbers
  spoken plainly by the same accents in plain/), each folder with its transcripts.tsv
  (FILE<TAB>German text, spelled by rule). Ogg Vorbis at 16 kHz, ~1.3 MB in all.
- scratch/: the numbers 0-39 spoken plainly by espeak-ng, for notebook 12 to train a model from
  nothing: train/ (four accents, every number, 160 clips) and held_out/ (a fifth accent, 40
  clips), each with its transcripts.tsv. Ogg Vorbis at 16 kHz.
"""

import io
import random
import shutil
import subprocess
from pathlib import Path

import soundfile
import torch

from minis2t2.audio import resample
from tools.demo.spell import english, german

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "data"
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan"]


def espeak(text: str, voice: str, words_per_minute: int):
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout", text],
                         capture_output=True, check=True).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return resample(audio, rate, 16000)


def write_set(folder: Path, clips: list[tuple[str, int, str, int]]) -> None:
    """Each (file, number, espeak-ng voice, words a minute) spoken into folder/file (Ogg Vorbis,
    16 kHz), and folder/transcripts.tsv with each number's German text."""
    folder.mkdir(parents=True)
    for file, n, voice, words_per_minute in clips:
        soundfile.write(folder / file, espeak(english(n), voice, words_per_minute), 16000, format="OGG",
                        subtype="VORBIS")
    (folder / "transcripts.tsv").write_text("".join(f"{file}\t{german(n)}\n" for file, n, _, _ in clips),
                                            encoding="utf-8")


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def whisper_sets() -> None:
    """Numbers 0-999 drawn without repeats: 60 to train on, 40 held out (whispered and plain)."""
    folder = fresh(OUT / "whisper")
    rng = random.Random("notebook-12-whisper")
    numbers = rng.sample(range(1000), 100)
    sets = {"train": [(n, "+whisper" if i % 2 else "+whisperf") for i, n in enumerate(numbers[:60])],
            "held_out": [(n, "+whisper" if i % 2 else "+whisperf") for i, n in enumerate(numbers[60:])],
            "plain": [(n, "") for n in numbers[60:]]}
    for name, items in sets.items():
        clips = []
        for i, (n, variant) in enumerate(items):
            accent = ACCENTS[i % len(ACCENTS)]
            clips.append((f"{i:02d}_{n}_{accent}{variant.replace('+', '_')}.ogg", n, accent + variant,
                          rng.randint(140, 190)))
        write_set(folder / name, clips)
    print(folder, f"{sum(f.stat().st_size for f in folder.rglob('*')) / 1e6:.1f} MB")


def scratch_sets() -> None:
    """Every number 0-39: four accents to train on, a fifth held out."""
    folder = fresh(OUT / "scratch")
    rng = random.Random("notebook-12-scratch")
    for name, accents in {"train": ACCENTS[:4], "held_out": ACCENTS[4:5]}.items():
        write_set(folder / name, [(f"{n:02d}_{accent}.ogg", n, accent, rng.randint(150, 180))
                                  for accent in accents for n in range(40)])
    print(folder, f"{sum(f.stat().st_size for f in folder.rglob('*')) / 1e6:.1f} MB")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    state = {
        "proj.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 10,
        "proj.bias": torch.tensor([0.5, -0.5]),
    }
    torch.save(state, OUT / "tiny_state_dict.bin")
    print(OUT / "tiny_state_dict.bin", (OUT / "tiny_state_dict.bin").stat().st_size, "bytes")
    wav = subprocess.run(["espeak-ng", "-v", "en-029+AnxiousAndy", "-s", "175", "-p", "50", "--stdout",
                          "four hundred thirty nine"], capture_output=True, check=True).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="int16")
    path = OUT / f"439_espeak-en-029+AnxiousAndy_{rate}.flac"
    soundfile.write(path, audio, rate)
    print(path, path.stat().st_size, "bytes")
    whisper_sets()
    scratch_sets()


if __name__ == "__main__":
    main()
