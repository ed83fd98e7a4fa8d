"""Chords and tuning: Essentia's HPCP-based chord detection and tuning-frequency estimation.

Chords: TonalExtractor's HPCP (Gómez 2006, "Tonal description of music audio signals", PhD thesis, UPF)
+ ChordsDetection (major/minor triad templates over a sliding window), labelled in roman numerals
relative to the KeyExtractor key. Tuning: TuningFrequencyExtractor (Gómez 2006, spectral-peak deviation
from the equal-tempered grid).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, AudioInput
from models.essentia_runtime import essentia_standard

AUDIO = AudioInput(sample_rate=44100, channels="mono", min_seconds=1.0)
SAMPLE_RATE = AUDIO.sample_rate
PITCH_CLASS = {
    "C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6,
    "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11,
}  # fmt: skip
# semitones above the tonic -> scale degree (non-diatonic roots get b/# prefixes)
DEGREES = {
    "major": {0: "I", 1: "bII", 2: "II", 3: "bIII", 4: "III", 5: "IV", 6: "#IV", 7: "V", 8: "bVI", 9: "VI",
              10: "bVII", 11: "VII"},
    "minor": {0: "I", 1: "bII", 2: "II", 3: "III", 4: "#III", 5: "IV", 6: "#IV", 7: "V", 8: "VI", 9: "#VI",
              10: "VII", 11: "#VII"},
}  # fmt: skip


def split_chord(label: str) -> tuple[str, str]:
    """'Bbm' -> ('Bb', 'minor'); 'F#' -> ('F#', 'major')."""
    return (label[:-1], "minor") if label.endswith("m") else (label, "major")


def roman_numeral(chord: str, key: str, scale: str) -> str:
    """Chord label as a roman numeral relative to ``key``/``scale``: upper case major, lower case minor."""
    root, quality = split_chord(chord)
    degree = DEGREES[scale][(PITCH_CLASS[root] - PITCH_CLASS[key]) % 12]
    return degree if quality == "major" else degree.lower()


def chord_segments(labels: list[str], strengths: np.ndarray, hop_seconds: float, duration: float) -> list[dict]:
    """Run-length merge per-frame chord labels into {chord, start, end, strength (mean)} segments."""
    segments: list[dict[str, Any]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            end_time = duration if i == len(labels) else i * hop_seconds
            segments.append(
                {
                    "chord": labels[start],
                    "start": round(start * hop_seconds, 3),
                    "end": round(min(end_time, duration), 3),
                    "strength": round(float(np.mean(strengths[start:i])), 4),
                }
            )
            start = i
    return segments


class ChordsAnalyzer(Analyzer):
    """Chord segments with times, their roman numerals in the detected key, and ChordsDescriptors stats."""

    inputs = {"audio": AUDIO}

    def __init__(self, frame_size: int = 4096, hop_size: int = 2048, key_profile: str = "bgate") -> None:
        es = essentia_standard()
        self.frame_size, self.hop_size = frame_size, hop_size
        self._es = es
        self._key = es.KeyExtractor(profileType=key_profile, sampleRate=SAMPLE_RATE)
        self._descriptors = es.ChordsDescriptors()

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Detect chords frame by frame, merge them into segments and describe them against the key."""
        x = np.ascontiguousarray(audio.samples, dtype=np.float32)
        # a fresh TonalExtractor per track (1.5 ms): reset() does not clear its chord progression
        extractor = self._es.TonalExtractor(frameSize=self.frame_size, hopSize=self.hop_size)
        self._key.reset()
        tonal = dict(zip(extractor.outputNames(), extractor(x), strict=True))
        key, scale, key_strength = self._key(x)
        labels = list(tonal["chords_progression"])
        histogram, number_rate, changes_rate, chords_key, chords_scale = self._descriptors(labels, key, scale)
        segments = chord_segments(labels, tonal["chords_strength"], self.hop_size / SAMPLE_RATE, audio.duration)
        for seg in segments:
            seg["roman"] = roman_numeral(seg["chord"], key, scale)
        return {
            "key": key,
            "scale": scale,
            "key_strength": float(key_strength),
            "segments": segments,
            "chords_key": chords_key,
            "chords_scale": chords_scale,
            "chords_histogram": [round(float(v), 3) for v in histogram],
            "chords_changes_rate": float(changes_rate),
            "chords_number_rate": float(number_rate),
        }


class TuningAnalyzer(Analyzer):
    """Tuning frequency (Hz, the reference A4) and its deviation from 440 Hz in cents, folded to [-50, 50).

    Tuning is only defined modulo a semitone; Essentia answers in about [-35, 65) cents, so +62 is reported
    as -38 (the nearest equal-tempered grid); Essentia's own value stays in ``essentia_frequency``.
    """

    inputs = {"audio": AUDIO}

    def __init__(self, frame_size: int = 4096, hop_size: int = 2048) -> None:
        es = essentia_standard()
        self._extract = es.TuningFrequencyExtractor(frameSize=frame_size, hopSize=hop_size)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Essentia's running estimate after the last frame is the track's tuning frequency."""
        self._extract.reset()
        per_frame = self._extract(np.ascontiguousarray(audio.samples, dtype=np.float32))
        if len(per_frame) == 0:
            raise AnalyzerError("no tonal frames: tuning needs pitched content")
        raw = float(per_frame[-1])
        cents = (1200.0 * math.log2(raw / 440.0) + 50.0) % 100.0 - 50.0
        return {"tuning_frequency": 440.0 * 2 ** (cents / 1200.0), "tuning_cents": cents, "essentia_frequency": raw}
