"""Measurements on the full-size s2t-wav2vec2-large-en-de architecture (random weights).

1. Error table: transformers in float32 and float64 and minis2t2 in float32 and float64 on the
   same model and 6 s of audio; max abs error of the encoder output and the logits per pair.
2. Loading: seconds for minis2t2.load of the memory-mapped model.safetensors.
3. Trace: size and time of `minis2t2 trace` for 10 s of audio, greedy, 20 new tokens.

Needs the test extra.   python -m tools.fullsize_report
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import minis2t2
from tests import reference as R
from tests.fullsize import DECODER, ENCODER, write_vocab
from tests.signals import speech_like

IDS = np.array([[2, 5, 77, 1000, 9]])


def hf_run(model, inputs, dtype):
    torch.set_default_dtype(dtype)  # HF builds masks in the default dtype
    try:
        t = time.time()
        _, out = R.record(model, inputs["input_values"].astype(np.float64 if dtype == torch.float64 else np.float32),
                             inputs["attention_mask"], decoder_input_ids=IDS)
        return out.encoder_last_hidden_state.numpy(), out.logits.numpy(), time.time() - t
    finally:
        torch.set_default_dtype(torch.float32)


def main():
    torch.set_num_threads(2)
    model = R.build_model(dict(ENCODER), dict(DECODER), seed=0, weight_std=None)
    with tempfile.TemporaryDirectory() as d:
        R.save_model(model, Path(d), return_attention_mask=True)
        write_vocab(Path(d))
        inputs = R.feature_extractor(Path(d))(speech_like(96000, seed=11), sampling_rate=16000, return_tensors="np")
        results = {"HF fp32": hf_run(model, inputs, torch.float32)}
        results["HF fp64"] = hf_run(model.double(), inputs, torch.float64)
        size_gb = (Path(d) / "model.safetensors").stat().st_size / 1e9
        for dtype in ("float32", "float64"):
            t = time.time()
            ours = minis2t2.load(d, dtype=dtype)
            if dtype == "float32":
                load_seconds = time.time() - t
                t = time.time()
                minis2t2.trace(speech_like(160000, seed=12), model=ours, out=Path(d) / "trace.safetensors",
                               num_beams=1, max_new_tokens=20, sampling_rate=16000)
                trace_seconds, trace_mb = time.time() - t, (Path(d) / "trace.safetensors").stat().st_size / 1e6
            t = time.time()
            out = ours(inputs["input_values"], inputs["attention_mask"], decoder_input_ids=IDS)
            results[f"minis2t2 fp{dtype[-2:]}"] = (out.encoder_last_hidden_state, out.logits, time.time() - t)
    print("| compared | encoder_last_hidden_state (after enc_to_dec_proj) max abs err | logits max abs err |")
    print("| --- | --- | --- |")
    for a, b in [("minis2t2 fp32", "HF fp32"), ("minis2t2 fp64", "HF fp64"), ("minis2t2 fp32", "HF fp64"),
                 ("HF fp32", "HF fp64"), ("minis2t2 fp64", "HF fp32")]:
        enc = np.abs(results[a][0].astype(np.float64) - results[b][0]).max()
        logits = np.abs(results[a][1].astype(np.float64) - results[b][1]).max()
        print(f"| {a} vs {b} | {enc:.2e} | {logits:.2e} |")
    print(f"\nscale: encoder output max |x| = {np.abs(results['HF fp64'][0]).max():.2f}, "
          f"logits max |x| = {np.abs(results['HF fp64'][1]).max():.2f}")
    for name, (_, _, seconds) in results.items():
        print(f"{name}: teacher-forced forward {seconds:.1f} s")
    print(f"minis2t2.load of the {size_gb:.2f} GB model.safetensors: {load_seconds:.2f} s")
    print(f"trace of 10 s of audio (greedy, 20 new tokens): {trace_mb:.0f} MB in {trace_seconds:.1f} s")


if __name__ == "__main__":
    main()
