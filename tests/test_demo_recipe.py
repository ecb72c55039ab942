"""The demo model's recipe pieces: number spellers (checked against num2words, an independent
well-kept package), the BPE learner (its files read by transformers' tokenizer), the training-speed
feature encoder and 40 ms frames against HF's, the clean-start curriculum, the shipped recipe's
steps and its weight average, and the recorded evaluation words: read from folders and zip
archives, with a usage error when their Debian package is missing."""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from num2words import num2words
from safetensors.numpy import load_file, save_file
from transformers import Speech2Text2Tokenizer

import minis2t2
from minis2t2.loading import DEFAULT_MODEL_NAME
from tools.demo import data, train, train_numpy
from tools.demo.augment import SR
from tools.demo.bpe import SPECIALS, learn_merges
from tools.demo.spell import EN_ONES, EN_TENS, english, german, german_parts
from tools.demo.train import Batches, build_model, channels_last_feature_encoder

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "weights" / DEFAULT_MODEL_NAME


def test_german_matches_num2words():
    for n in range(1000):
        assert german(n) == num2words(n, lang="de"), n
        assert "".join(german_parts(n)) == german(n)


def test_english_matches_num2words():
    for n in range(1000):
        assert english(n, british_and=True) == num2words(n, lang="en").replace("-", " "), n
        assert english(n) == english(n, british_and=True).replace(" and ", " ")


def test_bpe_pieces_are_morphemes(tmp_path):
    merges = learn_merges([german_parts(n) for n in range(1000)], num_merges=1000)
    (tmp_path / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in merges))
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(SPECIALS)}))
    probe = Speech2Text2Tokenizer(str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt"))
    for n in range(1000):
        assert [t.rstrip("@") for t in probe.tokenize(german(n))] == german_parts(n), n


def minis2t2_encode(model, folder: Path, audio: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Save ``model`` as a demo-model folder (its tokenizer and processor files) and return what
    minis2t2, loading that folder, encodes ``audio`` to: decoder-width frames (B, T, 96)."""
    shutil.copytree(DEMO, folder, dirs_exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)  # over config.json and the weights
    ours, _ = minis2t2.load(folder).encode(audio.numpy(), attention_mask=mask.numpy())
    return ours


def test_channels_last_feature_encoder_matches_hf():
    """The training-speed feature encoder against HF's own, forward and backward, on a fresh model."""
    torch.manual_seed(0)
    reference = build_model(44).train()
    fast = build_model(44).train()
    fast.load_state_dict(reference.state_dict())
    channels_last_feature_encoder(fast)
    audio = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 12345)).astype(np.float32))
    results = []
    for model in (reference, fast):
        features = model.encoder.feature_extractor(audio)  # (batch, channels, frames)
        (features * torch.linspace(-1, 1, features.shape[-1])).sum().backward()
        results.append((features.detach(), {n: p.grad for n, p in model.encoder.feature_extractor.named_parameters()}))
    (theirs, their_grads), (ours, our_grads) = results
    assert ours.shape == theirs.shape == (3, 144, 38)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)  # fp32, unit scale after LayerNorm + GELU
    assert our_grads.keys() == their_grads.keys() and len(our_grads) == 16  # conv and norm, weight and bias, x 4
    for name, grad in their_grads.items():  # sums over ~10^4 positions: tolerance relative to each one's scale
        torch.testing.assert_close(our_grads[name], grad, atol=1e-4 * grad.abs().max().item(), rtol=0, msg=name)


def test_40_ms_frames_model(tmp_path):
    """train.py --frame-ms 40: half the frames of the 20 ms model, the time masks and positional
    conv as long in seconds, and a folder that minis2t2 reads and computes as transformers does."""
    torch.manual_seed(0)
    model, base = build_model(44, frame_ms=40).eval(), build_model(44).eval()
    lengths = torch.tensor([16000, 12345])
    assert model.encoder._get_feat_extract_output_lengths(lengths).tolist() == [24, 19]
    assert base.encoder._get_feat_extract_output_lengths(lengths).tolist() == [49, 38]
    assert (model.config.encoder.mask_time_length, base.config.encoder.mask_time_length) == (3, 5)
    assert (model.config.encoder.num_conv_pos_embeddings, base.config.encoder.num_conv_pos_embeddings) == (16, 32)

    audio = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 16000)).astype(np.float32))
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 12345:] = 0
    with torch.no_grad():
        theirs = model.enc_to_dec_proj(model.encoder(audio, attention_mask=mask).last_hidden_state).numpy()
    ours = minis2t2_encode(model, tmp_path, audio, mask)
    assert ours.shape == theirs.shape == (2, 24, 96)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-4)  # fp32, activations of unit scale
    np.testing.assert_allclose(ours[1, :19], theirs[1, :19], atol=1e-4)  # the frames the mask keeps


