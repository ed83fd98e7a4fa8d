"""The benchmark's audio: one ~4-minute song rendered from MIDI, encoded as real files in six formats.

The song is an MMA arrangement (drums, bass, guitar/keys, a style change every 32 bars) rendered by
fluidsynth with a General MIDI soundfont, so the analyzers see music, not test tones. Files are cached
under ~/.cache/mirstream-bench (or $MIRSTREAM_BENCH_CACHE); nothing is downloaded.

The render is quiet (about -29 LUFS, peaks -14 dBFS). ``masters()`` derives two deterministic loud versions
of the same 4 minutes, the material that costs true-peak meters most: ``loud`` (compressed and brickwall
limited to about -9 LUFS, sample peaks at -0.1 dBFS, inter-sample overs above 0 dBTP) and ``clipped``
(driven into hard clipping at full scale).
"""

from __future__ import annotations

import os
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from benchmarks.accuracy.audio_io import render_midi, require
from models import bs1770
from tests.audio_factory import encode

CACHE = Path(os.environ.get("MIRSTREAM_BENCH_CACHE", Path.home() / ".cache" / "mirstream-bench"))
TEMPO = 124
STYLES = ("60sRock", "BasicRock", "8Beat", "FolkRock")  # 32 bars each, then repeated
PROGRESSION = ("A", "F#m", "D", "E")
FULL_SECONDS = 240.0
PREVIEW_SECONDS = 30.0
FORMATS = ("mp3", "ogg", "opus", "flac", "m4a", "wav")
MASTER_FORMATS = ("wav", "mp3")
LOUD_LUFS = -9.0  # a modern limited master
CLIPPED_LUFS = -8.0  # a brutally clipped one
CEILING = float(np.float32(10.0 ** (-0.1 / 20.0)))  # the limiter's sample-peak ceiling (-0.1 dBFS): overs remain


@dataclass(frozen=True)
class Track:
    """One encoded benchmark file."""

    name: str
    path: Path
    seconds: float
    fmt: str


def _song_wav() -> Path:
    """Render the song once (MMA → MIDI → fluidsynth WAV, 44.1 kHz stereo)."""
    out = CACHE / "song"
    out.mkdir(parents=True, exist_ok=True)
    wav = out / "song.wav"
    if wav.exists():
        return wav
    bars = int(np.ceil(FULL_SECONDS * TEMPO / 240.0)) + 1
    lines = [f"Tempo {TEMPO}"]
    for bar in range(bars):
        if bar % 32 == 0:
            lines.append(f"Groove {STYLES[(bar // 32) % len(STYLES)]}")
        lines.append(f"{bar + 1} {PROGRESSION[bar % 4]}")
    src, midi = out / "song.mma", out / "song.mid"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([require("mma", "mma"), str(src), "-f", str(midi)], check=True, capture_output=True, timeout=120)
    render_midi(midi, wav)
    return wav


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit WAV → float32 (channels, n)."""
    with wave.open(str(path), "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (raw.reshape(-1, channels).T.astype(np.float32) / 32768.0), rate


def tracks() -> dict[str, Track]:
    """Every benchmark file: ``full.<fmt>`` (4 min) for each format and ``preview.mp3`` (30 s)."""
    made: dict[str, Track] = {}
    audio: tuple[np.ndarray, int] | None = None
    wanted = [("full", FULL_SECONDS, fmt) for fmt in FORMATS] + [("preview", PREVIEW_SECONDS, "mp3")]
    for stem, seconds, fmt in wanted:
        path = CACHE / f"{stem}.{fmt}"
        if not path.exists():
            if audio is None:
                audio = _read_wav(_song_wav())
            x, rate = audio
            start = int(30.0 * rate) if stem == "preview" else 0  # the preview skips the intro bars
            clip = np.ascontiguousarray(x[:, start : start + int(seconds * rate)])
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(encode(clip, rate, fmt))
            tmp.rename(path)
        made[f"{stem}.{fmt}"] = Track(f"{stem}.{fmt}", path, seconds, fmt)
    return made


def _compress(x: np.ndarray, rate: int, threshold_db: float = -20.0, ratio: float = 3.0) -> np.ndarray:
    """A linked-stereo RMS compressor: 10 ms level, ``ratio``:1 above ``threshold_db``, gain smoothed over 50 ms."""
    level = np.sqrt(uniform_filter1d(np.max(x * x, axis=0), int(0.010 * rate)))
    over = np.maximum(level, 1e-9) / 10.0 ** (threshold_db / 20.0)
    gain = np.where(over > 1.0, over ** (1.0 / ratio - 1.0), 1.0).astype(np.float32)
    return x * uniform_filter1d(gain, int(0.050 * rate))


def _brickwall(x: np.ndarray, rate: int, attack_s: float = 0.002) -> np.ndarray:
    """A look-ahead brickwall limiter on the sample peak (linked stereo) at CEILING.

    Needed gain, then a centred minimum and a centred mean over the same 2h+1 samples: every mean covering
    sample n averages minima that include n, so it never exceeds n's needed gain (h samples of look-ahead/attack).
    """
    span = 2 * int(attack_s * rate) + 1
    needed = np.minimum(1.0, CEILING / np.maximum(np.max(np.abs(x), axis=0), 1e-9)).astype(np.float32)
    gain = uniform_filter1d(minimum_filter1d(needed, span), span)
    return np.clip(x * gain, -CEILING, CEILING)  # the clip only catches the mean's float rounding


def _drive(x: np.ndarray, rate: int, target_lufs: float, chain: str) -> np.ndarray:
    """Gain into ``chain`` ('limit': compressor + brickwall; 'clip': hard clip at full scale) until the output's
    integrated loudness is within 0.05 LU of ``target_lufs`` (fixed-point steps on the gain; the chain is monotone)."""
    gain_db = target_lufs - bs1770.measure(x, rate).integrated
    for _ in range(12):
        y = x * np.float32(10.0 ** (gain_db / 20.0))
        y = _brickwall(_compress(y, rate), rate) if chain == "limit" else np.clip(y, -1.0, 32767 / 32768)
        error = target_lufs - bs1770.measure(y, rate).integrated
        if abs(error) < 0.05:
            break
        gain_db += error
    return np.ascontiguousarray(y, dtype=np.float32)


def masters() -> dict[str, Track]:
    """The loud masters of the 4-minute song, ``loud.<fmt>`` and ``clipped.<fmt>`` for wav and mp3 (cached)."""
    made: dict[str, Track] = {}
    chains = {"loud": (LOUD_LUFS, "limit"), "clipped": (CLIPPED_LUFS, "clip")}
    for stem, (target, chain) in chains.items():
        paths = {fmt: CACHE / f"{stem}.{fmt}" for fmt in MASTER_FORMATS}
        if not all(path.exists() for path in paths.values()):
            x, rate = _read_wav(_song_wav())
            master = _drive(np.ascontiguousarray(x[:, : int(FULL_SECONDS * rate)]), rate, target, chain)
            for fmt, path in paths.items():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(encode(master, rate, fmt))
                tmp.rename(path)
        made.update({f"{stem}.{fmt}": Track(f"{stem}.{fmt}", path, FULL_SECONDS, fmt) for fmt, path in paths.items()})
    return made
