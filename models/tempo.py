"""Tempo estimators beyond RhythmExtractor2013: Percival's and an octave-corrected ensemble.

PercivalBpmEstimator: Percival & Tzanetakis, "Streamlined tempo estimation based on autocorrelation and
cross-correlation with pulses", IEEE/ACM TASLP 2014. The octave correction is ours (see OctaveTempoAnalyzer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, AudioInput
from models.essentia_runtime import essentia_standard

AUDIO = AudioInput(sample_rate=44100, channels="mono", min_seconds=2.0)


class PercivalAnalyzer(Analyzer):
    """Global tempo (BPM) with Essentia PercivalBpmEstimator on 44.1 kHz mono audio."""

    inputs = {"audio": AUDIO}

    def __init__(self, min_bpm: int = 50, max_bpm: int = 210) -> None:
        es = essentia_standard()
        self._estimate = es.PercivalBpmEstimator(sampleRate=AUDIO.sample_rate, minBPM=min_bpm, maxBPM=max_bpm)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run the estimator on the whole track."""
        x = np.ascontiguousarray(audio.samples, dtype=np.float32)
        self._estimate.reset()
        bpm = float(self._estimate(x))
        if not bpm > 0:
            raise AnalyzerError("no tempo found (no periodic onsets: silence?)")
        return {"bpm": bpm}


class OctaveTempoAnalyzer(Analyzer):
    """Tempo with the octave (x2 / x0.5) chosen from onset density, for fast tracks read at half tempo.

    Percival's estimate P fixes the tempo class (it rarely makes 3:2 errors); the octave is then doubled
    when there are more than ``max_onsets_per_beat`` onsets (Essentia OnsetRate) per beat at P, i.e. when P
    counts half notes, and finally folded into ``prefer_range`` (inclusive BPM bounds, a tempo prior).
    """

    inputs = {"audio": AUDIO}

    def __init__(
        self, prefer_range: tuple[float, float] | list[float] = (60.0, 200.0), max_onsets_per_beat: float = 2.5
    ) -> None:
        lo, hi = float(prefer_range[0]), float(prefer_range[1])
        if not (0 < lo and hi >= 2 * lo):
            raise ValueError(f"prefer_range must be [lo, hi] with 0 < lo and hi >= 2*lo, got {prefer_range!r}")
        es = essentia_standard()
        self.lo, self.hi, self.max_onsets_per_beat = lo, hi, float(max_onsets_per_beat)
        self._percival = es.PercivalBpmEstimator(sampleRate=AUDIO.sample_rate, minBPM=40, maxBPM=250)
        self._onset_rate = es.OnsetRate()

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Estimate P, measure onsets per beat, pick the octave, fold into the preferred range."""
        x = np.ascontiguousarray(audio.samples, dtype=np.float32)
        self._percival.reset()
        self._onset_rate.reset()
        base = float(self._percival(x))
        if not base > 0:
            raise AnalyzerError("no tempo found (no periodic onsets: silence?)")
        self.check_cancelled()  # between the two stages
        onset_rate = float(self._onset_rate(x)[1])
        per_beat = onset_rate * 60.0 / base
        factor = 2.0 if per_beat > self.max_onsets_per_beat and 2 * base <= self.hi else 1.0
        while base * factor > self.hi:
            factor /= 2
        while base * factor < self.lo:
            factor *= 2
        return {
            "bpm": base * factor,
            "octave_factor": factor,
            "base_bpm": base,
            "onset_rate": onset_rate,
            "onsets_per_beat": per_beat,
        }
