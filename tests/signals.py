"""The test signal every test, tool and benchmark feeds the models (NumPy only)."""

import numpy as np


def speech_like(n: int, seed: int) -> np.ndarray:
    """``n`` samples at 16 kHz of a deterministic speech-like signal: five harmonics of a random
    pitch (120-180 Hz) under a 3 Hz envelope, plus a little noise. float32, peak about 0.7."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 120 + 60 * rng.random()
    wave = sum(np.sin(2 * np.pi * f0 * h * t + rng.random() * 6) / h for h in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.random() * 6)
    return (0.3 * wave * envelope + 0.01 * rng.standard_normal(n)).astype(np.float32)
