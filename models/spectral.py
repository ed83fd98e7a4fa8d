"""Spectral/timbre summary: the low-level block of Essentia's music extractor as statistics over frames.

Frame-wise spectral centroid, roll-off (85 %), flux (L2), zero-crossing rate and 13 MFCCs (Davis &
Mermelstein 1980; Essentia's MFCC, 40 mel bands up to 11 kHz), then mean/variance per descriptor, with
the music extractor's framing (2048-sample Blackman-Harris 62 dB frames, hop 1024).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import Analyzer, Audio, AudioInput
from models.essentia_runtime import essentia_standard

AUDIO = AudioInput(sample_rate=44100, channels="mono", min_seconds=2048 / 44100)  # one default frame
SAMPLE_RATE = AUDIO.sample_rate
SCALARS = ("spectral_centroid", "spectral_rolloff", "spectral_flux", "zerocrossingrate")


def _stats(values: np.ndarray) -> dict[str, float]:
    """Mean, variance, median, min and max of a 1-D descriptor series."""
    return {
        "mean": float(np.mean(values)),
        "var": float(np.var(values)),
        "median": float(np.median(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


class SpectralSummaryAnalyzer(Analyzer):
    """Per-descriptor statistics (centroid Hz, roll-off Hz, flux, ZCR) plus MFCC means and variances."""

    inputs = {"audio": AUDIO}

    def __init__(self, frame_size: int = 2048, hop_size: int = 1024, mfcc_coefficients: int = 13) -> None:
        if frame_size > 2048:
            raise ValueError(
                f"frame_size must be at most 2048 (the declared minimum input is one such frame), got {frame_size}"
            )
        self._es = es = essentia_standard()
        self.frame_size, self.hop_size = frame_size, hop_size
        self._window = es.Windowing(type="blackmanharris62", size=frame_size)
        self._spectrum = es.Spectrum(size=frame_size)
        self._centroid = es.Centroid(range=SAMPLE_RATE / 2)
        self._rolloff = es.RollOff(sampleRate=SAMPLE_RATE)
        self._flux = es.Flux()
        self._zcr = es.ZeroCrossingRate()
        self._mfcc = es.MFCC(
            inputSize=frame_size // 2 + 1, sampleRate=SAMPLE_RATE, numberCoefficients=mfcc_coefficients
        )

    def frames(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Frame-wise descriptors as arrays (one row per frame)."""
        self._flux.reset()
        rows: dict[str, list] = {name: [] for name in (*SCALARS, "mfcc")}
        frames = self._es.FrameGenerator(x, frameSize=self.frame_size, hopSize=self.hop_size, startFromZero=False)
        for index, frame in enumerate(frames):
            if index % 512 == 0:
                self.check_cancelled()  # a frame loop is where a cancelled request can stop early
            spectrum = self._spectrum(self._window(frame))
            rows["spectral_centroid"].append(self._centroid(spectrum))
            rows["spectral_rolloff"].append(self._rolloff(spectrum))
            rows["spectral_flux"].append(self._flux(spectrum))
            rows["zerocrossingrate"].append(self._zcr(frame))
            rows["mfcc"].append(self._mfcc(spectrum)[1])
        return {name: np.asarray(values, dtype=np.float64) for name, values in rows.items()}

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Summarise the frame-wise descriptors over the whole track."""
        rows = self.frames(np.ascontiguousarray(audio.samples, dtype=np.float32))
        result: dict[str, Any] = {name: _stats(rows[name]) for name in SCALARS}
        result["mfcc_mean"] = [float(v) for v in rows["mfcc"].mean(axis=0)]
        result["mfcc_var"] = [float(v) for v in rows["mfcc"].var(axis=0)]
        result["frames"] = int(len(rows["mfcc"]))
        return result
