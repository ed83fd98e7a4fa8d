"""Loudness per EBU R128 / ITU-R BS.1770-4: vectorised numpy/scipy (models.bs1770, default) or Essentia.

The default ``backend: bs1770`` measures every layout (mono, stereo, 5.0, 5.1) with models.bs1770: the
same EBU Tech 3341/3342 verdicts as Essentia's LoudnessEBUR128 at a fraction of its time (see
benchmarks/RESULTS.md). ``backend: essentia`` keeps the Essentia path described below.
Runs on the file's own channels at its own sample rate (the K-weighting filters depend on the rate).
Mono follows BS.1770: the single channel has weight 1.0, so it is fed as left with a silent right
channel rather than duplicated (duplicating would read 3.01 LU too loud). Essentia's algorithm takes
two channels only, so 5.0 and 5.1 files (FFmpeg channel order: FL FR FC [LFE] BL BR) are measured
with libebur128 instead: surrounds weighted 1.41, LFE excluded, as BS.1770-4 prescribes.
True peak (ITU-R BS.1770-4 Annex 2: 4x oversampling, max absolute value over channels) comes from
models.bs1770.true_peaks (default: libebur128's values to the bit, its interpolator run as chunked matrix
products, several times faster whatever the material), libebur128 itself (pyebur128) or Essentia's
TruePeakDetector.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models import bs1770
from models.base import Analyzer, AnalyzerError, Audio, AudioInput
from models.essentia_runtime import essentia_standard

TRUE_PEAK_BACKENDS = ("bs1770", "libebur128", "essentia", "off")
LOUDNESS_BACKENDS = ("bs1770", "essentia")
SILENCE_FLOOR = -300.0  # Essentia floors the power of digital silence at 1e-30, i.e. -300.691 LUFS


def _finite(value: float) -> float | None:
    """A loudness in LUFS, or null for digital silence (Essentia's -300.691 floor, or -inf)."""
    value = float(value)
    return round(value, 3) if math.isfinite(value) and value > SILENCE_FLOOR else None


def _dbtp(linear: float) -> float | None:
    """A linear true peak in dBTP (null for digital silence)."""
    return round(20.0 * math.log10(linear), 3) if linear > 0 else None


# FFmpeg's order for 5.0 and 5.1; libebur128 applies the BS.1770 weights per channel type
_SURROUND_CHANNELS = {
    5: ("LEFT", "RIGHT", "CENTER", "LEFT_SURROUND", "RIGHT_SURROUND"),
    6: ("LEFT", "RIGHT", "CENTER", "UNUSED", "LEFT_SURROUND", "RIGHT_SURROUND"),
}


def _surround_loudness(x: np.ndarray, sample_rate: int, hop_seconds: float) -> tuple[list, list, float, float]:
    """(momentary, short-term, integrated, range) of a 5.0/5.1 signal with libebur128, one value per hop."""
    import pyebur128 as eb

    modes = eb.MeasurementMode
    state = eb.R128State(x.shape[0], sample_rate, modes.MODE_M | modes.MODE_S | modes.MODE_I | modes.MODE_LRA)
    for index, name in enumerate(_SURROUND_CHANNELS[x.shape[0]]):
        state.set_channel(index, getattr(eb.ChannelType, name))
    frames = np.ascontiguousarray(x.T, dtype=np.float32)
    hop = max(1, int(round(hop_seconds * sample_rate)))
    momentary, short_term = [], []
    for start in range(0, frames.shape[0], hop):
        chunk = frames[start : start + hop]
        state.add_frames(chunk.ravel(), chunk.shape[0])
        momentary.append(eb.get_loudness_momentary(state))
        short_term.append(eb.get_loudness_shortterm(state))
    integrated = eb.get_loudness_global(state)
    return momentary, short_term, integrated if math.isfinite(integrated) else -70.0, eb.get_loudness_range(state)


def _curve(values: np.ndarray) -> list[float | None]:
    """A loudness series with silent blocks as null."""
    return [_finite(v) for v in values]


class LoudnessEBUR128Analyzer(Analyzer):
    """Integrated loudness (LUFS), loudness range (LU), max momentary/short-term and their curves."""

    # the file's own rate and every channel (BS.1770 weights channels; a downmix would change the loudness);
    # at least one momentary (400 ms) block
    inputs = {"audio": AudioInput(sample_rate=None, channels="original", min_seconds=0.4)}

    def __init__(
        self, hop_seconds: float = 0.1, curves: bool = True, true_peak: str = "bs1770", backend: str = "bs1770"
    ) -> None:
        if true_peak not in TRUE_PEAK_BACKENDS:
            raise ValueError(f"true_peak must be one of {TRUE_PEAK_BACKENDS}, got {true_peak!r}")
        if backend not in LOUDNESS_BACKENDS:
            raise ValueError(f"backend must be one of {LOUDNESS_BACKENDS}, got {backend!r}")
        self.backend = backend
        # Essentia (and the TensorFlow it loads) only for the backends that use it
        self._es = essentia_standard() if "essentia" in (backend, true_peak) else None
        self.hop_seconds = hop_seconds
        self.curves = curves
        self.true_peak = true_peak
        self._by_rate: dict[int, Any] = {}
        self._peak_by_rate: dict[int, Any] = {}

    def channel_true_peaks(self, x: np.ndarray, sample_rate: int) -> list[float]:
        """Linear true peak of each row of ``x`` (channels, n), 4x oversampled per BS.1770-4."""
        if self.true_peak == "bs1770":
            return bs1770.true_peaks(x, sample_rate)
        if self.true_peak == "libebur128":
            import pyebur128

            state = pyebur128.R128State(x.shape[0], sample_rate, pyebur128.MeasurementMode.MODE_TRUE_PEAK)
            state.add_frames(np.ascontiguousarray(x.T, dtype=np.float32).ravel(), x.shape[1])
            return [float(pyebur128.get_true_peak(state, c)) for c in range(x.shape[0])]
        if sample_rate not in self._peak_by_rate:
            self._peak_by_rate[sample_rate] = self._es.TruePeakDetector(
                sampleRate=float(sample_rate), oversamplingFactor=4, version=4
            )
        detector = self._peak_by_rate[sample_rate]
        peaks = []
        for channel in x:
            detector.reset()
            peaks.append(float(np.max(np.abs(detector(np.ascontiguousarray(channel, dtype=np.float32))[1]))))
        return peaks

    def _algorithm(self, sample_rate: int) -> Any:
        """One configured LoudnessEBUR128 per sample rate seen (filters are rate-specific)."""
        if sample_rate not in self._by_rate:
            self._by_rate[sample_rate] = self._es.LoudnessEBUR128(
                sampleRate=float(sample_rate), hopSize=self.hop_seconds
            )
        return self._by_rate[sample_rate]

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Measure the track (bs1770: every layout; essentia: mono/stereo, 5.0/5.1 via libebur128); others an error."""
        x = audio.samples if audio.samples.ndim == 2 else audio.samples[np.newaxis, :]
        if x.shape[0] > 2 and x.shape[0] not in _SURROUND_CHANNELS:
            raise AnalyzerError(
                f"loudness-ebur128 supports mono, stereo, 5.0 and 5.1 audio; this file has {x.shape[0]} channels"
            )
        channels = x
        if self.backend == "bs1770":
            m = bs1770.measure(x, audio.sample_rate, self.hop_seconds)
            momentary, short_term, lra = m.momentary, m.short_term, m.loudness_range
            integrated = m.integrated if math.isfinite(m.integrated) else -70.0  # Essentia's value for silence
        elif x.shape[0] > 2:
            momentary, short_term, integrated, lra = _surround_loudness(x, audio.sample_rate, self.hop_seconds)
        else:
            if x.shape[0] == 1:
                x = np.vstack([x, np.zeros_like(x)])
            algo = self._algorithm(audio.sample_rate)
            algo.reset()
            momentary, short_term, integrated, lra = algo(np.ascontiguousarray(x.T, dtype=np.float32))
        result: dict[str, Any] = {
            "integrated_loudness": round(float(integrated), 3),
            "loudness_range": round(float(lra), 3),
            "momentary_max": _finite(np.max(momentary)) if len(momentary) else None,
            "short_term_max": _finite(np.max(short_term)) if len(short_term) else None,
            "channels": audio.channel_count,
            "sample_rate": audio.sample_rate,
        }
        if self.true_peak != "off":
            self.check_cancelled()  # between the loudness and true-peak stages
            peaks = self.channel_true_peaks(channels, audio.sample_rate)
            result["true_peak"] = _dbtp(max(peaks))
            result["true_peak_channels"] = [_dbtp(p) for p in peaks]
        if self.curves:
            result["hop_seconds"] = self.hop_seconds
            result["momentary"] = _curve(momentary)
            result["short_term"] = _curve(short_term)
        return result
