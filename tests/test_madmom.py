"""madmom's beat, downbeat, key and chord analyzers with their real networks, on synthesised signals.

Known answers (click tracks, cadences, triads), long constant-tempo grooves that must keep one tempo and one
bar grid from start to end (issue 15: chunked decoding switched metrical level at the seams), equality with
madmom's own processors and decoder, bounded decoding memory, and lean construction (one session per network).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import mir_eval
import numpy as np
import onnxruntime as ort
import pytest
import yaml

from models import placement
from models.base import Audio, AudioInput, Cancelled, cancellable
from models.madmom_models import (
    CompactViterbi,
    MadmomBeatTracker,
    MadmomChordRecognizer,
    MadmomDownbeatTracker,
    MadmomKeyRecognizer,
    OnnxNetwork,
    bar_dbn,
    beat_dbn,
    chord_names,
    chunk_bounds,
)
from tests.audio_factory import _midi_hz, _progression, a_minor_cadence, c_major_cadence, click_times, click_track
from tests.conftest import REPO

RATE = 44100
FIRST_BEAT = 0.5
BASS_ROOTS = (45, 41, 48, 43)  # one bar each: A1, F1, C2, G1
ANALYZERS = (MadmomBeatTracker, MadmomDownbeatTracker, MadmomKeyRecognizer, MadmomChordRecognizer)


# --- signals -----------------------------------------------------------------------------------------------


def _decay(seconds: float, tau: float) -> np.ndarray:
    """An exponential envelope of ``seconds`` with time constant ``tau``."""
    return np.exp(-np.arange(int(seconds * RATE)) / (tau * RATE))


def _drums(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Kick (120->45 Hz sweep), snare (noise + 190 Hz body), closed hi-hat (differenced noise), crash."""
    t = np.arange(int(0.25 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (45 * t + 75 * 0.03 * (1 - np.exp(-t / 0.03)))) * _decay(0.25, 0.07)
    snare = (0.7 * rng.standard_normal(t.size) + np.sin(2 * np.pi * 190 * t)) * _decay(0.25, 0.05)
    hat = np.diff(rng.standard_normal(int(0.06 * RATE) + 1)) * _decay(0.06, 0.012)
    crash = np.diff(rng.standard_normal(int(1.2 * RATE) + 1)) * _decay(1.2, 0.35)
    return {"kick": kick, "snare": snare, "hat": 0.25 * hat, "crash": 0.15 * crash}


def _bass_note(midi: int, seconds: float) -> np.ndarray:
    """A plucked bass note: 4 harmonics with a fast decay."""
    t = np.arange(int(seconds * RATE)) / RATE
    f = _midi_hz(midi)
    return sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 5)) * _decay(seconds, 0.25)


@cache
def groove(
    bpm: float,
    seconds: float,
    hats_per_beat: int = 2,
    double_time: tuple[float, float] = (0.0, 0.0),
    drift: float = 0.0,
) -> np.ndarray:
    """A 4/4 drum-and-bass groove from FIRST_BEAT: kick on 1, 3 and the "and" of 3, snare on 2 and 4, hi-hats,
    a crash on every downbeat, a syncopated bass line whose root changes every bar (A F C G). Between the
    ``double_time`` seconds the drums play double-time (kick on every beat, snare on every off-beat, 16th hats).
    With ``drift`` the tempo changes linearly, by that fraction of ``bpm``, from start to end."""
    rng = np.random.default_rng(7)
    sounds = _drums(rng)
    out = np.zeros(int(seconds * RATE) + RATE)

    def put(sound: np.ndarray, at: float, gain: float = 1.0) -> None:
        start = int(round(at * RATE))
        out[start : start + sound.size] += gain * sound[: out.size - start]

    times = groove_beats(bpm, seconds, drift)
    for b, (at, beat) in enumerate(zip(times, np.diff(times, append=2 * times[-1] - times[-2]), strict=True)):
        in_bar, bar, sixteenth = b % 4, b // 4, beat / 4
        root = BASS_ROOTS[bar % 4]
        if in_bar == 0:
            put(sounds["crash"], at)
        if double_time[0] <= at < double_time[1]:
            put(sounds["kick"], at, 1.0 if in_bar == 0 else 0.8)
            put(sounds["snare"], at + 2 * sixteenth, 0.8)
            for h in range(4):
                put(sounds["hat"], at + h * sixteenth, 1.0 if h % 2 == 0 else 0.6)
        else:
            put(sounds["kick"] if in_bar in (0, 2) else sounds["snare"], at, 1.0 if in_bar == 0 else 0.8)
            if in_bar == 2:
                put(sounds["kick"], at + 2 * sixteenth, 0.6)
            for h in range(hats_per_beat):
                put(sounds["hat"], at + h * beat / hats_per_beat, 1.0 if h == 0 else 0.6)
        put(_bass_note(root, beat), at, 0.5 if in_bar == 0 else 0.35)
        if in_bar in (1, 3):
            put(_bass_note(root + 12, 2 * sixteenth), at + 3 * sixteenth, 0.25)
    out = out[: int(seconds * RATE)]
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def groove_beats(bpm: float, seconds: float, drift: float = 0.0) -> np.ndarray:
    """Beat times of ``groove(bpm, seconds, drift=drift)`` (the last one ends the groove)."""
    times = [FIRST_BEAT]
    while times[-1] < seconds - 0.3:
        times.append(times[-1] + 60.0 / (bpm * (1.0 + drift * times[-1] / seconds)))
    return np.array(times[:-1])


