"""Tempo and beat positions with Essentia's RhythmExtractor2013.

method="degara": Degara et al., "Reliability-informed beat tracking of musical signals", IEEE TASLP
2012, on complex-spectral-difference onsets; its confidence output is always 0 (Essentia documents this).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio
from models.essentia_runtime import essentia_standard

MIN_SECONDS = 2.0


class RhythmAnalyzer(Analyzer):
    """bpm, beat times (s), and RhythmExtractor2013's secondary outputs for 44.1 kHz mono audio."""

    def __init__(self, method: str = "degara", min_tempo: int = 40, max_tempo: int = 208) -> None:
        es = essentia_standard()
        self._extract = es.RhythmExtractor2013(method=method, minTempo=min_tempo, maxTempo=max_tempo)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run the rhythm extractor on the whole track."""
        if audio.duration < MIN_SECONDS:
            raise AnalyzerError(f"audio is {audio.duration:.2f} s long; tempo needs at least {MIN_SECONDS:.0f} s")
        self._extract.reset()
        bpm, ticks, confidence, estimates, intervals = self._extract(
            np.ascontiguousarray(audio.samples, dtype=np.float32)
        )
        return {
            "bpm": float(bpm),
            "beats": [round(float(t), 4) for t in ticks],
            "beat_count": int(len(ticks)),
            "confidence": float(confidence),
            "bpm_estimates": [float(b) for b in estimates],
            "beat_intervals": [round(float(i), 4) for i in intervals],
        }
