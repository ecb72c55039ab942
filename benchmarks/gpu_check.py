"""The CuPy backend on a GPU: correctness first, then speed.

    python benchmarks/gpu_check.py --out DIR     # on a machine with a GPU and CuPy (one run, under a minute on an H200)
    python benchmarks/gpu_check.py --dry-run     # anywhere: tests/strict_xp.py stands in for CuPy, small sizes

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
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("CUPY_TF32", "0")  # plain fp32 matmuls, like the CPU reference

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/fullsize.py: the full-size architecture
import fullsize

import minis2t2
from minis2t2.compare import compare_dicts, first_divergence
from minis2t2.config import ModelConfig
from minis2t2.loading import expected_weight_shapes
from minis2t2.weights import read_safetensors, write_safetensors

GOLDEN = ROOT / "tests" / "golden"
FULL_ENCODER, FULL_DECODER = fullsize.ENCODER, fullsize.DECODER  # the architecture of tests/test_fullsize.py
SMALL_ENCODER = FULL_ENCODER | dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                    conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
SMALL_DECODER = FULL_DECODER | dict(vocab_size=100, d_model=32, decoder_layers=2, decoder_ffn_dim=64)


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A deterministic test signal at 16 kHz: a few harmonics under a moving envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.3 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


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
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    failures = []
    for variant, spec in sorted(manifest["variants"].items()):
        model = minis2t2.load(GOLDEN / variant / "model", device=device)
        golden = {name: np.asarray(a) for name, (a, _) in read_safetensors(GOLDEN / variant / "golden.safetensors").items()}
        for split, n in (("single", 1), ("batch", 2)):
            record = {}
            out = model(golden[f"{split}/input_values"], golden.get(f"{split}/attention_mask"),
                        labels=np.array(spec["labels"])[:n], record=record)
            reference = {k[len(split) + 1 :]: v for k, v in golden.items() if k.startswith(split + "/")}
            for key in ("input_values", "attention_mask", "loss"):
                reference.pop(key, None)
            bad = first_divergence(compare_dicts(reference, record, atol=manifest["atol"], rtol=manifest["rtol"]))
            if bad is not None:
                failures.append(f"{variant} {split}: {bad}")
            loss = float(golden[f"{split}/loss"].reshape(-1)[0])
            if abs(out.loss - loss) > 1e-5 * (1 + abs(loss)):
                failures.append(f"{variant} {split}: loss {out.loss} vs {loss}")
        for case, kwargs in spec["generation_cases"].items():
            ids = model.generate(golden["batch/input_values"], golden.get("batch/attention_mask"), **kwargs)
            if not np.array_equal(ids, golden[f"generate/{case}"]):
                failures.append(f"{variant} generate/{case}: ids differ")
    return failures


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
        x = torch.from_numpy(speech_like(s, 1)[None]).cuda()
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
        import strict_xp

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
        inputs = cpu.processor(speech_like(6.0 if not args.dry_run else 1.0, 2), sampling_rate=16000)
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
            x = dev.processor(speech_like(s, 1), sampling_rate=16000)
            t = timed(lambda x=x: dev.encode(x["input_values"], x["attention_mask"]), sync)
            rows.append({"seconds": s, "encoder_s": t, "real_time_factor": s / t})
        x = dev.processor(speech_like(decode_seconds, 3), sampling_rate=16000)
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
