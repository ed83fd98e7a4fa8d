"""Synthetic test signals with known answers, and in-memory encoding to real containers.

Every generator is deterministic so tests can assert exact expectations (tempo, key,
loudness) against the analysis server, and ``encode`` produces genuine container bytes
(via PyAV/FFmpeg) without touching the filesystem.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import soxr

FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "opus", "m4a", "aiff")
"""Every container/codec combination ``encode`` supports."""

# fmt -> (container format, codec, encoder sample format, bit rate or None, container options).
# mp3 uses 320k: at 192k/48 kHz LAME shifts a pure 1 kHz sine by -0.25 LU, at 320k by < 0.01 LU.
# m4a muxes a regular (non-fragmented) mp4 into the seekable BytesIO so the edit list trims AAC priming.
_CODECS: dict[str, tuple[str, str, str, int | None, dict[str, str]]] = {
    "wav": ("wav", "pcm_s16le", "s16", None, {}),
    "flac": ("flac", "flac", "s16", None, {}),
    "mp3": ("mp3", "libmp3lame", "fltp", 320_000, {}),
    "ogg": ("ogg", "vorbis", "fltp", None, {}),
    "opus": ("ogg", "libopus", "flt", 128_000, {}),
    "m4a": ("ipod", "aac", "fltp", 192_000, {}),
    "aiff": ("aiff", "pcm_s16be", "s16", None, {}),
}

_FRAME = 1024  # samples per AudioFrame fed to the encoder (PyAV rebuffers to codec frame size)


def _as_2d(audio: np.ndarray) -> np.ndarray:
    """Return ``audio`` as a C-contiguous float32 (channels, n) array; mono (n,) becomes (1, n)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2:
        raise ValueError(f"audio must be (n,) or (channels, n), got shape {x.shape}")
    return np.ascontiguousarray(x)


def click_times(bpm: float = 120.0, seconds: float = 20.0, first: float = 0.5) -> np.ndarray:
    """Onset times (s) of the clicks ``click_track`` places: every 60/bpm s from ``first``.

    Kept separate so tests can compare detected beat ticks with the ground truth.
    """
    period = 60.0 / bpm
    # leave room for the last click's decay tail (~50 ms) before the end of the signal
    count = int(np.floor((seconds - first - 0.05) / period)) + 1
    return (first + period * np.arange(max(count, 0))).astype(np.float64)


def click_track(bpm: float = 120.0, seconds: float = 20.0, sample_rate: int = 44100) -> np.ndarray:
    """Mono float32 metronome: decaying 1.5 kHz clicks on every beat, accented every 4th beat.

    A quiet kick-like low thump under each downbeat gives beat trackers a clear bar pulse.
    """
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    click_len = int(0.02 * sample_rate)
    t = np.arange(click_len) / sample_rate
    click = np.sin(2 * np.pi * 1500.0 * t) * np.exp(-t / 0.004)
    kick_len = int(0.12 * sample_rate)
    tk = np.arange(kick_len) / sample_rate
    kick = np.sin(2 * np.pi * 60.0 * tk) * np.exp(-tk / 0.03)
    for i, onset in enumerate(click_times(bpm, seconds)):
        start = int(round(onset * sample_rate))
        accent = i % 4 == 0
        seg = click * (0.5 if accent else 0.3)
        end = min(start + click_len, n)
        out[start:end] += seg[: end - start]
        if accent:
            end = min(start + kick_len, n)
            out[start:end] += 0.2 * kick[: end - start]
    return out.astype(np.float32)


_NOTE = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "G#": 8, "A": 9, "A#": 10, "B": 11}


def _midi_hz(midi: int) -> float:
    """Equal-tempered frequency (A4 = 440 Hz) of a MIDI note number."""
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def _tone(freq: float, seconds: float, sample_rate: int) -> np.ndarray:
    """Harmonic tone (6 partials, 1/k amplitudes) with a smooth raised-cosine attack/release."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    x = np.zeros(n)
    for k in range(1, 7):
        if k * freq < sample_rate / 2:
            x += np.sin(2 * np.pi * k * freq * t) / k
    ramp = min(int(0.05 * sample_rate), n // 2)
    env = np.ones(n)
    env[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[n - ramp :] = env[:ramp][::-1]
    return x * env


def _progression(chords: list[list[int]], seconds_per_chord: float, repeats: int, sample_rate: int) -> np.ndarray:
    """Render MIDI-note chords in sequence, ``repeats`` times, normalised to 0.5 peak."""
    parts = []
    for _ in range(repeats):
        for chord in chords:
            parts.append(sum(_tone(_midi_hz(m), seconds_per_chord, sample_rate) for m in chord))
    x = np.concatenate(parts)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def c_major_cadence(seconds_per_chord: float = 2.0, repeats: int = 2, sample_rate: int = 44100) -> np.ndarray:
    """Mono float32 I-IV-V-I in C major (with bass roots); key detectors should answer C major."""
    chords = [
        [36, 48, 52, 55],  # C2 | C3 E3 G3
        [41, 53, 57, 60],  # F2 | F3 A3 C4
        [43, 55, 59, 62],  # G2 | G3 B3 D4
        [36, 48, 52, 55],  # C2 | C3 E3 G3
    ]
    return _progression(chords, seconds_per_chord, repeats, sample_rate)


def a_minor_cadence(seconds_per_chord: float = 2.0, repeats: int = 2, sample_rate: int = 44100) -> np.ndarray:
    """Mono float32 i-iv-V-i in A minor (G# leading tone in V); key detectors should answer A minor."""
    chords = [
        [45, 57, 60, 64],  # A2 | A3 C4 E4
        [38, 50, 53, 57],  # D2 | D3 F3 A3
        [40, 52, 56, 59],  # E2 | E3 G#3 B3
        [45, 57, 60, 64],  # A2 | A3 C4 E4
    ]
    return _progression(chords, seconds_per_chord, repeats, sample_rate)


def sine(
    freq: float = 1000.0, dbfs: float = -23.0, seconds: float = 20.0, sample_rate: int = 48000, channels: int = 2
) -> np.ndarray:
    """Float32 (channels, n) sine with peak 10**(dbfs/20) on every channel.

    EBU Tech 3341 case 1: stereo 1 kHz at -23 dBFS measures -23.0 LUFS integrated.
    """
    n = int(round(seconds * sample_rate))
    x = 10.0 ** (dbfs / 20.0) * np.sin(2 * np.pi * freq * np.arange(n) / sample_rate)
    return np.repeat(x[np.newaxis, :], channels, axis=0).astype(np.float32)


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode mono (n,) or (channels, n) float32 audio into container ``fmt`` entirely in memory.

    ``fmt`` is one of FORMATS. Opus is resampled to 48 kHz; "ogg" is always stereo (FFmpeg's native
    vorbis encoder supports only 2 channels, so mono is duplicated); mp3 takes at most 2 channels.
    """
    if fmt not in _CODECS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    container_fmt, codec, sample_fmt, bit_rate, options = _CODECS[fmt]
    x = _as_2d(audio)
    if fmt == "opus" and sample_rate != 48000:
        x = np.ascontiguousarray(soxr.resample(x.T, sample_rate, 48000, quality="VHQ").T.astype(np.float32))
        sample_rate = 48000
    if fmt == "ogg" and x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)  # FFmpeg's built-in vorbis encoder only supports 2 channels
    channels = x.shape[0]
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_fmt, options=options) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        stream.format = sample_fmt
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        for start in range(0, x.shape[1], _FRAME):
            block = x[:, start : start + _FRAME]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
