"""Loudness per EBU R128 / ITU-R BS.1770-4 with Essentia's LoudnessEBUR128.

Runs on the file's own channels at its own sample rate (the K-weighting filters depend on the rate).
Mono follows BS.1770: the single channel has weight 1.0, so it is fed as left with a silent right
channel rather than duplicated (duplicating would read 3.01 LU too loud).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio
from models.essentia_runtime import essentia_standard

MIN_SECONDS = 0.4  # one momentary (400 ms) block


SILENCE_FLOOR = -300.0  # Essentia floors the power of digital silence at 1e-30, i.e. -300.691 LUFS


def _finite(value: float) -> float | None:
    """A loudness in LUFS, or null for digital silence (Essentia's -300.691 floor, or -inf)."""
    value = float(value)
    return round(value, 3) if math.isfinite(value) and value > SILENCE_FLOOR else None


def _curve(values: np.ndarray) -> list[float | None]:
    """A loudness series with silent blocks as null."""
    return [_finite(v) for v in values]


class LoudnessEBUR128Analyzer(Analyzer):
    """Integrated loudness (LUFS), loudness range (LU), max momentary/short-term and their curves."""

    def __init__(self, hop_seconds: float = 0.1, curves: bool = True) -> None:
        self._es = essentia_standard()
        self.hop_seconds = hop_seconds
        self.curves = curves
        self._by_rate: dict[int, Any] = {}

    def _algorithm(self, sample_rate: int) -> Any:
        """One configured LoudnessEBUR128 per sample rate seen (filters are rate-specific)."""
        if sample_rate not in self._by_rate:
            self._by_rate[sample_rate] = self._es.LoudnessEBUR128(
                sampleRate=float(sample_rate), hopSize=self.hop_seconds
            )
        return self._by_rate[sample_rate]

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Measure the track; mono and stereo are supported, other layouts get a clear error."""
        x = audio.samples if audio.samples.ndim == 2 else audio.samples[np.newaxis, :]
        if x.shape[0] > 2:
            raise AnalyzerError(f"loudness-ebur128 supports mono and stereo audio; this file has {x.shape[0]} channels")
        if audio.duration < MIN_SECONDS:
            raise AnalyzerError(f"audio is {audio.duration:.2f} s long; loudness needs at least 0.4 s")
        if x.shape[0] == 1:
            x = np.vstack([x, np.zeros_like(x)])
        stereo = np.ascontiguousarray(x.T, dtype=np.float32)
        algo = self._algorithm(audio.sample_rate)
        algo.reset()
        momentary, short_term, integrated, lra = algo(stereo)
        result: dict[str, Any] = {
            "integrated_loudness": round(float(integrated), 3),
            "loudness_range": round(float(lra), 3),
            "momentary_max": _finite(np.max(momentary)) if len(momentary) else None,
            "short_term_max": _finite(np.max(short_term)) if len(short_term) else None,
            "channels": audio.channel_count,
            "sample_rate": audio.sample_rate,
        }
        if self.curves:
            result["hop_seconds"] = self.hop_seconds
            result["momentary"] = _curve(momentary)
            result["short_term"] = _curve(short_term)
        return result
