"""Dynamics descriptors: Essentia DynamicComplexity and ReplayGain.

DynamicComplexity: average absolute deviation from the global loudness over 200 ms frames (Streich 2007,
"Music complexity: a multi-faceted description of audio content", PhD thesis, UPF). ReplayGain:
D. Robinson's ReplayGain proposal (2001): gain to bring the track to the 89 dB SPL reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, require_duration
from models.essentia_runtime import essentia_standard


def _mono(audio: Audio, minimum: float, what: str) -> np.ndarray:
    """Contiguous float32 samples, or AnalyzerError when the track is shorter than ``minimum`` seconds."""
    require_duration(audio, minimum, what)
    return np.ascontiguousarray(audio.samples, dtype=np.float32)


class DynamicComplexityAnalyzer(Analyzer):
    """Dynamic complexity (dB of loudness fluctuation) and Essentia's rough loudness estimate (dB)."""

    def __init__(self, frame_seconds: float = 0.2) -> None:
        es = essentia_standard()
        self.frame_seconds = frame_seconds
        self._algorithm = es.DynamicComplexity(sampleRate=44100, frameSize=frame_seconds)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run DynamicComplexity on the whole track."""
        x = _mono(audio, 2 * self.frame_seconds, "dynamic complexity")
        self._algorithm.reset()
        complexity, loudness = self._algorithm(x)
        return {"dynamic_complexity": float(complexity), "loudness": float(loudness)}


class ReplayGainAnalyzer(Analyzer):
    """ReplayGain (dB to add to reach the reference level), Essentia's implementation."""

    MIN_SECONDS = 0.1

    def __init__(self) -> None:
        es = essentia_standard()
        self._algorithm = es.ReplayGain(sampleRate=44100)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run ReplayGain on the whole track; digital silence has no defined gain."""
        x = _mono(audio, self.MIN_SECONDS, "replay gain")
        if not np.any(x):
            raise AnalyzerError("replay gain is undefined for digital silence")
        self._algorithm.reset()
        return {"replay_gain": float(self._algorithm(x))}
