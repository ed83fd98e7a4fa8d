"""Prove the synthetic fixtures in ``audio_factory``: containers decode back, and the known answers hold."""

from __future__ import annotations

import os

import numpy as np
import pytest

from serve_app.ingress.decode import decode as server_decode
from tests.audio_factory import (
    FORMATS,
    a_minor_cadence,
    c_major_cadence,
    click_times,
    click_track,
    encode,
    sine,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import essentia  # noqa: E402

essentia.log.infoActive = False
import essentia.standard as es  # noqa: E402

# Channel count each format decodes to for (mono, stereo) input: FFmpeg's native vorbis encoder is stereo-only.
_EXPECTED_CHANNELS = {fmt: (1, 2) for fmt in FORMATS} | {"ogg": (2, 2)}
_EXPECTED_RATE = {fmt: None for fmt in FORMATS} | {"opus": 48000}


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode with the server's own decoder: float32 (channels, n) and the file's sample rate."""
    decoded = server_decode(data, max_seconds=600)
    return decoded.samples, decoded.sample_rate


@pytest.fixture(scope="module")
def mono_source() -> tuple[np.ndarray, int]:
    """A 3 s mono 44.1 kHz click track (non-48k rate exercises the opus resampling path)."""
    return click_track(seconds=3.0), 44100


@pytest.fixture(scope="module")
def stereo_source() -> tuple[np.ndarray, int]:
    """A 3 s stereo 48 kHz sine at -23 dBFS."""
    return sine(seconds=3.0), 48000


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layout", ["mono", "stereo"])
def test_round_trip(fmt: str, layout: str, mono_source, stereo_source) -> None:
    """Every format decodes back with the expected channel count, rate, and duration within 0.1 s, unclipped."""
    audio, rate = mono_source if layout == "mono" else stereo_source
    data = encode(audio, rate, fmt)
    decoded, out_rate = decode(data)
    assert decoded.shape[0] == _EXPECTED_CHANNELS[fmt][layout == "stereo"]
    assert out_rate == (_EXPECTED_RATE[fmt] or rate)
    source_seconds = audio.shape[-1] / rate
    assert abs(decoded.shape[1] / out_rate - source_seconds) <= 0.1
    assert np.max(np.abs(decoded)) < 1.0


def test_encode_rejects_unknown_format() -> None:
    """Unknown format names fail loudly rather than guessing a codec."""
    with pytest.raises(ValueError):
        encode(sine(seconds=0.1), 48000, "wma")


def test_click_track_tempo() -> None:
    """Essentia's degara beat tracker finds 120 +/- 1 BPM, with ticks near the generated click times."""
    bpm, ticks, _, _, _ = es.RhythmExtractor2013(method="degara")(click_track(120.0, 20.0))
    assert abs(bpm - 120.0) <= 1.0
    truth = click_times(120.0, 20.0)
    nearest = np.min(np.abs(truth[:, None] - np.asarray(ticks)[None, :]), axis=0)
    assert np.median(nearest) < 0.03


def test_click_track_tempo_after_mp3() -> None:
    """The tempo answer survives a lossy mp3 round trip."""
    decoded, rate = decode(encode(click_track(120.0, 20.0), 44100, "mp3"))
    bpm = es.RhythmExtractor2013(method="degara")(decoded[0])[0]
    assert abs(bpm - 120.0) <= 1.0


@pytest.mark.parametrize(("make", "key", "scale"), [(c_major_cadence, "C", "major"), (a_minor_cadence, "A", "minor")])
def test_cadence_key(make, key: str, scale: str) -> None:
    """KeyExtractor's default profile names the cadence's tonic and mode."""
    found_key, found_scale, strength = es.KeyExtractor()(make())
    assert (found_key, found_scale) == (key, scale)
    assert strength > 0.8


def test_sine_loudness() -> None:
    """EBU Tech 3341 case 1: stereo 1 kHz at -23 dBFS reads -23.0 LUFS integrated."""
    x = sine()
    assert x.shape == (2, 20 * 48000) and x.dtype == np.float32
    assert np.isclose(np.max(np.abs(x)), 10 ** (-23 / 20), rtol=1e-4)
    integrated = es.LoudnessEBUR128(sampleRate=48000)(np.ascontiguousarray(x.T))[2]
    assert abs(integrated + 23.0) <= 0.1


@pytest.mark.parametrize("fmt", FORMATS)
def test_sine_loudness_after_codec(fmt: str) -> None:
    """Encoding keeps levels accurate: the -23 LUFS sine still reads -23 +/- 0.2 LUFS after decoding."""
    decoded, rate = decode(encode(sine(seconds=5.0), 48000, fmt))
    integrated = es.LoudnessEBUR128(sampleRate=rate)(np.ascontiguousarray(decoded.T))[2]
    assert abs(integrated + 23.0) <= 0.2
