"""On-the-fly speaker and channel augmentation for the demo model's training clips (float32, 16 kHz).

Each function takes a clip and a numpy Generator and returns a new clip; ``augment`` chains them
with the probabilities below. Everything runs in NumPy/SciPy (plus sox for the GSM codec), fast enough to run in a
data-loader worker beside training.
"""

from __future__ import annotations

import subprocess

import numpy as np
from scipy import signal

SR = 16000


def speed(x: np.ndarray, rng: np.random.Generator, low: float = 0.85, high: float = 1.2) -> np.ndarray:
    """Kaldi-style speed perturbation: resampling by factor f changes tempo, pitch and formants
    (vocal-tract length) together, as a shorter or longer speaker would."""
    f = rng.uniform(low, high)
    return signal.resample_poly(x, 100, round(100 * f)).astype(np.float32)


def pad_silence(x: np.ndarray, rng: np.random.Generator, most: float = 0.25) -> np.ndarray:
    """Random leading and trailing silence, 0-``most`` seconds each."""
    lead, trail = (int(rng.uniform(0, most) * SR) for _ in range(2))
    return np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])


def eq(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random spectral tilt (a first-order pre-/de-emphasis) and one peaking filter of +-9 dB."""
    a = rng.uniform(-0.6, 0.95)
    x = signal.lfilter([1.0, -a], [1.0], x) if rng.random() < 0.5 else signal.lfilter([1.0 - abs(a)], [1.0, -a], x)
    f0, gain_db, q = rng.uniform(150, 5000), rng.uniform(-9, 9), rng.uniform(0.5, 3)
    w0, amp = 2 * np.pi * f0 / SR, 10 ** (gain_db / 40)
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp]
    den = [1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp]  # RBJ cookbook peaking EQ
    return signal.lfilter(b, den, x).astype(np.float32)


def reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Room reverb: convolution with a synthetic impulse response, exponentially decaying noise
    with RT60 of 0.15-0.8 s after a direct path, mixed at a random direct-to-reverberant ratio."""
    rt60 = rng.uniform(0.15, 0.8)
    t = np.arange(int(rt60 * SR)) / SR
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.003 * SR)] = 0  # first reflections arrive after ~1 m of path
    ir = tail / np.sqrt(np.sum(tail**2)) * 10 ** (-rng.uniform(0, 12) / 20)
    ir[0] = 1.0
    return signal.fftconvolve(x, ir)[: len(x) + int(0.05 * SR)].astype(np.float32)


def telephone(x: np.ndarray, rng: np.random.Generator, codec: str | None = None) -> np.ndarray:
    """A telephone line: band-pass 300-3400 Hz, 8 kHz, then G.711 "mulaw" or the "gsm" 06.10 codec
    (drawn at random when ``codec`` is None)."""
    sos = signal.butter(4, [rng.uniform(200, 400), rng.uniform(3000, 3600)], btype="bandpass", fs=SR, output="sos")
    y = signal.resample_poly(signal.sosfilt(sos, x), 1, 2)  # 8 kHz
    if codec is None:
        codec = "mulaw" if rng.random() < 0.5 else "gsm"
    y = mulaw(y) if codec == "mulaw" else gsm(y)
    return signal.resample_poly(y, 2, 1).astype(np.float32)


def mulaw(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """8-bit G.711 mu-law round trip."""
    peak = np.max(np.abs(x)) + 1e-9
    y = np.sign(x) * np.log1p(mu * np.abs(x / peak)) / np.log1p(mu)
    y = np.round((y + 1) / 2 * mu) / mu * 2 - 1  # 256 levels
    return np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu * peak


def gsm(x: np.ndarray) -> np.ndarray:
    """GSM 06.10 full-rate codec round trip at 8 kHz, through sox."""
    peak = np.max(np.abs(x)) + 1e-9
    raw = (x / peak * 0.7 * 32767).astype("<i2").tobytes()
    fmt = ["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1"]
    coded = subprocess.run(["sox", *fmt, "-", "-t", "gsm", "-"], input=raw, capture_output=True, check=True).stdout
    back = subprocess.run(["sox", "-t", "gsm", "-r", "8000", "-c", "1", "-", *fmt, "-"], input=coded,
                          capture_output=True, check=True).stdout
    y = np.frombuffer(back, "<i2").astype(np.float32) / 32767 / 0.7 * peak
    return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]


