"""``minis2t2.random_init`` draws every parameter from the distribution transformers 4.40.2 gives
it, and ``save_pretrained`` writes a folder transformers and minis2t2 both read.

The reference is transformers' own seed example, ``SpeechEncoderDecoderModel(encoder=Wav2Vec2Model(
cfg), decoder=Speech2Text2ForCausalLM(cfg))``, built with torch's seed fixed; its parameters are
compared with minis2t2's, name by name. Values cannot agree (two generators), so each random
parameter is compared as a sample: a two-sample Kolmogorov-Smirnov test (p > 1e-3), and, for the
larger tensors, the standard deviation (within 10 %) and the kurtosis (within 0.6: a normal has 3,
a uniform 1.8, so a normal drawn where a uniform belongs fails even at the same spread). The seeds
are fixed, so the statistics are the same on every run. Constants (ones, zeros) must be equal.
"""

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import (
    HubertConfig,
    HubertModel,
    Speech2Text2Config,
    Speech2Text2ForCausalLM,
    SpeechEncoderDecoderModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
)

import minis2t2
from minis2t2.config import DecoderConfig, EncoderConfig
from minis2t2.errors import ConfigError
from tests.signals import speech_like

SMALL_ENCODER = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
                     conv_dim=[48, 64], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=16,
                     num_conv_pos_embedding_groups=4)
SMALL_DECODER = dict(vocab_size=120, d_model=64, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=128)

VARIANTS = {
    "wav2vec2 group norm, conv bias, projection": ({"conv_bias": True}, {}),
    "wav2vec2 layer norm, stable LN, untied": ({"feat_extract_norm": "layer", "do_stable_layer_norm": True},
                                               {"tie_word_embeddings": False}),
    "hubert conv bias, no projection": ({"model_type": "hubert", "conv_bias": True, "hidden_size": 64},
                                        {"init_std": 0.05}),
    "wav2vec2 initializer_range 0.1": ({"initializer_range": 0.1}, {}),
}


def transformers_model(encoder: dict, decoder: dict) -> SpeechEncoderDecoderModel:
    """transformers' seed example for these configs."""
    torch.manual_seed(0)
    encoder = dict(encoder)
    hubert = encoder.pop("model_type", "wav2vec2") == "hubert"
    model_class, config_class = (HubertModel, HubertConfig) if hubert else (Wav2Vec2Model, Wav2Vec2Config)
    return SpeechEncoderDecoderModel(encoder=model_class(config_class(**encoder)),
                                     decoder=Speech2Text2ForCausalLM(Speech2Text2Config(**decoder)))


def configs(variant: str) -> tuple[dict, dict]:
    encoder, decoder = VARIANTS[variant]
    return SMALL_ENCODER | encoder, SMALL_DECODER | decoder


def same_distribution(name: str, ours: np.ndarray, theirs: np.ndarray) -> list[str]:
    """Why two samples of one parameter look drawn differently (empty if they do not)."""
    ours, theirs = ours.ravel().astype(np.float64), theirs.ravel().astype(np.float64)
    if np.ptp(theirs) == 0:
        return [] if np.array_equal(ours, theirs) else [f"{name}: transformers has the constant {theirs[0]}"]
    problems = []
    p = stats.ks_2samp(ours, theirs).pvalue
    if p < 1e-3:
        problems.append(f"{name}: Kolmogorov-Smirnov p = {p:.1e}")
    if ours.size >= 1000:
        if abs(ours.std() / theirs.std() - 1) > 0.1:
            problems.append(f"{name}: std {ours.std():.4g} vs {theirs.std():.4g}")
        if abs(stats.kurtosis(ours, fisher=False) - stats.kurtosis(theirs, fisher=False)) > 0.6:
            problems.append(f"{name}: kurtosis {stats.kurtosis(ours, fisher=False):.2f} vs "
                            f"{stats.kurtosis(theirs, fisher=False):.2f}")
    return problems


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_is_drawn_as_transformers_draws_it(variant):
    encoder, decoder = configs(variant)
    reference = {name: p.detach().numpy() for name, p in transformers_model(encoder, decoder).named_parameters()
                 if not name.endswith("embed_positions.weights")}  # a fixed table, not learned
    ours = minis2t2.random_init(encoder, decoder, seed=0).trainable_parameters()
    assert sorted(ours) == sorted(reference)
    assert {n: a.shape for n, a in ours.items()} == {n: a.shape for n, a in reference.items()}
    assert all(a.dtype == np.float32 for a in ours.values())
    problems = [p for name in reference for p in same_distribution(name, ours[name], reference[name])]
    assert not problems, "\n".join(problems)