def unpadded(waves, **_):
    """A feature extractor that hands the batch's waves back as they are (lengths kept)."""
    return {"input_values": waves, "attention_mask": None}


def test_clean_start_batches_begin_clean(monkeypatch):
    """--clean-start N: batch 0 holds the clips as synthesized (only silence around them), batch N
    and later go through the augmentation chain."""
    monkeypatch.setattr(train, "P_WORD_BANK", 0.0)
    monkeypatch.setattr(train, "P_NON_SPEECH", 0.0)
    rng = np.random.default_rng(0)
    clips = [(rng.uniform(-1, 1, int(rng.integers(4000, 8000))) * 3000).astype(np.int16) | 1 for _ in range(40)]
    items = [{"number": i, "british_and": False} for i in range(40)]
    word_id = {w: i + 1 for i, w in enumerate(data.WORDS)}
    labels_of = {n: [5, 2] for n in range(40)}
    batches = Batches(clips, items, [], [], labels_of, word_id, unpadded, 8, 100, 3, clean_start=50)
    sources = {clip.tobytes() for clip in clips}

    def clean(wave):
        spoken = np.flatnonzero(wave)
        return (wave[spoken[0] : spoken[-1] + 1] * 32768).astype(np.int16).tobytes() in sources

    assert all(clean(w) for w in batches[0][0])
    assert not any(clean(w) for w in batches[50][0] + batches[99][0])


def test_padded_batches_add_one_to_two_seconds_on_each_side_and_leave_the_other_batches_as_they_were(monkeypatch):
    """A phase's long_silence_batches share: the clips of a padded batch are each 2-4 s longer than
    the same batch's clips unpadded; the batches that are not padded are the batches of a run
    without the share, sample for sample (the share's draw comes after the batch's own draws)."""
    monkeypatch.setattr(train, "P_WORD_BANK", 0.0)
    monkeypatch.setattr(train, "P_NON_SPEECH", 0.0)
    rng = np.random.default_rng(0)
    clips = [(rng.uniform(-1, 1, int(rng.integers(4000, 8000))) * 3000).astype(np.int16) for _ in range(40)]
    items = [{"number": i, "british_and": False} for i in range(40)]
    word_id = {w: i + 1 for i, w in enumerate(data.WORDS)}
    args = (clips, items, [], [], {n: [5, 2] for n in range(40)}, word_id, unpadded, 4, 40, 3)
    plain, half = Batches(*args), Batches(*args, padded_batches=0.5)
    padded = 0
    for k in range(40):
        before, after = plain[k][0], half[k][0]
        if all(len(a) == len(b) for a, b in zip(before, after)):
            assert all(np.array_equal(a, b) for a, b in zip(before, after))
        else:
            padded += 1
            assert all(2 * SR <= len(b) - len(a) <= 4 * SR for a, b in zip(before, after))
    assert 10 <= padded <= 30  # of 40, at a share of a half


