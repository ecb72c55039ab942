"""Write notebooks/data/: small files the notebooks read, made by the reference libraries.

    python -m tools.make_notebook_data

- tiny_state_dict.bin: torch.save of a 2-tensor state dict, as a PyTorch checkpoint stores
  it (a zip holding data.pkl and one file per storage), for notebook 07 to take apart
  without torch.
- 439_espeak-en-029+AnxiousAndy_22050.flac: "four hundred thirty nine" by espeak-ng 1.51 (Debian's
  espeak-ng package), voice en-029+AnxiousAndy at 175 words a minute, pitch 50: one of the
  held-out clips the demo model gets wrong in eval.json (it hears "forty nine"), for notebook 05.
"""

import io
import subprocess
from pathlib import Path

import soundfile
import torch

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "data"


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


if __name__ == "__main__":
    main()
