"""Write a minis2t2-format trace (docs/verify-your-implementation.md) from transformers itself.

    python -m tools.trace_transformers AUDIO [AUDIO ...] --model DIR --out hf.safetensors [--num-beams N]
        [--max-new-tokens N] [--dtype float32|float64]

Needs torch and transformers 4.40.2 (the reference; minis2t2 itself never imports them). Several
audio files make one padded batch, as ``minis2t2 trace`` makes it.
    minis2t2 compare hf.safetensors mine.safetensors

Forward hooks on the HF modules record each module's output under its module path; decoder
modules fire once per decoding step and are numbered by step (the lm_head closes a step).
Attention probabilities come from generate(output_attentions=True) and are placed in model
order, each before the output of the module that computed it. The
audio is read and resampled with minis2t2.load_audio so both sides start from the same
samples; everything after that (processor, model, generate, tokenizer) is transformers 4.40.2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import Speech2Text2Tokenizer, SpeechEncoderDecoderModel, Wav2Vec2FeatureExtractor

from minis2t2.audio import load_audio
from minis2t2.trace import FORMAT, config_sha256, save_trace

ENCODER_PATHS = r"^(encoder|enc_to_dec_proj|encoder\.feature_extractor\.conv_layers\.\d+(\.conv)?" \
                r"|encoder\.feature_projection|encoder\.encoder\.(pos_conv_embed|layer_norm" \
                r"|layers\.\d+(\.attention|\.feed_forward)?))$"
DECODER_PATHS = r"^decoder\.(lm_head|model\.decoder\.(embed_tokens|embed_positions|layers\.\d+(\.self_attn" \
                r"|\.encoder_attn|\.fc2)?))$"


def attention_tensors(out) -> dict:
    """generate()'s attentions under minis2t2's trace names: encoder layer i ->
    encoder.encoder.layers.<i>.attention.attn_weights (B*... , H, T, T); decoding step t, layer i ->
    step.<t>.decoder.model.decoder.layers.<i>.self_attn.attn_weights (R, H, 1, t + 1) and
    .encoder_attn.attn_weights (R, H, 1, T)."""
    tensors = {}
    for i, a in enumerate(out.encoder_attentions):
        tensors[f"encoder.encoder.layers.{i}.attention.attn_weights"] = a.numpy()
    for t, (self_layers, cross_layers) in enumerate(zip(out.decoder_attentions, out.cross_attentions)):
        for i, (a, c) in enumerate(zip(self_layers, cross_layers)):
            tensors[f"step.{t}.decoder.model.decoder.layers.{i}.self_attn.attn_weights"] = a.numpy()
            tensors[f"step.{t}.decoder.model.decoder.layers.{i}.encoder_attn.attn_weights"] = c.numpy()
    return tensors


def in_model_order(tensors: dict, attentions: dict) -> dict:
    """Each attention map just before the output of the module it belongs to (as minis2t2 records)."""
    owner = {name.replace(".attn_weights", ""): name for name in attentions}  # ...attention, ...self_attn, ...
    ordered = {}
    for name, value in tensors.items():
        if name in owner:
            ordered[owner[name]] = attentions[owner[name]]
        ordered[name] = value
    return ordered


def trace_transformers(audio_path, model_dir, num_beams=None, max_new_tokens=None, dtype="float32"):
    import re

    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    torch.set_default_dtype(torch_dtype)  # HF builds its attention masks in the default dtype
    model = SpeechEncoderDecoderModel.from_pretrained(str(model_dir)).to(torch_dtype).eval()
    fe = Wav2Vec2FeatureExtractor.from_pretrained(str(model_dir))
    tokenizer = Speech2Text2Tokenizer.from_pretrained(str(model_dir))
    batch = isinstance(audio_path, (list, tuple))
    raws = [load_audio(path, fe.sampling_rate) for path in (audio_path if batch else [audio_path])]
    inputs = fe(raws, sampling_rate=fe.sampling_rate, padding=True, return_tensors="np")
    tensors = {f"input.raw.{b}": raw for b, raw in enumerate(raws)} if batch else {"input.raw": raws[0]}
    tensors["input.values"] = inputs["input_values"]
    if "attention_mask" in inputs:
        tensors["input.attention_mask"] = inputs["attention_mask"].astype(np.int64)

    step = {"t": 0}
    hooks = []

    def first(out):
        out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "last_hidden_state", out)
        return out.detach().clone().numpy()

    beams = num_beams or model.generation_config.num_beams

    def encoder_hook(m, a, out, name):
        # HF applies enc_to_dec_proj inside every decoding step to the beam-expanded encoder
        # output (each input repeated num_beams times); the trace keeps one projection per input.
        if name == "enc_to_dec_proj":
            if name in tensors:
                return
            tensors[name] = first(out)[::beams]
        else:
            tensors[name] = first(out)

    for name, module in model.named_modules():
        if re.match(ENCODER_PATHS, name):
            hooks.append(module.register_forward_hook(lambda m, a, out, name=name: encoder_hook(m, a, out, name)))
        elif re.match(DECODER_PATHS, name):
            def hook(m, a, out, name=name):
                tensors[f"step.{step['t']}.{name}"] = first(out)
                if name == "decoder.lm_head":
                    step["t"] += 1
            hooks.append(module.register_forward_hook(hook))
        if name == "encoder.encoder.layers.0":  # what the first layer reads
            def encoder_pre_hook(m, a, name=name):
                tensors[f"{name}.input"] = a[0].detach().clone().numpy()
            hooks.append(module.register_forward_pre_hook(encoder_pre_hook))
        if name == "decoder.model.decoder.layers.0":  # its input: the scaled embeddings plus positions
            def pre_hook(m, a, name=name):
                tensors[f"step.{step['t']}.{name}.input"] = a[0].detach().clone().numpy()
            hooks.append(module.register_forward_pre_hook(pre_hook))
    kwargs = {k: v for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens)) if v is not None}
    with torch.no_grad():
        out = model.generate(input_values=torch.from_numpy(inputs["input_values"]).to(torch_dtype),
                             attention_mask=None if "attention_mask" not in inputs else
                             torch.from_numpy(inputs["attention_mask"]), output_attentions=True,
                             return_dict_in_generate=True, **kwargs)
    for h in hooks:
        h.remove()
    ids = out.sequences.numpy()
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    tokens = [tokenizer.convert_ids_to_tokens(row.tolist()) for row in ids]
    tensors = in_model_order(tensors, attention_tensors(out))
    tensors["output.ids"] = ids.astype(np.int64)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    metadata = {
        "format": FORMAT,
        "producer": f"transformers {transformers.__version__} torch {torch.__version__}",
        "config_sha256": config_sha256(config),
        "dtype": dtype,
        "num_beams": kwargs.get("num_beams", model.generation_config.num_beams),
        "max_new_tokens": kwargs.get("max_new_tokens", ""),
        "text": json.dumps(texts, ensure_ascii=False) if batch else texts[0],
        "tokens": json.dumps(tokens if batch else tokens[0], ensure_ascii=False),
    }
    torch.set_default_dtype(torch.float32)
    return tensors, metadata


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audio", type=Path, nargs="+")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--num-beams", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = p.parse_args()
    audio = args.audio if len(args.audio) > 1 else args.audio[0]
    tensors, metadata = trace_transformers(audio, args.model, args.num_beams, args.max_new_tokens, args.dtype)
    save_trace(args.out, tensors, metadata)
    print(f"{args.out}: {len(tensors)} tensors, text {metadata['text']!r}")


if __name__ == "__main__":
    main()
