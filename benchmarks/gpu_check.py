"""The CuPy backend on a GPU: correctness first, then speed.

    python -m benchmarks.gpu_check --out DIR     # on a machine with a GPU and CuPy (one run, under a minute on an H200)
    python -m benchmarks.gpu_check --dry-run     # anywhere: tests/strict_xp.py stands in for CuPy, small sizes

1. Goldens on CuPy: every variant in tests/golden, teacher-forced with every intermediate and
   the loss, plus every generation case, against the values transformers 4.40.2 recorded (the
   manifest's tolerance, atol = rtol = 1e-4; ids exactly). fp32 with TF32 off (CUPY_TF32=0).
2. The full-size s2t-wav2vec2-large-en-de architecture (random weights, written by this script)
   on CuPy against minis2t2's own NumPy result: encoder output and logits on 6 s of audio (max
   abs error reported; atol 1e-3 on activations of unit scale, since 24 fp32 layers summed in
   another order drift by ~1e-5 relative), greedy ids exactly.
3. Timings on the GPU: the encoder on 10 s and 30 s of audio (real-time factor = audio seconds /
   encoder seconds; target >= 200 for 30 s on an H200), greedy decoding per token (the difference
   between 40 and 8 new tokens on 5 s, so the encoder cancels out), peak memory of CuPy's pool.
   Where torch with CUDA and transformers are importable: transformers' Wav2Vec2Model (same
   architecture, its own random weights: timing only) on the same GPU, TF32 off.

It imports only numpy, scipy and cupy (torch and transformers optionally): the GPU machine has no
soundfile, safetensors or transformers 4.40, and needs none of them here. Prints a Markdown
report; --out also writes gpu_check.json and gpu_check.md there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUPY_TF32", "0")  # plain fp32 matmuls, like the CPU reference, set before CuPy loads

import numpy as np

import minis2t2
from minis2t2.config import ModelConfig
from minis2t2.loading import expected_weight_shapes
from minis2t2.weights import write_safetensors
from tests import fullsize, goldens
from tests.signals import speech_like

FULL_ENCODER, FULL_DECODER = fullsize.ENCODER, fullsize.DECODER  # the architecture of tests/test_fullsize.py
SMALL_ENCODER = FULL_ENCODER | dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                    conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
SMALL_DECODER = FULL_DECODER | dict(vocab_size=100, d_model=32, decoder_layers=2, decoder_ffn_dim=64)


def speech_seconds(seconds: float, seed: int) -> np.ndarray:
    """``seconds`` of the suite's test signal (tests/signals.py) at 16 kHz."""
    return speech_like(int(seconds * 16000), seed)


def write_random_model(folder: Path, encoder: dict, decoder: dict) -> None:
    """An HF-layout folder with N(0, 1/fan_in) weights (unit-scale activations), norms near 1."""
    config = {"model_type": "speech-encoder-decoder", "decoder_start_token_id": 2, "pad_token_id": 1,
              "encoder": {"model_type": "wav2vec2", **encoder},
              "decoder": {"model_type": "speech_to_text_2", **decoder, "bos_token_id": 0, "pad_token_id": 1,
                          "eos_token_id": 2, "decoder_start_token_id": 2}}
    config["encoder"] = {k: list(v) if isinstance(v, tuple) else v for k, v in config["encoder"].items()}
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in expected_weight_shapes(ModelConfig.from_dict(config)).items():
        if name.endswith("embed_positions.weights"):
            continue  # minis2t2 computes the sinusoidal table, as HF does when it is absent
        if "norm" in name and name.endswith("weight") or name.endswith("weight_g"):
            w = 1 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            w = 0.1 * rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        tensors[name] = (w.astype(np.float32), "F32")
    write_safetensors(folder / "model.safetensors", tensors)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": 16000,
        "padding_value": 0.0, "do_normalize": True, "return_attention_mask": True}))
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + [f"t{i}" for i in range(decoder["vocab_size"] - 4)]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))


def check_goldens(device: str) -> list[str]:
    """Every golden variant on the device; returns the failures (empty: all agree)."""
    spec = goldens.manifest()
    found = []
    for variant, settings in sorted(spec["variants"].items()):
        model, golden = goldens.load_variant(variant, device=device)
        found += goldens.failures(model, golden, variant, settings, atol=spec["atol"], rtol=spec["rtol"],
                                  grad_tol=spec["grad_tol"])
    return found


