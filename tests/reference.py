"""The reference side: tiny random-init transformers models and their recorded activations.

Used by tools/make_goldens.py (frozen goldens) and by the live differential tests. Imports
torch and transformers, which the minis2t2 library itself never does.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    HubertConfig,
    HubertModel,
    Speech2Text2Config,
    Speech2Text2ForCausalLM,
    Speech2Text2Tokenizer,
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

# A small fastBPE vocabulary: ids 0-3 are <s> <pad> </s> <unk>, as in the real checkpoints.
WORDS = ["ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "und", "zig",
         "hundert", "tausend", "zwanzig", "dreißig", "elf", "zwölf"]
MERGES = ["e i", "ei n</w>", "z w", "zw ei</w>", "d r", "dr ei</w>", "u n", "un d</w>", "h u", "hu n",
          "hun d", "hund e", "hunde r", "hunder t</w>", "z e", "ze h", "zeh n</w>", "z i", "zi g</w>"]


def write_tokenizer(folder: Path) -> None:
    """vocab.json + merges.txt, written through HF's own tokenizer so the files are HF's format."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = set()
    for merge in MERGES:
        a, b = merge.split()
        pieces.update([a.replace("</w>", ""), b.replace("</w>", ""), (a + b).replace("</w>", "")])
    letters = sorted(set("".join(WORDS)))
    for piece in sorted(pieces) + letters:
        for token in (piece, piece + "@@"):
            if token not in tokens:
                tokens.append(token)
    (folder / "vocab.tmp.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (folder / "merges.tmp.txt").write_text("\n".join(MERGES) + "\n")
    tok = Speech2Text2Tokenizer(vocab_file=str(folder / "vocab.tmp.json"), merges_file=str(folder / "merges.tmp.txt"))
    tok.save_pretrained(str(folder))
    (folder / "vocab.tmp.json").unlink()
    (folder / "merges.tmp.txt").unlink()


def vocab_size() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(Path(d))
        return len(json.loads((Path(d) / "vocab.json").read_text()))


def build_model(encoder: dict, decoder: dict, seed: int = 0,
                weight_std: float | None = 0.2) -> SpeechEncoderDecoderModel:
    """A SpeechEncoderDecoderModel with random weights of roughly unit-scale activations.

    Weights are drawn N(0, weight_std), or N(0, 1/fan_in) when weight_std is None (for wide
    models), LayerNorm/GroupNorm gains 1 + N(0, 0.1), instead of HF's std-0.02 init, so logits
    are peaked: near-ties between tokens would make id comparisons depend on rounding rather
    than on correctness. The sinusoidal position table is left as is.
    """
    torch.manual_seed(seed)
    enc_type = encoder.pop("model_type", "wav2vec2")
    enc_cfg = (HubertConfig if enc_type == "hubert" else Wav2Vec2Config)(**encoder)
    dec_cfg = Speech2Text2Config(**decoder)
    cfg = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(enc_cfg, dec_cfg)
    cfg.decoder_start_token_id = dec_cfg.decoder_start_token_id
    cfg.pad_token_id = dec_cfg.pad_token_id
    cfg.eos_token_id = dec_cfg.eos_token_id
    enc_model = (HubertModel if enc_type == "hubert" else Wav2Vec2Model)(cfg.encoder)
    model = SpeechEncoderDecoderModel(config=cfg, encoder=enc_model, decoder=Speech2Text2ForCausalLM(cfg.decoder))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_positions.weights"):
                continue
            if re.search(r"norm\.weight$", name):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif weight_std is None and p.dim() >= 2 and "embed_tokens" not in name:
                p.copy_(torch.randn_like(p) / (p[0].numel() ** 0.5))  # fan-in scaling: unit-scale outputs
            elif weight_std is None:
                p.copy_((1.0 if "embed_tokens" in name else 0.1) * torch.randn_like(p))
            else:
                p.copy_(weight_std * torch.randn_like(p))
    model.generation_config = GenerationConfig(
        decoder_start_token_id=dec_cfg.decoder_start_token_id, bos_token_id=dec_cfg.bos_token_id,
        eos_token_id=dec_cfg.eos_token_id, pad_token_id=dec_cfg.pad_token_id, max_length=16,
    )
    return model.eval()


def save_model(model: SpeechEncoderDecoderModel, folder: Path, return_attention_mask: bool) -> None:
    """The full HF layout: config, generation config, preprocessor config, tokenizer files, model.safetensors."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=return_attention_mask,
    ).save_pretrained(str(folder))
    write_tokenizer(folder)


def feature_extractor(folder: Path) -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor.from_pretrained(str(folder))


# Modules whose outputs minis2t2 records under the same names (first element of tuple outputs).
RECORDED = re.compile(
    r"^(encoder|enc_to_dec_proj|decoder\.lm_head"
    r"|encoder\.feature_extractor\.conv_layers\.\d+(\.conv)?|encoder\.feature_projection"
    r"|encoder\.encoder\.(pos_conv_embed|layer_norm|layers\.\d+(\.attention|\.feed_forward)?)"
    r"|decoder\.model\.decoder\.(embed_tokens|embed_positions"
    r"|layers\.\d+(\.self_attn|\.encoder_attn|\.fc2)?))$"
)


def attention_names(out) -> dict:
    """HF's output_attentions tuples under the names minis2t2 records them by: {name: numpy (B, H, Lq, Lk)}."""
    names = {}
    for i, a in enumerate(out.encoder_attentions):
        names[f"encoder.encoder.layers.{i}.attention.attn_weights"] = a.detach().clone().numpy()
    for i, (self_attn, cross) in enumerate(zip(out.decoder_attentions, out.cross_attentions)):
        names[f"decoder.model.decoder.layers.{i}.self_attn.attn_weights"] = self_attn.detach().clone().numpy()
        names[f"decoder.model.decoder.layers.{i}.encoder_attn.attn_weights"] = cross.detach().clone().numpy()
    return names


def record(model, input_values, attention_mask, decoder_input_ids=None, labels=None) -> tuple[dict, object]:
    """Run a teacher-forced forward with hooks and output_attentions=True:
    ({module name or attention name: float32 numpy array}, HF output)."""
    acts, hooks = {}, []
    for name, module in model.named_modules():
        if RECORDED.match(name):
            def hook(mod, args, out, name=name):
                if isinstance(out, (tuple, list)):
                    out = out[0]
                elif hasattr(out, "last_hidden_state"):
                    out = out.last_hidden_state
                acts[name] = out.detach().clone().numpy()
            hooks.append(module.register_forward_hook(hook))
        if name in ("encoder.encoder.layers.0", "decoder.model.decoder.layers.0"):  # what the first layer reads
            def pre_hook(mod, args, name=name):
                acts[f"{name}.input"] = args[0].detach().clone().numpy()
            hooks.append(module.register_forward_pre_hook(pre_hook))
    try:
        with torch.no_grad():
            out = model(
                input_values=torch.from_numpy(np.asarray(input_values)),
                attention_mask=None if attention_mask is None else torch.from_numpy(np.asarray(attention_mask)),
                decoder_input_ids=(None if decoder_input_ids is None
                                   else torch.from_numpy(np.asarray(decoder_input_ids))),
                labels=None if labels is None else torch.from_numpy(np.asarray(labels)),
                output_attentions=True,
            )
    finally:
        for h in hooks:
            h.remove()
    return acts | attention_names(out), out


def gradients(model, input_values, attention_mask, labels) -> dict[str, np.ndarray]:
    """torch autograd's gradient of the loss for every trainable parameter, in eval mode (no
    dropout), named as ``named_parameters()`` names them (tied weights once); a parameter the loss
    does not reach (masked_spec_embed outside training) gets zeros."""
    model.zero_grad(set_to_none=True)
    out = model(input_values=torch.from_numpy(np.asarray(input_values)),
                attention_mask=None if attention_mask is None else torch.from_numpy(np.asarray(attention_mask)),
                labels=torch.from_numpy(np.asarray(labels)))
    out.loss.backward()
    grads = {name: np.zeros(tuple(p.shape), np.float32) if p.grad is None else p.grad.numpy().copy()
             for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


def generate(model, input_values, attention_mask, **kwargs) -> np.ndarray:
    with torch.no_grad():
        ids = model.generate(
            input_values=torch.from_numpy(np.asarray(input_values)),
            attention_mask=None if attention_mask is None else torch.from_numpy(np.asarray(attention_mask)),
            **kwargs,
        )
    return ids.numpy()


def torch_step(folder, dtype: str, inputs: dict, train: bool = False, around=None):
    """transformers' loss and torch autograd's gradients for the processor's ``inputs``, the model
    loaded from ``folder`` in ``dtype`` ("float32" / "float64"), in eval() or train() mode.
    ``around(model, torch_dtype)``, a context manager, wraps the forward (test_training_mode
    injects its random draws that way).
    -> (loss, {name: gradient or None for every trainable parameter}, what ``around`` yielded)"""
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    hf = SpeechEncoderDecoderModel.from_pretrained(str(folder)).train(train).to(torch_dtype)
    mask = inputs.get("attention_mask")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # HF builds its attention masks in the default dtype
    try:
        with (around or (lambda model, dt: contextlib.nullcontext()))(hf, torch_dtype) as yielded:
            out = hf(input_values=torch.tensor(inputs["input_values"], dtype=torch_dtype),
                     attention_mask=None if mask is None else torch.from_numpy(mask),
                     labels=torch.from_numpy(inputs["labels"]))
        out.loss.backward()
    finally:
        torch.set_default_dtype(previous)
    grads = {name: None if p.grad is None else p.grad.numpy() for name, p in hf.named_parameters() if p.requires_grad}
    return out.loss.item(), grads, yielded
