"""Musical key with Essentia's KeyExtractor (HPCP chroma matched against key profiles).

Profiles: Gómez "bgate" is KeyExtractor's own default, so ``key:1`` gives exactly what
``essentia.standard.KeyExtractor()`` gives; other profiles (Temperley 2005, Krumhansl 1990,
Faraldo's edma for electronic music) are selectable per registry entry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, Audio, AudioInput
from models.essentia_runtime import essentia_standard

AUDIO = AudioInput(sample_rate=44100, channels="mono", min_seconds=1.0)


class KeyAnalyzer(Analyzer):
    """key, scale (major/minor) and strength (profile correlation, 0–1) for 44.1 kHz mono audio."""

    inputs = {"audio": AUDIO}

    def __init__(self, profile: str = "bgate", frame_size: int = 4096, hop_size: int = 4096) -> None:
        es = essentia_standard()
        self.profile = profile
        self._extract = es.KeyExtractor(
            profileType=profile, frameSize=frame_size, hopSize=hop_size, sampleRate=AUDIO.sample_rate
        )

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Run KeyExtractor on the whole track."""
        self._extract.reset()
        key, scale, strength = self._extract(np.ascontiguousarray(audio.samples, dtype=np.float32))
        return {"key": key, "scale": scale, "strength": float(strength), "profile": self.profile}
