"""Configs as frozen dataclasses that keep the field names of HF's config.json.

Only the fields that shape the forward pass, in eval or training mode, are kept. Every other
field HF's config classes know (CTC, quantizer, pretraining, head settings) is accepted and
ignored; a field HF does not know is an error, so a typo or a config for another model does
not load silently. The known-field lists were read off transformers 4.40.2's
``PretrainedConfig``, ``Wav2Vec2Config``, ``HubertConfig``, ``Speech2Text2Config`` and
``SpeechEncoderDecoderConfig`` (their ``__init__`` parameters and ``to_dict()`` keys).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .validate import check_fields, check_known, is_count, read_json, show

# Attributes every HF PretrainedConfig carries (transformers 4.40.2), plus keys older
# releases wrote into checkpoints that 4.40.2 still loads without complaint.
PRETRAINED_CONFIG_FIELDS = frozenset("""
    _name_or_path add_cross_attention architectures bad_words_ids begin_suppress_tokens bos_token_id
    chunk_size_feed_forward cross_attention_hidden_size decoder_start_token_id diversity_penalty
    do_sample early_stopping encoder_no_repeat_ngram_size eos_token_id exponential_decay_length_penalty
    finetuning_task forced_bos_token_id forced_eos_token_id id2label is_decoder is_encoder_decoder
    label2id length_penalty max_length min_length model_type no_repeat_ngram_size num_beam_groups
    num_beams num_return_sequences output_attentions output_hidden_states output_scores pad_token_id
    prefix problem_type pruned_heads remove_invalid_values repetition_penalty return_dict
    return_dict_in_generate sep_token_id suppress_tokens task_specific_params temperature
    tf_legacy_loss tie_encoder_decoder tie_word_embeddings tokenizer_class top_k top_p torch_dtype
    torchscript transformers_version typical_p use_bfloat16
    gradient_checkpointing use_cache _attn_implementation
""".split())

WAV2VEC2_FIELDS = frozenset("""
    activation_dropout adapter_attn_dim adapter_kernel_size adapter_stride add_adapter
    apply_spec_augment attention_dropout classifier_proj_size codevector_dim
    contrastive_logits_temperature conv_bias conv_dim conv_kernel conv_stride ctc_loss_reduction
    ctc_zero_infinity diversity_loss_weight do_stable_layer_norm feat_extract_activation
    feat_extract_norm feat_proj_dropout feat_quantizer_dropout final_dropout hidden_act
    hidden_dropout hidden_size initializer_range intermediate_size layer_norm_eps layerdrop
    mask_feature_length mask_feature_min_masks mask_feature_prob mask_time_length
    mask_time_min_masks mask_time_prob num_adapter_layers num_attention_heads
    num_codevector_groups num_codevectors_per_group num_conv_pos_embedding_groups
    num_conv_pos_embeddings num_feat_extract_layers num_hidden_layers num_negatives
    output_hidden_size proj_codevector_dim tdnn_dilation tdnn_dim tdnn_kernel
    use_weighted_layer_sum vocab_size xvector_output_dim feat_proj_layer_norm
    feat_extract_dropout hidden_dropout_prob
""".split()) | PRETRAINED_CONFIG_FIELDS

SPEECH2TEXT2_FIELDS = frozenset("""
    activation_dropout activation_function attention_dropout d_model decoder_attention_heads
    decoder_ffn_dim decoder_layerdrop decoder_layers dropout init_std max_target_positions
    scale_embedding vocab_size num_hidden_layers