def source_rate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Recorded at another rate (8-48 kHz) and resampled back to 16 kHz, as the processor does."""
    rate = int(rng.choice([8000, 11025, 12000, 22050, 24000, 32000, 44100, 48000]))
    g = np.gcd(rate, SR)
    y = signal.resample_poly(x, rate // g, SR // g)
    return signal.resample_poly(y, SR // g, rate // g).astype(np.float32)


def noise_bank(rng: np.random.Generator, seconds: float = 20.0) -> list[np.ndarray]:
    """Long white, pink (1/f) and brown (1/f^2) noises, unit RMS, to cut random slices from."""
    n = int(seconds * SR)
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    bank = []
    for exponent in (0.0, 1.0, 2.0):
        noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / f ** (exponent / 2), n)
        bank.append((noise / np.sqrt(np.mean(noise**2))).astype(np.float32))
    return bank


def colored_noise(n: int, rng: np.random.Generator, bank: list[np.ndarray]) -> np.ndarray:
    """A random slice of one of the bank's noises (n samples, shorter than the bank's)."""
    noise = bank[rng.integers(len(bank))]
    start = int(rng.integers(0, len(noise) - n))
    return noise[start : start + n] * rng.choice([-1.0, 1.0])


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    power = np.mean(x**2) + 1e-10
    return x + noise[: len(x)] * np.sqrt(power / 10 ** (snr_db / 10) / (np.mean(noise[: len(x)] ** 2) + 1e-10))


def babble(n: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Several other utterances summed, each at a random offset: a crowd saying numbers."""
    out = np.zeros(n, np.float32)
    for other in others:
        start = int(rng.integers(0, max(1, n - len(other) // 2)))
        piece = other[: n - start]
        out[start : start + len(piece)] += piece / (np.sqrt(np.mean(piece**2)) + 1e-9)
    return out


def augment(x: np.ndarray, rng: np.random.Generator, others: list[np.ndarray], noises: list[np.ndarray],
            tight: float = 0.0) -> np.ndarray:
    """The whole chain, each step with its probability; ``others`` are clips for babble noise,
    ``noises`` a noise_bank. With probability ``tight`` the clip is cut tightly (tight_trim at
    30-45 dB under its peak) instead of padded with silence (0 draws no random number for it, so
    a chain without it replays exactly)."""
    if rng.random() < 0.8:
        x = speed(x, rng)
    if tight and rng.random() < tight:
        x = tight_trim(x, rng.uniform(30, 45))
    else:
        x = pad_silence(x, rng)
    if rng.random() < 0.5:
        x = eq(x, rng)
    if rng.random() < 0.3:
        x = reverb(x, rng)
    if rng.random() < 0.15:
        x = add_noise(x, babble(len(x), others, rng), rng.uniform(8, 25))
    if rng.random() < 0.6:
        x = add_noise(x, colored_noise(len(x), rng, noises), rng.uniform(5, 40))
    if rng.random() < 0.3:
        x = telephone(x, rng)
    elif rng.random() < 0.3:
        x = source_rate(x, rng)
    x = x * 10 ** (rng.uniform(-25, 6) / 20) / (np.max(np.abs(x)) + 1e-9) * 0.5
    return x.clip(-1, 1).astype(np.float32)


def non_speech(n: int, rng: np.random.Generator, others: list[np.ndarray], noises: list[np.ndarray]) -> np.ndarray:
    """``n`` samples with no number in them: digital silence, hiss, hum, coloured noise or far babble."""
    kind = rng.integers(5)
    if kind == 0:
        x = np.zeros(n, np.float32)
    elif kind == 1:
        x = rng.standard_normal(n).astype(np.float32) * 1e-4
    elif kind == 2:
        t = np.arange(n) / SR
        x = (np.sin(2 * np.pi * rng.choice([50, 60]) * t) + 0.3 * rng.standard_normal(n)).astype(np.float32)
    elif kind == 3:
        x = colored_noise(n, rng, noises)
    else:
        x = babble(n, others, rng) * 0.1 + colored_noise(n, rng, noises)  # speech far below the noise
    x = x * 10 ** (rng.uniform(-50, -6) / 20)
    if rng.random() < 0.3:
        x = telephone(x, rng)
    return x.clip(-1, 1).astype(np.float32)


TIGHT_TRIM_DB = 40  # a tight cut: from the first to the last sample within 40 dB of the clip's peak


def tight_trim(x: np.ndarray, below_peak_db: float = TIGHT_TRIM_DB) -> np.ndarray:
    """The clip from its first to its last sample above the noise floor, taken as ``below_peak_db``
    under its peak: what a recording cut tightly around the word looks like."""
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (-below_peak_db / 20))
    return x[loud[0] : loud[-1] + 1] if loud.size else x


def long_silence(x: np.ndarray, rng: np.random.Generator, noises: list[np.ndarray]) -> np.ndarray:
    """1-2 s on each side: digital silence half the time, else room noise (a noise_bank slice, 40-55 dB
    under the clip's peak) running through the whole clip, as a microphone left open records it."""
    lead, trail = (int(rng.uniform(1, 2) * SR) for _ in range(2))
    y = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])
    if rng.random() < 0.5:
        level = np.abs(x).max() * 10 ** (-rng.uniform(40, 55) / 20)
        y = y + colored_noise(len(y), rng, noises) * level
    return y.astype(np.float32)

