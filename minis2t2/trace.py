"""Trace files: every named tensor of one translation (or a padded batch), for checking another
implementation.

A trace is one safetensors file. Tensor names (all float32/float64 arrays unless noted; B = 1, or
the number of files in a batch trace):

    input.raw                       (N,)        the waveform at 16 kHz, before the processor
                                                (a batch: input.raw.<b>, one per file)
    input.values                    (B, N)      processor output (zero mean, unit variance), padded
    input.attention_mask            (B, N) I64  when the model's processor returns one
    <encoder HF module path>        HF layout   encoder.feature_extractor.conv_layers.<i>.conv (B, C, T) (the
                                                conv alone, before norm and activation),
                                                encoder.feature_extractor.conv_layers.<i> (B, C, T),
                                                encoder.feature_projection, encoder.encoder.pos_conv_embed,
                                                encoder.encoder.layers.<i>.attention / .feed_forward (sublayer
                                                outputs before their residual add), encoder.encoder.layers.<i>,
                                                encoder.encoder.layer_norm, encoder (last hidden state),
                                                enc_to_dec_proj (B, T, C)
    encoder.encoder.layers.<i>.attention.attn_weights
                                    (B, H, T, T) self-attention probabilities (HF encoder_attentions[i])
    step.<t>.<decoder HF path>      (R, 1, C)   decoding step t (0 = the start token), R = B * num_beams rows
                                                in search order: decoder.model.decoder.embed_tokens (unscaled),
                                                .embed_positions, .layers.0.input (embed_tokens * sqrt(d_model)
                                                + positions: the first layer's input), .layers.<i>.self_attn /
                                                .encoder_attn / .fc2 (sublayer outputs before their residual
                                                add), .layers.<i>
    step.<t>.decoder.model.decoder.layers.<i>.self_attn.attn_weights
                                    (R, H, 1, t + 1) causal self-attention probabilities
    step.<t>.decoder.model.decoder.layers.<i>.encoder_attn.attn_weights
                                    (R, H, 1, T) cross-attention probabilities over the encoder frames
    step.<t>.decoder.lm_head        (R, 1, V)   the step's logits
    output.ids                      (B, L) I64  generated ids, decoder start token first

With labels (``trace(..., labels=TEXT)``, ``minis2t2 trace --labels TEXT``), for checking a port's
training code backward, layer by layer:

    loss                            ()          model(..., labels=...).loss for that text
    grad.<parameter name>           its shape   d loss / d parameter, named as transformers'
                                                named_parameters() names it
    grad.<activation name>          its shape   d loss / d that module's output: encoder.feature_extractor.
                                                conv_layers.<i> (1, C, T), encoder.feature_projection,
                                                encoder.encoder.pos_conv_embed, encoder.encoder.layers.<i>,
                                                encoder.encoder.layer_norm, encoder, enc_to_dec_proj;
                                                decoder.model.decoder.layers.<i> and decoder.lm_head for all
                                                steps at once (teacher forcing): (1, S, C), (1, S, V)

The safetensors ``__metadata__`` (all strings) holds: ``format`` = "minis2t2-trace/1",
``producer`` (e.g. "minis2t2 0.1.0 numpy 2.4.6"), ``config_sha256`` (sha256 of config.json
re-serialised with sorted keys and no spaces), ``dtype``, ``num_beams``, ``max_new_tokens``,
``text`` (the decoded output), ``tokens`` (a JSON list of the tokens of output.ids' first row) and
``order`` (a JSON list of the tensor names in model order); a batch trace has ``text`` and ``tokens``
as JSON lists with one entry per row, and ``trace(..., only=[...])`` (``--only``) adds ``only``, the
patterns that kept a partial trace. Only ``format`` is required of a port's trace.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path

import numpy as np

from .audio import waveform
from .backend import to_numpy
from .errors import InputError, TraceError, WeightsError
from .weights import read_safetensors, write_safetensors

FORMAT = "minis2t2-trace/1"
DTYPE_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64",
               np.dtype(np.int32): "I32", np.dtype(np.float16): "F16"}


def config_sha256(config: dict) -> str:
    """The model's identity in a trace: sha256 of config.json re-serialised canonically."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_trace(path: str | Path, tensors: dict, metadata: dict) -> None:
    """Write tensors (in the dict's order, which is recorded as ``order``) and string metadata."""
    arrays = {name: np.ascontiguousarray(to_numpy(value)) for name, value in tensors.items()}
    meta = {k: str(v) for k, v in metadata.items()} | {"format": FORMAT, "order": json.dumps(list(arrays))}
    write_safetensors(path, {n: (a, DTYPE_NAMES[a.dtype]) for n, a in arrays.items()}, metadata=meta)