""".split()) | PRETRAINED_CONFIG_FIELDS

SPEECH_ENCODER_DECODER_FIELDS = frozenset({"encoder", "decoder"}) | PRETRAINED_CONFIG_FIELDS

# HF's names of the activations minis2t2 implements; layers.ACTIVATIONS maps each to its function
# (tests/test_bad_configs.py checks that the two name the same set).
ACTIVATION_NAMES = frozenset({"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish"})


# Limits on sizes. Far above any released checkpoint (wav2vec2 xlarge: hidden 1920, 48 layers),
# they keep a hostile config from allocating gigabytes before its weights are even read.
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_POSITIONS = 1 << 16
MAX_VOCAB = 1 << 20

ENCODER_BOUNDS = {
    "hidden_size": (1, MAX_WIDTH), "num_hidden_layers": (1, MAX_LAYERS), "num_attention_heads": (1, MAX_WIDTH),
    "intermediate_size": (1, 4 * MAX_WIDTH), "conv_dim": (1, MAX_WIDTH), "conv_stride": (1, 1024),
    "conv_kernel": (1, 4096), "num_conv_pos_embeddings": (1, 4096), "num_conv_pos_embedding_groups": (1, MAX_WIDTH),
    "layer_norm_eps": (0, 1), "mask_time_prob": (0, 1), "mask_feature_prob": (0, 1),
    "hidden_dropout": (0, 1), "activation_dropout": (0, 1), "attention_dropout": (0, 1), "feat_proj_dropout": (0, 1),
    "layerdrop": (0, 1), "mask_time_length": (1, MAX_WIDTH), "mask_time_min_masks": (0, MAX_WIDTH),
    "mask_feature_length": (1, MAX_WIDTH), "mask_feature_min_masks": (0, MAX_WIDTH),
}
DECODER_BOUNDS = {
    "vocab_size": (1, MAX_VOCAB), "d_model": (1, MAX_WIDTH), "decoder_layers": (1, MAX_LAYERS),
    "decoder_attention_heads": (1, MAX_WIDTH), "decoder_ffn_dim": (1, 4 * MAX_WIDTH),
    "max_target_positions": (1, MAX_POSITIONS), "pad_token_id": (0, MAX_VOCAB), "bos_token_id": (0, MAX_VOCAB),
    "eos_token_id": (0, MAX_VOCAB), "decoder_start_token_id": (0, MAX_VOCAB),
    "cross_attention_hidden_size": (1, MAX_WIDTH), "dropout": (0, 1), "attention_dropout": (0, 1),
    "activation_dropout": (0, 1), "decoder_layerdrop": (0, 1),
}


@dataclass(frozen=True)
class EncoderConfig:
    """Wav2Vec2Config / HubertConfig: the fields the forward pass reads, with HF's defaults."""

    model_type: str = "wav2vec2"  # "wav2vec2" or "hubert"
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"  # "group": GroupNorm on conv 0 only; "layer": LayerNorm on every conv
    feat_extract_activation: str = "gelu"  # also the positional conv's activation
    conv_dim: tuple = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple = (5, 2, 2, 2, 2, 2, 2)  # total stride 5 * 2**6 = 320 samples = 20 ms at 16 kHz
    conv_kernel: tuple = (10, 3, 3, 3, 3, 2, 2)  # receptive field 400 samples = 25 ms
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128  # positional conv kernel K
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False  # True: pre-LN layers, final LayerNorm after them
    feat_proj_layer_norm: bool = True  # HuBERT only; wav2vec2 always normalises before projecting
    mask_time_prob: float = 0.05  # > 0 (or mask_feature_prob > 0) means masked_spec_embed is stored
    mask_feature_prob: float = 0.0
    add_adapter: bool = False
    adapter_attn_dim: int | None = None
    # training mode only (training.py): dropout, LayerDrop and SpecAugment
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    layerdrop: float = 0.1
    apply_spec_augment: bool = True
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0

    @classmethod
    def from_dict(cls, d: dict, where: str = "config.json encoder") -> EncoderConfig:
        model_type = d.get("model_type")
        if model_type not in ("wav2vec2", "hubert"):
            raise ConfigError(f"{where}: model_type {show(model_type)} is not supported: use 'wav2vec2' or 'hubert'")
        check_known(d, WAV2VEC2_FIELDS, where)
        cfg = cls(**check_fields(cls, d, where, ENCODER_BOUNDS))
        if model_type == "wav2vec2" and not cfg.feat_proj_layer_norm:
            raise ConfigError(f"{where}: feat_proj_layer_norm=false exists only for HuBERT")
        if cfg.feat_extract_norm not in ("group", "layer"):
            raise ConfigError(f"{where}: feat_extract_norm must be 'group' or 'layer', got {cfg.feat_extract_norm!r}")
        if not (len(cfg.conv_dim) == len(cfg.conv_kernel) == len(cfg.conv_stride)):
            raise ConfigError(f"{where}: conv_dim, conv_kernel and conv_stride must have the same length, got "
                              f"{len(cfg.conv_dim)}, {len(cfg.conv_kernel)} and {len(cfg.conv_stride)}")
        if "num_feat_extract_layers" in d and d["num_feat_extract_layers"] != len(cfg.conv_dim):
            raise ConfigError(f"{where}: num_feat_extract_layers disagrees with len(conv_dim)")
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(cfg, name) not in ACTIVATION_NAMES:
                raise ConfigError(f"{where}: {name}={show(getattr(cfg, name))} is not supported: one of {sorted(ACTIVATION_NAMES)}")
        if not cfg.layer_norm_eps > 0:
            raise ConfigError(f"{where}: layer_norm_eps must be > 0, got {show(cfg.layer_norm_eps)}")
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ConfigError(f"{where}: hidden_size must be divisible by num_attention_heads")
        if cfg.hidden_size % cfg.num_conv_pos_embedding_groups:
            raise ConfigError(f"{where}: hidden_size must be divisible by num_conv_pos_embedding_groups")
        if cfg.add_adapter or cfg.adapter_attn_dim is not None:
            raise ConfigError(f"{where}: wav2vec2 adapters (add_adapter, adapter_attn_dim) are not supported")
        return cfg

    @property
    def has_masked_spec_embed(self) -> bool:
        return self.mask_time_prob > 0.0 or self.mask_feature_prob > 0.0


