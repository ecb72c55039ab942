"""Write the conformance pack: reference traces a port in any language can check itself against.

    python -m tools.conformance OUT [--cases NAME ...]

For every golden model (tests/golden/<variant>/model: group/layer-norm convs, post/stable LN,
HuBERT, gelu/gelu_new/relu/silu, tied/untied heads, with and without enc_to_dec_proj) and the
shipped demo model, OUT/<case>/ receives

    model/                          the HF-layout model folder (config.json, weights, tokenizer, ...)
    audio/0.wav, audio/1.wav        two utterances of different lengths (16-bit PCM; 0.wav at 22.05 kHz
                                    for the small models, so a port's resampling is exercised)
    greedy.safetensors              0.wav, greedy search
    beam.safetensors                0.wav, beam search (num_beams 3)
    batch.safetensors               0.wav and 1.wav as one padded batch, beam search (num_beams 2)
    gradients.safetensors           0.wav with labels: the loss, every parameter's and every recorded
                                    activation's gradient (grad.<name>), for a port's training code

and OUT/manifest.json says what each case exercises, the command to check a port's trace against
each file (``minis2t2 compare``), the tolerances and the versions. The traces are minis2t2's (the
test suite holds them equal to transformers 4.40.2's traces of the same files:
tests/test_conformance.py); the format is docs/verify-your-implementation.md's.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import numpy as np
import soundfile

import minis2t2
from minis2t2.loading import DEFAULT_MODEL_NAME, shipped_model
from minis2t2.trace import FORMAT
from tests.signals import speech_like

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
TRACES = {
    "greedy": {"files": ["0.wav"], "num_beams": 1, "what": "one utterance, greedy search"},
    "beam": {"files": ["0.wav"], "num_beams": 3, "what": "one utterance, beam search with 3 beams"},
    "batch": {"files": ["0.wav", "1.wav"], "num_beams": 2,
              "what": "a padded batch of two (masks, padded frames), beam search with 2 beams"},
    "gradients": {"files": ["0.wav"], "num_beams": 1, "labels": True,
                  "what": "the loss for a target text and every gradient (grad.<name>), eval mode"},
}
GRAD_TOL = 1e-4  # of the largest gradient in the file, as the goldens' grad_tol
TOLERANCE = {"activations": {"atol": 1e-4, "rtol": 1e-4, "why": "fp32 activations of unit scale (compare's default); "
                             "loosen per tensor with --tolerance for fp16 or GPU ports"},
             "gradients": {"atol": f"{GRAD_TOL} x the file's largest gradient", "rtol": GRAD_TOL,
                           "why": "gradients span orders of magnitude; each gradients trace's check command has it"},
             "ids": "exact"}


def cases() -> dict[str, dict]:
    """Every case: its model folder, description, the audio it reads and the labels it trains on."""
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    found = {}
    for variant, spec in manifest["variants"].items():
        found[variant] = {"model": GOLDEN / variant / "model", "description": spec["description"],
                          "audio": [(speech_like(9000, seed=21), 22050), (speech_like(4000, seed=4), 16000)]}
    demo = shipped_model(DEFAULT_MODEL_NAME)
    expected = json.loads((demo / "samples" / "expected.json").read_text(encoding="utf-8"))
    samples = sorted(name for name in expected if name.endswith("_16000.wav"))[:2]
    found["demo"] = {"model": demo, "description": "the shipped demo model (numbers-en-de) on two of its samples",
                     "audio": [minis2t2.load_audio(demo / "samples" / name, 16000) for name in samples],
                     # the gradients trace's target for 0.wav: the other sample's text, not what the model hears.
                     # With its own text the loss is ~1e-5 and the gradients are float32 rounding (p - 1 for a
                     # probability within 1e-5 of 1), which no tolerance scaled to them can compare.
                     "labels": [expected[samples[1]]["german"]]}
    return found


def labels_for(model: minis2t2.Model) -> str:
    """A target text the model's vocabulary spells: the first few ordinary tokens, as words."""
    words = [t for t in model.tokenizer.encoder if t not in model.tokenizer.special_tokens and "@@" not in t]
    return " ".join(words[:3])


def write_case(name: str, case: dict, out: Path) -> dict:
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(case["model"], folder / "model", ignore=shutil.ignore_patterns("samples", "*.png", "README.md",
                                                                               "eval.json", "training"))
    (folder / "audio").mkdir()
    for i, item in enumerate(case["audio"]):
        audio, rate = item if isinstance(item, tuple) else (item, 16000)
        soundfile.write(folder / "audio" / f"{i}.wav", audio, rate, subtype="PCM_16")
    model = minis2t2.load(folder / "model")
    target = case.get("labels", [labels_for(model)])[0]
    traces = {}
    for trace_name, spec in TRACES.items():
        files = [folder / "audio" / f for f in spec["files"]]
        audio = files if len(files) > 1 else files[0]
        tensors, meta = minis2t2.trace(audio, model=model, num_beams=spec["num_beams"], max_new_tokens=8,
                                       labels=target if spec.get("labels") else None,
                                       out=folder / f"{trace_name}.safetensors")
        check = f"minis2t2 compare {name}/{trace_name}.safetensors YOUR_TRACE.safetensors"
        extra = {}
        if spec.get("labels"):  # gradients span orders of magnitude: a tolerance scaled to the largest one
            scale = max(float(np.abs(v).max()) for k, v in tensors.items() if k.startswith("grad."))
            extra = {"labels": target, "largest_gradient": scale}
            check += f" --tolerance 'grad.*={GRAD_TOL * scale:.1e},{GRAD_TOL}'"
        traces[trace_name] = {"what": spec["what"], "audio": [f"audio/{f}" for f in spec["files"]],
                              "num_beams": spec["num_beams"], "max_new_tokens": 8, "tensors": len(tensors),
                              "text": meta["text"], **extra, "check": check}
    return {"description": case["description"], "model": f"{name}/model", "traces": traces}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write the pack into")
    parser.add_argument("--cases", nargs="+", help="only these cases (default: all)")
    args = parser.parse_args(argv)
    available = cases()
    chosen = args.cases or list(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser.error(f"unknown case(s) {unknown}: choose from {sorted(available)}")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "producer": f"minis2t2 {minis2t2.__version__}, numpy {np.__version__}, python {platform.python_version()}",
        "reference": "transformers 4.40.2 (tests/test_conformance.py holds these traces equal to its own)",
        "tolerance": TOLERANCE,
        "order": "compare in the order of each file's 'order' metadata; the first divergence is the layer to read",
        "cases": {},
    }
    for name in chosen:
        manifest["cases"][name] = write_case(name, available[name], args.out)
        print(f"{args.out / name}: {', '.join(manifest['cases'][name]['traces'])}")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.out / 'manifest.json'}: {len(chosen)} cases")


if __name__ == "__main__":
    main()
