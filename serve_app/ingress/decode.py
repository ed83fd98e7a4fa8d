"""Decode any audio container once with PyAV (current FFmpeg), then derive each model's input from it.

Never Essentia's loaders: their 2015 FFmpeg aborts the process on some opus/ADPCM files. The container
is sniffed from the bytes (FFmpeg probing); a client's ``filename`` hint is deliberately ignored.
Everything stays in memory: no temp file is ever written.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
import soxr

from models.base import Audio, InputSpec


class AudioError(Exception):
    """The audio could not be fetched or decoded; the message is the reason shown to the client."""


@dataclass(frozen=True)
class DecodedAudio:
    """The file as decoded: float32 (channels, n) at its own sample rate, plus what FFmpeg detected."""

    samples: np.ndarray
    sample_rate: int
    container: str
    codec: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[1] / self.sample_rate


def decode(data: bytes, max_seconds: float) -> DecodedAudio:
    """Decode the first audio stream of ``data`` to float32, refusing audio longer than ``max_seconds``."""
    if not data:
        raise AudioError("the audio is empty (0 bytes)")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio stream")
            stream = container.streams.audio[0]
            declared = container.duration / av.time_base if container.duration else None
            if declared is not None and declared > max_seconds * 1.05 + 1:
                raise AudioError(_too_long(declared, max_seconds))
            return _decode_stream(container, stream, max_seconds)
    except AudioError:
        raise
    except av.error.FFmpegError as exc:
        raise AudioError(f"not a readable audio file ({_ffmpeg_reason(exc)})") from None
    except (ValueError, RuntimeError, EOFError, OSError) as exc:
        raise AudioError(f"not a readable audio file ({exc})") from None


def _decode_stream(container: av.container.InputContainer, stream: av.AudioStream, max_seconds: float) -> DecodedAudio:
    """Pull every frame through a float-planar resampler pinned to the first frame's rate and layout."""
    resampler: av.AudioResampler | None = None
    rate = 0
    limit = 0
    total = 0
    chunks: list[np.ndarray] = []
    for frame in container.decode(stream):
        if resampler is None:
            rate = frame.sample_rate
            limit = int(max_seconds * rate)
            resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
        for out in resampler.resample(frame):
            chunk = out.to_ndarray()
            total += chunk.shape[1]
            if total > limit:
                raise AudioError(_too_long(total / rate, max_seconds, at_least=True))
            chunks.append(chunk)
    if resampler is not None:
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise AudioError("the file contains no audio samples")
    samples = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return DecodedAudio(
        samples=samples,
        sample_rate=rate,
        container=container.format.name,
        codec=stream.codec_context.name,
    )


def _too_long(seconds: float, max_seconds: float, at_least: bool = False) -> str:
    """Message for audio over the duration limit."""
    prefix = "at least " if at_least else ""
    return (
        f"the audio is {prefix}{seconds:.0f} s long; this server accepts at most {max_seconds:.0f} s "
        "(MIRSTREAM_MAX_AUDIO_SECONDS)"
    )


def _ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    """FFmpeg's own words without the file-name noise PyAV adds for in-memory inputs."""
    return getattr(exc, "strerror", None) or str(exc)


def representation(decoded: DecodedAudio, spec: InputSpec) -> Audio:
    """Build one model input: mono = mean of channels ((L+R)/2, Essentia's convention), then soxr HQ resample."""
    x = decoded.samples
    if spec.channels == "mono":
        x = x.mean(axis=0) if x.shape[0] > 1 else x[0]
    rate = spec.sample_rate or decoded.sample_rate
    if rate != decoded.sample_rate:
        x = soxr.resample(x.T, decoded.sample_rate, rate, quality="HQ").T
    return Audio(samples=np.ascontiguousarray(x, dtype=np.float32), sample_rate=rate)
