"""Onset times and onset rate with Essentia OnsetRate.

OnsetRate combines HFC and complex-domain onset detection functions (Brossier, Bello et al. 2005,
"A tutorial on onset detection in music signals", IEEE TSAP) and peak-picks them with Essentia's Onsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, Audio, AudioInput
from models.essentia_runtime import essentia_standard


class OnsetsAnalyzer(Analyzer):
    """Onset times (s), their count and rate (onsets per second) for 44.1 kHz mono audio."""

    inputs = {"audio": AudioInput(sample_rate=44100, channels="mono", min_seconds=0.5)}  # OnsetRate is 44.1 kHz only

    def __init__(self) -> None:
        es = essentia_standard()
        self._onset_rate = es.OnsetRate()  # fixed at 44.1 kHz by Essentia

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run OnsetRate on the whole track."""
        self._onset_rate.reset()
        onsets, rate = self._onset_rate(np.ascontiguousarray(audio.samples, dtype=np.float32))
        return {
            "onsets": [round(float(t), 4) for t in onsets],
            "onset_count": int(len(onsets)),
            "onset_rate": float(rate),
        }