# --- helpers -------------------------------------------------------------------------------------------------


@cache
def output_schemas() -> dict[str, dict]:
    """The madmom entries' output schemas as written in model_registry.yaml."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    return {m["name"]: m["output_schema"] for m in data["models"] if m["name"].endswith("_madmom")}


def check_schema(name: str, result: dict) -> None:
    """The result matches the registry entry's declared output_schema."""
    jsonschema.validate(result, output_schemas()[name])


def one_tempo(beats: list[float], tolerance: float = 0.05) -> float:
    """The median inter-beat interval, after checking that every interval is within ``tolerance`` of it plus
    one 10 ms frame (beat times sit on the frames)."""
    intervals = np.diff(beats)
    median = float(np.median(intervals))
    worst = np.max(np.abs(intervals - median) - 0.0101) / median
    assert worst < tolerance, f"an interval is {100 * worst:.0f} % (+ 10 ms) off the median {median:.3f} s"
    return median


def nearest_error(truth: np.ndarray, found: list[float]) -> float:
    """Largest distance (s) from a found time to the nearest true time, over the truth's span (the trackers
    may continue the grid into a signal's decaying tail)."""
    span = [f for f in found if truth[0] - 0.1 < f < truth[-1] + 0.1]
    assert len(span) > 0.9 * len(found)
    return float(max(np.min(np.abs(truth - f)) for f in span))


@pytest.fixture(scope="module")
def beats() -> MadmomBeatTracker:
    """One beat tracker for the module (8 networks)."""
    return MadmomBeatTracker()


@pytest.fixture(scope="module")
def downbeats() -> MadmomDownbeatTracker:
    """One downbeat tracker for the module (8 networks)."""
    return MadmomDownbeatTracker()


@pytest.fixture
def restore_placement() -> Iterator[None]:
    """Put the process placement back after a test that changes it."""
    before = placement.current()
    yield
    placement.configure(before.cpus, before.gpu_ids)


# --- long tracks keep one tempo and one bar grid -------------------------------------------------------------


@pytest.fixture(scope="module")
def long_groove(beats: MadmomBeatTracker, downbeats: MadmomDownbeatTracker) -> dict[str, Any]:
    """3 minutes at 96 BPM (three 60 s activation chunks) whose middle minute is drummed double-time,
    through both trackers. Decoding chunk by chunk, the downbeat tracker switched to 192 BPM for that minute."""
    audio = Audio(groove(96.0, 180.0, double_time=(60.0, 120.0)), RATE)
    return {"beats": beats.analyze(audio), "downbeats": downbeats.analyze(audio), "truth": groove_beats(96.0, 180.0)}


def test_a_long_groove_keeps_one_tempo(long_groove: dict[str, Any]) -> None:
    """Both trackers report 96 BPM and every inter-beat interval is within 5 % (+ one frame) of 0.625 s."""
    for name in ("beats", "downbeats"):
        result = long_groove[name]
        check_schema(f"{name}_madmom", result)
        assert result["bpm"] == pytest.approx(96.0, abs=0.5)
        assert one_tempo(result["beats"]) == pytest.approx(0.625, abs=0.011)
        assert len(result["beats"]) >= len(long_groove["truth"]) - 2
        assert nearest_error(long_groove["truth"], result["beats"]) < 0.05


def test_downbeat_tracker_finds_the_beat_trackers_beats(long_groove: dict[str, Any]) -> None:
    """Both trackers' beats match within 70 ms (F-measure, mir_eval)."""
    found = [np.array(long_groove[name]["beats"]) for name in ("beats", "downbeats")]
    assert mir_eval.beat.f_measure(*found, 0.07) > 0.98


