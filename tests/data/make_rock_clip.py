"""Render tests/data/rock_clip.opus: 19 s of a synthesised rock groove for the MusiCNN tagging tests.

Run once (the encoded clip is committed): ``.venv/bin/python -m tests.data.make_rock_clip``. Needs Debian's
fluidsynth and fluid-soundfont-gm (FluidR3_GM, MIT). The arrangement is written here as MIDI: distortion
guitar low power chords in eighths, an overdriven guitar pentatonic riff in the second half, picked
electric bass on the roots, and a rock kit (kick on 1, 1-and, 3, 3-and, snare on 2 and 4, eighth hi-hats,
a crash every two bars) at 132 BPM in E minor. fluidsynth renders it; the peak is set to -1 dBFS and
the result is encoded to Ogg Opus at 128 kb/s with the same encoder the tests use (tests.audio_factory).
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from tests.audio_factory import encode

OUT = Path(__file__).resolve().parent / "rock_clip.opus"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
PPQ = 480
BPM = 132
BARS = 9
EIGHTH = PPQ // 2
BAR = 4 * PPQ
GUITAR, LEAD, BASS, DRUMS = 0, 1, 2, 9
PROGRAMS = {GUITAR: 30, LEAD: 29, BASS: 34}  # GM (0-based): distortion gtr, overdriven gtr, picked bass
E2, G2, A2, D2, C2 = 40, 43, 45, 38, 36
PROGRESSION = [E2, E2, C2, D2, E2, G2, A2, D2, E2]  # one power-chord root per bar
KICK, SNARE, HAT, CRASH = 36, 38, 42, 49
RIFF = [64, 67, 69, 67, 71, 69, 67, 64]  # E minor pentatonic eighths (E4 G4 A4 G4 B4 A4 G4 E4)

Event = tuple[int, bytes]


def note(events: list[Event], channel: int, tick: int, length: int, pitch: int, velocity: int) -> None:
    """Append a note-on and its note-off."""
    events.append((tick, bytes([0x90 | channel, pitch, velocity])))
    events.append((tick + length, bytes([0x80 | channel, pitch, 0])))


def arrangement() -> list[Event]:
    """Every MIDI event of the clip (absolute ticks, unsorted)."""
    events: list[Event] = [(0, bytes([0xC0 | ch, program])) for ch, program in PROGRAMS.items()]
    for bar, root in enumerate(PROGRESSION[:BARS]):
        start = bar * BAR
        for i in range(8):
            t = start + i * EIGHTH
            accent = 115 if i % 4 == 0 else 95
            for interval in (0, 7, 12):  # low power chord: root, fifth, octave
                note(events, GUITAR, t, EIGHTH - 30, root + interval, accent)
            note(events, BASS, t, EIGHTH - 20, root, 105)
            note(events, DRUMS, t, EIGHTH, HAT, 90 if i % 2 == 0 else 70)
            if i in (0, 1, 4, 5):
                note(events, DRUMS, t, EIGHTH, KICK, 120)
            if i in (2, 6):
                note(events, DRUMS, t, EIGHTH, SNARE, 120)
            if bar >= 4:
                note(events, LEAD, t, EIGHTH - 20, RIFF[i], 100)
        if bar % 2 == 0:
            note(events, DRUMS, start, BAR // 2, CRASH, 115)
    end = BARS * BAR
    for interval in (0, 7, 12):
        note(events, GUITAR, end, BAR, E2 + interval, 120)
    note(events, BASS, end, BAR, E2, 110)
    note(events, DRUMS, end, BAR, CRASH, 120)
    note(events, DRUMS, end, EIGHTH, KICK, 120)
    return events


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(events: list[Event]) -> bytes:
    """A format-0 Standard MIDI File with the tempo and ``events`` (note-offs before note-ons at a tick)."""
    tempo = 60_000_000 // BPM
    track = bytearray(_varlen(0) + b"\xff\x51\x03" + tempo.to_bytes(3, "big"))
    now = 0
    for tick, message in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        track += _varlen(tick - now) + message
        now = tick
    track += _varlen(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, PPQ)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def render(midi: bytes, sample_rate: int = 44100) -> np.ndarray:
    """fluidsynth → float32 (2, n) stereo."""
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "rock.mid", Path(tmp) / "rock.wav"
        mid.write_bytes(midi)
        cmd = ["fluidsynth", "-ni", "-q", "-O", "s16", "-T", "wav", "-F", str(wav), "-r", str(sample_rate)]
        subprocess.run([*cmd, str(SOUNDFONT), str(mid)], check=True, capture_output=True, timeout=300)
        with wave.open(str(wav), "rb") as w:
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return np.ascontiguousarray(data.T.astype(np.float32) / 32768.0)


def main() -> None:
    """Write rock_clip.opus next to this script."""
    audio = render(midi_file(arrangement()))
    audible = np.nonzero(np.abs(audio).max(axis=0) > 1e-3)[0]
    audio = audio[:, : audible[-1] + 1]  # fluidsynth keeps rendering silence after the last release
    audio *= 10 ** (-1 / 20) / np.abs(audio).max()
    OUT.write_bytes(encode(audio, 44100, "opus"))
    print(f"{OUT}: {OUT.stat().st_size} bytes, {audio.shape[1] / 44100:.1f} s")


if __name__ == "__main__":
    main()