def timed(fn, sync, repeats: int = 3) -> float:
    """Best of ``repeats`` after one warm-up, with the device synchronised around each call."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def transformers_encoder_times(encoder: dict, seconds: list[float]) -> dict | str:
    """transformers' Wav2Vec2Model on the same GPU (fp32, TF32 off), or why it was not timed."""
    try:
        import torch
        from transformers import Wav2Vec2Config, Wav2Vec2Model
    except ImportError as e:
        return f"not timed: {e}"
    if not torch.cuda.is_available():
        return "not timed: torch has no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = Wav2Vec2Model(Wav2Vec2Config(**encoder)).cuda().eval()
    out = {}
    for s in seconds:
        x = torch.from_numpy(speech_seconds(s, 1)[None]).cuda()
        mask = torch.ones_like(x, dtype=torch.long)
        with torch.no_grad():
            out[s] = timed(lambda x=x, m=mask: model(x, attention_mask=m), torch.cuda.synchronize)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tests/strict_xp.py instead of CuPy, small model and audio")
    p.add_argument("--out", type=Path, help="write gpu_check.json and gpu_check.md here")
    args = p.parse_args()

    if args.dry_run:
        from tests import strict_xp

        minis2t2.loading.device_module = lambda name: strict_xp
        sync, pool_bytes, gpu = (lambda: None), (lambda: 0), "dry run: tests/strict_xp.py on the CPU"
        encoder, decoder, lengths, decode_seconds = SMALL_ENCODER, SMALL_DECODER, [1.0, 2.0], 1.0
    else:
        import cupy

        pool = cupy.get_default_memory_pool()
        sync, pool_bytes = cupy.cuda.Device().synchronize, pool.total_bytes
        gpu = f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, CuPy {cupy.__version__}"
        encoder, decoder, lengths, decode_seconds = FULL_ENCODER, FULL_DECODER, [10.0, 30.0], 5.0
    report = {"machine": f"{gpu}; {platform.processor() or platform.machine()}; numpy {np.__version__}"}
    lines = [f"# GPU check\n\n{report['machine']}\n"]

    start = time.perf_counter()
    failures = check_goldens("cuda")
    report["goldens"] = {"failures": failures, "seconds": time.perf_counter() - start}
    lines.append(f"- goldens on the device: {'all agree' if not failures else 'FAILED: ' + '; '.join(failures)} "
                 f"(atol = rtol = 1e-4, ids exact; {report['goldens']['seconds']:.0f} s)")

    with tempfile.TemporaryDirectory() as d:
        write_random_model(Path(d), encoder, decoder)
        cpu, dev = minis2t2.load(d), minis2t2.load(d, device="cuda")
        inputs = cpu.processor(speech_seconds(6.0 if not args.dry_run else 1.0, 2), sampling_rate=16000)
        prefix = np.array([[2, 5, 77 % decoder["vocab_size"], 9]])
        ours = [m(inputs["input_values"], inputs["attention_mask"], decoder_input_ids=prefix) for m in (cpu, dev)]
        errors = {"encoder": float(np.abs(ours[0].encoder_last_hidden_state - ours[1].encoder_last_hidden_state).max()),
                  "logits": float(np.abs(ours[0].logits - ours[1].logits).max())}
        ids = [m.generate(inputs["input_values"], inputs["attention_mask"], max_new_tokens=12) for m in (cpu, dev)]
        report["fullsize_vs_numpy"] = errors | {"greedy_ids_identical": bool(np.array_equal(*ids))}
        ok = max(errors.values()) < 1e-3 and np.array_equal(*ids)
        lines.append(f"- full-size architecture, device vs NumPy: max abs error encoder {errors['encoder']:.1e}, "
                     f"logits {errors['logits']:.1e}; greedy ids {'identical' if np.array_equal(*ids) else 'DIFFER'}"
                     f" -> {'OK' if ok else 'FAILED'}")

        rows = []
        for s in lengths:
            x = dev.processor(speech_seconds(s, 1), sampling_rate=16000)
            t = timed(lambda x=x: dev.encode(x["input_values"], x["attention_mask"]), sync)
            rows.append({"seconds": s, "encoder_s": t, "real_time_factor": s / t})
        x = dev.processor(speech_seconds(decode_seconds, 3), sampling_rate=16000)
        run = {n: timed(lambda n=n: dev.generate(x["input_values"], x["attention_mask"], max_new_tokens=n,
                                                min_new_tokens=n), sync) for n in (8, 40)}
        per_token_ms = 1e3 * (run[40] - run[8]) / 32
        theirs = transformers_encoder_times(encoder, lengths) if not args.dry_run else "not timed in a dry run"
    report.update(encoder=rows, greedy_per_token_ms=per_token_ms, pool_peak_mb=pool_bytes() / 1e6,
                  transformers_encoder=theirs)

    lines.append("\n| figure | minis2t2 (CuPy) | transformers (torch CUDA) |\n| --- | --- | --- |")
    for r in rows:
        other = f"{theirs[r['seconds']]:.3f} s" if isinstance(theirs, dict) else "—"
        lines.append(f"| encoder, {r['seconds']:.0f} s audio | {r['encoder_s']:.3f} s "
                     f"(real-time factor {r['real_time_factor']:.0f}x) | {other} |")
    lines.append(f"| greedy decoding, per token | {per_token_ms:.2f} ms | — |")
    lines.append(f"| CuPy memory pool at the end | {report['pool_peak_mb']:.0f} MB | — |")
    if isinstance(theirs, str):
        lines.append(f"\ntransformers: {theirs}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
        (args.out / "gpu_check.md").write_text(text)


if __name__ == "__main__":
    main()