def a_model_folder(folder: Path, weights: dict, phase, start: Path | None = None) -> Path:
    """A model folder as the recipe's steps leave one: weights, a config file, a training record
    (holding its start's as "previous")."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"model_type": "speech-encoder-decoder", "from": folder.name}))
    previous = json.loads((start / "training.json").read_text()) if start else None
    record = {"phase": phase, **train.PHASES.get(phase, {}), "weights": weights["w"].tolist(), "previous": previous}
    (folder / "training.json").write_text(json.dumps(record))
    return folder


def test_average_models_is_the_mean_of_each_weight(tmp_path):
    rng = np.random.default_rng(0)
    a = {"w": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    b = {name: rng.standard_normal(array.shape).astype(np.float32) for name, array in a.items()}
    folders = [a_model_folder(tmp_path / "a", a, 3), a_model_folder(tmp_path / "b", b, 3)]
    train.average_models(folders, tmp_path / "out")
    mean = load_file(tmp_path / "out" / "model.safetensors")
    for name, array in a.items():
        assert mean[name].dtype == np.float32
        np.testing.assert_allclose(mean[name], (array + b[name]) / 2, rtol=0, atol=1e-7, err_msg=name)  # fp32 rounding
    assert json.loads((tmp_path / "out" / "config.json").read_text())["from"] == "a"  # the first folder's files
    record = json.loads((tmp_path / "out" / "training.json").read_text())
    assert record["phase"] == "average" and [r["phase"] for r in record["of"]] == [3, 3]
    assert record["models"] == [str(f) for f in folders]


def test_an_average_names_the_start_of_a_phase_averaged_with_it_and_training_record_restores_it(tmp_path):
    """A phase continued from a model and averaged with it: the average's training.json holds the
    start's record once (the phase's "previous" names it, "of[0]"), so five such phases in a row
    make a record five times as long, not 32 times; training_record gives back the whole tree."""
    start = a_model_folder(tmp_path / "start", {"w": np.zeros(2, np.float32)}, 3)
    sizes = []
    for n in range(4, 9):
        phase = a_model_folder(tmp_path / f"phase-{n}", {"w": np.full(2, n, np.float32)}, n, start)
        train.average_models([start, phase], tmp_path / f"average-{n}")
        record = json.loads((tmp_path / f"average-{n}" / "training.json").read_text())
        assert record["of"][1]["previous"] == "of[0]"
        tree = train.training_record(tmp_path / f"average-{n}")
        assert tree["of"][1]["previous"] == tree["of"][0] == train.training_record(start)
        assert tree["of"][1] | {"previous": None} == json.loads((phase / "training.json").read_text()) | {
            "previous": None}
        sizes.append(len(json.dumps(record)))
        start = tmp_path / f"average-{n}"
    assert sizes[-1] < 6 * sizes[0]


def test_average_models_refuses_models_of_other_shapes(tmp_path):
    folders = [a_model_folder(tmp_path / "a", {"w": np.zeros((2, 3), np.float32)}, 3),
               a_model_folder(tmp_path / "b", {"w": np.zeros((3, 2), np.float32)}, 3)]
    with pytest.raises(ValueError, match=f"^{tmp_path / 'b'}: not the same architecture as {tmp_path / 'a'}"):
        train.average_models(folders, tmp_path / "out")


def test_the_shipped_recipe_averages_two_runs_of_phases_2_and_3_then_each_later_phase_with_its_start(tmp_path,
                                                                                                   monkeypatch):
    """shipped_recipe: phase 1 by torch; phases 2 and 3 from its model by torch, then by the NumPy
    engine; their average; then each phase of CONTINUED by torch from the model before it, averaged
    with it, the last average in --out. Run again, it trains nothing: each step's folder holds its
    finished model."""
    steps = []

    def fake_run(engine):
        def run(phases, settings, args, *_, **__):
            steps.append((engine, phases, args.out, args.init))
            assert settings == train.PHASES
            a_model_folder(args.out, {"w": np.full(2, len(steps), np.float32)}, phases[-1], args.init)
        return run

    monkeypatch.setattr(train, "run_torch", fake_run("torch"))
    monkeypatch.setattr(train_numpy, "run", fake_run("numpy"))
    monkeypatch.setattr(train, "CONTINUED", [4, 5])
    args = argparse.Namespace(out=tmp_path / "model", work=tmp_path / "work", init=None, frame_ms=None, batch_size=10)
    train.shipped_recipe(args, {})
    runs = args.work / "recipe"
    assert steps == [("torch", [1], runs / "phase-1", None), ("torch", [2, 3], runs / "torch", runs / "phase-1"),
                     ("numpy", [2, 3], runs / "numpy", runs / "phase-1"),
                     ("torch", [4], runs / "phase-4", runs / "average"),
                     ("torch", [5], runs / "phase-5", runs / "average-4")]
    np.testing.assert_array_equal(load_file(runs / "average" / "model.safetensors")["w"], [2.5, 2.5])  # steps 2 and 3
    np.testing.assert_array_equal(load_file(runs / "average-4" / "model.safetensors")["w"], [3.25, 3.25])  # and 4
    np.testing.assert_array_equal(load_file(args.out / "model.safetensors")["w"], [4.125, 4.125])  # and 5
    train.shipped_recipe(args, {})
    assert len(steps) == 5
    a_model_folder(runs / "numpy", {"w": np.full(2, 9.0, np.float32)}, 3, runs / "phase-1")  # another NumPy run
    train.shipped_recipe(args, {})  # a new average: phases 4 and 5, trained from the old ones, run again
    assert steps[5:] == [("torch", [4], runs / "phase-4", runs / "average"),
                         ("torch", [5], runs / "phase-5", runs / "average-4")]


def test_the_recipe_will_not_start_from_a_given_model(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "--init", str(DEMO)])
    with pytest.raises(SystemExit) as stop:
        train.main()
    assert stop.value.code == 2
    assert "--init: the shipped model's recipe (--phase all) starts from random weights" in capsys.readouterr().err


def test_recorded_words_missing_package_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "one.wav").write_bytes(b"")
    monkeypatch.setattr(data, "RECORDED_WORDS", {"some-data": (str(tmp_path), {"one.wav": 1, "two.wav": 2})})
    with pytest.raises(SystemExit) as exit_:
        data.recorded_words()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == f"{tmp_path}: two.wav missing; install them with apt-get install some-data\n"


def test_recorded_words_inside_a_zip_archive(tmp_path, monkeypatch, capsys):
    """OpenArena's announcer ships inside a .pk3 (a zip archive): its members are found and read as
    files are (channels averaged, resampled to 16 kHz), and a missing member is the same one-line
    usage error as a missing file."""
    import io
    import zipfile

    import soundfile

    t = np.arange(11025) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    wav = io.BytesIO()
    soundfile.write(wav, np.stack([tone, tone], axis=1), 22050, format="WAV", subtype="PCM_16")
    pak = tmp_path / "pak6-misc.pk3"
    with zipfile.ZipFile(pak, "w") as archive:
        archive.writestr("sound/feedback/one.wav", wav.getvalue())
    monkeypatch.setattr(data, "RECORDED_WORDS", {"openarena-081-misc": (str(pak), {"sound/feedback/one.wav": 1})})
    [item] = data.recorded_words()
    clip = data.read_recorded(item)
    assert item["number"] == 1 and item["archive"] == str(pak) and clip.dtype == np.float32
    np.testing.assert_allclose(clip, minis2t2.audio.resample(tone, 22050, 16000), atol=1e-4)  # 16-bit's step
    monkeypatch.setattr(data, "RECORDED_WORDS", {"openarena-081-misc": (str(pak), {"sound/feedback/two.wav": 2})})
    with pytest.raises(SystemExit) as exit_:
        data.recorded_words()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"{pak}: sound/feedback/two.wav missing; install them with "
                                       "apt-get install openarena-081-misc\n")


def test_recorded_no_number_words_hold_no_number():
    """The no-number set expects an empty output: none of its words may be a number word, and none of
    its files is one of the number sets' files."""
    number_words = {*EN_ONES, *EN_TENS[2:], "hundred", "oh", "nil", "love"}
    for package, (_, names) in data.RECORDED_NO_NUMBER.items():
        for name in names:
            words = Path(name).stem.lower().rstrip("0123456789").split("_")
            assert not number_words & set(words), (package, name)
            assert name not in {**data.RECORDED_WORDS, **data.RECORDED_CLOCK}.get(package, ("", {}))[1], name


