"""The shipped demo model (weights/numbers-en-de): its samples translate correctly, and exactly
as transformers translates them.

The samples are held-out recordings (unseen utterances; the flite awb and Piper voices were
never trained on), from several synthesizers, written at several sample rates and formats by
tools/demo/evaluate.py; expected.json holds the German text spelled by rule
(tools/demo/spell.py), not anything a model produced. Both sides read and resample the file with
minis2t2.load_audio (transformers has no audio reader of its own); from the 16 kHz waveform on,
the reference side is transformers' feature extractor, generate and tokenizer.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.numpy import load_file

import minis2t2
from minis2t2.cli import main
from minis2t2.loading import DEFAULT_MODEL_NAME

DEMO = Path(__file__).resolve().parents[1] / "weights" / DEFAULT_MODEL_NAME
EXPECTED = json.loads((DEMO / "samples" / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def models():
    from transformers import Speech2Text2Tokenizer, SpeechEncoderDecoderModel, Wav2Vec2FeatureExtractor

    hf = SpeechEncoderDecoderModel.from_pretrained(str(DEMO)).eval()
    return minis2t2.load(DEMO), hf, Wav2Vec2FeatureExtractor.from_pretrained(str(DEMO)), \
        Speech2Text2Tokenizer.from_pretrained(str(DEMO))


def test_shipped_folder_is_small_and_complete():
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size < 10 * 2**20
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json", "special_tokens_map.json", "model.safetensors", "README.md"):
        assert (DEMO / name).is_file(), name
    assert len(EXPECTED) >= 5
    assert len({e["source"] for e in EXPECTED.values()}) >= 3, "samples from at least three synthesizers"
    assert "dreiundsiebzig" in {e["german"] for e in EXPECTED.values()}, "the notebooks' 'seventy three'"
    rates = {soundfile.info(DEMO / "samples" / name).samplerate for name in EXPECTED}
    assert len(rates) >= 4 and rates != {16000}
    assert all((DEMO / "samples" / name).stat().st_size < 100_000 for name in EXPECTED)


def test_the_cards_model_table_is_the_shipped_model():
    """The model card's *Model* section (parameter count, size, each part's settings) says what the
    shipped config.json, generation_config.json and weights hold, so a model of another size or
    shape cannot ship with the old description."""
    model = minis2t2.load(DEMO)
    enc, dec, timing = model.config.encoder, model.config.decoder, model.frame_timing
    params = sum(array.size for array in load_file(DEMO / "model.safetensors").values())

    def join(values):
        return ", ".join(map(str, values))

    card = " ".join((DEMO / "README.md").read_text(encoding="utf-8").split())
    claims = [
        f"({params / 1e6:.2f} M parameters, {params * 4 / 1e6:.1f} MB of float32)",
        (f"{len(enc.conv_dim)} conv layers ({join(enc.conv_dim)} channels; kernels {join(enc.conv_kernel)}; strides "
         f"{join(enc.conv_stride)} → one frame per {timing.seconds * 1000:g} ms, receptive field {timing.field} samples)"),
        (f"hidden {enc.hidden_size}, {enc.num_hidden_layers} layers, {enc.num_attention_heads} heads, FFN "
         f"{enc.intermediate_size}, {enc.hidden_act}"),
        f"positional conv {enc.num_conv_pos_embeddings} / {enc.num_conv_pos_embedding_groups} groups",
        (f"(`mask_time_prob` {enc.mask_time_prob} × {enc.mask_time_length} frames, `mask_feature_prob` "
         f"{enc.mask_feature_prob} × {enc.mask_feature_length} channels)"),
        f"`enc_to_dec_proj` {enc.hidden_size} → {dec.d_model}",
        (f"d_model {dec.d_model}, {dec.decoder_layers} layers, {dec.decoder_attention_heads} heads, FFN "
         f"{dec.decoder_ffn_dim}, {dec.activation_function}"),
        f"{dec.max_target_positions} positions",
        f"| tokens | {dec.vocab_size}:",
        (f"| generation | {'greedy' if model.generation_config.num_beams == 1 else 'beam search'}, `max_length` "
         f"{model.generation_config.max_length}"),
    ]
    assert [claim for claim in claims if claim not in card] == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_translates_correctly_and_as_transformers(models, name):
    model, hf, fe, tok = models
    path = DEMO / "samples" / name
    assert model.translate(path) == EXPECTED[name]["german"]

    audio = minis2t2.load_audio(path, 16000)
    ours = model.processor(audio, sampling_rate=16000)
    ids = model.generate(ours["input_values"], ours.get("attention_mask"))
    theirs = fe(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hf_ids = hf.generate(input_values=theirs["input_values"], attention_mask=theirs["attention_mask"]).numpy()
    np.testing.assert_array_equal(ids, hf_ids)
    assert tok.batch_decode(hf_ids, skip_special_tokens=True) == [EXPECTED[name]["german"]]


def test_cli_default_model_translates_a_sample(capsys):
    name = min(EXPECTED)
    assert main(["translate", str(DEMO / "samples" / name)]) == 0
    assert capsys.readouterr().out == f"{DEMO / 'samples' / name}\t{EXPECTED[name]['german']}\n"


def card_rows() -> dict[str, list[str]]:
    """The model card's table rows: first cell (without bold marks) -> the other cells."""
    rows = {}
    for line in (DEMO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def percent(x: float, digits: int = 1) -> str:
    return "100%" if x == 1 else f"{100 * x:.{digits}f}%"


def card_figures(e: dict) -> dict[str, str]:
    """What the model card's "this model" column says of the model evaluated in ``e`` (eval.json):
    the first cell's start of each row -> its third cell."""
    def share(name: str, keep=lambda error: True, clips: int | None = None) -> float:
        """exact match of set ``name``, or of its clips whose errors ``keep`` selects (of ``clips``)"""
        s = e[name]
        return 1 - sum(map(keep, s["errors"])) / (clips or s["clips"])

    synthetic = ["espeak_unseen_variants", "flite_festival_unseen_utterances", "flite_awb_held_out_voice",
                 "hibari_unseen_utterances", "piper_joe"]
    games = lambda error: error["voice"] in ("csmash-data", "scid-data")
    kokoro = lambda error: error["voice"] == "jf_nezumi"
    not_kokoro = lambda error: not kokoro(error)
    figures = {
        "espeak-ng, 20 voice variants": percent(share("espeak_unseen_variants")),
        "flite and festival training voices": percent(share("flite_festival_unseen_utterances")),
        "flite awb": percent(share("flite_awb_held_out_voice")),
        "hibari's neural voice": percent(share("hibari_unseen_utterances")),
        "Piper en_US-joe-medium, never trained on, 16 kHz": percent(share("piper_joe")),
        "Piper en_US-joe-medium, 8 kHz": percent(share("piper_joe_8k")),
        "Kokoro-82M's Japanese voice": percent(share("kokoro_ja_held_out_voice")),
        "the Piper voice over 600 clips": " / ".join(percent(share(n)) for n in ("piper_joe_pooled",
                                                                                 "piper_joe_pooled_8k")),
        "number words recorded for two Debian games": percent(share("recorded_words", games, 30)),
        "the same words at 8 kHz": percent(share("recorded_words_8k", games, 30)),
        "the same with OpenArena's": f"{percent(share('recorded_words'))} / {percent(share('recorded_words_8k'))}",
        "a game's countdown in a robotic voice": percent(share("recorded_robotic")),
        "words that are no number, recorded for the same": percent(share("recorded_no_number")),
        "words that are no number said by nine voice packs": percent(share("recorded_voice_packs_no_number")),
        "silence and noise": percent(share("non_speech")),
        "the 1 200 synthetic held-out clips": percent(sum(e[n]["exact_match"] * e[n]["clips"] for n in synthetic)
                                                      / 1200),
        "the same, cut tight": percent(share("tight_trim", not_kokoro, 1200)),
        "the same with 1-2 s of silence": percent(share("long_silence", not_kokoro, 1200)),
        "the Kokoro voice's 200 clips": " / ".join(percent(share(n, kokoro, 200)) for n in (
            "kokoro_ja_held_out_voice", "tight_trim", "long_silence")),
        "all 1 400 synthetic clips": " / ".join([percent(e["tight_trim"]["plain_clips_exact_match"]),
                                                 percent(share("tight_trim")), percent(share("long_silence"))]),
        "speaking styles": percent(share("speaking_style")),
        "a person's words for a talking clock": percent(share("recorded_clock"), 0),
        "the same words with 0.3 s of silence": percent(share("recorded_clock_padded"), 0),
    }
    for style, prefix in [("slow", "slow"), ("fast", "fast"), ("whispered", "whispered"), ("croaky", "croaky"),
                          ("oh", 'zero said "oh"'), ("a_hundred", '"a hundred (and)')]:
        figures["&nbsp;&nbsp;" + prefix] = percent(e["speaking_style"]["by_style"][style])
    return figures


def test_the_cards_figures_for_this_model_are_its_eval_json():
    """The model card's "this model" column (the third cell of each row of its accuracy tables)
    says what tools/demo/evaluate.py measured (eval.json), so a new model cannot ship with the old
    model's figures."""
    expected = card_figures(json.loads((DEMO / "eval.json").read_text(encoding="utf-8")))
    rows = card_rows()

    def row(prefix: str) -> str:
        (cells,) = [cells for first, cells in rows.items() if first.startswith(prefix)]
        return cells[1]

    assert {prefix: row(prefix) for prefix in expected} == expected


def test_the_readmes_sentences_about_this_model_are_its_eval_json():
    """The repository README's paragraph on the shipped model and the model card's status paragraph
    quote eval.json (whitespace aside), so a new model cannot ship with the old one's sentences."""
    e = json.loads((DEMO / "eval.json").read_text(encoding="utf-8"))
    p = {name: percent(s["exact_match"]) for name, s in e.items() if isinstance(s, dict)}
    right = {name: round(s["exact_match"] * s["clips"]) for name, s in e.items() if isinstance(s, dict)}
    no_number_answered = e["recorded_no_number"]["clips"] - right["recorded_no_number"]
    voice_packs_answered = e["recorded_voice_packs_no_number"]["clips"] - right["recorded_voice_packs_no_number"]
    readme = " ".join((DEMO.parents[1] / "README.md").read_text(encoding="utf-8").split())
    card = " ".join((DEMO / "README.md").read_text(encoding="utf-8").split())
    readme_claims = [
        f"{p['piper_joe']} of numbers right from a neural voice it never heard ({p['piper_joe_8k']} at telephone rate",
        f"{p['flite_awb_held_out_voice']} from a held-out speaker",
        f"{p['espeak_unseen_variants']} from unseen espeak-ng variants",
        f"{p['flite_festival_unseen_utterances']} from new utterances of its flite/festival training voices",
        f"{p['speaking_style']} of numbers said slowly",
        f"{right['recorded_clock']} of 25 words of a talking clock",
        (f"{right['recorded_words']} of 33 number words recorded for three Debian games "
        f"({right['recorded_words_8k']} at 8 kHz)"),
        f"{right['recorded_robotic']} of 10 of a game's countdown in a robotic voice",
        f"silent on {right['non_speech']} of 60 silence and noise clips",
        f"({no_number_answered} of 69 recorded words; {voice_packs_answered} of 243 words of nine voice actors",
        f"(Kokoro-82M's jf_nezumi), held out, gets {p['kokoro_ja_held_out_voice']}",
    ]
    figures = card_figures(e)
    under_plain = ["{:.1f}".format(100 * (e[name]["plain_clips_exact_match"] - e[name]["exact_match"]))
                   for name in ("tight_trim", "long_silence")]
    card_claims = [
        f"It gets {figures['the 1 200 synthetic held-out clips']} of 1 200 held-out synthetic clips right",
        (f"{figures['the same, cut tight']} of those clips cut tight and {figures['the same with 1-2 s of silence']} "
         "with 1-2 s of silence around"),
        f"{under_plain[0]} and {under_plain[1]} under them over 1 400",
        f"{p['flite_festival_unseen_utterances']} of new utterances of its flite/festival training voices",
        f"{p['espeak_unseen_variants']} from unseen espeak-ng variants",
        (f"{p['flite_awb_held_out_voice']} from a speaker it never heard (flite's awb) and {p['piper_joe']} from the "
        f"Piper neural voice it never heard ({p['piper_joe_8k']} at 8 kHz; {p['piper_joe_pooled']} / "
        f"{p['piper_joe_pooled_8k']} over 600 clips)"),
        f"{p['speaking_style']} of the speaking-style set",
        f"{right['recorded_clock']} of 25 words of a talking clock",
        f"{right['recorded_robotic']} of 10 of a game's countdown in a robotic voice",
        f"silent on {right['non_speech']} of 60 silence and noise clips",
        f"it answers {no_number_answered} with a number",
        (f"of 243 such words said by nine voice actors of a game it leaves "
         f"{right['recorded_voice_packs_no_number']} empty"),
        f"jf_nezumi, held out: {p['kokoro_ja_held_out_voice']}",
    ]
    assert [claim for claim in readme_claims if claim not in readme] == []
    assert [claim for claim in card_claims if claim not in card] == []
