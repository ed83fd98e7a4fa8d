"""The onnxruntime models with their real weights: basic-pitch transcription and madmom's networks.

Known answers from synthesised signals (triads, sines, click tracks, cadences), session placement
(providers/threads), the registry entries (licences, schemas) and one real server streaming them all.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections.abc import Iterator
from dataclasses import replace

import jsonschema
import mido
import numpy as np
import onnxruntime as ort
import pytest
import soxr
import yaml

from models import onnx_runtime, placement
from models.base import AnalyzerError, Audio, Cancelled, cancellable
from models.transcription import BasicPitchTranscriber, frame_times, note_name
from serve_app.registry import Registry, parse_registry
from serve_app.registry.availability import PACKAGED_WEIGHTS
from serve_app.runners.host import AnalyzerHost
from tests.audio_factory import (
    _midi_hz,
    _tone,
    c_major_cadence,
    click_track,
    encode,
    sine,
)
from tests.conftest import REPO, catalogue_entry, free_port, make_settings, running_local_server
from tests.sse import post

BP_RATE = 22050
MM_RATE = 44100
ONNX_MODELS = (
    "transcription_basic_pitch",
    "transcription_basic_pitch_midi",
    "beats_madmom",
    "downbeats_madmom",
    "key_madmom",
    "chords_madmom",
)
MADMOM_MODELS = ONNX_MODELS[2:]
MODEL_PATH = PACKAGED_WEIGHTS / "basic_pitch" / "nmp.onnx"
TRIAD = (60, 64, 67)


def registry_entries() -> dict[str, dict]:
    """This module's entries as written in model_registry.yaml."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    return {m["name"]: m for m in data["models"] if m["name"] in ONNX_MODELS}


def check_schema(name: str, result: dict) -> None:
    """The result matches the entry's declared output_schema."""
    jsonschema.validate(result, registry_entries()[name]["output_schema"])


