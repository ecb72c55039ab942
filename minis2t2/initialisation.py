"""A new model with random weights, drawn as transformers 4.40.2 draws them.

transformers' seed example builds a model from two configs,

    SpeechEncoderDecoderModel(encoder=Wav2Vec2Model(Wav2Vec2Config(...)),
                              decoder=Speech2Text2ForCausalLM(Speech2Text2Config(...)))

and each part initialises itself: Wav2Vec2's / HuBERT's and Speech2Text2's ``_init_weights``
visit every module (children before parents, so a parent's rule wins), then ``tie_weights``
shares embed_tokens with lm_head; ``enc_to_dec_proj`` is created afterwards with torch's own
``nn.Linear`` default. ``initial_distribution`` writes down the outcome, one rule per parameter,
as measured on transformers 4.40.2 with torch 2.13 (tests/test_initialisation.py holds the two
against each other parameter by parameter). Two outcomes are not what the code seems to say:

* the positional conv is weight-normed (``parametrizations.weight``), so the ``normal_`` that
  Wav2Vec2's ``_init_weights`` applies to ``conv.weight`` writes into a freshly computed tensor
  and is lost: v keeps ``nn.Conv1d``'s default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and g is
  v's norm over every axis but the kernel's (``weight_norm(dim=2)``), so g * v / |v| = v;
* HuBERT zeroes every Linear and Conv1d bias, the conv feature encoder's included, where
  Wav2Vec2 draws the conv biases from U(-k, k), k = sqrt(groups / (in_channels * kernel)).

The values differ from transformers' (NumPy's generator is not torch's); the distributions do not.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from . import decoder as dec
from .audio import FeatureExtractor
from .config import ModelConfig
from .errors import ConfigError
from .generation import GenerationConfig
from .loading import DTYPES, expected_weight_shapes
from .model import Model
from .processor import Processor
from .tokenizer import Tokenizer
from .weights import unflatten

WAV2VEC2_INITIALIZER_RANGE = 0.02  # Wav2Vec2Config / HubertConfig default initializer_range
SPEECH2TEXT2_INIT_STD = 0.02  # Speech2Text2Config default init_std


def config_dict(config, model_type: str, where: str) -> dict:
    """A config as a dict of transformers' field names: a dict as it is, a config class's fields."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected a dict of transformers' field names or a minis2t2 config, "
                          f"got {type(config).__name__}")
    return {"model_type": model_type} | {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def initial_distribution(name: str, shape: tuple, config: ModelConfig) -> tuple:
    """How transformers 4.40.2 initialises parameter ``name`` (a named_parameters() name, the
    weight norm's as weight_g / weight_v) of shape ``shape`` in a model of ``config``:
    ("normal", std), ("uniform", low, high), ("ones",), ("zeros",) or ("norm of v",)."""
    kind = name.rsplit(".", 1)[-1]  # weight, bias, weight_g, weight_v
    if "layer_norm" in name:  # LayerNorm and GroupNorm, everywhere
        return ("ones",) if kind == "weight" else ("zeros",)
    if name.startswith("decoder."):  # Linear and Embedding: N(0, init_std), biases 0
        std = config.raw["decoder"].get("init_std", SPEECH2TEXT2_INIT_STD)
        return ("normal", std) if kind == "weight" else ("zeros",)
    if name.startswith("enc_to_dec_proj."):  # nn.Linear's default, weight and bias alike
        bound = 1 / math.sqrt(config.encoder.hidden_size)
        return ("uniform", -bound, bound)
    if name == "encoder.masked_spec_embed":
        return ("uniform", 0.0, 1.0)
    hubert = config.encoder.model_type == "hubert"
    if "pos_conv_embed" in name:
        if kind == "weight_v":  # (C, C / groups, K): nn.Conv1d's default, see the module docstring
            bound = 1 / math.sqrt(shape[1] * shape[2])
            return ("uniform", -bound, bound)
        return ("norm of v",) if kind == "weight_g" else ("zeros",)
    if ".conv_layers." in name:  # the conv feature encoder, weight (C_out, C_in, kernel)
        if kind == "weight":
            return ("normal", math.sqrt(2 / (shape[1] * shape[2])))  # kaiming_normal_: gain sqrt(2), fan_in
        if hubert:
            return ("zeros",)
        layer = int(name.split(".conv_layers.")[1].split(".")[0])
        c_in = 1 if layer == 0 else config.encoder.conv_dim[layer - 1]
        k = math.sqrt(1 / (c_in * config.encoder.conv_kernel[layer]))
        return ("uniform", -k, k)
    if name.startswith("encoder.feature_projection.projection.") and not hubert:
        bound = 1 / math.sqrt(config.encoder.conv_dim[-1])  # U(-k, k) for weight and bias, k = 1/sqrt(in)
        return ("uniform", -bound, bound)
    std = config.raw["encoder"].get("initializer_range", WAV2VEC2_INITIALIZER_RANGE)
    return ("normal", std) if kind == "weight" else ("zeros",)


def draw(rule: tuple, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """One parameter's values under ``rule`` (see initial_distribution), in float64."""
    if rule[0] == "normal":
        return rng.normal(0.0, rule[1], size=shape)
    if rule[0] == "uniform":
        return rng.uniform(rule[1], rule[2], size=shape)
    return np.ones(shape) if rule[0] == "ones" else np.zeros(shape)


def random_init(encoder_config, decoder_config, seed: int = 0, tokenizer=None, feature_extractor=None,
                dtype: str = "float32") -> Model:
    """A new SpeechEncoderDecoderModel with random weights, as transformers' seed example builds one.

    ``encoder_config``: a dict of Wav2Vec2Config / HubertConfig field names (``model_type``
    "wav2vec2" unless given) or an EncoderConfig; ``decoder_config``: Speech2Text2Config field
    names or a DecoderConfig. Fields left out take transformers' defaults. ``tokenizer``: a model
    folder holding vocab.json (+ merges.txt), or a Tokenizer; by default a placeholder vocabulary
    of the decoder's vocab_size, the special tokens at their config ids and "<tok{i}>" elsewhere.
    ``feature_extractor``: a model folder, a FeatureExtractor, or HF's defaults (16 kHz,
    normalised, no attention mask). ``model.save_pretrained(folder)`` writes it out.

    Unlike transformers' config, the top level of config.json gets ``pad_token_id`` and
    ``decoder_start_token_id`` from the decoder's, so ``model(labels=...)`` works at once.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    encoder = config_dict(encoder_config, "wav2vec2", "random_init encoder_config")
    decoder = config_dict(decoder_config, "speech_to_text_2", "random_init decoder_config")
    raw = {"model_type": "speech-encoder-decoder", "encoder": encoder, "decoder": decoder,
           "is_encoder_decoder": True, "tie_word_embeddings": False}
    config = ModelConfig.from_dict(raw, "random_init config")  # checks every field, fills the defaults
    raw["encoder"] = config_dict(config.encoder, "wav2vec2", "") | encoder  # every field written out,
    raw["decoder"] = config_dict(config.decoder, "speech_to_text_2", "") | decoder  # as transformers does
    raw |= {"pad_token_id": config.decoder.pad_token_id,
            "decoder_start_token_id": config.decoder.decoder_start_token_id}
    config = ModelConfig.from_dict(raw, "random_init config")

    rng = np.random.default_rng(seed)
    flat = {}
    for name, shape in expected_weight_shapes(config).items():
        if name == "decoder.model.decoder.embed_positions.weights":
            continue  # not learned: the sinusoidal table below
        if name == "decoder.lm_head.weight" and config.decoder.tie_word_embeddings:
            continue  # the same array as embed_tokens, tied below
        flat[name] = draw(initial_distribution(name, shape, config), shape, rng)
    for name in [n for n in flat if n.endswith("pos_conv_embed.conv.weight_g")]:
        v = flat[name.replace("weight_g", "weight_v")]  # (C, C / groups, K)
        flat[name] = np.sqrt((v ** 2).sum(axis=(0, 1), keepdims=True))  # (1, 1, K): weight_norm(dim=2)
    embed = "decoder.model.decoder.embed_tokens.weight"
    flat[embed][config.decoder.pad_token_id] = 0.0  # nn.Embedding(padding_idx=pad): a zero row
    flat = {name: array.astype(DTYPES[dtype]) for name, array in flat.items()}
    if config.decoder.tie_word_embeddings:
        flat["decoder.lm_head.weight"] = flat[embed]

    tokenizer = make_tokenizer(tokenizer, config)
    if feature_extractor is None:
        feature_extractor = FeatureExtractor()
    elif not isinstance(feature_extractor, FeatureExtractor):
        feature_extractor = FeatureExtractor.from_file(Path(feature_extractor) / "preprocessor_config.json")
    d = config.decoder
    table = dec.sinusoidal_table(d.max_target_positions + dec.POSITION_OFFSET, d.d_model, d.pad_token_id)
    return Model(config=config, params=unflatten(flat), processor=Processor(feature_extractor, tokenizer),
                 tokenizer=tokenizer, generation_config=GenerationConfig.from_model_config(raw),
                 positions_table=table.astype(DTYPES[dtype]), dtype=DTYPES[dtype])


def make_tokenizer(tokenizer, config: ModelConfig) -> Tokenizer:
    """The tokenizer random_init was given (a Tokenizer or a folder), or a placeholder vocabulary."""
    d = config.decoder
    if tokenizer is None:
        special = {d.bos_token_id: "<s>", d.pad_token_id: "<pad>", d.eos_token_id: "</s>"}
        free = [i for i in range(d.vocab_size) if i not in special]
        if not free:
            raise ConfigError(f"random_init decoder_config: vocab_size={d.vocab_size} leaves no id for <unk>")
        special[free[0]] = "<unk>"
        if len(set(special.values())) < len(special) or len(special) < 4:
            raise ConfigError("random_init decoder_config: bos_token_id, pad_token_id and eos_token_id must differ "
                              "for the placeholder vocabulary (or give a tokenizer)")
        return Tokenizer({special.get(i, f"<tok{i}>"): i for i in range(d.vocab_size)})
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_folder(tokenizer)
    too_big = max(tokenizer.encoder.values()) >= d.vocab_size
    if too_big:
        raise ConfigError(f"random_init: the tokenizer's ids reach {max(tokenizer.encoder.values())}, "
                          f"beyond the decoder's vocab_size={d.vocab_size}")
    return tokenizer
