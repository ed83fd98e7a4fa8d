"""models.bs1770 (the default loudness backend) against the standard's numbers and two reference meters.

True peak is held to libebur128 itself (pyebur128 bundles libebur128 1.2.6): it stores every interpolated value
as a float32 rounded from a double sum, and models.bs1770 recomputes the winning ones with the same double
operations, so the two agree to the bit on x86-64. The tests allow one float32 ulp, the most a build that fuses
its multiply-adds (aarch64 compilers do by default) could move a stored value.
"""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pyebur128 as eb
import pytest
import soxr

from benchmarks.perf.corpus import CEILING, _brickwall, _compress
from models import bs1770
from models.base import Audio
from models.loudness import LoudnessEBUR128Analyzer
from tests.audio_factory import c_major_cadence, click_track


def music(rate: int, seconds: float = 12.0) -> np.ndarray:
    """Stereo test programme with dynamics: a cadence on the left, clicks + cadence on the right, a quiet middle."""
    chords = c_major_cadence(sample_rate=rate)
    n = int(seconds * rate)
    left = np.resize(chords, n)
    right = 0.5 * np.resize(click_track(120.0, seconds, rate), n) + 0.3 * left
    x = np.vstack([left, right]).astype(np.float32)
    x[:, n // 3 : n // 2] *= 0.05  # a passage 26 dB down, so the gates and the range have work to do
    return x


def test_k_weighting_at_48k_matches_bs1770_table() -> None:
    """Re-derived coefficients equal BS.1770-4 Tables 1 and 2 (48 kHz) to 1e-8."""
    sos = bs1770.k_weighting(48000)
    assert sos[0, :3] == pytest.approx([1.53512485958697, -2.69169618940638, 1.19839281085285], abs=1e-8)
    assert sos[0, 3:] == pytest.approx([1.0, -1.69065929318241, 0.73248077421585], abs=1e-8)
    assert sos[1, :3] == pytest.approx([1.0, -2.0, 1.0])
    assert sos[1, 3:] == pytest.approx([1.0, -1.99004745483398, 0.99007225036621], abs=1e-8)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_agrees_with_libebur128(rate: int) -> None:
    """Integrated, range and the momentary/short-term curves agree with libebur128 (the reference C meter)."""
    x = music(rate)
    ours = bs1770.measure(x, rate, hop_seconds=0.1)
    state = eb.R128State(2, rate, eb.MeasurementMode.MODE_I | eb.MeasurementMode.MODE_LRA | eb.MeasurementMode.MODE_S)
    frames = np.ascontiguousarray(x.T)
    hop = int(0.1 * rate)
    short_term = []
    for start in range(0, frames.shape[0] - hop + 1, hop):
        state.add_frames(frames[start : start + hop].ravel(), hop)
        if start + hop >= 3 * rate:  # libebur128's value once its 3 s window is full
            short_term.append(eb.get_loudness_shortterm(state))
    assert ours.integrated == pytest.approx(eb.get_loudness_global(state), abs=0.01)
    assert ours.loudness_range == pytest.approx(eb.get_loudness_range(state), abs=0.2)  # its LRA uses a histogram
    n = min(len(short_term), len(ours.short_term))
    assert np.allclose(ours.short_term[:n], short_term[:n], atol=0.01)


def test_agrees_with_essentia_within_a_tenth() -> None:
    """The Essentia backend and the default backend agree within 0.1 LU on the same programme."""
    audio = Audio(music(44100), 44100)
    fast = LoudnessEBUR128Analyzer(true_peak="off").analyze(audio)
    slow = LoudnessEBUR128Analyzer(true_peak="off", backend="essentia").analyze(audio)
    for key in ("integrated_loudness", "momentary_max", "short_term_max"):
        assert fast[key] == pytest.approx(slow[key], abs=0.1), key
    assert fast["loudness_range"] == pytest.approx(slow["loudness_range"], abs=0.5)
    assert len(fast["momentary"]) == len(slow["momentary"])


def test_surround_weights_and_lfe() -> None:
    """5.1: surrounds count +1.5 dB, the LFE not at all (BS.1770-4 Table 3)."""
    rate = 48000
    tone = (0.1 * np.sin(2 * np.pi * 1000 * np.arange(rate * 4) / rate)).astype(np.float32)
    silent = np.zeros_like(tone)
    front = bs1770.measure(np.vstack([tone, silent, silent, silent, silent, silent]), rate).integrated
    lfe = bs1770.measure(np.vstack([silent, silent, silent, tone, silent, silent]), rate).integrated
    surround = bs1770.measure(np.vstack([silent, silent, silent, silent, tone, silent]), rate).integrated
    assert surround - front == pytest.approx(10 * np.log10(1.41), abs=0.01)
    assert lfe == -np.inf


def test_silence_and_short_input() -> None:
    """Silence gates everything out; under 3 s there is no short-term value (only complete windows count)."""
    silent = bs1770.measure(np.zeros((2, 48000 * 4), np.float32), 48000)
    assert silent.integrated == -np.inf and silent.loudness_range == 0.0
    short = bs1770.measure(music(48000, 2.0), 48000)
    assert short.short_term.size == 0 and short.momentary.size == 17
    with pytest.raises(ValueError, match="not 3"):
        bs1770.measure(np.zeros((3, 48000), np.float32), 48000)


def libebur128_true_peaks(x: np.ndarray, rate: int) -> list[float]:
    """pyebur128's per-channel true peak of ``x`` (channels, n), fed interleaved in its own dtype."""
    state = eb.R128State(x.shape[0], rate, eb.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(x.T).ravel(), x.shape[1])
    return [eb.get_true_peak(state, c) for c in range(x.shape[0])]


def assert_same_true_peaks(x: np.ndarray, rate: int) -> list[float]:
    """bs1770.true_peaks equals libebur128's on every channel to one float32 ulp; returns the values."""
    ours, reference = bs1770.true_peaks(x, rate), libebur128_true_peaks(x, rate)
    ulps = np.spacing(np.float32(reference)).astype(np.float64)
    assert np.all(np.abs(np.subtract(ours, reference)) <= ulps), (ours, reference)
    return ours


@functools.lru_cache
def music_44k(seconds: float) -> np.ndarray:
    """``music`` at 44.1 kHz, made once per length (the cadence is slow to synthesise at high rates)."""
    return music(44100, seconds)


def loud_master(rate: int, seconds: float = 6.0) -> np.ndarray:
    """``music`` at ``rate`` pushed 24 dB into the corpus's compressor and brickwall limiter: samples at -0.1 dBFS,
    inter-sample overs between them."""
    x = music_44k(seconds)
    if rate != 44100:
        x = np.ascontiguousarray(soxr.resample(x.T, 44100, rate).T)
    return _brickwall(_compress(x * np.float32(16.0), rate), rate).astype(np.float32)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 2048 samples, so a few seconds cross many chunk boundaries (the interpolator's history carried)."""
    monkeypatch.setattr(bs1770, "TRUE_PEAK_CHUNK", bs1770.TRUE_PEAK_BLOCK * bs1770.SLAB_ROWS)


def test_interpolator_is_libebur128s() -> None:
    """49 taps, coefficients under 1e-6 dropped: 4x keeps 1 + 3 x 12 (phase 0 is the sample), 2x keeps 1 + 24."""
    four, two = bs1770.interpolator(4), bs1770.interpolator(2)
    assert [c.size for _, c in four] == [1, 12, 12, 12] and [c.size for _, c in two] == [1, 24]
    assert four[0][0].tolist() == [6] and four[0][1].tolist() == [1.0]  # a 6-sample delay, nothing else
    assert [bs1770.oversampling_factor(r) for r in (8000, 95999, 96000, 191999, 192000)] == [4, 4, 2, 2, 1]


@pytest.mark.parametrize("rate", [44100, 48000])
def test_true_peak_loud_limited_master(rate: int, small_chunks: None) -> None:
    """A limited master: every sample under the ceiling, inter-sample overs above it, values as libebur128's."""
    x = loud_master(rate)
    assert float(np.abs(x).max()) <= CEILING
    assert min(assert_same_true_peaks(x, rate)) > CEILING


def test_true_peak_hard_clipped(small_chunks: None) -> None:
    """Hard clipping at full scale: long runs of equal samples, overs of a dB or more, ties between branches."""
    x = np.clip(music(48000, 6.0) * np.float32(20.0), -1.0, 1.0)
    assert min(assert_same_true_peaks(x, 48000)) > 1.05
    square = np.sign(np.sin(2 * np.pi * 997 * np.arange(48000) / 48000)).astype(np.float32) * 0.99
    assert assert_same_true_peaks(square[np.newaxis, :], 48000)[0] > 0.99


def test_true_peak_quiet_and_silent() -> None:
    """Quiet material (overs far below any threshold) and digital silence (0.0, as libebur128 reports)."""
    assert_same_true_peaks(music(44100, 4.0) * np.float32(0.01), 44100)
    assert assert_same_true_peaks(np.zeros((2, 44100), np.float32), 44100) == [0.0, 0.0]


@pytest.mark.parametrize("n", [1, 5, 11, 12, 13, 48])
def test_true_peak_shorter_than_the_interpolator(n: int) -> None:
    """Fewer samples than the 12-sample delay line: no tail is flushed after the last sample, as in libebur128."""
    x = np.random.default_rng(n).uniform(-1.0, 1.0, (2, n)).astype(np.float32)
    assert_same_true_peaks(x, 44100)


@pytest.mark.parametrize("rate", [8000, 22050, 32000, 48000, 96000, 176400, 192000])
def test_true_peak_sample_rates(rate: int) -> None:
    """4x below 96 kHz, 2x below 192 kHz (a 24-tap branch), none from 192 kHz (the sample peak)."""
    x = loud_master(rate, 2.0)
    x[0, 100:104] = [0.9, -0.95, 0.97, -0.9]  # a steep overshoot near the start
    assert_same_true_peaks(x, rate)


def test_true_peak_mono_and_surround() -> None:
    """Each channel on its own: mono, and 5.1 with different material (and levels) per channel."""
    x = loud_master(48000, 3.0)
    assert_same_true_peaks(x[:1], 48000)
    gains = np.array([1.0, 0.5, 0.25, 0.05, 0.7, 0.9], np.float32)[:, np.newaxis]
    surround = np.vstack([x, x[::-1], x[:, ::-1]]) * gains
    assert_same_true_peaks(surround, 48000)


def test_true_peak_float64_input(small_chunks: None) -> None:
    """Doubles: libebur128 interpolates their float32 roundings but takes the sample peak from the doubles."""
    x = loud_master(44100, 3.0).astype(np.float64) * (1.0 + 1e-9)
    x[1, 5000] = 0.1  # rounds up to float32: a phase-0 value above the sample it comes from
    assert_same_true_peaks(x, 44100)
    assert_same_true_peaks(x * 0.1, 44100)


def test_true_peak_analyzer_backends_agree() -> None:
    """The analyzer's default (bs1770) and libebur128 backends report the same dBTP per channel."""
    audio = Audio(loud_master(44100, 3.0), 44100)
    fast = LoudnessEBUR128Analyzer(curves=False).analyze(audio)
    reference = LoudnessEBUR128Analyzer(curves=False, true_peak="libebur128").analyze(audio)
    assert fast["true_peak_channels"] == reference["true_peak_channels"] and fast["true_peak"] > -0.1  # an over


def test_true_peak_memory_is_bounded() -> None:
    """Working memory is a few chunks, not a copy of the track: under 8 MB for 2 minutes of stereo (42 MB)."""
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (2, 120 * 44100)).astype(np.float32)
    tracemalloc.start()
    try:
        bs1770.true_peaks(x, 44100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6