@dataclass(frozen=True)
class DecoderConfig:
    """Speech2Text2Config: the fields the forward pass reads, with HF's defaults."""

    vocab_size: int = 10000
    d_model: int = 256
    decoder_layers: int = 6
    decoder_attention_heads: int = 4
    decoder_ffn_dim: int = 2048
    activation_function: str = "relu"
    scale_embedding: bool = True  # multiply token embeddings by sqrt(d_model)
    max_target_positions: int = 1024
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    decoder_start_token_id: int = 2
    tie_word_embeddings: bool = True  # lm_head shares embed_tokens when its key is absent
    cross_attention_hidden_size: int | None = None
    # training mode only (training.py): dropout and LayerDrop
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    decoder_layerdrop: float = 0.0

    @classmethod
    def from_dict(cls, d: dict, where: str = "config.json decoder") -> DecoderConfig:
        if d.get("model_type") != "speech_to_text_2":
            raise ConfigError(f"{where}: model_type {show(d.get('model_type'))} is not supported: use 'speech_to_text_2'")
        check_known(d, SPEECH2TEXT2_FIELDS, where)
        cfg = cls(**check_fields(cls, d, where, DECODER_BOUNDS))
        if cfg.activation_function not in ACTIVATION_NAMES:
            raise ConfigError(f"{where}: activation_function={show(cfg.activation_function)} is not supported: "
                              f"one of {sorted(ACTIVATION_NAMES)}")
        if cfg.d_model % cfg.decoder_attention_heads:
            raise ConfigError(f"{where}: d_model must be divisible by decoder_attention_heads")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            if getattr(cfg, name) >= cfg.vocab_size:
                raise ConfigError(f"{where}: {name}={getattr(cfg, name)} is not below vocab_size={cfg.vocab_size}")
        return cfg


@dataclass(frozen=True)
class ModelConfig:
    """SpeechEncoderDecoderConfig: the two halves plus the top-level token ids."""

    encoder: EncoderConfig
    decoder: DecoderConfig
    pad_token_id: int | None = None  # used to build decoder inputs from labels
    decoder_start_token_id: int | None = None
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # config.json as read

    @classmethod
    def from_dict(cls, d: dict, where: str = "config.json") -> ModelConfig:
        if d.get("model_type") != "speech-encoder-decoder":
            raise ConfigError(
                f"{where}: model_type is {show(d.get('model_type'))}; minis2t2 runs 'speech-encoder-decoder' models"
            )
        if not isinstance(d.get("encoder"), dict) or not isinstance(d.get("decoder"), dict):
            raise ConfigError(f"{where} must hold both an 'encoder' and a 'decoder' section, each an object")
        check_known(d, SPEECH_ENCODER_DECODER_FIELDS, where)
        for name in ("pad_token_id", "decoder_start_token_id"):
            if not (d.get(name) is None or (is_count(d[name]) and d[name] < MAX_VOCAB)):
                raise ConfigError(f"{where}: {name} must be a token id (an integer >= 0) or null, got {show(d[name])}")
        encoder = EncoderConfig.from_dict(d["encoder"], f"{where} encoder")
        decoder = DecoderConfig.from_dict(d["decoder"], f"{where} decoder")
        if decoder.cross_attention_hidden_size not in (None, decoder.d_model):
            raise ConfigError(f"{where}: cross_attention_hidden_size different from d_model is not supported by Speech2Text2")
        return cls(
            encoder=encoder,
            decoder=decoder,
            pad_token_id=d.get("pad_token_id"),
            decoder_start_token_id=d.get("decoder_start_token_id"),
            raw=d,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(read_json(path), str(path))

    @property
    def has_enc_to_dec_proj(self) -> bool:
        """HF SpeechEncoderDecoderModel adds enc_to_dec_proj iff the widths differ (and no
        cross_attention_hidden_size is set)."""
        return self.encoder.hidden_size != self.decoder.d_model and self.decoder.cross_attention_hidden_size is None
