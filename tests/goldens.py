"""The frozen transformers 4.40.2 outputs in tests/golden (written by ``python -m tools.make_goldens``)
and the one way a model is checked against them: tests/test_golden.py asserts each piece, and
benchmarks/gpu_check.py runs the same checks on a GPU. NumPy and minis2t2 only (the GPU machine has
neither torch nor the safetensors package).

Layout: ``golden/manifest.json`` holds the tolerance and, per variant, the labels and generation
cases; ``golden/<variant>/model`` is the HF-layout checkpoint; ``golden/<variant>/golden.safetensors``
holds the raw audio (``raw/0``, ``raw/1``), the processor's output, every recorded module output for
a single input and a batch of two (``single/<path>``, ``batch/<path>``), the loss, and the ids of
every generation case (``generate/<case>``).
"""

import json
from pathlib import Path

import numpy as np

import minis2t2
from minis2t2.compare import compare_dicts, first_divergence
from minis2t2.weights import read_safetensors

GOLDEN = Path(__file__).resolve().parent / "golden"
SPLITS = {"single": 1, "batch": 2}


def manifest() -> dict:
    return json.loads((GOLDEN / "manifest.json").read_text())


def load_variant(variant: str, device: str = "cpu") -> tuple:
    """(the minis2t2 model, the golden tensors as NumPy arrays) of one variant."""
    golden = {name: np.asarray(a) for name, (a, _) in read_safetensors(GOLDEN / variant / "golden.safetensors").items()}
    return minis2t2.load(GOLDEN / variant / "model", device=device), golden


def teacher_forced(model, golden: dict, labels, split: str) -> tuple:
    """Run ``split`` ("single" or "batch") teacher-forced with recording on.

    Returns (the model's output, what minis2t2 recorded, what transformers recorded under the same
    module paths, transformers' loss)."""
    record = {}
    out = model(golden[f"{split}/input_values"], golden.get(f"{split}/attention_mask"),
                labels=np.asarray(labels)[: SPLITS[split]], record=record)
    prefix = split + "/"
    reference = {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix)}
    for key in ("input_values", "attention_mask"):
        reference.pop(key, None)
    loss = float(np.asarray(reference.pop("loss")).reshape(-1)[0])
    return out, record, reference, loss


def generated(model, golden: dict, kwargs: dict) -> np.ndarray:
    """The ids minis2t2 generates for the batch with one case's settings."""
    return model.generate(golden["batch/input_values"], golden.get("batch/attention_mask"), **kwargs)


def failures(model, golden: dict, variant: str, spec: dict, atol: float, rtol: float) -> list[str]:
    """Every disagreement of one loaded variant with its goldens, one line each (empty: all agree).
    Activations within atol + rtol * |reference| (the manifest's 1e-4 each), the loss within 1e-5
    relative, ids exactly."""
    found = []
    for split in SPLITS:
        out, record, reference, loss = teacher_forced(model, golden, spec["labels"], split)
        bad = first_divergence(compare_dicts(reference, record, atol=atol, rtol=rtol))
        if bad is not None:
            found.append(f"{variant} {split}: {bad}")
        if abs(out.loss - loss) > 1e-5 * (1 + abs(loss)):
            found.append(f"{variant} {split}: loss {out.loss} vs {loss}")
    for case, kwargs in spec["generation_cases"].items():
        if not np.array_equal(generated(model, golden, kwargs), golden[f"generate/{case}"]):
            found.append(f"{variant} generate/{case}: ids differ")
    return found
