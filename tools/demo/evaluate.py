"""Evaluate the demo model per speech source with minis2t2, check transformers agrees, write samples.

    python -m tools.demo.evaluate        # after tools/demo/train.py; same --work and --out defaults

Every evaluation set (tools/demo/data.py) has its own numbers and its own seeded generator,
independent of the training data. Writes <out>/eval.json: per source, the exact-match accuracy
of minis2t2's NumPy inference and how many outputs transformers reproduces token for token,
with every error; and <out>/samples/: correctly translated held-out recordings from several
synthesizers, at several sample rates and formats, with expected.json.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

import minis2t2
from minis2t2.audio import resample
from tools.demo.augment import SR, TIGHT_TRIM_DB, long_silence, noise_bank, non_speech, tight_trim
from tools.demo.data import (
    EVAL_SETS,
    HEDGEWARS_PACKS,
    HEDGEWARS_WORDS,
    RECORDED_CLOCK,
    RECORDED_NO_NUMBER,
    RECORDED_ROBOTIC,
    RECORDED_VOICE_ACTORS_NO_NUMBER,
    SPEAKING_STYLES,
    evaluation_set,
    read_recorded,
    recorded_no_number,
    recorded_words,
    speaking_style_set,
    spoken,
)
from tools.demo.spell import german
from tools.demo.voices import synthesize

ROOT = Path(__file__).resolve().parents[2]

# (sample rate, format, subtype) for the shipped samples: most not at 16 kHz on purpose
SAMPLE_FORMATS = [(8000, "WAV", "PCM_16"), (11025, "FLAC", "PCM_16"), (22050, "FLAC", "PCM_16"),
                  (44100, "OGG", "VORBIS"), (16000, "WAV", "PCM_16"), (32000, "FLAC", "PCM_24"),
                  (8000, "FLAC", "PCM_16"), (24000, "WAV", "PCM_16")]
SAMPLES_PER_SET = 2
PIPER_POOLED_SEEDS = (0, 1, 2)  # added to --seed: the piper_joe set and two more of its kind


def telephone_rate(wave: np.ndarray) -> np.ndarray:
    """The same clip as an 8 kHz recording (what a telephone line delivers), back at 16 kHz."""
    return resample(resample(wave, SR, 8000), 8000, SR)


def add_numbers(sets: dict, name: str, description: str, items: list[dict], waves: list[np.ndarray],
                also_8k: bool) -> None:
    """Add an evaluation set of spoken numbers (16 kHz waves), and with ``also_8k`` the same clips
    at telephone rate as ``<name>_8k``; each item's expected text is its number in German."""
    for it in items:
        it["expected"] = german(it["number"])
    sets[name] = (description + ", 16 kHz", items, waves)
    if also_8k:
        sets[name + "_8k"] = (description + ", 8 kHz", [dict(it) for it in items],  # its own: each rate marks
                              [telephone_rate(w) for w in waves])                # its own items correct or not


