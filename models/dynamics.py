"""Dynamics descriptors: Essentia DynamicComplexity and ReplayGain.

DynamicComplexity: average absolute deviation from the global loudness over 200 ms frames (Streich 2007,
"Music complexity: a multi-faceted description of audio content", PhD thesis, UPF). ReplayGain:
D. Robinson's ReplayGain proposal (2001): gain to bring the track to the 89 dB SPL reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, AudioInput
from models.essentia_runtime import essentia_standard

RATE = 44100  # both algorithms' filters are designed for the rate they are given; this one is the catalogue's


class DynamicComplexityAnalyzer(Analyzer):
    """Dynamic complexity (dB of loudness fluctuation) and Essentia's rough loudness estimate (dB)."""

    inputs = {"audio": AudioInput(sample_rate=RATE, channels="mono", min_seconds=0.4)}  # two default 0.2 s frames

    def __init__(self, frame_seconds: float = 0.2) -> None:
        if not 0 < frame_seconds <= 0.2:
            raise ValueError(
                f"frame_seconds must be in (0, 0.2] (the declared minimum input is two frames), got {frame_seconds}"
            )
        es = essentia_standard()
        self.frame_seconds = frame_seconds
        self._algorithm = es.DynamicComplexity(sampleRate=RATE, frameSize=frame_seconds)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run DynamicComplexity on the whole track."""
        x = np.ascontiguousarray(audio.samples, dtype=np.float32)
        self._algorithm.reset()
        complexity, loudness = self._algorithm(x)
        return {"dynamic_complexity": float(complexity), "loudness": float(loudness)}


class ReplayGainAnalyzer(Analyzer):
    """ReplayGain (dB to add to reach the reference level), Essentia's implementation."""

    inputs = {"audio": AudioInput(sample_rate=RATE, channels="mono", min_seconds=0.1)}

    def __init__(self) -> None:
        es = essentia_standard()
        self._algorithm = es.ReplayGain(sampleRate=RATE)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run ReplayGain on the whole track; digital silence has no defined gain."""
        x = np.ascontiguousarray(audio.samples, dtype=np.float32)
        if not np.any(x):
            raise AnalyzerError("replay gain is undefined for digital silence")
        self._algorithm.reset()
        return {"replay_gain": float(self._algorithm(x))}
