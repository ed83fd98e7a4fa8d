"""models.bs1770 (the default loudness backend) against the standard's numbers and two reference meters."""

from __future__ import annotations

import numpy as np
import pyebur128 as eb
import pytest

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


@pytest.mark.parametrize("rate", [44100, 96000])
def test_true_peak_equals_libebur128(rate: int) -> None:
    """The pruned oversampler gives libebur128's true peak per channel (same interpolator, same rule per rate)."""
    x = music(rate, 6.0)
    x[1, 1000:1004] = [0.9, -0.95, 0.97, -0.9]  # an inter-sample overshoot on the right channel
    state = eb.R128State(2, rate, eb.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(x.T).ravel(), x.shape[1])
    assert bs1770.true_peaks(x, rate) == pytest.approx([eb.get_true_peak(state, c) for c in range(2)], rel=1e-6)


def test_true_peak_pruning_is_exact_on_a_clipped_master() -> None:
    """A hard-clipped square wave (every block a candidate) equals oversampling the whole signal."""
    rate = 48000
    square = np.sign(np.sin(2 * np.pi * 997 * np.arange(rate) / rate)).astype(np.float32) * 0.99
    phases = bs1770._interpolator(4)
    brute = max(float(np.abs(np.convolve(square, p)).max()) for p in phases)
    assert bs1770.true_peaks(square[np.newaxis, :], rate)[0] == pytest.approx(brute, rel=1e-7)
    assert brute > 0.99  # a square wave overshoots between samples
