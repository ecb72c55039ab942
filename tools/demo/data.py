"""The demo model's data: which voice says which number, synthesized once and cached.

Training and evaluation draw from separate seeded random generators, so the evaluation sets do
not depend on the training set (and evaluate.py never synthesizes training audio).

- Training clips: every number 0-999 twelve times, 0-99 (the single words and two-word
  compounds people say most) thirty-six times, from Debian's main voices: 40% espeak-ng (unseen
  variants excluded), 30% flite (kal, kal16, rms, slt), 30% festival (kal, ked, slt HTS); and
  every number four more times, 0-99 twelve more, from its non-free voices: mbrola, SVOX Pico,
  RHVoice (a third each); and every number three more times, 0-99 nine more, from festival's
  other voices: rab and don diphones, and the mbrola voices through festival's own front end;
  and every number four more times, 0-99 eight more, from hibari's neural voice (rate and noise
  seed drawn per clip). One in five is spoken one word at a time ("seventy, three": the
  engines pause at commas).
- A word bank: each English number word alone, in 320 training voices (40 per source group); at
  training time numbers are also composed from it word by word with random pauses, as
  telephone systems speak them.
- Phase 2's styles (``style_set``): 3 800 clips by the training voices of the ways people say
  numbers that the other clips leave out: "oh" for zero, "a hundred", teens and tens alone,
  whispered, slow and fast.
- Phase 4's Kokoro voices (``kokoro_ja_set``), phases 5 and 6's speech without a number
  (``no_number_set``, one part and two: training voices saying wordfreq's frequent words that are
  no number and sound like none; target empty) and phase 8's numbers ending in a teen or a ten
  (``teen_ty_set``).
- Evaluation sets, each with its own numbers: unseen espeak-ng variants; unseen utterances of
  the flite/festival training voices and of hibari's neural voice; flite's ``awb`` voice, held
  out of training entirely; the Piper neural voice ``en_US-joe-medium`` (never trained on), at
  16 kHz and at 8 kHz; Kokoro-82M's Japanese voice jf_nezumi reading English (never trained on);
  number words recorded for three Debian games (``RECORDED_WORDS``), a talking clock
  (``RECORDED_CLOCK``) and a game's robotic countdown (``RECORDED_ROBOTIC``), words of the same
  people that are no number (``RECORDED_NO_NUMBER``) and a game's voice actors' words that are no
  number (``RECORDED_VOICE_ACTORS_NO_NUMBER``), read where apt installs them.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import soundfile

from minis2t2.audio import load_audio, resample
from tools.demo.spell import EN_ONES, EN_TENS, english
from tools.demo.voices import (
    FESTIVAL,
    FESTIVAL_EXTRA,
    FLITE_HELD_OUT,
    FLITE_TRAIN,
    KOKORO_JA_HELD_OUT,
    KOKORO_JA_TRAIN,
    MBROLA,
    PICO,
    RHVOICE,
    synthesize,
)

ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-us-nyc", "en-029",
           "en-gb-x-gbcwmd"]
EXCLUDED_VARIANTS = {"whisper", "whisperf"}  # unvoiced: left to phase 2 (style_set), which trains on them apart
MAIN_SOURCES = [("espeak", 0.4), ("flite", 0.3), ("festival", 0.3)]  # Debian main
NON_FREE_SOURCES = [("mbrola", 1 / 3), ("pico", 1 / 3), ("rhvoice", 1 / 3)]  # Debian non-free
EXTRA_SOURCES = [("festival_extra", 1.0)]  # added in stage 5: festival's rab, don and mbrola voices
NEURAL_SOURCES = [("hibari", 1.0)]  # added in stage 6: hibari's neural voice (PyPI hibari-tts)
WORDS = EN_ONES + [w for w in EN_TENS if w] + ["hundred", "and"]


def espeak_variants() -> tuple[list[str], list[str]]:
    """espeak-ng's voice variants, split: every 5th (sorted) held out for evaluation."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = sorted({line.split()[4].split("/")[-1] for line in out.splitlines()[1:]} - EXCLUDED_VARIANTS)
    held = names[::5]
    return [v for v in names if v not in held], held


