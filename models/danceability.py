"""Danceability from detrended fluctuation analysis, Essentia's classic (DSP) Danceability.

Streich & Herrera, "Detrended fluctuation analysis of music signals: danceability estimation and further
semantic characterization", AES 118th Convention, 2005. Not the ML danceability classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, Audio, AudioInput
from models.essentia_runtime import essentia_standard

AUDIO = AudioInput(sample_rate=44100, channels="mono", min_seconds=2.0)


class DanceabilityAnalyzer(Analyzer):
    """Danceability (about 0-3, higher = more danceable) and the DFA exponents it is built from."""

    inputs = {"audio": AUDIO}

    def __init__(self, min_tau_ms: float = 310.0, max_tau_ms: float = 8800.0, tau_multiplier: float = 1.1) -> None:
        es = essentia_standard()
        self._danceability = es.Danceability(
            sampleRate=AUDIO.sample_rate, minTau=min_tau_ms, maxTau=max_tau_ms, tauMultiplier=tau_multiplier
        )

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run Danceability on the whole track."""
        self._danceability.reset()
        value, dfa = self._danceability(np.ascontiguousarray(audio.samples, dtype=np.float32))
        return {"danceability": float(value), "dfa": [float(v) for v in dfa]}