def test_the_positional_conv_starts_with_g_equal_to_the_norm_of_v():
    """weight_norm(dim=2) computes g from v when it wraps the conv: g * v / |v| is v itself."""
    ours = minis2t2.random_init(*configs("wav2vec2 group norm, conv bias, projection")).trainable_parameters()
    prefix = "encoder.encoder.pos_conv_embed.conv.parametrizations.weight."
    g, v = ours[prefix + "original0"], ours[prefix + "original1"]  # (1, 1, K), (C, C / groups, K)
    np.testing.assert_allclose(g, np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1), keepdims=True)), rtol=1e-6)


def test_padding_row_is_zero_and_a_tied_head_is_the_embedding():
    model = minis2t2.random_init(*configs("wav2vec2 group norm, conv bias, projection"))
    embed = model.params.decoder.model.decoder.embed_tokens.weight
    assert not embed[model.config.decoder.pad_token_id].any()
    assert model.params.decoder.lm_head.weight is embed


def test_a_saved_model_is_read_by_transformers_and_minis2t2_with_the_same_outputs(tmp_path):
    """Logits agree to 1e-4 (fp32, unit-scale activations); greedy ids exactly."""
    model = minis2t2.random_init(*configs("wav2vec2 group norm, conv bias, projection"), seed=3)
    model.save_pretrained(tmp_path / "new")
    hf = SpeechEncoderDecoderModel.from_pretrained(tmp_path / "new").eval()
    again = minis2t2.load(tmp_path / "new")
    audio = speech_like(8000, seed=1)[None]
    labels = np.array([[5, 6, 7, 2]])
    with torch.no_grad():
        out = hf(input_values=torch.from_numpy(audio), labels=torch.from_numpy(labels))
        hf_ids = hf.generate(torch.from_numpy(audio), max_new_tokens=6).numpy()
    for candidate in (model, again):
        mine = candidate(audio, labels=labels)
        np.testing.assert_allclose(mine.logits, out.logits.numpy(), atol=1e-4)
        assert abs(mine.loss - out.loss.item()) < 1e-4
        np.testing.assert_array_equal(candidate.generate(audio, max_new_tokens=6), hf_ids)
    state = {name: p.detach().numpy() for name, p in hf.named_parameters()}
    for name, array in model.trainable_parameters().items():
        np.testing.assert_array_equal(state[name], array, err_msg=name)


def test_config_classes_and_dicts_give_the_same_model():
    encoder, decoder = configs("wav2vec2 layer norm, stable LN, untied")
    from_dicts = minis2t2.random_init(encoder, decoder, seed=5).trainable_parameters()
    classes = minis2t2.random_init(EncoderConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in encoder.items()}),
                                   DecoderConfig(**decoder), seed=5).trainable_parameters()
    assert from_dicts.keys() == classes.keys()
    assert all(np.array_equal(from_dicts[n], classes[n]) for n in from_dicts)


def test_a_tokenizer_and_feature_extractor_come_from_a_model_folder(tmp_path):
    demo = minis2t2.load("numbers-en-de")
    model = minis2t2.random_init(SMALL_ENCODER, dict(SMALL_DECODER, vocab_size=demo.config.decoder.vocab_size),
                                 tokenizer="weights/numbers-en-de", feature_extractor="weights/numbers-en-de")
    assert model.tokenizer.encoder == demo.tokenizer.encoder
    assert model.processor(text="einundzwanzig")["labels"].tolist() == demo.processor(text="einundzwanzig")["labels"].tolist()
    model.save_pretrained(tmp_path / "m")
    assert minis2t2.load(tmp_path / "m").processor(text="zwölf")["labels"].tolist() == \
        demo.processor(text="zwölf")["labels"].tolist()


@pytest.mark.parametrize("encoder, decoder, kwargs, message", [
    ({"hidden_size": 100, "num_attention_heads": 3}, {}, {}, "hidden_size must be divisible by num_attention_heads"),
    ({"hidden_sise": 64}, {}, {}, "hidden_sise"),
    ({}, {"vocab_size": 2}, {}, "eos_token_id=2 is not below vocab_size=2"),
    ({}, {"vocab_size": 3}, {}, "vocab_size=3 leaves no id for <unk>"),
    ("wav2vec2", {}, {}, "expected a dict"),
    ({}, {"vocab_size": 10}, {"tokenizer": "weights/numbers-en-de"}, "beyond the decoder's vocab_size=10"),
])
def test_bad_configs_are_named(encoder, decoder, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        minis2t2.random_init(encoder, decoder, **kwargs)
