"""Tempo and beat positions with Essentia's RhythmExtractor2013.

method="degara": Degara et al., "Reliability-informed beat tracking of musical signals", IEEE TASLP
2012, on complex-spectral-difference onsets; its confidence output is always 0 (Essentia documents this).
method="multifeature": Zapata, Davies & Gómez, "Multi-feature beat tracking", IEEE/ACM TASLP 2014; its
confidence is the mean mutual agreement of the committee of trackers (0-5.32, above ~3.5 is reliable).
With ``bpm_curve_seconds`` set, a local tempo curve is added: 60 / median inter-beat interval of the
beats within a sliding window centred on each beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, AudioInput
from models.essentia_runtime import essentia_standard


class RhythmAnalyzer(Analyzer):
    """bpm, beat times (s), and RhythmExtractor2013's secondary outputs for 44.1 kHz mono audio."""

    inputs = {"audio": AudioInput(sample_rate=44100, channels="mono", min_seconds=2.0)}  # the extractor's own rate

    def __init__(
        self, method: str = "degara", min_tempo: int = 40, max_tempo: int = 208, bpm_curve_seconds: float | None = None
    ) -> None:
        es = essentia_standard()
        self.bpm_curve_seconds = bpm_curve_seconds
        self._extract = es.RhythmExtractor2013(method=method, minTempo=min_tempo, maxTempo=max_tempo)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run the rhythm extractor on the whole track."""
        x = np.ascontiguousarray(audio.samples, dtype=np.float32)
        if not np.any(x):
            raise AnalyzerError("no beats in digital silence")  # Essentia would answer 738 BPM
        self._extract.reset()
        bpm, ticks, confidence, estimates, intervals = self._extract(x)
        result: dict[str, Any] = {
            "bpm": float(bpm),
            "beats": [round(float(t), 4) for t in ticks],
            "beat_count": int(len(ticks)),
            "confidence": float(confidence),
            "bpm_estimates": [float(b) for b in estimates],
            "beat_intervals": [round(float(i), 4) for i in intervals],
        }
        if self.bpm_curve_seconds:
            result["bpm_curve"] = bpm_curve(np.asarray(ticks, dtype=np.float64), self.bpm_curve_seconds)
        return result


def bpm_curve(beats: np.ndarray, window_seconds: float) -> dict[str, list[float]]:
    """Local tempo at each beat: 60 / median of the inter-beat intervals within +-window/2 of it."""
    if len(beats) < 2:
        return {"times": [], "bpm": []}
    intervals = np.diff(beats)
    mids = (beats[:-1] + beats[1:]) / 2
    times, tempo = [], []
    for t in beats:
        near = intervals[np.abs(mids - t) <= window_seconds / 2]
        if len(near):
            times.append(round(float(t), 4))
            tempo.append(round(60.0 / float(np.median(near)), 3))
    return {"times": times, "bpm": tempo}