def test_tight_trim_and_long_silence_keep_the_speech():
    """evaluate.py's tight-trim and long-silence sets: the trimmed clip starts and ends on samples
    within TIGHT_TRIM_DB of the peak and holds every louder sample; the padded one keeps the clip
    whole in the middle of 1-2 s on each side, its room noise far under the speech."""
    from tools.demo.augment import TIGHT_TRIM_DB, long_silence, noise_bank, tight_trim

    rng = np.random.default_rng(0)
    speech = np.sin(np.arange(4000) / 5).astype(np.float32) * np.hanning(4000).astype(np.float32)
    clip = np.concatenate([np.zeros(3000, np.float32), speech, 1e-5 * rng.standard_normal(2000).astype(np.float32)])
    cut = tight_trim(clip)
    floor = np.abs(clip).max() * 10 ** (-TIGHT_TRIM_DB / 20)
    assert abs(cut[0]) > floor and abs(cut[-1]) > floor and len(cut) < len(speech)
    assert np.abs(cut).max() == np.abs(clip).max() and (np.abs(clip) > floor).sum() == (np.abs(cut) > floor).sum()
    noises = noise_bank(rng, seconds=5)
    quiet_and_noisy = set()
    for _ in range(8):
        padded = long_silence(speech, rng, noises)
        assert 2 * SR <= len(padded) - len(speech) <= 4 * SR
        edges = np.concatenate([padded[:SR], padded[-SR:]])
        quiet_and_noisy.add(bool(np.any(edges)))
        assert np.abs(edges).max() < np.abs(speech).max() * 10 ** (-35 / 20)  # 40-55 dB under, with the noise's peaks
    assert quiet_and_noisy == {False, True}  # both kinds drawn


