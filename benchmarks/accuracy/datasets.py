"""Build the ground-truth sets (cached outside git): Bach chorales, MMA grooves, EBU Tech 3341/3342 signals.

Nothing here is invented by us: key labels come from the chorale scores (checked against music21's
analysis), tempo/beats/chords/onsets from the MIDI that MMA writes at a tempo we choose, loudness
expectations from the EBU documents.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy.audio_io import render_midi, require, write_wav
from benchmarks.accuracy.ebu import EBU_RATE, ebu_cases

CACHE = Path(os.environ.get("MIRSTREAM_ACCURACY_CACHE", Path.home() / ".cache" / "mirstream-accuracy"))
KEYS = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


@dataclass
class Item:
    """One audio file and its ground truth (a dict whose keys depend on the task)."""

    path: Path
    truth: dict


@dataclass(frozen=True)
class BuildCache:
    """One builder's folder under CACHE: its rendered files, ``manifest.json`` (file names + truth) and, for
    builders that count why material was kept or dropped, ``stats.json``. A saved build is reused as it is."""

    out: Path

    @classmethod
    def named(cls, name: str) -> BuildCache:
        """The folder CACHE/``name``, created if needed."""
        out = CACHE / name
        out.mkdir(parents=True, exist_ok=True)
        return cls(out)

    def items(self) -> list[Item] | None:
        """The items of an earlier build, or None."""
        manifest = self.out / "manifest.json"
        if not manifest.exists():
            return None
        return [Item(self.out / r["file"], r["truth"]) for r in json.loads(manifest.read_text())]

    def load(self) -> tuple[list[Item], dict[str, Any]] | None:
        """The items and stats of an earlier build, or None."""
        items, stats = self.items(), self.out / "stats.json"
        return (items, json.loads(stats.read_text())) if items is not None and stats.exists() else None

    def save(self, items: list[Item], stats: dict[str, Any] | None = None) -> None:
        """Write the manifest (and the stats, when the builder keeps any)."""
        rows = [{"file": it.path.name, "truth": it.truth} for it in items]
        (self.out / "manifest.json").write_text(json.dumps(rows, indent=1))
        if stats is not None:
            (self.out / "stats.json").write_text(json.dumps(stats))


# --- key: Bach chorales ----------------------------------------------------------------------------------


def chorale_label(score) -> tuple[str | None, str]:
    """(label, reason): 'C major' when the last key signature, music21's analysis and the final bass agree."""
    from music21 import key as m21key

    sigs = list(score.recurse().getElementsByClass(m21key.KeySignature))
    if not sigs:
        return None, "no key signature"
    sig = sigs[-1]
    analysis = score.analyze("key")
    if analysis.sharps != sig.sharps:
        return None, "analysis not in the signature's keys"
    if isinstance(sig, m21key.Key) and sig.mode in ("major", "minor") and sig.mode != analysis.mode:
        return None, "signature mode disagrees with analysis"
    bass = score.parts[-1].recurse().notes[-1]
    lowest = min(bass.pitches, key=lambda p: p.ps)
    if lowest.pitchClass != analysis.tonic.pitchClass:
        return None, "final bass is not the tonic"
    return f"{analysis.tonic.name.replace('-', 'b')} {analysis.mode}", "kept"


def build_chorales(limit: int) -> tuple[list[Item], dict[str, int]]:
    """Render the first ``limit`` chorales of music21's corpus whose key label is unambiguous."""
    from music21 import corpus

    cache = BuildCache.named("chorales")
    out = cache.out
    cached = cache.load()
    if cached is not None and len(cached[0]) >= limit:
        return cached[0][:limit], cached[1]
    items, stats = [], {}
    for name in corpus.chorales.Iterator(returnType="filename"):
        if len(items) >= limit:
            break
        score = corpus.parse(name)
        label, reason = chorale_label(score)
        stats[reason] = stats.get(reason, 0) + 1
        if label is None:
            continue
        slug = name.replace("/", "_")
        midi, wav = out / f"{slug}.mid", out / f"{slug}.wav"
        if not wav.exists():
            score.write("midi", fp=str(midi))
            render_midi(midi, wav)
        items.append(Item(wav, {"key": label, "source": name}))
    cache.save(items, stats)
    return items, stats


