"""Write tests/golden/: tiny random-init transformers models and everything they compute.

For each variant of the matrix below this builds a SpeechEncoderDecoderModel with
transformers 4.40.2 (torch CPU), saves it in full HF layout under tests/golden/<variant>/,
and records, for a single utterance and for a padded batch of two: the processor output,
every intermediate under its HF module path (forward hooks), logits and loss, the gradient of
every trainable parameter (torch autograd, eval mode), and the ids of several greedy and
beam-search configurations. The reference produces every value here;
minis2t2 is not imported.

    python -m tools.make_goldens            # rewrites tests/golden/ (~15 MB)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file

from tests import reference as R
from tests.signals import speech_like

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "tests" / "golden"
ATOL = RTOL = 1e-4  # fp32; observed differences are ~5e-6 on unit-scale activations (summation order)
# fp32 gradients, relative to the split's largest gradient: a gradient that is truly zero (every attention
# k_proj.bias: softmax ignores a constant added to a row of scores) holds rounding noise on both sides
GRAD_TOL = 1e-4

TINY_ENCODER = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
)
TINY_DECODER = dict(d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=48,
                    max_target_positions=64)

VARIANTS = {
    "base_group_postln": dict(
        description="wav2vec2-base style: GroupNorm conv 0, no conv bias, post-LN encoder, no attention "
                    "mask, relu decoder, tied lm_head, scaled embeddings, no enc_to_dec_proj",
        encoder=dict(TINY_ENCODER, feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
        decoder=dict(TINY_DECODER, activation_function="relu", tie_word_embeddings=True, scale_embedding=True),
        return_attention_mask=False,
    ),
    "large_layer_stable_proj": dict(
        description="s2t-wav2vec2-large style: LayerNorm convs with bias, stable (pre-LN) encoder, attention "
                    "mask, enc_to_dec_proj 32->24, untied lm_head, gelu decoder",
        encoder=dict(TINY_ENCODER, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
        decoder=dict(TINY_DECODER, d_model=24, activation_function="gelu", tie_word_embeddings=False),
        return_attention_mask=True,
    ),
    "hubert_noprojln": dict(
        description="HuBERT encoder without feature-projection LayerNorm, layer-norm convs, stable LN, odd "
                    "positional kernel (no frame dropped), relu decoder",
        encoder=dict(TINY_ENCODER, model_type="hubert", feat_extract_norm="layer", do_stable_layer_norm=True,
                     conv_bias=True, feat_proj_layer_norm=False, num_conv_pos_embeddings=15),
        decoder=dict(TINY_DECODER, activation_function="relu", tie_word_embeddings=False),
        return_attention_mask=True,
    ),
    "noscale_gelunew_silu": dict(
        description="scale_embedding off, gelu_new encoder FFN, silu decoder, layer-norm post-LN encoder "
                    "with attention mask, tied lm_head",
        encoder=dict(TINY_ENCODER, feat_extract_norm="layer", do_stable_layer_norm=False, hidden_act="gelu_new"),
        decoder=dict(TINY_DECODER, activation_function="silu", scale_embedding=False, tie_word_embeddings=True),
        return_attention_mask=True,
    ),
}


def generation_cases(frequent_token: int) -> dict[str, dict]:
    """generate() settings to check. ``frequent_token`` (the reference's first greedy token) is used
    as EOS in some cases so hypotheses actually finish and the EOS/pad/finalize paths run."""
    return {
        "greedy": {},
        "beam4": {"num_beams": 4},
        "beam4_eos_ret2": {"num_beams": 4, "num_return_sequences": 2, "eos_token_id": frequent_token,
                           "length_penalty": 0.5},
        "beam5_eos_early": {"num_beams": 5, "eos_token_id": frequent_token, "early_stopping": True,
                            "max_new_tokens": 10},
        "beam4_never_norepeat": {"num_beams": 4, "early_stopping": "never", "no_repeat_ngram_size": 2,
                                 "repetition_penalty": 1.3, "min_new_tokens": 3},
        "greedy_eos_minlen": {"eos_token_id": frequent_token, "min_length": 4, "max_length": 12},
    }


def main() -> None:
    torch.set_num_threads(2)
    if OUT.exists():
        shutil.rmtree(OUT)
    manifest = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "atol": ATOL,
        "rtol": RTOL,
        "note": "every value produced by transformers; activations: |minis2t2 - golden| <= atol + rtol*|golden|; "
                "gradients (<split>/grad/<parameter>): |minis2t2 - golden| <= grad_tol * (|golden| + the largest "
                "gradient of the split); ids exactly",
        "grad_tol": GRAD_TOL,
        "variants": {},
    }
    audio = [speech_like(3200, seed=0), speech_like(2400, seed=1)]
    labels = np.array([[5, 6, 7, 2, -100], [8, 9, 2, -100, -100]], dtype=np.int64)
    V = R.vocab_size()
    for seed, (name, v) in enumerate(VARIANTS.items()):
        folder = OUT / name
        model = R.build_model(dict(v["encoder"]), dict(v["decoder"], vocab_size=V), seed=seed)
        R.save_model(model, folder / "model", v["return_attention_mask"])
        fe = R.feature_extractor(folder / "model")
        golden = {"raw/0": audio[0], "raw/1": audio[1]}
        for split, items, lab in (("single", audio[:1], labels[:1]), ("batch", audio, labels)):
            inputs = fe(items, sampling_rate=16000, padding=True, return_tensors="np")
            mask = inputs.get("attention_mask")
            golden[f"{split}/input_values"] = inputs["input_values"]
            if mask is not None:
                golden[f"{split}/attention_mask"] = mask
            acts, out = R.record(model, inputs["input_values"], mask, labels=lab)
            for key, value in acts.items():
                golden[f"{split}/{key}"] = value
            golden[f"{split}/loss"] = np.array(out.loss.item(), dtype=np.float32)
            for param, grad in R.gradients(model, inputs["input_values"], mask, lab).items():
                golden[f"{split}/grad/{param}"] = grad
        inputs = fe(audio, sampling_rate=16000, padding=True, return_tensors="np")
        mask = inputs.get("attention_mask")
        frequent = int(R.generate(model, inputs["input_values"], mask)[0, 1])
        cases = generation_cases(frequent)
        for case, kwargs in cases.items():
            golden[f"generate/{case}"] = R.generate(model, inputs["input_values"], mask, **kwargs)
        golden["generate/single_greedy"] = R.generate(model, golden["single/input_values"],
                                                      golden.get("single/attention_mask"))
        save_file({k: np.ascontiguousarray(val) for k, val in golden.items()}, str(folder / "golden.safetensors"))
        manifest["variants"][name] = {
            "description": v["description"],
            "return_attention_mask": v["return_attention_mask"],
            "labels": labels.tolist(),
            "generation_cases": cases,
        }
        print(f"{name}: {len(golden)} tensors")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