def test_speaking_style_set(tmp_path, monkeypatch):
    """The speaking-style set as evaluate.py builds it (synthesis stubbed: the items are the point):
    every style per_style times; zero said "oh"; 100-199 said "a hundred ..."; slow and fast beyond
    training's rates (0.8-1.4); whispered and croaky through espeak-ng's own variants."""
    monkeypatch.setattr(data, "espeak_variants", lambda: (["m1", "f2"], ["m3", "klatt"]))
    monkeypatch.setattr(data, "synthesize", lambda jobs: [np.zeros(160, np.int16) for _ in jobs])
    items, clips = data.speaking_style_set(tmp_path, seed=0, per_style=12)
    assert len(items) == len(clips) == 12 * len(data.SPEAKING_STYLES)
    by_style = {style: [it for it in items if it["style"] == style] for style in data.SPEAKING_STYLES}
    assert all(len(group) == 12 for group in by_style.values())
    assert all(data.spoken(it) == "oh" and german(it["number"]) == "null" for it in by_style["oh"])
    for it in by_style["a_hundred"]:
        assert 100 <= it["number"] <= 199 and data.spoken(it).startswith("a hundred")
        assert data.spoken(it) == "a " + english(it["number"], it["british_and"])[len("one "):]
    assert all(it["voice"]["rate"] > 1.4 for it in by_style["slow"])  # training: durations x0.8-1.4
    assert all(it["voice"]["rate"] < 0.8 for it in by_style["fast"])
    assert {it["voice"]["name"].split("+")[1] for it in by_style["whispered"]} <= {"whisper", "whisperf"}
    assert {it["voice"]["name"].split("+")[1] for it in by_style["croaky"]} == {"croak"}
    assert all(it["voice"]["source"] == "espeak" for it in by_style["whispered"] + by_style["croaky"])
    again, _ = data.speaking_style_set(tmp_path, seed=0, per_style=12)  # cached: the same items
    assert again == items