def translate_all(model, hf, waves: list[np.ndarray], batch_size: int):
    """minis2t2 ids, transformers ids (pad removed) and minis2t2's seconds of generate()."""
    ours, theirs, seconds = [], [], 0.0
    pad = model.config.decoder.pad_token_id
    for start in range(0, len(waves), batch_size):
        inputs = model.processor(waves[start : start + batch_size], sampling_rate=SR)
        t = time.time()
        ids = model.generate(inputs["input_values"], inputs["attention_mask"])
        seconds += time.time() - t
        ours += [row[row != pad].tolist() for row in ids]
        with torch.no_grad():
            hf_ids = hf.generate(input_values=torch.from_numpy(inputs["input_values"]),
                                 attention_mask=torch.from_numpy(inputs["attention_mask"])).numpy()
        theirs += [row[row != pad].tolist() for row in hf_ids]
    return ours, theirs, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "weights" / "numbers-en-de")
    p.add_argument("--work", type=Path, default=Path("/tmp/minis2t2-demo2"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--non-speech", type=int, default=60, help="clips without speech (expected output: empty)")
    args = p.parse_args()
    torch.set_num_threads(2)

    model = minis2t2.load(args.out)
    from transformers import SpeechEncoderDecoderModel

    hf = SpeechEncoderDecoderModel.from_pretrained(str(args.out)).eval()
    sets = {}  # name -> (description, items with "expected", waves at 16 kHz)
    for name in EVAL_SETS:
        items, clips = evaluation_set(args.work, name, args.seed)
        add_numbers(sets, name, EVAL_SETS[name][3], items, [c.astype(np.float32) / 32768 for c in clips],
                    also_8k=name == "piper_joe")
    items, waves = [], []  # Piper judged over more clips: a 200-clip set's standard error is 2-2.5 points here
    for seed in PIPER_POOLED_SEEDS:
        seed_items, clips = evaluation_set(args.work, "piper_joe", args.seed + seed)
        items, waves = items + [dict(it) for it in seed_items], waves + [c.astype(np.float32) / 32768 for c in clips]
    add_numbers(sets, "piper_joe_pooled", f"{EVAL_SETS['piper_joe'][3]}: the {len(items)} clips of the sets of seeds "
                f"{', '.join(str(args.seed + k) for k in PIPER_POOLED_SEEDS)} pooled", items, waves, also_8k=True)
    items = recorded_words()
    add_numbers(sets, "recorded_words", "number words recorded for Debian games (csmash-data's umpire, scid-data's "
                "move announcer, openarena-081-misc's announcer)", items, [read_recorded(it) for it in items],
                also_8k=True)
    items = recorded_words(RECORDED_ROBOTIC)
    add_numbers(sets, "recorded_robotic", "a game's countdown, one to ten, in a robotic, processed voice "
                "(nexuiz-data's announcer)", items, [read_recorded(it) for it in items], also_8k=False)
    items = recorded_words(RECORDED_CLOCK)
    clock = [read_recorded(it) for it in items]
    add_numbers(sets, "recorded_clock", "a person's number words for a talking clock (saytime), cut tight, "
                "8 kHz mu-law", items, clock, also_8k=False)
    silence = np.zeros(int(0.3 * SR), np.float32)
    add_numbers(sets, "recorded_clock_padded", "the same words with 0.3 s of silence on each side",
                [dict(it) for it in items], [np.concatenate([silence, w, silence]) for w in clock], also_8k=False)
    rng = np.random.default_rng(args.seed)
    babble_source, noises = sets["espeak_unseen_variants"][2][:20], noise_bank(rng, seconds=5)
    # the synthetic held-out clips again, cut tight and padded long: the model should not depend on the silence
    synthetic = list(EVAL_SETS)
    items = [dict(it) for name in synthetic for it in sets[name][1]]
    waves = [w for name in synthetic for w in sets[name][2]]
    tight = (f"the {len(items)} synthetic held-out clips above, each cut from its first to its last sample within "
             f"{TIGHT_TRIM_DB} dB of its peak")
    sets["tight_trim"] = (tight, items, [tight_trim(w) for w in waves])
    padded = (f"the same {len(items)} clips with 1-2 s of digital silence or room noise (40-55 dB under the peak) "
              "on each side")
    padding_rng = np.random.default_rng([args.seed, 1])  # its own: the other sets' draws stay as they were
    room = noise_bank(padding_rng, seconds=12)  # longer than the longest clip with 4 s around it
    sets["long_silence"] = (padded, [dict(it) for it in items], [long_silence(w, padding_rng, room) for w in waves])
    items, clips = speaking_style_set(args.work, args.seed)
    add_numbers(sets, "speaking_style", "slow and fast speech (0.65-0.7x, 1.4-1.5x), whispered, croaky, zero as \"oh\", "
                "\"a hundred\": espeak-ng's held-out variants and the flite/festival training voices", items,
                [c.astype(np.float32) / 32768 for c in clips], also_8k=False)
    items = recorded_no_number()
    words = (f"words that are no number recorded for the same {len(RECORDED_NO_NUMBER)} packages (\"racket\", "
             "\"Bishop\", \"oclock\", \"prepare\", ...); expected output: empty")
    sets["recorded_no_number"] = (words, [it | {"expected": ""} for it in items], [read_recorded(it) for it in items])
    items = [it | {"voice": {"source": "recorded", "name": f"hedgewars-data {Path(it['file']).parent.name}"}}
             for it in recorded_no_number(RECORDED_VOICE_ACTORS_NO_NUMBER)]  # the voice pack names the speaker
    packs = (f"{len(HEDGEWARS_WORDS)} words (\"Hello\", \"Take cover\", \"Victory\", ...) said by each of "
             f"{len(HEDGEWARS_PACKS)} voice packs of hedgewars-data; expected output: empty")
    sets["recorded_voice_packs_no_number"] = (packs, [it | {"expected": ""} for it in items],
                                              [read_recorded(it) for it in items])
    sets["non_speech"] = ("silence, hiss, hum, coloured noise and far babble, 0.3-2.5 s; expected output: empty",
                          [{"expected": ""} for _ in range(args.non_speech)],
                          [non_speech(int(rng.uniform(0.3, 2.5) * SR), rng,
                                      [babble_source[i] for i in rng.choice(20, 4)], noises)
                           for _ in range(args.non_speech)])

    report, seconds, clips = {}, 0.0, 0
    for name, (description, items, waves) in sets.items():
        ours, theirs, took = translate_all(model, hf, waves, args.batch_size)
        seconds, clips = seconds + took, clips + len(waves)
        texts = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in ours]
        correct = [t == it["expected"] for t, it in zip(texts, items)]
        for it, ok in zip(items, correct):
            it["correct"] = ok
        report[name] = {
            "description": description,
            "clips": len(items),
            "exact_match": round(float(np.mean(correct)), 4),
            "transformers_token_identical": f"{sum(a == b for a, b in zip(ours, theirs))}/{len(items)}",
            "errors": [{"said": spoken(it) if {"number", "text"} & it.keys() else "",
                        "voice": it.get("voice", {}).get("name", ""), "got": t}
                       for t, it, ok in zip(texts, items, correct) if not ok],
        }
        print(f"{name}: {report[name]['exact_match']:.3f} ({sum(correct)}/{len(items)}), transformers identical "
              f"{report[name]['transformers_token_identical']}", flush=True)
    plain = [it["correct"] for name in synthetic for it in sets[name][1]]
    for name in ("tight_trim", "long_silence"):
        report[name]["plain_clips_exact_match"] = round(float(np.mean(plain)), 4)
    report["speaking_style"]["by_style"] = {
        style: round(float(np.mean([it["correct"] for it in sets["speaking_style"][1] if it["style"] == style])), 4)
        for style in SPEAKING_STYLES}
    report["minis2t2_generate_seconds_per_clip"] = round(seconds / clips, 4)
    (args.out / "eval.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    write_samples(model, args.out / "samples", sets)


def write_samples(model, samples: Path, sets) -> None:
    """Correctly translated held-out clips, two per speech source, numbers whose units and tens swap
    places in German first; kept only if the file, resampled and encoded, is under 95 kB and still
    translates correctly. A file whose audio is what the folder held before keeps its old bytes
    (an Ogg stream's serial number is random: a Vorbis file's bytes change from run to run while
    its samples do not)."""
    samples.mkdir(exist_ok=True)
    before = {}
    for old in samples.iterdir():
        before[old.name] = old.read_bytes()
        old.unlink()
    expected = {}
    formats = itertools.cycle(SAMPLE_FORMATS)
    for name in ("espeak_unseen_variants", "flite_festival_unseen_utterances", "flite_awb_held_out_voice",
                 "piper_joe"):
        _, items, waves = sets[name]
        order = sorted(range(len(items)), key=lambda i: (items[i]["number"] % 10 == 0 or items[i]["number"] % 100 < 20,
                                                         i))
        wrote = 0
        for i in order:
            if wrote == SAMPLES_PER_SET or not items[i]["correct"] or len(waves[i]) > 3 * SR:
                continue
            rate, fmt, subtype = next(formats)
            voice = items[i]["voice"]
            label = f"{voice['source']}-{voice['name'].replace('+', '-')}"
            file = samples / f"{items[i]['number']:03d}_{label}_{rate}.{fmt.lower()}"
            soundfile.write(file, resample(waves[i], SR, rate), rate, format=fmt, subtype=subtype)
            if file.stat().st_size > 95_000 or model.translate(file) != items[i]["expected"]:  # small, still right
                file.unlink()
                continue
            if file.name in before and same_audio(before[file.name], file.read_bytes()):
                file.write_bytes(before[file.name])
            expected[file.name] = {"english": spoken(items[i]), "german": items[i]["expected"],
                                   "source": voice["source"], "voice": voice["name"]}
            wrote += 1
    expected.update(showcase(model, samples))
    (samples / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(expected)} samples to {samples}")


def same_audio(a: bytes, b: bytes) -> bool:
    """Whether two sound files decode to the same samples at the same rate."""
    (x, rate_x), (y, rate_y) = (soundfile.read(io.BytesIO(f)) for f in (a, b))
    return rate_x == rate_y and np.array_equal(x, y)


SHOWCASE_VOICES = [  # "seventy three" for the notebooks' cross-attention picture: voices never trained on first
    {"source": "piper", "name": "en_US-joe-medium", "rate": 1.0, "pitch": 1.0},
    {"source": "flite", "name": "awb", "rate": 1.0, "pitch": 1.0},
    {"source": "festival", "name": "cmu_us_slt_arctic_hts", "rate": 1.0, "pitch": 1.0},
    {"source": "espeak", "name": "en-us", "rate": 1.0, "pitch": 1.0},
]


def showcase(model, samples: Path) -> dict:
    """"seventy three" -> dreiundsiebzig at 16 kHz, in the first of SHOWCASE_VOICES the model gets right."""
    for voice, clip in zip(SHOWCASE_VOICES, synthesize([("seventy three", v) for v in SHOWCASE_VOICES])):
        wave = clip.astype(np.float32) / 32768
        if model.translate(wave, sampling_rate=SR) == "dreiundsiebzig":
            file = samples / f"073_{voice['source']}-{voice['name']}_16000.wav"
            soundfile.write(file, wave, SR, subtype="PCM_16")
            return {file.name: {"english": "seventy three", "german": "dreiundsiebzig", "source": voice["source"],
                                "voice": voice["name"]}}
    raise RuntimeError("no showcase voice says 'seventy three' in a way the model understands")


if __name__ == "__main__":
    main()
