"""The benchmark's audio: one ~4-minute song rendered from MIDI, encoded as real files in six formats.

The song is an MMA arrangement (drums, bass, guitar/keys, a style change every 32 bars) rendered by
fluidsynth with a General MIDI soundfont, so the analyzers see music, not test tones. Files are cached
under ~/.cache/mirstream-bench (or $MIRSTREAM_BENCH_CACHE); nothing is downloaded.
"""

from __future__ import annotations

import os
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.accuracy.audio_io import render_midi, require
from tests.audio_factory import encode

CACHE = Path(os.environ.get("MIRSTREAM_BENCH_CACHE", Path.home() / ".cache" / "mirstream-bench"))
TEMPO = 124
STYLES = ("60sRock", "BasicRock", "8Beat", "FolkRock")  # 32 bars each, then repeated
PROGRESSION = ("A", "F#m", "D", "E")
FULL_SECONDS = 240.0
PREVIEW_SECONDS = 30.0
FORMATS = ("mp3", "ogg", "opus", "flac", "m4a", "wav")


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
