"""Where a model comes from: a HF-layout folder, a hub id, or a model shipped with minis2t2.

``load`` resolves the name, ``load_folder`` reads and checks everything a folder holds and
builds the Model (model.py) that computes with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import decoder as dec
from . import encoder as enc
from .audio import FeatureExtractor
from .backend import device_module
from .checkpoint import from_hub, load_state_dict
from .config import ModelConfig
from .errors import ConfigError, WeightsError
from .generation import GenerationConfig
from .model import Model
from .processor import Processor
from .tokenizer import Tokenizer
from .weights import check_shapes, normalise_weight_norm_names, to_float, unflatten

REQUIRED_FILES = ("config.json", "preprocessor_config.json", "vocab.json")
DTYPES = {"float32": np.float32, "float64": np.float64}


def expected_weight_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Every tensor a SpeechEncoderDecoderModel checkpoint holds, with its shape."""
    shapes = enc.encoder_weight_shapes(cfg.encoder) | dec.decoder_weight_shapes(cfg.decoder)
    if cfg.has_enc_to_dec_proj:
        shapes["enc_to_dec_proj.weight"] = (cfg.decoder.d_model, cfg.encoder.hidden_size)
        shapes["enc_to_dec_proj.bias"] = (cfg.decoder.d_model,)
    return shapes


def load_folder(folder: str | Path, dtype: str = "float32", device: str = "cpu") -> Model:
    """A HF-layout model folder -> Model: configs checked, weights checked against the shapes the
    config implies (strictly: a missing, unexpected or mis-shaped tensor is an error), tied weights
    and the positional table filled in as transformers does, everything moved to ``device`` once."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a model folder")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is missing {', '.join(missing)} (a HF model folder needs them)")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    config = ModelConfig.from_file(folder / "config.json")
    tensors = normalise_weight_norm_names(load_state_dict(folder))
    expected = expected_weight_shapes(config)
    optional = {"decoder.model.decoder.embed_positions.weights"}  # HF recomputes the table when absent
    if config.decoder.tie_word_embeddings:
        optional.add("decoder.lm_head.weight")
    check_shapes(tensors, expected, frozenset(optional))

    xp = device_module(device)
    np_dtype = DTYPES[dtype]
    flat = {name: xp.asarray(to_float(array, kind, np_dtype)) for name, (array, kind) in tensors.items()}
    embed = "decoder.model.decoder.embed_tokens.weight"
    if config.decoder.tie_word_embeddings:
        # HF ties lm_head to embed_tokens; a file may still carry the (identical) copy.
        stored = flat.get("decoder.lm_head.weight")
        if stored is not None and not bool(xp.array_equal(stored, flat[embed])):
            raise WeightsError(f"{folder}: config.json ties lm_head to embed_tokens but the checkpoint stores "
                               "a different lm_head.weight")
        flat["decoder.lm_head.weight"] = flat[embed]
    table_key = "decoder.model.decoder.embed_positions.weights"
    table = flat.pop(table_key, None)
    if table is None:
        d = config.decoder
        table = dec.sinusoidal_table(d.max_target_positions + dec.POSITION_OFFSET, d.d_model, d.pad_token_id)
        table = xp.asarray(table.astype(np_dtype))
    tokenizer = Tokenizer.from_folder(folder)
    return Model(
        config=config,
        params=unflatten(flat),
        processor=Processor(FeatureExtractor.from_file(folder / "preprocessor_config.json"), tokenizer),
        tokenizer=tokenizer,
        generation_config=GenerationConfig.from_model_folder(folder, config.raw),
        positions_table=table,
        dtype=np_dtype,
        xp=xp,
    )


def load(path: str | Path, dtype: str = "float32", device: str = "cpu", revision: str | None = None) -> Model:
    """Load a model: a HF-layout folder, or a hub id such as "facebook/s2t-wav2vec2-large-en-de".

    A folder holds config.json, preprocessor_config.json, vocab.json (+ merges.txt, ...) and the
    weights as model.safetensors or pytorch_model.bin, single or sharded. ``dtype`` is the compute
    dtype, "float32" (as HF) or "float64" (a more exact reference).
    """
    if not isinstance(path, (str, Path)):
        raise ConfigError(f"load: expected a model folder, a shipped model's name or a hub id (a string or a "
                          f"path), got {type(path).__name__}")
    return load_folder(model_folder(path, revision), dtype=dtype, device=device)


def model_folder(path: str | Path, revision: str | None = None) -> Path:
    """The folder a model name means: a path as it is, a shipped model's folder, or a hub id's
    folder in the HF cache (downloaded when not cached)."""
    if isinstance(path, str) and not Path(path).exists():
        shipped = shipped_model(path)
        if shipped is not None:
            path = shipped
        elif not looks_like_a_path(path):
            path = from_hub(path, revision=revision)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such model folder")
    return Path(path)


DEFAULT_MODEL_NAME = "numbers-en-de"  # the demo model every command uses when no model is given


def shipped_model(name: str) -> Path | None:
    """The folder of a model shipped with minis2t2, by name ("numbers-en-de"), or None.

    A wheel (or a non-editable install) carries the repository's weights/ folder as package data
    in minis2t2/weights/; an editable install or a checkout finds weights/ beside the package.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    package = Path(__file__).resolve().parent
    for root in (package / "weights", package.parent / "weights"):
        if (root / name / "config.json").is_file():
            return root / name
    return None


def default_model() -> Path:
    """The shipped demo model's folder."""
    folder = shipped_model(DEFAULT_MODEL_NAME)
    if folder is None:
        raise FileNotFoundError(f"no model given and the shipped {DEFAULT_MODEL_NAME} was not found "
                                "(weights/ is missing from this install): give a model folder or hub id")
    return folder


def looks_like_a_path(name: str) -> bool:
    """A local path rather than a hub id "org/name": it starts with "." or "~", has more or fewer
    than one "/" (or a backslash), or its first part is an existing folder ("weights/typo")."""
    first = name.split("/")[0]
    return name.startswith((".", "~", "/")) or name.count("/") != 1 or "\\" in name or Path(first).is_dir()
