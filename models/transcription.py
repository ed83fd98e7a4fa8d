"""Polyphonic note transcription with Spotify's basic-pitch model on onnxruntime.

Model: Bittner et al., "A Lightweight Instrument-Agnostic Model for Polyphonic Note Transcription and
Multipitch Estimation", ICASSP 2022; the ONNX graph shipped in basic-pitch 0.4.0 is vendored in
models/weights/basic_pitch (see its README for why it is not installed from PyPI). The model maps 2 s
windows of 22050 Hz mono audio to per-frame (86 fps) note, onset and contour posteriorgrams over the 88
piano keys. Turning posteriorgrams into notes follows the paper's post-processing as basic-pitch 0.4.0
implements it (note_creation.output_to_notes_polyphonic), reimplemented here with numpy only because the
package's module imports librosa, resampy, mir_eval and pretty_midi: onsets are peaks of the onset
posteriorgram (plus onsets inferred from jumps in the note posteriorgram) above ``onset_threshold``; each
note extends while the note posteriorgram stays above ``frame_threshold`` (tolerating 11 frames below);
then the "Melodia trick" greedily turns the remaining high-energy regions into notes. Pitch bends are not
computed (results are integer MIDI pitches). The MIDI variant writes a Standard MIDI File with mido.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import mido
import numpy as np

from models import onnx_runtime
from models.base import Analyzer, Audio, AudioInput

SAMPLE_RATE = 22050
FFT_HOP = 256
WINDOW_SAMPLES = 2 * SAMPLE_RATE - FFT_HOP  # 43844: the model's fixed input length
FRAMES_PER_WINDOW = 172
OVERLAP_FRAMES = 30  # frames shared by neighbouring windows; half of them is cut from each side
OVERLAP_SAMPLES = OVERLAP_FRAMES * FFT_HOP
HOP_SAMPLES = WINDOW_SAMPLES - OVERLAP_SAMPLES
KEPT_FRAMES = FRAMES_PER_WINDOW - OVERLAP_FRAMES
FPS = SAMPLE_RATE // FFT_HOP  # 86: basic-pitch's nominal frame rate, used for trimming as it does
MIDI_OFFSET = 21  # the posteriorgram's first bin is A0
ENERGY_TOLERANCE = 11  # frames a note may dip below frame_threshold before it ends
# the graph's tensor names (basic-pitch inference.Model.predict)
INPUT = "serving_default_input_2:0"
OUTPUTS = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2"}

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MIDI_TICKS_PER_BEAT = 480
MIDI_TEMPO_US = 500_000  # 120 BPM, basic-pitch's default midi_tempo
MIDI_PROGRAM = 4  # General MIDI "Electric Piano 1", as basic-pitch writes


def note_name(pitch: int) -> str:
    """Scientific pitch notation with the key model's spelling: 60 -> 'C4', 70 -> 'Bb4'."""
    return f"{PITCH_CLASSES[pitch % 12]}{pitch // 12 - 1}"