def test_downbeats_every_four_beats_on_the_accents(long_groove: dict[str, Any]) -> None:
    """4/4 throughout: positions cycle 1-2-3-4 without a break and every downbeat is a bar's first beat."""
    result = long_groove["downbeats"]
    positions = result["positions"]
    assert result["beats_per_bar"] == 4
    assert all(b == a % 4 + 1 for a, b in zip(positions, positions[1:], strict=False))
    bars = long_groove["truth"][::4]
    assert nearest_error(bars, result["downbeats"]) < 0.05
    assert len(result["downbeats"]) >= len(bars) - 1


def test_a_drifting_groove_is_followed(beats: MadmomBeatTracker, downbeats: MadmomDownbeatTracker) -> None:
    """A groove speeding up from 96 to 105.6 BPM over 150 s stays inside the second pass's tempo band around
    its median tempo: both trackers follow it, every beat within 50 ms of the groove's."""
    audio, truth = Audio(groove(96.0, 150.0, drift=0.1), RATE), groove_beats(96.0, 150.0, drift=0.1)
    for result in (beats.analyze(audio), downbeats.analyze(audio)):
        assert nearest_error(truth, result["beats"]) < 0.05
        assert mir_eval.beat.f_measure(truth, np.array(result["beats"]), 0.07) > 0.98


