"""The server's decoder: PyAV for every container, sniffed not trusted, limits, and the derived representations."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import InputSpec
from serve_app.ingress.decode import AudioError, DecodedAudio, decode, representation
from tests.audio_factory import encode, sine


def test_multichannel_flac_keeps_every_channel() -> None:
    """A 6-channel file decodes to 6 channels at its own rate."""
    x = np.stack([sine(440.0 * (i + 1), -20.0, 1.0, 48000, 1)[0] for i in range(6)])
    decoded = decode(encode(x, 48000, "flac"), max_seconds=60)
    assert decoded.samples.shape == (6, 48000)
    assert decoded.sample_rate == 48000 and decoded.container == "flac" and decoded.codec == "flac"
    assert decoded.samples.dtype == np.float32


def test_mono_downmix_is_the_channel_mean() -> None:
    """Mono = (L+R)/2 (Essentia's convention, documented in the README), not (L+R)/sqrt(2)."""
    left = np.full(1000, 0.5, np.float32)
    right = np.full(1000, 0.1, np.float32)
    decoded = DecodedAudio(np.stack([left, right]), 44100, "wav", "pcm_f32le")
    mono = representation(decoded, InputSpec(sample_rate=44100, channels="mono"))
    assert mono.samples.shape == (1000,)
    np.testing.assert_allclose(mono.samples, 0.3, atol=1e-6)


def test_resampling_keeps_frequency_and_length() -> None:
    """soxr HQ 48 kHz -> 16 kHz: same duration, the 1 kHz sine stays at 1 kHz."""
    decoded = DecodedAudio(sine(1000.0, -6.0, 2.0, 48000, 2), 48000, "wav", "pcm_f32le")
    out = representation(decoded, InputSpec(sample_rate=16000, channels="mono"))
    assert out.sample_rate == 16000 and out.samples.shape == (32000,)
    spectrum = np.abs(np.fft.rfft(out.samples))
    assert np.argmax(spectrum) * 16000 / len(out.samples) == pytest.approx(1000.0, abs=1.0)


def test_original_channels_at_native_rate_are_untouched() -> None:
    """The loudness representation is the decoded audio itself."""
    x = sine(1000.0, -6.0, 1.0, 44100, 2)
    decoded = DecodedAudio(x, 44100, "wav", "pcm_f32le")
    out = representation(decoded, InputSpec(sample_rate=None, channels="original"))
    assert out.sample_rate == 44100
    np.testing.assert_array_equal(out.samples, x)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"ID3" + b"\0" * 200, "not a readable audio file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio file"),
        (bytes(range(256)) * 40, "not a readable audio file"),
    ],
)
def test_bad_bytes_raise_audio_error(data: bytes, needle: str) -> None:
    """Junk, a bare ID3 tag and a header-only WAV give clean AudioErrors (never a crash)."""
    with pytest.raises(AudioError, match=needle):
        decode(data, max_seconds=60)


def test_duration_limit_while_decoding() -> None:
    """Audio over the limit is refused with the limit in the message."""
    data = encode(np.zeros(44100 * 5, np.float32), 44100, "wav")
    with pytest.raises(AudioError, match="accepts at most 3 s"):
        decode(data, max_seconds=3)
    assert decode(data, max_seconds=6).duration == pytest.approx(5.0)


def test_wav_header_without_samples() -> None:
    """A valid container holding zero samples says so."""
    data = encode(np.zeros(0, np.float32), 44100, "wav")
    with pytest.raises(AudioError):
        decode(data, max_seconds=60)
