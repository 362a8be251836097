"""Deterministic speech-like test clips: a voiced tone with a gliding pitch and harmonics, syllable-rate
amplitude modulation, noise bursts and a short pause, so every front-end stage sees structure, not white noise."""
from __future__ import annotations

import numpy as np
import soundfile as sf


def clip(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))) ** 2
    bursts = rng.standard_normal(n) * (np.sin(2 * np.pi * 1.3 * t) > 0.8)
    x = 0.25 * voiced * envelope + 0.05 * bursts
    x[int(0.4 * n):int(0.45 * n)] *= 0.01  # a pause
    x = x / np.abs(x).max() * 0.8
    if channels == 1:
        return x.astype(np.float32)
    other = np.roll(x, 37) * 0.6 + 0.02 * rng.standard_normal(n)
    return np.stack([x, other], axis=1).astype(np.float32)


def write(path, seconds: float, sr: int, channels: int = 1, seed: int = 0, subtype: str = "PCM_16"):
    sf.write(str(path), clip(seconds, sr, channels, seed), sr, subtype=subtype)
    return path