def load_trace(path: str | Path) -> tuple[dict, dict]:
    """A trace file -> ({name: array} in model order, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}, not a trace")
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n) if 2 <= n <= size - 8 else b""
    try:
        metadata = json.loads(header).get("__metadata__") or {}
    except (ValueError, RecursionError, AttributeError):
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = "a safetensors file without it" if isinstance(metadata, dict) else "not a safetensors file"
        raise TraceError(f"{path}: not a minis2t2 trace (expected safetensors with metadata format={FORMAT}; "
                         f"found {found})")
    try:
        tensors = {name: np.asarray(array) for name, (array, _) in read_safetensors(path).items()}
        order = json.loads(metadata.get("order", "[]"))
    except (WeightsError, ValueError) as e:
        raise TraceError(f"{path}: damaged trace ({e})") from e
    ordered = {name: tensors[name] for name in order if name in tensors}
    ordered.update({name: tensors[name] for name in tensors if name not in ordered})
    return ordered, metadata


def trace(audio, model=None, out: str | Path | None = None, num_beams: int | None = None,
          max_new_tokens: int | None = None, dtype: str = "float32", sampling_rate: int | None = None,
          device: str = "cpu", labels: str | list | None = None, only: list[str] | None = None) -> tuple[dict, dict]:
    """Translate one utterance, or a padded batch, recording every named tensor; optionally write the trace file.

    ``audio``: a file path or a mono waveform at ``sampling_rate``, or a list of them (a batch:
    padded as the processor pads, so a port can check its masks). ``model``: a loaded Model or a
    folder (default: the shipped model). ``labels``: a target text (a list, one per item, for a
    batch); then the loss for it and the gradient of every parameter and recorded activation are
    traced too. ``only``: name patterns (globs; a name without a wildcard also selects everything
    under it, so "encoder" selects encoder.*) to keep a partial trace; the inputs are always kept.
    Returns (tensors, metadata) as ``load_trace`` would.
    """
    from . import __version__
    from .loading import default_model, load
    from .model import Model

    if not isinstance(model, Model):
        model = load(model or default_model(), dtype=dtype, device=device)
    rate = model.processor.sampling_rate
    batch = isinstance(audio, (list, tuple))
    items = list(audio) if batch else [audio]
    if not items:
        raise InputError("trace: no audio given")
    raws = [waveform(item, sampling_rate, rate) for item in items]
    inputs = model.processor(raws if batch else raws[0], sampling_rate=rate)
    tensors = {f"input.raw.{b}": raw for b, raw in enumerate(raws)} if batch else {"input.raw": raws[0]}
    tensors["input.values"] = inputs["input_values"]
    if "attention_mask" in inputs:
        tensors["input.attention_mask"] = inputs["attention_mask"].astype(np.int64)
    kwargs = {k: v for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens)) if v is not None}
    record = {}
    ids = model.generate(inputs["input_values"], inputs.get("attention_mask"), record=record, **kwargs)
    tensors.update(record)
    tensors["output.ids"] = ids
    if labels is not None:
        texts = labels if isinstance(labels, (list, tuple)) else [labels]
        if len(texts) != len(items):
            raise InputError(f"labels: {len(texts)} text(s) for {len(items)} audio input(s); give one per input")
        for text in texts:
            unknown = model.tokenizer.unknown_pieces(text)
            if unknown:
                raise InputError(f"labels: the model's vocabulary cannot spell {text[:60]!r} (no token for {unknown[:3]})")
        target = model.processor(text=texts if batch else texts[0])["labels"]  # (B, S): the texts' ids, </s>, -100
        gradients = {}
        loss, grads = model.loss_and_grads(inputs["input_values"], inputs.get("attention_mask"), labels=target,
                                           record=gradients)
        tensors["loss"] = np.asarray(loss, dtype=model.dtype)
        tensors.update(gradients)
        tensors.update({f"grad.{name}": g for name, g in grads.items()})
    if only:
        tensors = {name: value for name, value in tensors.items() if name.startswith("input.") or selected(name, only)}
    texts = model.tokenizer.batch_decode(ids, skip_special_tokens=True)
    tokens = [[model.tokenizer.decoder.get(int(i), model.tokenizer.unk_token) for i in row] for row in ids]
    metadata = {
        "format": FORMAT,
        "producer": f"minis2t2 {__version__} numpy {np.__version__}",
        "config_sha256": config_sha256(model.config.raw),
        "dtype": str(model.dtype),
        "num_beams": kwargs.get("num_beams", model.generation_config.num_beams),
        "max_new_tokens": kwargs.get("max_new_tokens", ""),
        "text": json.dumps(texts, ensure_ascii=False) if batch else texts[0],
        "tokens": json.dumps(tokens if batch else tokens[0], ensure_ascii=False),
    }
    if labels is not None:
        metadata["labels"] = json.dumps(list(labels), ensure_ascii=False) if batch else labels
    if only:
        metadata["only"] = json.dumps(list(only))
    if out is not None:
        save_trace(out, tensors, metadata)
    metadata["order"] = json.dumps(list(tensors))
    return {k: to_numpy(v) for k, v in tensors.items()}, {k: str(v) for k, v in metadata.items()}


def selected(name: str, patterns: list[str]) -> bool:
    """Does a ``--only`` pattern select ``name``? A glob, or a prefix: "encoder" selects
    "encoder" and "encoder.<anything>"; "step.0.*" selects the first decoding step."""
    return any(fnmatch.fnmatchcase(name, p) or name.startswith(p + ".") for p in patterns)
