"""The frozen transformers 4.40.2 outputs in tests/golden (written by ``python -m tools.make_goldens``)
and the one way a model is checked against them: tests/test_golden.py asserts each piece, and
benchmarks/gpu_check.py runs the same checks on a GPU. NumPy and minis2t2 only (the GPU machine has
neither torch nor the safetensors package).

Layout: ``golden/manifest.json`` holds the tolerance and, per variant, the labels and generation
cases; ``golden/<variant>/model`` is the HF-layout checkpoint; ``golden/<variant>/golden.safetensors``
holds the raw audio (``raw/0``, ``raw/1``), the processor's output, every recorded module output for
a single input and a batch of two (``single/<path>``, ``batch/<path>``), the loss, the gradient of
every trainable parameter by torch autograd (``single/grad/<parameter>``), and the ids of every
generation case (``generate/<case>``).
"""

import json
from pathlib import Path

import numpy as np

import minis2t2
from minis2t2.backend import to_numpy
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
    reference = {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix) and "/grad/" not in k}
    for key in ("input_values", "attention_mask"):
        reference.pop(key, None)
    loss = float(np.asarray(reference.pop("loss")).reshape(-1)[0])
    return out, record, reference, loss


def gradients(model, golden: dict, labels, split: str) -> tuple:
    """(minis2t2's loss_and_grads on ``split``, torch autograd's gradients as transformers names them)."""
    n = SPLITS[split]
    _, grads = model.loss_and_grads(golden[f"{split}/input_values"], golden.get(f"{split}/attention_mask"),
                                    labels=np.asarray(labels)[:n])
    prefix = f"{split}/grad/"
    return grads, {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix)}


def gradient_failures(grads: dict, reference: dict, tol: float) -> list[str]:
    """Each parameter whose gradient is off: |ours - torch| > tol * (|torch| + the largest gradient
    anywhere in the model), or missing, extra, or of another shape."""
    if set(grads) != set(reference):
        only_ours, only_torch = sorted(set(grads) - set(reference)), sorted(set(reference) - set(grads))
        return [f"parameters differ: only minis2t2 {only_ours}, only torch {only_torch}"]
    scale = max(float(np.abs(g).max()) for g in reference.values())
    found = []
    for name, expected in reference.items():
        ours = np.asarray(to_numpy(grads[name]), dtype=np.float64)
        if ours.shape != expected.shape:
            found.append(f"{name}: shape {ours.shape}, torch {expected.shape}")
            continue
        excess = np.abs(ours - expected) - tol * (np.abs(expected) + scale)
        if excess.max() > 0:
            found.append(f"{name}: max error {np.abs(ours - expected).max():.3g} (scale {scale:.3g})")
    return found


def generated(model, golden: dict, kwargs: dict) -> np.ndarray:
    """The ids minis2t2 generates for the batch with one case's settings."""
    return model.generate(golden["batch/input_values"], golden.get("batch/attention_mask"), **kwargs)


def failures(model, golden: dict, variant: str, spec: dict, atol: float, rtol: float,
             grad_tol: float) -> list[str]:
    """Every disagreement of one loaded variant with its goldens, one line each (empty: all agree).
    Activations within atol + rtol * |reference| (the manifest's 1e-4 each), the loss within 1e-5
    relative, gradients within grad_tol of the model's gradient scale (gradient_failures), ids exactly."""
    found = []
    for split in SPLITS:
        out, record, reference, loss = teacher_forced(model, golden, spec["labels"], split)
        bad = first_divergence(compare_dicts(reference, record, atol=atol, rtol=rtol))
        if bad is not None:
            found.append(f"{variant} {split}: {bad}")
        if abs(out.loss - loss) > 1e-5 * (1 + abs(loss)):
            found.append(f"{variant} {split}: loss {out.loss} vs {loss}")
        grads, reference = gradients(model, golden, spec["labels"], split)
        found += [f"{variant} {split} grad {line}" for line in gradient_failures(grads, reference, grad_tol)]
    for case, kwargs in spec["generation_cases"].items():
        if not np.array_equal(generated(model, golden, kwargs), golden[f"generate/{case}"]):
            found.append(f"{variant} generate/{case}: ids differ")
    return found
