"""Write notebooks/data/: small files the notebooks read, made by the reference libraries.

    python -m tools.make_notebook_data

- tiny_state_dict.bin: torch.save of a 2-tensor state dict, as a PyTorch checkpoint stores
  it (a zip holding data.pkl and one file per storage), for notebook 07 to take apart
  without torch.
- 851_piper-en_US-joe-medium_16000.flac: "eight hundred fifty one" by the Piper voice the demo model
  never trained on (tools/demo/voices.Piper, length scale 0.953...; the demo extra, pip install -e
  ".[demo]"): clip 75 of eval.json's Piper set, sample for sample, which the demo model gets wrong
  (it writes "sixty one"), for notebook 05.
- foreign/: English numbers read by espeak-ng's French, Spanish, Italian, Polish, Dutch and
  Swedish voices, each with its own language's letter-to-sound rules and sounds (a caricature of
  a foreign accent, which the demo model never heard), for notebook 11 to fine-tune on: train/
  (60 clips) and held_out/ (40 clips of other numbers by the same voices, and the same 40 numbers
  spoken plainly by six English accents in plain/), each folder with its transcripts.tsv
  (FILE<TAB>German text, spelled by rule). Ogg Vorbis at 16 kHz.
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
from tools.demo.voices import Piper  # the demo extra's Piper voice, for notebook 05's clip

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "data"
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan"]
FOREIGN = ["fr", "es", "it", "pl", "nl", "sv"]  # other languages' voices, reading English with their own rules


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


def foreign_sets() -> None:
    """Numbers 0-999 drawn without repeats: 60 to train on, 40 held out (read by the other
    languages' voices, and plainly by the English accents)."""
    folder = fresh(OUT / "foreign")
    rng = random.Random("notebook-11-foreign")
    numbers = rng.sample(range(1000), 100)
    sets = {"train": [(n, FOREIGN[i % len(FOREIGN)]) for i, n in enumerate(numbers[:60])],
            "held_out": [(n, FOREIGN[i % len(FOREIGN)]) for i, n in enumerate(numbers[60:])],
            "plain": [(n, ACCENTS[i % len(ACCENTS)]) for i, n in enumerate(numbers[60:])]}
    for name, items in sets.items():
        write_set(folder / name, [(f"{i:02d}_{n}_{voice}.ogg", n, voice, rng.randint(140, 190))
                                  for i, (n, voice) in enumerate(items)])
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
    voice = {"source": "piper", "name": "en_US-joe-medium", "rate": 0.9533823695679532, "pitch": 1.0}
    path = OUT / "851_piper-en_US-joe-medium_16000.flac"
    soundfile.write(path, Piper()("eight hundred fifty one", voice), 16000)
    print(path, path.stat().st_size, "bytes")
    foreign_sets()
    scratch_sets()


if __name__ == "__main__":
    main()