def triad(sample_rate: int = BP_RATE) -> np.ndarray:
    """C4 E4 G4 harmonic tones (6 partials, 50 ms raised-cosine attack/release) from 0.5 s to 2.5 s, then 1 s rest."""
    chord = sum(_tone(_midi_hz(p), 2.0, sample_rate) for p in TRIAD)
    x = np.concatenate([np.zeros(sample_rate // 2), chord, np.zeros(sample_rate)])
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def transcriber() -> BasicPitchTranscriber:
    """One MIDI-enabled transcriber for the module (loading is cheap, but share it anyway)."""
    return BasicPitchTranscriber(midi=True, weight_files={"model": str(MODEL_PATH)})


@pytest.fixture
def restore_placement() -> Iterator[None]:
    """Put the process placement back after a test that changes it."""
    before = placement.current()
    yield
    placement.configure(before.cpus, before.gpu_ids)


# --- session placement -------------------------------------------------------------------------------------


def test_providers_cuda_only_with_a_gpu_and_the_provider() -> None:
    """CUDA first only when the replica has a GPU *and* onnxruntime offers CUDA; CPU otherwise."""
    gpu, cpu_only = placement.Placement(cpus=1, gpu_ids=("3",)), placement.Placement(cpus=1)
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_runtime.choose_providers(gpu, both) == [
        ("CUDAExecutionProvider", {"device_id": 0}),
        "CPUExecutionProvider",
    ]
    assert onnx_runtime.choose_providers(gpu, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_runtime.choose_providers(cpu_only, both) == ["CPUExecutionProvider"]


@pytest.mark.parametrize(("cpus", "threads"), [(0.08, 1), (1.0, 1), (1.5, 2), (2.0, 2)])
def test_session_threads_follow_the_cpu_share(cpus: float, threads: int, restore_placement: None) -> None:
    """intra-op threads = the replica's CPU share rounded up; one inter-op thread; sequential; CPU here."""
    placement.configure(cpus)
    session = onnx_runtime.create_session(MODEL_PATH)
    options = session.get_session_options()
    assert options.intra_op_num_threads == min(threads, placement.current().threads)
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert session.get_providers() == ["CPUExecutionProvider"]


# --- basic-pitch -------------------------------------------------------------------------------------------


def test_vendored_basic_pitch_model_checksum() -> None:
    """nmp.onnx is byte-identical to basic-pitch 0.4.0's wheel (RECORD hash); the registry records its sha256."""
    digest = hashlib.sha256(MODEL_PATH.read_bytes()).digest()
    wheel_record = "LDwdFEv6Ya0jbpLhacE1NciARpoSoEfU5zRR8sBZoOw"
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == wheel_record
    for name in ("transcription_basic_pitch", "transcription_basic_pitch_midi"):
        (weight,) = registry_entries()[name]["weights"]
        assert weight["sha256"] == digest.hex() and weight["size"] == MODEL_PATH.stat().st_size


def test_c_major_triad_transcribes(transcriber: BasicPitchTranscriber) -> None:
    """C4 E4 G4 held 0.5–2.5 s: the three loudest notes are 60, 64, 67 with onsets/offsets within 60/100 ms.

    Anything else found is an upper partial of a chord tone and much quieter (basic-pitch on synthetic
    harmonic tones reports a few faint overtone notes).
    """
    result = transcriber.analyze(Audio(triad(), BP_RATE))
    check_schema("transcription_basic_pitch_midi", result)
    notes = result["notes"]
    assert result["note_count"] == len(notes) and notes == sorted(notes, key=lambda n: (n["start"], n["pitch"]))
    chord = [n for n in notes if n["pitch"] in TRIAD]
    assert sorted(n["pitch"] for n in chord) == list(TRIAD)
    assert [n["name"] for n in sorted(chord, key=lambda n: n["pitch"])] == ["C4", "E4", "G4"]
    for n in chord:
        assert n["start"] == pytest.approx(0.5, abs=0.06)
        assert n["end"] == pytest.approx(2.5, abs=0.1)
        assert 64 <= n["velocity"] <= 127
    overtones = {p + o for p in TRIAD for o in (12, 19, 24, 28, 31)}
    for n in notes:
        if n["pitch"] not in TRIAD:
            assert n["pitch"] in overtones and n["velocity"] < 0.6 * min(c["velocity"] for c in chord)


@pytest.mark.parametrize(("freq", "midi"), [(220.0, 57), (440.0, 69), (1000.0, 83)])
def test_a_sine_is_one_note_at_its_pitch(transcriber: BasicPitchTranscriber, freq: float, midi: int) -> None:
    """A steady 3 s sine is a single note of the nearest MIDI pitch lasting (almost) the whole signal."""
    notes = transcriber.analyze(Audio(sine(freq, -12.0, 3.0, BP_RATE, 1)[0], BP_RATE))["notes"]
    assert [n["pitch"] for n in notes] == [midi]
    assert notes[0]["start"] < 0.05 and notes[0]["end"] > 2.9


def test_midi_base64_is_a_standard_midi_file_with_the_notes(transcriber: BasicPitchTranscriber) -> None:
    """The MIDI variant's file parses as SMF type 0 at 120 BPM and holds exactly the reported notes."""
    result = transcriber.analyze(Audio(triad(), BP_RATE))
    data = base64.b64decode(result["midi_base64"], validate=True)
    assert data[:4] == b"MThd"
    midi = mido.MidiFile(file=io.BytesIO(data))
    assert midi.type == 0 and len(midi.tracks) == 1
    ticks_per_s = midi.ticks_per_beat * 2  # 120 BPM
    tempo = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempo == [500_000]
    now, open_notes, found = 0, {}, []
    for msg in midi.tracks[0]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[msg.note] = (now, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            start, velocity = open_notes.pop(msg.note)
            found.append((start / ticks_per_s, now / ticks_per_s, msg.note, velocity))
    expected = [(n["start"], n["end"], n["pitch"], n["velocity"]) for n in result["notes"]]
    assert len(found) == len(expected)
    for got, want in zip(sorted(found, key=lambda f: (f[0], f[2])), expected, strict=True):
        assert got[2:] == want[2:]
        assert got[0] == pytest.approx(want[0], abs=1 / ticks_per_s) and got[1] == pytest.approx(want[1], abs=1e-3)
    assert {f[2] for f in found} >= set(TRIAD)


def test_plain_variant_has_no_midi_and_bad_input_is_a_clear_error() -> None:
    """Without midi: no midi_base64; too short or wrong rate -> AnalyzerError from the host naming the need."""
    host = AnalyzerHost(catalogue_entry("transcription_basic_pitch"))
    result = host.run({"audio": Audio(triad(), BP_RATE)}).results
    assert "midi_base64" not in result
    check_schema("transcription_basic_pitch", result)
    with pytest.raises(AnalyzerError, match="at least 0.5 s"):
        host.run({"audio": Audio(np.zeros(BP_RATE // 4, np.float32), BP_RATE)})
    with pytest.raises(AnalyzerError, match="expects 22050 Hz audio"):
        host.run({"audio": Audio(np.zeros(MM_RATE, np.float32), MM_RATE)})
    assert host.run({"audio": Audio(np.zeros(BP_RATE, np.float32), BP_RATE)}).results == {"notes": [], "note_count": 0}


def test_note_names_and_frame_times() -> None:
    """Spelling follows the key model; frame times advance one hop and lose 188 samples per window."""
    assert [note_name(p) for p in (21, 60, 61, 63, 70, 108)] == ["A0", "C4", "C#4", "Eb4", "Bb4", "C8"]
    times = frame_times(300)
    assert times[1] == pytest.approx(256 / BP_RATE)
    assert times[142] - times[141] == pytest.approx((256 - 188) / BP_RATE)


def test_cancelled_request_stops_between_stages(transcriber: BasicPitchTranscriber) -> None:
    """With the request's cancel flag set, basic-pitch stops at its next check instead of finishing (madmom's
    analyzers: tests/test_madmom.py)."""
    flag = threading.Event()
    flag.set()
    with cancellable(flag), pytest.raises(Cancelled):
        transcriber.analyze(Audio(c_major_cadence(sample_rate=BP_RATE), BP_RATE))


# --- registry and server -----------------------------------------------------------------------------------


def test_registry_entries_record_licences_and_resources() -> None:
    """madmom entries carry the CC BY-NC-SA weights licence and the machine-readable non-commercial flag."""
    entries = registry_entries()
    assert set(entries) == set(ONNX_MODELS)
    registry = parse_registry({"models": list(entries.values())}, "onnx entries")
    for entry in registry.entries:
        assert entry.resources.num_cpus == 0.03 and entry.resources.memory_mb and entry.timeout_s >= 60
        if entry.name in MADMOM_MODELS:
            assert entry.license["weights"] == "CC-BY-NC-SA-4.0 (madmom)" and entry.noncommercial
            assert entry.input.sample_rate == MM_RATE
        else:
            assert not entry.noncommercial and entry.input.sample_rate == BP_RATE
    assert registry.find("transcription_basic_pitch_midi", None).params == {"midi": True}


@pytest.mark.server
def test_server_streams_every_onnx_model() -> None:
    """One real server (process pools) streams all six models for one file: every result is sensible."""
    registry = Registry(entries=tuple(catalogue_entry(n) for n in ONNX_MODELS))
    settings = replace(make_settings(free_port()), max_models_per_request=len(ONNX_MODELS))
    cadence = c_major_cadence(seconds_per_chord=2.0, repeats=2)
    clicks = click_track(120.0, len(cadence) / MM_RATE)[: len(cadence)]
    audio = encode(0.7 * cadence + 0.5 * clicks, MM_RATE, "flac")
    with running_local_server(registry, settings) as base:
        stream = post(base, ",".join(ONNX_MODELS), audio, timeout=240)
    assert stream.status == 200
    by_model = stream.by_model()
    assert {e["status"] for e in by_model.values()} == {"completed"}, by_model
    results = {name: by_model[name]["result"]["results"] for name in ONNX_MODELS}
    for name, result in results.items():
        check_schema(name, result)
    assert results["beats_madmom"]["bpm"] == pytest.approx(120.0, abs=1.0)
    assert results["downbeats_madmom"]["beats_per_bar"] == 4
    assert (results["key_madmom"]["key"], results["key_madmom"]["scale"]) == ("C", "major")
    chords = [s["chord"] for s in results["chords_madmom"]["segments"] if s["end"] - s["start"] > 0.5]
    assert chords[:4] == ["C", "F", "G", "C"]
    pitches = {n["pitch"] % 12 for n in results["transcription_basic_pitch"]["notes"] if n["velocity"] > 60}
    assert {0, 4, 7} <= pitches
    assert "midi_base64" not in results["transcription_basic_pitch"]
    with_midi = results["transcription_basic_pitch_midi"]
    midi = mido.MidiFile(file=io.BytesIO(base64.b64decode(with_midi["midi_base64"])))
    assert sum(1 for m in midi.tracks[0] if m.type == "note_on") == with_midi["note_count"]


def test_resampled_input_matches_what_the_server_sends() -> None:
    """basic-pitch at 22050 Hz from a 44.1 kHz source (soxr, as the decoder does) still finds the triad."""
    x = soxr.resample(triad(MM_RATE), MM_RATE, BP_RATE).astype(np.float32)
    notes = BasicPitchTranscriber(weight_files={"model": str(MODEL_PATH)}).analyze(Audio(x, BP_RATE))["notes"]
    assert {n["pitch"] for n in notes if n["velocity"] > 64} == set(TRIAD)