def test_talking_clock_words_are_read_as_headerless_8k_mulaw(tmp_path, monkeypatch):
    """saytime's .au files have no header (libsndfile, and so minis2t2.load_audio, cannot tell their
    rate): read_recorded reads them as CLOCK_FORMAT says, at 16 kHz; a file with a header still goes
    through load_audio."""
    import soundfile

    t = np.arange(4000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    clock = data.CLOCK_FORMAT
    soundfile.write(tmp_path / "7.au", tone, clock["samplerate"], format=clock["format"], subtype=clock["subtype"])
    assert (tmp_path / "7.au").read_bytes()[:4] != b".snd"  # headerless, as saytime ships them
    monkeypatch.setitem(data.RECORDED_CLOCK, "saytime", (str(tmp_path), {"7.au": 7}))
    [item] = data.recorded_words(data.RECORDED_CLOCK)
    clip = data.read_recorded(item)
    assert item["number"] == 7 and clip.dtype == np.float32 and len(clip) == 2 * len(tone)
    spectrum = np.abs(np.fft.rfft(clip[1000:-1000]))
    assert abs(np.argmax(spectrum) * 16000 / (len(clip) - 2000) - 300) < 10  # still a 300 Hz tone
    soundfile.write(tmp_path / "one.wav", tone, 8000)
    with_header = {"number": 1, "file": str(tmp_path / "one.wav"), "voice": {"source": "recorded", "name": "csmash-data"}}
    np.testing.assert_allclose(data.read_recorded(with_header), minis2t2.load_audio(tmp_path / "one.wav", 16000))


def test_style_set_for_phase_2(tmp_path, monkeypatch):
    """Phase 2's training styles (synthesis stubbed: the items are the point): STYLE_CLIPS of each;
    "oh" is zero; "a hundred ..." spells 100-199; teens and tens alone; whispered through espeak-ng's
    own variants on training accents; slow and fast at rates outside the evaluation set's intervals
    where they would coincide (the set's own texts and voices are drawn by another rng)."""
    monkeypatch.setattr(data, "espeak_variants", lambda: (["m1", "f2"], ["m3", "klatt"]))
    monkeypatch.setattr(data, "synthesize", lambda jobs: [np.zeros(160, np.int16) for _ in jobs])
    items, clips = data.style_set(tmp_path, seed=0)
    assert len(items) == len(clips) == sum(data.STYLE_CLIPS.values())
    by_style = {style: [it for it in items if it["style"] == style] for style in data.STYLE_CLIPS}
    assert {style: len(group) for style, group in by_style.items()} == data.STYLE_CLIPS
    assert all(data.spoken(it) == "oh" and it["number"] == 0 for it in by_style["oh"])
    for it in by_style["a_hundred"]:
        assert 100 <= it["number"] <= 199
        assert data.spoken(it) == "a " + english(it["number"], it["british_and"])[len("one "):]
    assert {it["number"] for it in by_style["teens_and_tens"]} == {*range(13, 20), *range(20, 100, 10)}
    assert all(data.spoken(it) == english(it["number"], it["british_and"]) for it in by_style["teens_and_tens"])
    whispered = {it["voice"]["name"] for it in by_style["whispered"]}
    assert {name.split("+")[1] for name in whispered} == {"whisper", "whisperf"}
    assert {name.split("+")[0] for name in whispered} <= set(data.ACCENTS)
    assert all(1 / 0.72 <= it["voice"]["rate"] <= 1 / 0.6 for it in by_style["slow"])
    assert all(1 / 1.55 <= it["voice"]["rate"] <= 1 / 1.35 for it in by_style["fast"])
    assert {it["voice"]["source"] for it in items} == {source for source, _ in data.STYLE_SOURCES}


def test_tight_share_cuts_the_silence():
    """augment's ``tight`` share: a clip with 0.3 s of silence before it comes out no longer than the
    speech stretched by the slowest speed perturbation plus the reverb tail; without it, always longer."""
    from tools.demo.augment import augment, noise_bank

    rng = np.random.default_rng(1)
    speech = (np.sin(np.arange(8000) / 5) * np.hanning(8000)).astype(np.float32)
    clip = np.concatenate([np.zeros(int(0.3 * SR), np.float32), speech])
    noises, others = noise_bank(rng, seconds=3), [speech]
    longest = len(speech) / 0.85 + 0.05 * SR + 1
    for seed in range(12):
        assert len(augment(clip, np.random.default_rng(seed), others, noises, tight=1.0)) <= longest
        assert len(augment(clip, np.random.default_rng(seed), others, noises)) > longest  # >= len(clip) / 1.2


def test_evaluation_sets_are_cached_per_seed(tmp_path, monkeypatch):
    """Another seed is another set: its cache must not be seed 0's (it once was, by name alone)."""
    monkeypatch.setattr(data, "espeak_variants", lambda: (["m1", "f2"], ["m3", "klatt"]))
    monkeypatch.setattr(data, "synthesize", lambda jobs: [np.zeros(160, np.int16) for _ in jobs])
    zero, _ = data.evaluation_set(tmp_path, "piper_joe", 0)
    one, _ = data.evaluation_set(tmp_path, "piper_joe", 1)
    assert [it["number"] for it in zero] != [it["number"] for it in one]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["eval_piper_joe.npz", "eval_piper_joe_seed1.npz"]
    assert data.evaluation_set(tmp_path, "piper_joe", 1)[0] == one
    styles0, _ = data.speaking_style_set(tmp_path, 0, per_style=2)
    styles1, _ = data.speaking_style_set(tmp_path, 1, per_style=2)
    assert styles0 != styles1


def test_each_rate_of_a_set_marks_its_own_items():
    """evaluate.py marks each item correct or not after translating its set; the 8 kHz copy of a set
    once shared the 16 kHz set's items, so the tight-trim and long-silence sets' "plain" figure (read
    from the 16 kHz items) counted the 8 kHz results."""
    from tools.demo.evaluate import add_numbers

    sets = {}
    add_numbers(sets, "voice", "a voice", [{"number": 7}], [np.zeros(1600, np.float32)], also_8k=True)
    (_, items16, _), (_, items8, waves8) = sets["voice"], sets["voice_8k"]
    items8[0]["correct"] = False
    assert "correct" not in items16[0] and items16[0]["expected"] == items8[0]["expected"] == "sieben"
    assert len(waves8[0]) == 1600  # the 8 kHz line, brought back to 16 kHz


def test_the_kokoro_evaluation_set_speaks_only_its_held_out_voice(tmp_path, monkeypatch):
    """The held-out Kokoro set (synthesis stubbed: the items are the point): 200 numbers, each from
    jf_nezumi alone, at a rate in the evaluation sets' range, and no voice of it in any training set."""
    from tools.demo.voices import KOKORO_JA_HELD_OUT

    monkeypatch.setattr(data, "synthesize", lambda jobs: [np.zeros(160, np.int16) for _ in jobs])
    items, clips = data.evaluation_set(tmp_path, "kokoro_ja_held_out_voice", 0)
    assert len(items) == len(clips) == 200
    assert {(it["voice"]["source"], it["voice"]["name"]) for it in items} == {("kokoro_ja", "jf_nezumi")}
    assert all(0.8 <= it["voice"]["rate"] <= 1.35 for it in items)
    training_sources = {source for part in (data.MAIN_SOURCES, data.NON_FREE_SOURCES, data.EXTRA_SOURCES,
                                            data.NEURAL_SOURCES, data.STYLE_SOURCES) for source, _ in part}
    assert "kokoro_ja" not in training_sources and KOKORO_JA_HELD_OUT == ["jf_nezumi"]


def test_phase_4_speaks_with_the_other_kokoro_voices_never_the_held_out_one(tmp_path, monkeypatch):
    """Phase 4's Kokoro clips (synthesis stubbed): every number once and 0-99 twice more, and every
    number word in 20 voices; no voice, alone or in a blend, is jf_nezumi. phase_data draws the clips
    KOKORO_JA_REPEATS times and adds the words to the word bank."""
    from tools.demo.voices import KOKORO_JA_HELD_OUT, KOKORO_JA_TRAIN

    monkeypatch.setattr(data, "synthesize", lambda jobs: [np.full(160, i, np.int16) for i in range(len(jobs))])
    items, clips, word_items, words = data.kokoro_ja_set(tmp_path, 0)
    assert sorted(it["number"] for it in items) == sorted([*range(1000), *range(100), *range(100)])
    assert len(clips) == len(items) and len(words) == len(word_items) == 20 * len(data.WORDS)
    voices = [it["voice"] for it in items + word_items]
    spoken_by = {name for v in voices for name in (v["name"], v.get("blend")) if name}
    assert spoken_by == set(KOKORO_JA_TRAIN) and not spoken_by & set(KOKORO_JA_HELD_OUT)
    assert 0.3 < np.mean([bool(v.get("blend")) for v in voices]) < 0.7  # about half of them blended
    base = {"items": [], "clips": [], "bank_items": [], "bank": [], "work": tmp_path}
    phase_items, phase_clips, bank_items, bank = train.phase_data(base, train.PHASES[4] | {"styles": False})
    assert len(phase_items) == len(phase_clips) == train.KOKORO_JA_REPEATS * len(items)
    assert bank_items == word_items and len(bank) == len(words)


def test_no_number_words_hold_no_number_and_leave_the_recorded_words_out():
    assert data.one_edit_apart("tree", "three") and data.one_edit_apart("fine", "five")
    assert data.one_edit_apart("night", "eight") and data.one_edit_apart("weight", "eight")
    assert not data.one_edit_apart("ten", "ten") and not data.one_edit_apart("tan", "nat")
    candidates = ["hello", "tree", "someone", "often", "eighth", "fine", "won", "to", "time", "racket", "blue",
                  "people", "x", "don't", "café", "twentieth", "dozen", "garden"]
    assert data.no_number_words(candidates) == ["hello", "people", "garden"]
    recorded = {Path(name).stem.lower() for _, names in data.RECORDED_NO_NUMBER.values() for name in names}
    assert not set(data.no_number_words(sorted(recorded))) & recorded


def test_phase_5_adds_training_voices_saying_words_with_an_empty_target(tmp_path, monkeypatch):
    """data.no_number_set (synthesis and wordfreq stubbed: the items are the point): training voices
    only, one to three words of no_number_words each; phase_data adds them to phase 5's clips, and a
    batch of them asks for the empty string (</s> alone) with no words for CTC."""
    import types

    words = ["hello", "garden", "people", "river", "yellow"]
    monkeypatch.setitem(sys.modules, "wordfreq", types.SimpleNamespace(top_n_list=lambda lang, n: words + ["five"]))
    monkeypatch.setattr(data, "synthesize", lambda jobs: [np.full(4000, 100 + i, np.int16) for i in range(len(jobs))])
    monkeypatch.setattr(data, "espeak_variants", lambda: (["m1", "f2"], ["m3"]))
    items, clips = data.no_number_set(tmp_path, 0)
    assert len(items) == len(clips) == data.NO_NUMBER_CLIPS
    assert all(it["number"] is None and 1 <= len(it["text"].split()) <= 3 and set(it["text"].split()) <= set(words)
               for it in items)
    assert {it["voice"]["source"] for it in items} == {s for s, _ in data.NO_NUMBER_SOURCES} - {"festival_extra"}
    two_items, two_clips = data.no_number_set(tmp_path, 0, 2)  # a second part: new clips, the first part kept
    assert two_items[: len(items)] == items and len(two_items) == len(two_clips) == 2 * data.NO_NUMBER_CLIPS
    assert [it["text"] for it in two_items[len(items) :]] != [it["text"] for it in items]
    base = {"items": [], "clips": [], "bank_items": [], "bank": [], "work": tmp_path}
    phase = train.PHASES[5] | {"styles": False, "kokoro_ja": False}
    phase_items, phase_clips, _, _ = train.phase_data(base, phase)
    assert phase_items == items and len(phase_clips) == len(clips)
    monkeypatch.setattr(train, "P_WORD_BANK", 0.0)
    monkeypatch.setattr(train, "P_NON_SPEECH", 0.0)
    batches = Batches(clips, items, [], [], {None: [2]}, {}, unpadded, 4, 10, 0)
    _, _, labels, word_ids = batches[0]
    assert labels.tolist() == [[2]] * 4 and word_ids == [[]] * 4


def test_phase_8_adds_both_of_each_teen_and_ten_pair_said_by_training_voices(tmp_path, monkeypatch):
    """data.teen_ty_set (synthesis stubbed: the items are the point): TEEN_TY_CLIPS clips of numbers
    ending in a teen or a ten, each pair's both sides equally often (13 and 30, 113 and 130, ...),
    by the training voices but Kokoro's; phase_data adds them to phase 8's clips."""
    monkeypatch.setattr(data, "synthesize", lambda jobs: [np.zeros(160, np.int16) for _ in jobs])
    monkeypatch.setattr(data, "espeak_variants", lambda: (["m1", "f2"], ["m3"]))
    items, clips = data.teen_ty_set(tmp_path, 0)
    assert len(items) == len(clips) == data.TEEN_TY_CLIPS
    counts = {n: sum(it["number"] == n for it in items) for n in range(1000)}
    for hundreds in range(0, 1000, 100):
        for k in range(3, 10):
            assert abs(counts[hundreds + 10 + k] - counts[hundreds + 10 * k]) <= 1 and counts[hundreds + 10 * k] >= 14
    assert sum(counts.values()) == sum(counts[h + n] for h in range(0, 1000, 100) for n in (*range(13, 20),
                                                                                          *range(30, 100, 10)))
    assert all(data.spoken(it).replace(",", "") == english(it["number"], it["british_and"]) for it in items)
    assert {it["voice"]["source"] for it in items} <= {s for s, _ in data.NO_NUMBER_SOURCES} - {"festival_extra"}
    base = {"items": [], "clips": [], "bank_items": [], "bank": [], "work": tmp_path}
    phase_items, phase_clips, _, _ = train.phase_data(base, train.PHASES[8] | {"styles": False, "kokoro_ja": False,
                                                                               "no_number_words": 0})
    assert phase_items == items and len(phase_clips) == len(clips)


def test_the_recipes_apt_get_lines_install_every_recorded_package():
    """evaluate.py reads recordings from Debian packages; the recipe's apt-get lines (train.py's
    docstring, the model card) name each, and the robotic countdown says one to ten."""
    packages = {name for table in (data.RECORDED_WORDS, data.RECORDED_CLOCK, data.RECORDED_ROBOTIC,
                                   data.RECORDED_NO_NUMBER, data.RECORDED_VOICE_ACTORS_NO_NUMBER) for name in table}
    card = (DEMO / "README.md").read_text(encoding="utf-8")
    for text in (train.__doc__, card):
        apt = text[text.index("apt-get install"):]
        apt = apt[: apt.index("pip install")]
        assert packages <= set(apt.replace("\\", " ").split())
    assert sorted(data.RECORDED_ROBOTIC["nexuiz-data"][1].values()) == list(range(1, 11))


def test_a_vorbis_sample_written_again_is_the_same_audio_in_other_bytes():
    """Why evaluate.py puts a sample's old bytes back: two Vorbis encodings of the same samples
    differ (the Ogg stream's serial number is random) but decode alike; other samples do not."""
    import io

    import soundfile

    from tools.demo.evaluate import same_audio

    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    files = []
    for wave in (x, x, x[::-1]):
        f = io.BytesIO()
        soundfile.write(f, wave, SR, format="OGG", subtype="VORBIS")
        files.append(f.getvalue())
    assert files[0] != files[1] and same_audio(files[0], files[1])
    assert not same_audio(files[0], files[2])
