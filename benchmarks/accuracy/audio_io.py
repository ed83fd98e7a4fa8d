"""WAV writing/reading and MIDI rendering (fluidsynth + a General MIDI soundfont) for the harness."""

from __future__ import annotations

import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np

SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),  # Debian fluid-soundfont-gm
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),  # Debian timgm6mb-soundfont
)


def soundfont() -> Path:
    """The first installed General MIDI soundfont, or a RuntimeError saying what to install."""
    for path in SOUNDFONTS:
        if path.exists():
            return path
    raise RuntimeError("no GM soundfont: apt-get install fluid-soundfont-gm (or timgm6mb-soundfont)")


def require(tool: str, package: str) -> str:
    """Path of a command-line tool, or a RuntimeError naming the Debian package to install."""
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"{tool} not found: apt-get install {package}")
    return found


def render_midi(midi: Path, wav: Path, sample_rate: int = 44100) -> str:
    """Render a MIDI file to a 16-bit stereo WAV with fluidsynth (no audio driver, no reverb/chorus); returns the
    renderer used.

    fluidsynth 2.3 sometimes never reaches the end of a file and renders forever (seen on music21 exports of
    Beethoven quartets); its raw output is watched and stopped at the file's length + 30 s, and the file is then
    rendered by TiMidity++ (Debian ``timidity``) with the same soundfont, effects off. Without timidity a
    RuntimeError says so.
    """
    import mido

    fluidsynth = require("fluidsynth", "fluidsynth")
    cap = int((mido.MidiFile(str(midi)).length + 30.0) * sample_rate) * 4
    raw = wav.with_suffix(".raw")
    cmd = [fluidsynth, "-ni", "-q", "-R", "0", "-C", "0", "-T", "raw", "-O", "s16", "-F", str(raw)]
    cmd += ["-r", str(sample_rate), str(soundfont()), str(midi)]
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as p:
        while p.poll() is None:
            if raw.exists() and raw.stat().st_size >= cap:
                p.kill()
            time.sleep(0.05)
    data = raw.read_bytes() if raw.exists() else b""
    raw.unlink(missing_ok=True)
    if p.returncode == 0 and len(data) < cap:
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(data[: len(data) // 4 * 4])
        return "fluidsynth"
    timidity = require("timidity", "timidity")
    cmd = [timidity, "-Ow", "-o", str(wav), "--output-stereo", "--output-16bit", "-s", str(sample_rate),
           "-EFreverb=0", "-EFchorus=0", "-x", f"soundfont {soundfont()}", str(midi)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    return "timidity"


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, bits: int = 24) -> None:
    """Write float (channels, n) audio in [-1, 1] as integer PCM (16 or 24 bit)."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    scale = 2 ** (bits - 1)
    ints = np.ascontiguousarray(np.clip(np.round(x.T * scale), -scale, scale - 1).astype("<i4"))
    if bits == 16:
        raw = ints.astype("<i2").tobytes()
    elif bits == 24:
        raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # little-endian: drop the top byte
    else:
        raise ValueError(f"bits must be 16 or 24, got {bits}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(bits // 8)
        w.setframerate(sample_rate)
        w.writeframes(raw)