def random_voice(source: str, rng: random.Random, espeak_pool: list[str], flite_pool: list[str]) -> dict:
    if source == "espeak":
        name = f"{rng.choice(ACCENTS)}+{rng.choice(espeak_pool)}"
        return {"source": source, "name": name, "rate": rng.uniform(0.8, 1.35), "pitch": rng.uniform(0.5, 1.5)}
    if source == "flite":
        return {"source": source, "name": rng.choice(flite_pool), "rate": rng.uniform(0.8, 1.4),
                "pitch": rng.uniform(0.8, 1.3)}
    if source in ("festival", "festival_extra"):
        name = rng.choice(FESTIVAL if source == "festival" else FESTIVAL_EXTRA)
        return {"source": "festival", "name": name, "rate": rng.uniform(0.8, 1.4), "pitch": rng.uniform(0.8, 1.3)}
    if source == "mbrola":
        return {"source": source, "name": rng.choice(MBROLA), "rate": rng.uniform(0.8, 1.35),
                "pitch": rng.uniform(0.6, 1.4)}
    if source in ("pico", "rhvoice"):
        return {"source": source, "name": rng.choice(PICO if source == "pico" else RHVOICE),
                "rate": rng.uniform(0.8, 1.4), "pitch": rng.uniform(0.8, 1.25)}
    if source == "hibari":
        return {"source": source, "name": "heart", "rate": rng.uniform(0.8, 1.35), "pitch": 1.0,
                "seed": rng.randrange(2**31)}
    if source == "kokoro_ja":
        name, other = rng.sample(KOKORO_JA_TRAIN, 2)
        blend = {"blend": other, "mix": rng.uniform(0.25, 0.75)} if rng.random() < 0.5 else {}
        return {"source": "kokoro_ja", "name": name, "rate": rng.uniform(0.8, 1.35), "pitch": 1.0} | blend
    if source == "kokoro_ja_held_out":
        return {"source": "kokoro_ja", "name": rng.choice(KOKORO_JA_HELD_OUT), "rate": rng.uniform(0.8, 1.35),
                "pitch": 1.0}
    if source == "piper":
        return {"source": source, "name": "en_US-joe-medium", "rate": rng.uniform(0.85, 1.25), "pitch": 1.0}
    raise ValueError(source)


def spoken(item: dict) -> str:
    """What the voice is asked to say: "seventy three", or word by word "seventy, three" (or the
    item's own ``text``: "oh", "a hundred and five")."""
    if "text" in item:
        return item["text"]
    text = english(item["number"], item["british_and"])
    return ", ".join(text.split()) if item["word_by_word"] else text


def make_items(numbers, sources, rng: random.Random, espeak_pool, flite_pool, word_by_word: float = 0.2):
    items = []
    for n in numbers:
        source = rng.choices([s for s, _ in sources], [w for _, w in sources])[0]
        items.append({"number": n, "voice": random_voice(source, rng, espeak_pool, flite_pool),
                      "british_and": rng.random() < 0.3, "word_by_word": rng.random() < word_by_word})
    return items


def cached(work: Path, name: str, build) -> tuple[list, list[np.ndarray]]:
    """Items and their int16 clips: synthesized once, cached as ``work/name.npz``."""
    path = work / f"{name}.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        meta = json.loads(str(data["meta"]))
        return meta, [data[f"a{i}"] for i in range(len(meta))]
    work.mkdir(parents=True, exist_ok=True)
    t = time.time()
    items, jobs = build()
    audio = synthesize(jobs)
    np.savez(path, meta=json.dumps(items), **{f"a{i}": a for i, a in enumerate(audio)})
    print(f"synthesized {len(items)} {name} clips in {time.time() - t:.0f} s", flush=True)
    return items, audio


def concatenated(work: Path, caches) -> tuple[list, list[np.ndarray]]:
    """The items and clips of several ``(name, build)`` caches, one after the other."""
    items, clips = [], []
    for name, build in caches:
        more_items, more_clips = cached(work, name, build)
        items += more_items
        clips += more_clips
    return items, clips


def training_set(work: Path, seed: int):
    """(items, clips) for training: the main voices' part, the non-free voices' part, festival's extra voices'
    part, hibari's part (four caches, in the order the stages added them)."""
    def part(sources, repeats: int, seed_offset: int):
        def build():
            rng = random.Random(seed + seed_offset)
            train_variants, _ = espeak_variants()
            numbers = [n for n in range(1000) for _ in range(repeats)] + [n for n in range(100) for _ in range(2 * repeats)]
            items = make_items(numbers, sources, rng, train_variants, FLITE_TRAIN)
            return items, [(spoken(it), it["voice"]) for it in items]
        return build
    return concatenated(work, [("train", part(MAIN_SOURCES, 12, 0)),
                               ("train_non_free", part(NON_FREE_SOURCES, 4, 2)),
                               ("train_festival_extra", part(EXTRA_SOURCES, 3, 4)),
                               ("train_hibari", part(NEURAL_SOURCES, 4, 6))])


