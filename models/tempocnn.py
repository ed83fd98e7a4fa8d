"""Tempo with TempoCNN (Schreiber & Müller, "A Single-Step Approach to Musical Tempo Estimation Using a
Convolutional Neural Network", ISMIR 2018) through Essentia's ``TempoCNN`` and MTG's ``deeptemp_k16.pb``.

Essentia cuts 40-band mel frames (1024 samples every 512 at 11025 Hz), feeds 256-frame patches (11.9 s)
every ``patch_hop_size`` frames (128 = 5.9 s) and classifies each into 256 tempo classes 30..285 BPM
(softmax); the local tempo is each patch's most likely class, its probability the softmax peak, and the
global tempo their aggregate (majority vote by default). Like every tempo estimator it can pick the double
or half tempo (a 90 BPM click track reads as 179). Weights: CC BY-NC-SA 4.0 (MTG), models/weights/mtg.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, AudioInput, Input

SAMPLE_RATE = 11025
FRAME_HOP = 512  # samples between mel frames
PATCH_FRAMES = 256  # frames per patch (the network's input length)
AGGREGATIONS = ("majority", "mean", "median")
# One patch needs 256 frames; Essentia 2.1b6 gives one from 11.85 s on (measured), none at 11.5 s.
MIN_SECONDS = 11.9


class TempoCNNAnalyzer(Analyzer):
    """Global BPM, local BPM per patch with the patch centre times, and each local estimate's probability."""

    inputs: ClassVar[Mapping[str, Input]] = {
        "audio": AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=MIN_SECONDS)
    }

    def __init__(
        self,
        aggregation: str = "majority",
        patch_hop_size: int = 128,
        batch_size: int = 1,
        weight_files: dict[str, str] | None = None,
    ) -> None:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}")
        if not weight_files or "graph" not in weight_files:
            raise ValueError("TempoCNNAnalyzer needs weight_files with the 'graph' (deeptemp_k16.pb)")
        from models.essentia_runtime import essentia_standard

        self.aggregation = aggregation
        self.hop_s = int(patch_hop_size) * FRAME_HOP / SAMPLE_RATE
        self._tempo = essentia_standard().TempoCNN(
            graphFilename=weight_files["graph"],
            aggregationMethod=aggregation,
            patchHopSize=int(patch_hop_size),
            batchSize=int(batch_size),
        )

    @classmethod
    def check_weight(cls, role: str, path: Path) -> None:
        """Format check of a downloaded file: a GraphDef starts with its first node (field 1, bytes)."""
        if role == "graph":
            with path.open("rb") as f:
                if f.read(1) != b"\x0a":
                    raise ValueError(f"{path.name} is not a TensorFlow GraphDef")

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Tempo of one track at 11025 Hz."""
        self._tempo.reset()
        bpm, local, probabilities = self._tempo(np.ascontiguousarray(audio.samples, dtype=np.float32))
        local = np.asarray(local, dtype=np.float64)
        if local.size == 0:
            raise AnalyzerError(f"audio is {audio.duration:.2f} s long; TempoCNN needs one 11.9 s patch")
        centre = (PATCH_FRAMES - 1) / 2 * FRAME_HOP / SAMPLE_RATE  # frames are centred on multiples of the hop
        return {
            "bpm": float(bpm),
            "local_bpm": [float(v) for v in local],
            "local_times": [round(centre + i * self.hop_s, 4) for i in range(local.size)],
            "local_probabilities": [float(p) for p in np.asarray(probabilities)],
            "aggregation": self.aggregation,
        }