def window_count(n_samples: int) -> int:
    """How many model windows cover ``n_samples`` (after the half-overlap of leading zeros)."""
    return -(-(n_samples + OVERLAP_SAMPLES // 2) // HOP_SAMPLES)


def frame_windows(samples: np.ndarray, first: int, count: int) -> np.ndarray:
    """Windows ``first`` .. ``first + count - 1`` as the model's input (count, WINDOW_SAMPLES, 1), like basic-pitch.

    The signal is preceded by half an overlap of zeros (so the frames cut from each window's start line up
    with time 0) and zero-padded at the end; built a few at a time so a long track is never copied whole.
    """
    lead = OVERLAP_SAMPLES // 2
    out = np.zeros((count, WINDOW_SAMPLES, 1), np.float32)
    for i in range(count):
        start = (first + i) * HOP_SAMPLES - lead  # position in the unpadded signal
        lo, hi = max(start, 0), min(start + WINDOW_SAMPLES, samples.shape[0])
        if hi > lo:
            out[i, lo - start : hi - start, 0] = samples[lo:hi]
    return out


def unwrap(windows: np.ndarray, n_samples: int) -> np.ndarray:
    """Join per-window outputs (n, 172, bins) into one (frames, bins) matrix trimmed to the audio's length."""
    half = OVERLAP_FRAMES // 2
    kept = windows[:, half:-half, :]
    frames = kept.reshape(-1, kept.shape[-1])
    return frames[: int(np.floor(n_samples * FPS / SAMPLE_RATE))]


def frame_times(n_frames: int) -> np.ndarray:
    """Start time (s) of each unwrapped frame.

    Frame n comes from window w = n // 142; each window advances HOP_SAMPLES (141.27 frames) but
    contributes 142 frames, so times are the nominal n*hop minus 188 samples per window passed. (basic-pitch
    approximates the same drift with a fitted constant; the two differ by under 12 ms.)
    """
    n = np.arange(n_frames)
    drift = KEPT_FRAMES * FFT_HOP - HOP_SAMPLES
    return (n * FFT_HOP - (n // KEPT_FRAMES) * drift) / SAMPLE_RATE


def infer_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """Onset posteriorgram maxed with rises in the note posteriorgram (smallest rise over 1..n_diff frames)."""
    padded = np.concatenate([np.zeros((n_diff, frames.shape[1]), frames.dtype), frames])
    rises = [padded[n_diff:] - padded[n_diff - n : padded.shape[0] - n] for n in range(1, n_diff + 1)]
    rise = np.clip(np.min(rises, axis=0), 0.0, None)
    rise[:n_diff] = 0.0
    peak = float(np.max(rise))
    if peak <= 0.0:
        return onsets
    return np.maximum(onsets, rise * (float(np.max(onsets)) / peak))


def _clear(remaining: np.ndarray, t: slice | int, pitch: int) -> None:
    """Zero a note's energy and its two neighbouring semitones (so harmonic smear is not re-used)."""
    lo, hi = max(pitch - 1, 0), min(pitch + 2, remaining.shape[1])
    remaining[t, lo:hi] = 0.0


def decode_notes(
    frames: np.ndarray,
    onsets: np.ndarray,
    onset_threshold: float,
    frame_threshold: float,
    min_frames: int,
    melodia: bool,
) -> list[tuple[int, int, int, float]]:
    """Posteriorgrams (frames x 88) -> [(start_frame, end_frame, midi_pitch, amplitude 0-1)] (basic-pitch's decoder)."""
    n_frames = frames.shape[0]
    onsets = infer_onsets(onsets, frames)
    peaks = np.zeros_like(onsets, dtype=bool)
    peaks[1:-1] = (onsets[1:-1] > onsets[:-2]) & (onsets[1:-1] > onsets[2:])
    peaks &= onsets >= onset_threshold
    times, pitches = np.nonzero(peaks)
    remaining = frames.copy()
    notes: list[tuple[int, int, int, float]] = []
    for start, pitch in zip(times[::-1], pitches[::-1], strict=True):  # latest onsets first
        if start >= n_frames - 1:
            continue
        i, below = start + 1, 0
        while i < n_frames - 1 and below < ENERGY_TOLERANCE:
            below = below + 1 if remaining[i, pitch] < frame_threshold else 0
            i += 1
        end = i - below
        if end - start <= min_frames:
            continue
        _clear(remaining, slice(start, end), pitch)
        notes.append((int(start), int(end), int(pitch) + MIDI_OFFSET, float(np.mean(frames[start:end, pitch]))))
    if melodia:
        notes += _melodia_notes(frames, remaining, frame_threshold, min_frames)
    return notes


def _melodia_notes(
    frames: np.ndarray, remaining: np.ndarray, frame_threshold: float, min_frames: int
) -> list[tuple[int, int, int, float]]:
    """Greedy notes from the loudest energy left, extended both ways while above threshold.

    Cells only ever drop to zero, so visiting candidates in descending order (skipping zeroed ones) is
    the same as basic-pitch's repeated global argmax, without rescanning the matrix each time.
    """
    n_frames = frames.shape[0]
    flat = remaining.ravel()
    candidates = np.flatnonzero(flat > frame_threshold)
    candidates = candidates[np.argsort(-flat[candidates], kind="stable")]
    notes = []
    for index in candidates:
        if flat[index] <= frame_threshold:
            continue  # already consumed by an earlier note
        mid, pitch = divmod(int(index), remaining.shape[1])
        remaining[mid, pitch] = 0.0
        i, below = mid + 1, 0
        while i < n_frames - 1 and below < ENERGY_TOLERANCE:
            below = below + 1 if remaining[i, pitch] < frame_threshold else 0
            _clear(remaining, i, pitch)
            i += 1
        end = i - 1 - below
        i, below = mid - 1, 0
        while i > 0 and below < ENERGY_TOLERANCE:
            below = below + 1 if remaining[i, pitch] < frame_threshold else 0
            _clear(remaining, i, pitch)
            i -= 1
        start = i + 1 + below
        if end - start <= min_frames:
            continue
        notes.append((start, end, pitch + MIDI_OFFSET, float(np.mean(frames[start:end, pitch]))))
    return notes


def midi_file(notes: list[dict[str, Any]]) -> bytes:
    """A type-0 Standard MIDI File (120 BPM, 480 ticks/beat, Electric Piano 1) holding ``notes``."""
    ticks_per_second = MIDI_TICKS_PER_BEAT * 1_000_000 / MIDI_TEMPO_US
    events = []  # (tick, order, message): note-offs sort before note-ons on the same tick
    for n in notes:
        on, off = round(n["start"] * ticks_per_second), round(n["end"] * ticks_per_second)
        events.append((on, 1, mido.Message("note_on", note=n["pitch"], velocity=n["velocity"])))
        events.append((max(off, on + 1), 0, mido.Message("note_off", note=n["pitch"], velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=MIDI_TEMPO_US, time=0))
    track.append(mido.Message("program_change", program=MIDI_PROGRAM, time=0))
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    buf = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=MIDI_TICKS_PER_BEAT, tracks=[track]).save(file=buf)
    return buf.getvalue()


class BasicPitchTranscriber(Analyzer):
    """Notes (start, end, MIDI pitch, velocity, name) from 22050 Hz mono audio; optionally a MIDI file."""

    inputs = {"audio": AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=0.5)}

    def __init__(
        self,
        midi: bool = False,
        onset_threshold: float = 0.5,
        frame_threshold: float = 0.3,
        minimum_note_ms: float = 127.7,
        melodia_trick: bool = True,
        windows_per_run: int = 8,
        weight_files: dict[str, str] | None = None,
    ) -> None:
        self.midi = midi
        self.onset_threshold = onset_threshold
        self.frame_threshold = frame_threshold
        self.min_frames = int(round(minimum_note_ms / 1000 * SAMPLE_RATE / FFT_HOP))
        self.melodia_trick = melodia_trick
        self.windows_per_run = windows_per_run
        if not weight_files or "model" not in weight_files:
            raise ValueError("weight_files['model'] (basic-pitch's nmp.onnx, from the registry's weights) is required")
        self._session = onnx_runtime.create_session(weight_files["model"])

    def posteriorgrams(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Note and onset posteriorgrams (frames x 88) for the whole track, a few windows per run."""
        total = window_count(samples.shape[0])
        parts: dict[str, list[np.ndarray]] = {"note": [], "onset": []}
        for first in range(0, total, self.windows_per_run):
            self.check_cancelled()
            batch = frame_windows(samples, first, min(self.windows_per_run, total - first))
            out = self._session.run(list(OUTPUTS.values()), {INPUT: batch})
            for key, value in zip(OUTPUTS, out, strict=True):
                parts[key].append(value)
        note, onset = (unwrap(np.concatenate(parts[k]), samples.shape[0]) for k in ("note", "onset"))
        return note, onset

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Transcribe the track; notes sorted by start time (then pitch)."""
        note, onset = self.posteriorgrams(audio.samples)
        self.check_cancelled()
        events = decode_notes(
            note, onset, self.onset_threshold, self.frame_threshold, self.min_frames, self.melodia_trick
        )
        times = frame_times(note.shape[0] + 1)
        notes = [
            {
                "start": round(float(times[s]), 4),
                "end": round(float(times[e]), 4),
                "pitch": p,
                "velocity": int(np.clip(round(127 * a), 1, 127)),
                "name": note_name(p),
            }
            for s, e, p, a in events
        ]
        notes.sort(key=lambda n: (n["start"], n["pitch"]))
        result: dict[str, Any] = {"notes": notes, "note_count": len(notes)}
        if self.midi:
            result["midi_base64"] = base64.b64encode(midi_file(notes)).decode("ascii")
        return result