KOKORO_JA_SOURCES = [("kokoro_ja", 1.0)]  # phase 4: Kokoro-82M's Japanese voices reading English (not jf_nezumi)


def kokoro_ja_set(work: Path, seed: int):
    """(items, clips, word-bank items, word-bank clips) for phase 4: every number once and 0-99
    twice more, and every number word in 20 voices, by KOKORO_JA_TRAIN's voices, alone or blended
    two by two; the fifth Japanese voice, jf_nezumi, stays held out."""
    def numbers():
        rng = random.Random(seed + 10)
        items = make_items([*range(1000), *range(100), *range(100)], KOKORO_JA_SOURCES, rng, [], [])
        return items, [(spoken(it), it["voice"]) for it in items]

    def words():
        rng = random.Random(seed + 11)
        items = []
        for _ in range(20):
            voice = random_voice("kokoro_ja", rng, [], [])
            items += [{"word": w, "voice": voice} for w in WORDS]
        return items, [(it["word"], it["voice"]) for it in items]

    return (*cached(work, "train_kokoro_ja", numbers), *cached(work, "words_kokoro_ja", words))


NO_NUMBER_SOURCES = [("espeak", 0.3), ("flite", 0.15), ("festival", 0.15), ("festival_extra", 0.1), ("mbrola", 0.05),
                     ("pico", 0.05), ("rhvoice", 0.1), ("hibari", 0.1)]  # the training voices but Kokoro's (slow)
NO_NUMBER_CLIPS = 1000
NUMBER_LIKE = {  # words that are or sound like a number, or count: never a no-number training text
    "oh", "owe", "nil", "none", "nought", "naught", "won", "to", "too", "for", "fore", "ate", "once", "twice",
    "thrice", "half", "quarter", "dozen", "score", "pair", "couple", "single", "double", "triple", "first", "second",
    "third", "number", "numbers", "thousand", "million", "billion", "trillion", "count", "hundreds", "thousands"}