def test_an_octave_ambiguous_groove_keeps_one_metrical_level(
    beats: MadmomBeatTracker, downbeats: MadmomDownbeatTracker
) -> None:
    """76 BPM with sixteenth hi-hats, where 152 BPM is as plausible: each tracker keeps one level for all 150 s,
    on the groove's pulse. The two networks read this groove differently (beats 76, downbeats 152; madmom's
    own whole-track decoders agree), so the test holds them to the same pulse, not to the same level."""
    audio, truth = Audio(groove(76.0, 150.0, hats_per_beat=4), RATE), groove_beats(76.0, 150.0)
    eighths = np.sort(np.concatenate([truth, truth + 30.0 / 76.0]))
    b, d = beats.analyze(audio), downbeats.analyze(audio)
    levels = []
    for result in (b, d):
        level = 60.0 / one_tempo(result["beats"])
        assert level == pytest.approx(76.0, rel=0.02) or level == pytest.approx(152.0, rel=0.02)
        levels.append(round(level / 76.0))
        assert nearest_error(truth if levels[-1] == 1 else eighths, result["beats"]) < 0.05
    slow, fast = (b, d) if levels[0] <= levels[1] else (d, b)
    assert nearest_error(np.array(fast["beats"]), slow["beats"]) < 0.07  # the slower level's beats are shared
    assert d["beats_per_bar"] == 4 and nearest_error(truth[:: 4 // levels[1]], d["downbeats"]) < 0.05


# --- known answers -------------------------------------------------------------------------------------------


def test_beats_madmom_on_a_120_bpm_click_track(beats: MadmomBeatTracker) -> None:
    """120 BPM clicks: bpm 120 ± 0.5, every beat within 30 ms of a click, intervals 0.5 s."""
    result = beats.analyze(Audio(click_track(120.0, 20.0), RATE))
    check_schema("beats_madmom", result)
    found = np.array(result["beats"])
    truth = click_times(120.0, 20.0)
    assert result["bpm"] == pytest.approx(120.0, abs=0.5)
    assert result["beat_count"] == len(found) >= len(truth) - 2
    assert nearest_error(truth, result["beats"]) < 0.03
    assert np.allclose(np.diff(found), 0.5, atol=0.02)


def test_downbeats_madmom_follow_the_accents_in_4_4(downbeats: MadmomDownbeatTracker) -> None:
    """Accented first beats give 4/4 bars whose downbeats are the accents, wherever the track starts."""
    result = downbeats.analyze(Audio(click_track(120.0, 20.0), RATE))
    check_schema("downbeats_madmom", result)
    accents = click_times(120.0, 20.0)[::4]
    assert result["beats_per_bar"] == 4 and result["bpm"] == pytest.approx(120.0, abs=0.5)
    assert len(result["downbeats"]) >= len(accents) - 1
    assert nearest_error(accents, result["downbeats"]) < 0.03
    assert result["positions"][:8] == [1, 2, 3, 4, 1, 2, 3, 4]
    # start one second (two beats) in: the first accent is now at 1.5 s
    shifted = downbeats.analyze(Audio(click_track(120.0, 21.0)[RATE:], RATE))
    assert nearest_error(click_times(120.0, 21.0)[::4][1:] - 1.0, shifted["downbeats"]) < 0.03


def test_key_madmom_on_cadences() -> None:
    """I-IV-V-I in C gives C major; i-iv-V-i in A minor gives A minor; 24 probabilities summing to 1."""
    key = MadmomKeyRecognizer()
    major = key.analyze(Audio(c_major_cadence(), RATE))
    minor = key.analyze(Audio(a_minor_cadence(), RATE))
    check_schema("key_madmom", major)
    assert (major["key"], major["scale"]) == ("C", "major") and major["strength"] > 0.5
    assert (minor["key"], minor["scale"]) == ("A", "minor")
    assert len(major["probabilities"]) == 24 and sum(major["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert major["probabilities"]["C major"] == major["strength"]


def test_chords_madmom_c_f_g_c() -> None:
    """Root-position triads C–F–G–C, 2 s each: those chords, boundaries within 0.3 s of the changes."""
    progression = _progression([[48, 52, 55], [53, 57, 60], [55, 59, 62], [48, 52, 55]], 2.0, 1, RATE)
    result = MadmomChordRecognizer().analyze(Audio(progression, RATE))
    check_schema("chords_madmom", result)
    segments = [s for s in result["segments"] if s["chord"] != "N" and s["end"] - s["start"] > 0.3]
    assert [s["chord"] for s in segments] == ["C", "F", "G", "C"]
    assert [s["label"] for s in segments] == ["C:maj", "F:maj", "G:maj", "C:maj"]
    for s, (start, end) in zip(segments, [(0, 2), (2, 4), (4, 6), (6, 8)], strict=True):
        assert s["start"] == pytest.approx(start, abs=0.3) and s["end"] == pytest.approx(end, abs=0.3)


def test_chord_spelling_matches_the_essentia_chords_model() -> None:
    """madmom's sharps become the catalogue's spelling (Eb, Ab, Bb); minor chords get 'm'."""
    assert chord_names("A#:min") == ("Bbm", "Bb:min")
    assert chord_names("D#:maj") == ("Eb", "Eb:maj")
    assert chord_names("C#:maj") == ("C#", "C#:maj")
    assert chord_names("N") == ("N", "N")


# --- the same numbers as madmom's own processors --------------------------------------------------------------


def test_networks_match_madmoms_own_processors(beats: MadmomBeatTracker, downbeats: MadmomDownbeatTracker) -> None:
    """Our pre-processing + sessions give madmom's RNN/CNN processors' outputs on 12 s of the groove."""
    from madmom.features.beats import RNNBeatProcessor
    from madmom.features.chords import CNNChordFeatureProcessor
    from madmom.features.downbeats import RNNDownBeatProcessor
    from madmom.features.key import CNNKeyRecognitionProcessor

    x = groove(96.0, 180.0)[: 12 * RATE]
    np.testing.assert_allclose(beats.network_output(x), RNNBeatProcessor()(x), atol=1e-6)
    np.testing.assert_allclose(downbeats.network_output(x), RNNDownBeatProcessor()(x), atol=1e-6)
    np.testing.assert_allclose(MadmomChordRecognizer().features(x), CNNChordFeatureProcessor()(x), atol=1e-6)
    key = MadmomKeyRecognizer().analyze(Audio(x, RATE))["probabilities"]
    np.testing.assert_allclose(list(key.values()), CNNKeyRecognitionProcessor()(x).reshape(-1), atol=1e-4)


def test_compact_viterbi_is_madmoms_viterbi(beats: MadmomBeatTracker, downbeats: MadmomDownbeatTracker) -> None:
    """Same best path and log-probability as madmom's HMM, for the beat model and both bar models (30 s)."""
    x = groove(76.0, 150.0, hats_per_beat=4)[: 30 * RATE]
    beat_act, bar_act = beats.network_output(x), downbeats.network_output(x)
    from madmom.features.beats import DBNBeatTrackingProcessor
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor

    pairs = [(DBNBeatTrackingProcessor(fps=100).hmm, beat_dbn(55.0, 215.0).hmm, beat_act)]
    madmom_bars = DBNDownBeatTrackingProcessor([3, 4], fps=100).hmms
    pairs += [(m, c, bar_act) for m, c in zip(madmom_bars, bar_dbn([3, 4], 55.0, 215.0).hmms, strict=True)]
    for reference, compact, activations in pairs:
        assert isinstance(compact, CompactViterbi)
        want_path, want_log_p = reference.viterbi(activations)
        path, log_p = compact.viterbi(activations)
        np.testing.assert_array_equal(path, want_path)
        assert log_p == want_log_p


def test_decoding_twenty_minutes_stays_small() -> None:
    """The bar DBN over 20 minutes of activations (120,000 frames) allocates under 80 MB at its peak; madmom's
    back-pointers alone would take frames x states x 4 bytes (several GB). The beats it finds are the pulse's."""
    frames = np.arange(120_000)
    beat, downbeat = (frames % 60 == 0) & (frames % 240 != 0), frames % 240 == 0  # 100 BPM, 4/4
    activations = np.stack([np.where(beat, 0.9, 0.01), np.where(downbeat, 0.9, 0.01)], axis=1).astype(np.float32)
    dbn = bar_dbn([4], 100 / 1.2, 100 * 1.2)
    states = dbn.hmms[0].transition_model.num_states
    tracemalloc.start()
    try:
        decoded = dbn(activations)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80e6 < frames.size * states * 4 / 10
    assert np.allclose(np.diff(decoded[:, 0]), 0.6, atol=0.011)
    bars = decoded[decoded[:, 1] == 1, 0] / 2.4
    assert len(bars) >= 499 and np.allclose(bars, np.round(bars), atol=0.005)


def test_chunked_activations_match_the_whole_track(beats: MadmomBeatTracker) -> None:
    """Activations from 10 s chunks with 10 s context differ from the whole track's (one 60 s chunk) by under
    0.03 (the forward LSTMs start from zero at each chunk's context); the beats are the same within a frame."""
    x = click_track(120.0, 30.0)
    chunked = MadmomBeatTracker(chunk_s=10.0, context_s=10.0)
    assert len(chunk_bounds(3000, chunked.chunk, chunked.context)) == 3
    assert np.max(np.abs(beats.activations(x) - chunked.activations(x))) < 0.03  # peaks are 0.4-0.8
    a, b = beats.analyze(Audio(x, RATE)), chunked.analyze(Audio(x, RATE))
    assert a["beat_count"] == b["beat_count"] and np.allclose(a["beats"], b["beats"], atol=0.011)


def test_chunk_bounds_cover_every_frame_once() -> None:
    """Kept ranges tile the track; each computed range adds the context, clipped at the ends."""
    bounds = chunk_bounds(250, 100, 30)
    assert bounds == [(0, 100, 0, 130), (100, 200, 70, 230), (200, 250, 170, 250)]
    assert chunk_bounds(0, 100, 30) == [(0, 0, 0, 0)]


# --- declarations, placement, start-up ------------------------------------------------------------------------


def test_inputs_are_declared_once() -> None:
    """44.1 kHz mono with each model's minimum length; the host checks them, so analyze() needs no checks."""
    minimum = {MadmomBeatTracker: 2.0, MadmomDownbeatTracker: 3.0, MadmomKeyRecognizer: 1.0, MadmomChordRecognizer: 1.0}
    for cls, seconds in minimum.items():
        assert cls.inputs == {"audio": AudioInput(sample_rate=44100, channels="mono", min_seconds=seconds)}


def test_importing_the_module_loads_neither_madmom_nor_onnxruntime() -> None:
    """Reading the class declarations is cheap: the heavy imports happen in the constructors."""
    code = "import sys, models.madmom_models; print(sorted({'madmom', 'onnxruntime'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_each_network_is_loaded_once_with_our_session_options(
    monkeypatch: pytest.MonkeyPatch, restore_placement: None
) -> None:
    """One onnxruntime session per network file (8, 8, 1, 1), each with the replica's threads, on the CPU here."""
    placement.configure(2.0)
    built: list[str] = []
    real = ort.InferenceSession

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, model: Any, *args: Any, **kwargs: Any) -> None:
            built.append(str(model))
            super().__init__(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counted)
    for cls, count in zip(ANALYZERS, (8, 8, 1, 1), strict=True):
        built.clear()
        analyzer = cls()
        assert len(built) == len(set(built)) == count
        assert sorted(n.path for n in analyzer.networks) == sorted(built)
        for network in analyzer.networks:
            assert isinstance(network, OnnxNetwork) and network.path.endswith(".onnx")
            options = network.session.get_session_options()
            assert options.intra_op_num_threads == placement.current().threads
            assert network.session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("make", [MadmomBeatTracker, MadmomChordRecognizer])
def test_cancelled_request_stops_between_stages(make: type) -> None:
    """With the request's cancel flag set, the analyzer stops at its next check instead of finishing."""
    analyzer = make()
    flag = threading.Event()
    flag.set()
    with cancellable(flag), pytest.raises(Cancelled):
        analyzer.analyze(Audio(c_major_cadence(), RATE))