# --- tempo, beats, onsets, chords: MMA grooves ----------------------------------------------------------

STYLES = ("8Beat", "BasicRock", "60sRock", "FolkRock", "Ska", "JazzRock", "BVFunk", "50sRock")
NORMAL_TEMPI = (80, 100, 120, 140)
FAST_TEMPI = (170, 180, 190)
PROGRESSIONS = ((0, 9, 5, 7), (0, 5, 7, 0), (0, 7, 9, 5), (9, 5, 0, 7))  # I vi IV V, I IV V I, I V vi IV, vi IV I V
MINOR_DEGREES = {9}


def _chord_names(tonic: int, degrees: tuple[int, ...]) -> list[str]:
    """MMA chord symbols for scale degrees in a major key (vi is minor)."""
    return [KEYS[(tonic + d) % 12] + ("m" if d in MINOR_DEGREES else "") for d in degrees]


def _midi_onsets(midi: Path, tempo: float) -> list[float]:
    """Note-on times (s) of every note in a constant-tempo MIDI file (drums included), merged within 30 ms."""
    from music21 import midi as m21midi

    mf = m21midi.MidiFile()
    mf.open(str(midi))
    mf.read()
    mf.close()
    seconds_per_tick = 60.0 / tempo / mf.ticksPerQuarterNote
    times = set()
    for track in mf.tracks:
        ticks = 0
        for event in track.events:
            if isinstance(event, m21midi.DeltaTime):
                ticks += event.time
            elif event.type == m21midi.ChannelVoiceMessages.NOTE_ON and event.velocity > 0:
                times.add(round(ticks * seconds_per_tick, 4))
    merged: list[float] = []
    for t in sorted(times):
        if not merged or t - merged[-1] > 0.03:
            merged.append(t)
    return merged


def build_mma(seconds: float = 24.0) -> list[Item]:
    """Render every style at every tempo with MMA + fluidsynth; beats are every 60/tempo s from 0."""
    mma = require("mma", "mma")
    cache = BuildCache.named("mma")
    out = cache.out
    cached = cache.items()
    if cached is not None:
        return cached
    items = []
    rng = np.random.default_rng(3)
    for s_index, style in enumerate(STYLES):
        for tempo in (*NORMAL_TEMPI, *FAST_TEMPI):
            tonic = int(rng.integers(12))
            degrees = PROGRESSIONS[(s_index + tempo) % len(PROGRESSIONS)]
            bars = int(np.ceil(seconds * tempo / 240.0))
            chords = [_chord_names(tonic, degrees)[b % 4] for b in range(bars)]
            slug = f"{style.lower()}_{tempo}"
            src, midi, wav = out / f"{slug}.mma", out / f"{slug}.mid", out / f"{slug}.wav"
            lines = [f"Tempo {tempo}", f"Groove {style}"] + [f"{b + 1} {c}" for b, c in enumerate(chords)]
            src.write_text("\n".join(lines) + "\n")
            subprocess.run([mma, str(src), "-f", str(midi)], check=True, capture_output=True, timeout=120)
            render_midi(midi, wav)
            period = 60.0 / tempo
            beats = [round(k * period, 4) for k in range(bars * 4)]
            bar_len = 4 * period
            chord_segments = [[round(b * bar_len, 4), round((b + 1) * bar_len, 4), c] for b, c in enumerate(chords)]
            truth = {
                "tempo": tempo,
                "fast": tempo in FAST_TEMPI,
                "style": style,
                "beats": beats,
                "chords": chord_segments,
                "onsets": _midi_onsets(midi, tempo),
            }
            items.append(Item(wav, truth))
    cache.save(items)
    return items


def build_ebu() -> list[Item]:
    """Write each EBU case as a 24-bit 48 kHz WAV (cached) with its expectation."""
    out = CACHE / "ebu"
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for case, description, signal, expect in ebu_cases():
        wav = out / f"{case}.wav"
        if not wav.exists():
            write_wav(wav, signal, EBU_RATE, bits=24)
        items.append(Item(wav, {"case": case, "description": description, "expect": expect}))
    return items
