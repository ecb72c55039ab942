"""Write notebooks/data/: small files the notebooks read, made by the reference libraries.

    python tools/make_notebook_data.py

- tiny_state_dict.bin: torch.save of a 2-tensor state dict, as a PyTorch checkpoint stores
  it (a zip holding data.pkl and one file per storage), for notebook 07 to take apart
  without torch.
"""

from pathlib import Path

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


if __name__ == "__main__":
    main()