def one_edit_apart(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by one letter changed, added or removed ("tree" and "three")."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[i + 1 :] == b[i + 1 :] or a[i:] == b[i + 1 :] or a[i + 1 :] == b[i:]


def no_number_words(candidates: list[str]) -> list[str]:
    """The ``candidates`` a voice can say without any hint of a number: letters only, two or more of
    them; not a number word (WORDS, NUMBER_LIKE), not holding one ("someone", "often", "eighth"), not
    one letter from one ("tree", "fine", "night"); and none of the words of the recorded no-number
    files, which stay held out ("racket", "time", "blue" of "blueleads")."""
    numbers = set(WORDS) | NUMBER_LIKE
    stems = [w for w in numbers if len(w) >= 3] + ["thir", "fif", "eigh", "nint", "twen"]
    recorded = [Path(name).stem.lower().replace("voc_", "") for _, names in RECORDED_NO_NUMBER.values()
                for name in names]
    held_out = {part for name in recorded for part in name.split("_")}
    joined = [name.replace("_", "") for name in recorded]
    return [w for w in candidates if w.isascii() and w.isalpha() and len(w) >= 2
            and w not in numbers and w not in held_out
            and not any(stem in w for stem in stems)
            and not any(one_edit_apart(w, n) for n in numbers)
            and not (len(w) >= 3 and any(w in name for name in joined))]


def no_number_set(work: Path, seed: int, parts: int = 1):
    """(items, clips): ``parts`` times NO_NUMBER_CLIPS clips of the training voices (NO_NUMBER_SOURCES)
    saying one to three of the no_number_words() among wordfreq's 2 000 most frequent English words;
    their target is the empty string (``number`` None), as for the silence and noise clips. Each part
    has its own generator and cache (phase 5's is the first)."""
    return concatenated(work, [(f"train_no_number_words{f'_{k}' if k else ''}", no_number_part(seed, k))
                               for k in range(parts)])


def no_number_part(seed: int, k: int):
    """The build function of part ``k`` of no_number_set."""
    def build():
        from wordfreq import top_n_list

        rng = random.Random(seed + 12) if k == 0 else random.Random(f"{seed}-no-number-{k}")
        train_variants, _ = espeak_variants()
        words = no_number_words(top_n_list("en", 2000))
        items = []
        for _ in range(NO_NUMBER_CLIPS):
            source = rng.choices(*zip(*NO_NUMBER_SOURCES))[0]
            items.append({"number": None, "voice": random_voice(source, rng, train_variants, FLITE_TRAIN),
                          "text": " ".join(rng.sample(words, rng.randint(1, 3)))})
        return items, [(it["text"], it["voice"]) for it in items]
    return build


TEEN_TY_CLIPS = 2000


def teen_ty_set(work: Path, seed: int):
    """(items, clips): TEEN_TY_CLIPS clips of the training voices but Kokoro's (NO_NUMBER_SOURCES) saying
    numbers that end in a teen or a ten, both of each pair: 13 and 30, ..., 19 and 90, alone and after
    each hundred (113 and 130, ..., 919 and 990), 140 numbers about 14 times each; random rates,
    "and" 30% and word by word 20% of the time, as in the training set. The -teen / -ty contrast is
    the confusion the held-out sets measure most (awb's "forty" -> vierzehn, the styles' "nine hundred
    thirteen" -> neunhundertdreißig, the talking clock's thirty -> dreizehn)."""
    def build():
        rng = random.Random(f"{seed}-teen-ty")
        train_variants, _ = espeak_variants()
        pairs = [h + n for h in range(0, 1000, 100) for k in range(3, 10) for n in (10 + k, 10 * k)]
        items = make_items([pairs[i % len(pairs)] for i in range(TEEN_TY_CLIPS)], NO_NUMBER_SOURCES, rng,
                           train_variants, FLITE_TRAIN)
        return items, [(spoken(it), it["voice"]) for it in items]
    return cached(work, "train_teen_ty", build)


STYLE_SOURCES = [("espeak", 0.3), ("flite", 0.15), ("festival", 0.15), ("mbrola", 0.1), ("pico", 0.1),
                 ("rhvoice", 0.1), ("hibari", 0.1)]  # the training voices, for phase 2's styles
STYLE_CLIPS = {  # phase 2 of the recipe: style -> clips (SPEAKING_STYLES's ways of saying a number, and the clock's words)
    "oh": 400,  # zero said "oh"
    "a_hundred": 800,  # 100-199 said "a hundred (and) ..."
    "teens_and_tens": 600,  # 13-19 and 20, 30, ..., 90 alone: the -teen/-ty contrast the talking clock measured
    "whispered": 800,  # espeak-ng's whisper and whisperf variants on the training accents
    "slow": 600,  # 0.6-0.72x speaking rate (durations x1.39-1.67)
    "fast": 600,  # 1.35-1.55x speaking rate (durations x0.65-0.74)
}


def style_set(work: Path, seed: int):
    """(items, clips) for phase 2 of the recipe: numbers said the ways SPEAKING_STYLES measures
    (STYLE_CLIPS per style), by the training voices; their texts and rates are drawn apart from
    the evaluation set's (another rng, another rate interval)."""
    def build():
        rng = random.Random(seed + 8)
        train_variants, _ = espeak_variants()
        teens_and_tens = [*range(13, 20), *range(20, 100, 10)]
        items = []
        for style, count in STYLE_CLIPS.items():
            for i in range(count):
                source = "espeak" if style == "whispered" else rng.choices(*zip(*STYLE_SOURCES))[0]
                voice = random_voice(source, rng, train_variants, FLITE_TRAIN)
                number = rng.randrange(1000) if rng.random() < 0.7 else rng.randrange(100)
                british_and = rng.random() < 0.3
                text = None
                if style == "oh":
                    number, text = 0, "oh"
                elif style == "a_hundred":
                    number = 100 + rng.randrange(100)
                    text = "a " + english(number, british_and)[len("one "):]
                elif style == "teens_and_tens":
                    number = teens_and_tens[i % len(teens_and_tens)]
                elif style == "whispered":
                    voice["name"] = voice["name"].split("+")[0] + "+" + rng.choice(["whisper", "whisperf"])
                elif style == "slow":
                    voice["rate"] = rng.uniform(1 / 0.72, 1 / 0.6)
                else:  # fast
                    voice["rate"] = rng.uniform(1 / 1.55, 1 / 1.35)
                items.append({"number": number, "voice": voice, "british_and": british_and, "word_by_word": False,
                              "style": style} | ({"text": text} if text else {}))
        return items, [(spoken(it), it["voice"]) for it in items]
    return cached(work, "train_styles", build)


def word_bank(work: Path, seed: int, voices_per_source: int = 40):
    """({"word", "voice"} items, clips): every number word alone in 40 training voices of each source group."""
    def part(sources, seed_offset: int):
        def build():
            rng = random.Random(seed + seed_offset)
            train_variants, _ = espeak_variants()
            items = []
            for source, _ in sources:
                for _ in range(voices_per_source):
                    voice = random_voice(source, rng, train_variants, FLITE_TRAIN)
                    items += [{"word": w, "voice": voice} for w in WORDS]
            return items, [(it["word"], it["voice"]) for it in items]
        return build
    return concatenated(work, [("words", part(MAIN_SOURCES, 1)),
                               ("words_non_free", part(NON_FREE_SOURCES, 3)),
                               ("words_festival_extra", part(EXTRA_SOURCES, 5)),
                               ("words_hibari", part(NEURAL_SOURCES, 7))])


EVAL_SETS = {  # name: (sources, flite voices, clips, description)
    "espeak_unseen_variants": ([("espeak", 1.0)], [], 300, "espeak-ng, 20 voice variants never trained on"),
    "flite_festival_unseen_utterances": ([("flite", 0.5), ("festival", 0.5)], FLITE_TRAIN, 300,
                                         "flite kal/kal16/rms/slt and festival kal/ked/slt-hts, new utterances"),
    "flite_awb_held_out_voice": ([("flite", 1.0)], FLITE_HELD_OUT, 200, "flite awb, held out of training entirely"),
    "hibari_unseen_utterances": ([("hibari", 1.0)], [], 200,
                                 "hibari's neural voice heart, a training voice, new utterances"),
    "piper_joe": ([("piper", 1.0)], [], 200, "Piper en_US-joe-medium neural voice, never trained on"),
    "kokoro_ja_held_out_voice": ([("kokoro_ja_held_out", 1.0)], [], 200,
                                 "Kokoro-82M's Japanese voice jf_nezumi reading English, held out of training"),
}


SPEAKING_STYLES = {  # style: how it is said
    "slow": "0.65-0.7x speaking rate (durations x1.43-1.54), beyond training's slowest (x1.4)",
    "fast": "1.4-1.5x speaking rate (durations x0.67-0.71), beyond training's fastest (x0.8)",
    "whispered": "espeak-ng's whisper and whisperf variants (unvoiced; trained on in phase 2 only)",
    "croaky": "espeak-ng's croak variant, a creaky voice",
    "oh": "zero said \"oh\"",
    "a_hundred": "100-199 said \"a hundred (and) ...\"",
}


def speaking_style_set(work: Path, seed: int, per_style: int = 40):
    """(items, clips): numbers said the ways people say them that the other sets leave out
    (SPEAKING_STYLES), ``per_style`` clips each, by voices whose plain speech the model knows
    (espeak-ng's held-out variants and the flite/festival training voices; whispered and croaky are
    espeak-ng's own variants), so that the set measures the style, not the voice. Its own rng."""
    def build():
        rng = random.Random(f"{seed}-speaking_style")
        _, eval_variants = espeak_variants()
        items = []
        for style in SPEAKING_STYLES:
            for _ in range(per_style):
                source = "espeak" if style in ("whispered", "croaky") else rng.choice(["espeak", "flite", "festival"])
                voice = random_voice(source, rng, eval_variants, FLITE_TRAIN)
                number = rng.randrange(1000) if rng.random() < 0.7 else rng.randrange(100)
                british_and = rng.random() < 0.3
                text = english(number, british_and)
                if style == "slow":
                    voice["rate"] = rng.uniform(1 / 0.7, 1 / 0.65)
                elif style == "fast":
                    voice["rate"] = rng.uniform(1 / 1.5, 1 / 1.4)
                elif style in ("whispered", "croaky"):
                    variant = rng.choice(["whisper", "whisperf"]) if style == "whispered" else "croak"
                    voice["name"] = voice["name"].split("+")[0] + "+" + variant
                elif style == "oh":
                    number, text = 0, "oh"
                else:  # a_hundred
                    number = 100 + rng.randrange(100)
                    text = "a " + english(number, british_and)[len("one "):]
                items.append({"number": number, "voice": voice, "british_and": british_and, "word_by_word": False,
                              "style": style, "text": text})
        return items, [(spoken(it), it["voice"]) for it in items]
    return cached(work, eval_cache_name("speaking_style", seed), build)


OPENARENA_PAK = "/usr/share/games/openarena/baseoa/pak6-misc.pk3"  # a zip archive, as Quake 3's .pk3 files are

RECORDED_WORDS = {  # package: (folder or zip archive, {file name: number}); game voices, not telephone prompts;
    #                 evaluation only
    "csmash-data": ("/usr/share/games/csmash/wav", {f"{english(n)}.wav": n for n in [*range(21), 30]}),  # umpire
    "scid-data": ("/usr/share/scid/sounds", {f"{n}.wav": n for n in range(1, 9)}),  # chess move announcer
    "openarena-081-misc": (OPENARENA_PAK, {f"sound/feedback/{english(n)}.wav": n for n in (1, 2, 3)}),  # countdown
}


NEXUIZ_PAK = "/usr/share/games/nexuiz/data/data.pk3"  # a zip archive too
RECORDED_ROBOTIC = {  # a game's countdown in a robotic, processed voice (Nexuiz, GPL-2+); evaluation only
    "nexuiz-data": (NEXUIZ_PAK, {f"sound/announcer/robotic/{n}.ogg": n for n in range(1, 11)}),
}


RECORDED_CLOCK = {  # a talking clock's words, spoken by a person (David C Dawson, 2004; GPL); evaluation only
    "saytime": ("/usr/share/saytime", {**{f"{n}.au": n for n in [*range(21), 30, 40, 50]}, "oh.au": 0}),
}
CLOCK_FORMAT = {"format": "RAW", "subtype": "ULAW", "samplerate": 8000, "channels": 1}  # headerless Sun audio


RECORDED_NO_NUMBER = {  # the same people's words that are no number: the expected output is empty; evaluation only
    "csmash-data": ("/usr/share/games/csmash/wav", [f"{w}.wav" for w in ["all", "racket", "table"]]),  # not
    #                                                                       "loveall": love is nil
    "scid-data": ("/usr/share/scid/sounds", [f"{w}.wav" for w in ["Back", "Bishop", "CastleK", "CastleQ", "Check",
                                                                  "King", "Knight", "Mate", "Promote", "Queen",
                                                                  "Rook", "move", *"abcdefghx"]]),
    "saytime": ("/usr/share/saytime", [f"{w}.au" for w in ["am", "and", "exactly", "hour", "hours", "minute",
                                                           "minutes", "oclock", "pm", "second", "seconds",
                                                           "the_time_is"]]),
    "openarena-081-misc": (OPENARENA_PAK, [  # the announcer's words; not the hit sounds, the flag jingles,
        # the files with a number in their name, or the four byte-for-byte copies (excellent_a, ...)
        *(f"sound/feedback/{w}.wav" for w in [
            "accuracy", "assist", "blueleads", "defense", "denied", "excellent", "fight", "fight2", "frags",
            "gauntlet", "humiliation", "impressive", "lostlead", "perfect", "prepare", "redleads", "sudden_death",
            "takenlead", "teamstied", "tiedlead", "vote_failed", "vote_now", "vote_passed", "youlose", "youwin"]),
        *(f"sound/teamplay/voc_{w}.wav" for w in [
            "base_attack", "blue_returned", "blue_scores", "enemy_flag", "red_returned", "red_scores", "team_flag",
            "you_flag"])]),
}

HEDGEWARS_VOICES = "/usr/share/games/hedgewars/Data/Sounds/voices"
HEDGEWARS_PACKS = [  # the English voice packs (not Default_es/_pl/_ru/_uk, Russian, Russian_pl)
    "British", "Classic", "Default", "HillBilly", "Mobster", "Pirate", "Robot", "Singer", "Surfer"]
HEDGEWARS_WORDS = [  # the words every pack has; not the grunts, jumps and laughs, nor "Firstblood"
    "Byebye", "Comeonthen", "Coward", "Cutitout", "Enemydown", "Flawless", "Hello", "Hurry", "Illgetyou", "Incoming",
    "Kamikaze", "Leavemealone", "Melon", "Missed", "Nooo", "Nutter", "Oops", "Reinforcements", "Sameteam", "Stupid",
    "Takecover", "Traitor", "Uh-oh", "Victory", "Watchit", "Yessir", "Youllregretthat"]
RECORDED_VOICE_ACTORS_NO_NUMBER = {  # a game's voice packs: nine voices, accents and characters, saying the same
    # words, none a number; the expected output is empty; evaluation only
    "hedgewars-data": (HEDGEWARS_VOICES, [f"{pack}/{w}.ogg" for pack in HEDGEWARS_PACKS for w in HEDGEWARS_WORDS]),
}


def read_recorded(item: dict, rate: int = 16000) -> np.ndarray:
    """A recorded_words item's clip at ``rate``: files with a header through minis2t2.load_audio (from
    inside a zip archive, through soundfile); the talking clock's headerless 8 kHz mu-law as
    CLOCK_FORMAT says (no header declares its rate)."""
    if item["voice"]["name"] in RECORDED_CLOCK:
        clip, _ = soundfile.read(item["file"], dtype="float32", **CLOCK_FORMAT)
        return resample(clip, CLOCK_FORMAT["samplerate"], rate)
    if "archive" in item:
        with zipfile.ZipFile(item["archive"]) as archive:
            clip, source_rate = soundfile.read(io.BytesIO(archive.read(item["file"])), dtype="float32", always_2d=True)
        return resample(clip.mean(axis=1), source_rate, rate)
    return load_audio(item["file"], rate)


def recorded_files(package: str, folder: str, names) -> list[dict]:
    """{"file"} (and "archive" when ``folder`` is a zip archive) of each of ``names`` in ``folder``; one
    line naming what is missing and the package to install, exit 2, if any is."""
    if Path(folder).is_file():
        with zipfile.ZipFile(folder) as archive:
            inside = set(archive.namelist())
        missing = [name for name in names if name not in inside]
        found = [{"file": name, "archive": folder} for name in names]
    else:
        missing = [name for name in names if not (Path(folder) / name).is_file()]
        found = [{"file": str(Path(folder) / name)} for name in names]
    if missing:  # the recipe's apt-get line was skipped: a usage error
        print(f"{folder}: {', '.join(missing)} missing; install them with apt-get install {package}",
              file=sys.stderr)
        raise SystemExit(2)
    return found


def recorded_words(packages: dict | None = None) -> list[dict]:
    """{"number", "voice", "file"} items of the number words in the packages' folders (RECORDED_WORDS
    unless given, or RECORDED_CLOCK)."""
    items = []
    for package, (folder, files) in (RECORDED_WORDS if packages is None else packages).items():
        items += [{"number": n, "word_by_word": False, "british_and": False,
                   "voice": {"source": "recorded", "name": package}}
                  | found | ({"text": "oh"} if name.startswith("oh.") else {})
                  for found, (name, n) in zip(recorded_files(package, folder, list(files)), files.items())]
    return items


def recorded_no_number(packages: dict | None = None) -> list[dict]:
    """{"text", "voice", "file"} items of the words of RECORDED_NO_NUMBER (or of ``packages``, such as
    RECORDED_VOICE_ACTORS_NO_NUMBER); "text" is the file's name without its folder and suffix
    ("the_time_is")."""
    items = []
    for package, (folder, names) in (RECORDED_NO_NUMBER if packages is None else packages).items():
        items += [{"text": Path(name).stem, "voice": {"source": "recorded", "name": package}} | found
                  for found, name in zip(recorded_files(package, folder, names), names)]
    return items


def evaluation_set(work: Path, name: str, seed: int):
    """(items, clips) of one evaluation set; its own rng, independent of training. Cached per seed
    (``eval_cache_name``)."""
    sources, flite_pool, size, _ = EVAL_SETS[name]

    def build():
        rng = random.Random(f"{seed}-{name}")
        _, eval_variants = espeak_variants()
        numbers = [rng.randrange(1000) if rng.random() < 0.7 else rng.randrange(100) for _ in range(size)]
        items = make_items(numbers, sources, rng, eval_variants, flite_pool)
        return items, [(spoken(it), it["voice"]) for it in items]
    return cached(work, eval_cache_name(name, seed), build)


def eval_cache_name(name: str, seed: int) -> str:
    """An evaluation set's cache: eval_NAME for seed 0 (the first sets' names, kept), eval_NAME_seedS else."""
    return f"eval_{name}" + (f"_seed{seed}" if seed else "")
