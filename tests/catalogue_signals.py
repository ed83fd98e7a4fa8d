"""Extra known-answer signals for the classic catalogue: a synthetic drum groove at a chosen tempo."""

from __future__ import annotations

import numpy as np


def drum_groove(bpm: float, seconds: float = 20.0, sample_rate: int = 44100) -> np.ndarray:
    """Mono float32 rock groove: kick on beats 1/3, snare on 2/4, hi-hat on every eighth note.

    At 180 BPM Essentia's tempo estimators read it at 90 (the kick/snare alternation), the half-tempo
    failure the octave-corrected tempo model exists for.
    """
    rng = np.random.default_rng(1)
    n = int(seconds * sample_rate)
    out = np.zeros(n)
    t = np.arange(int(0.25 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-t / 0.02)) * t) * np.exp(-t / 0.08)
    snare = (0.6 * rng.standard_normal(len(t)) + np.sin(2 * np.pi * 190 * t)) * np.exp(-t / 0.05)
    hat = np.diff(0.3 * rng.standard_normal(len(t)) * np.exp(-t / 0.01), prepend=0.0)
    half_beat = 30.0 / bpm
    k = 0
    while k * half_beat < seconds - 0.3:
        start = int(k * half_beat * sample_rate)
        end = min(start + len(t), n)
        out[start:end] += hat[: end - start]
        if k % 2 == 0:
            out[start:end] += (kick if (k // 2) % 2 == 0 else snare)[: end - start]
        k += 1
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)
