"""The classic catalogue on known signals: answers, output schemas, faithfulness to Essentia, clear errors.

Every analyzer is built from the real model_registry.yaml entry (class + params), every result is validated
against that entry's output_schema, and each wrapper is compared with the Essentia algorithm called directly
on the same array. The last block is the CI subset of benchmarks/accuracy (EBU signals, fast grooves).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jsonschema
import numpy as np
import pytest

from benchmarks.accuracy.ebu import EBU_RATE, check, ebu_cases
from models.base import Analyzer, AnalyzerError, Audio
from models.essentia_runtime import essentia_standard
from models.tonal import roman_numeral
from serve_app.config import DEFAULT_REGISTRY
from serve_app.registry import ModelEntry, load_registry
from serve_app.runners.host import AnalyzerHost
from tests.audio_factory import a_minor_cadence, c_major_cadence, click_times, click_track, sine
from tests.catalogue_signals import drum_groove

SR = 44100
NEW_MODELS = (
    "bpm_multifeature", "bpm_percival", "bpm_octave", "beats", "onsets", "danceability_dsp", "key_edma",
    "key_temperley", "key_krumhansl", "chords", "tuning", "dynamic_complexity", "replay_gain", "spectral",
)  # fmt: skip
es = essentia_standard()


@functools.cache
def entry(name: str) -> ModelEntry:
    """The default entry of ``name`` in the shipped registry."""
    found = load_registry(DEFAULT_REGISTRY).find(name, None)
    assert found is not None, name
    return found


@functools.cache
def analyzer(name: str) -> Analyzer:
    """The analyzer exactly as a replica builds it: registry class with registry params."""
    e = entry(name)
    return e.load_class()(**e.params)


def run(name: str, samples: np.ndarray, rate: int = SR) -> dict[str, Any]:
    """Analyze and validate the result against the entry's output schema (and JSON-ability)."""
    result = analyzer(name).analyze(Audio(np.ascontiguousarray(samples, dtype=np.float32), rate))
    jsonschema.validate(result, entry(name).output_schema)
    _assert_plain_json(result)
    return result


def _assert_plain_json(value: Any) -> None:
    """Only plain Python JSON types, and no NaN/inf."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str)
            _assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            _assert_plain_json(v)
    elif isinstance(value, float):
        assert math.isfinite(value)
    else:
        assert value is None or type(value) in (str, int, bool), type(value)


@pytest.fixture(scope="module")
def clicks() -> np.ndarray:
    """120 BPM click track, 20 s."""
    return click_track(120.0, 20.0)


def test_catalogue_is_registered_with_licences_and_fits_two_cores() -> None:
    """Every new model is a default entry with a licence; the whole catalogue (downloadable models too) fits 2 cores."""
    registry = load_registry(DEFAULT_REGISTRY)
    for name in NEW_MODELS:
        e = entry(name)
        assert e.license == {"code": "AGPL-3.0 (Essentia)", "weights": "none (DSP)"}
        assert e.description and e.autoscaling.min_replicas == 1
    assert registry.ingress.num_cpus + sum(e.resources.num_cpus for e in registry.entries) <= 2.0


# --- tempo and rhythm ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bpm_multifeature", "bpm_percival", "bpm_octave", "beats"])
def test_tempo_models_on_120_bpm_clicks(name: str, clicks: np.ndarray) -> None:
    """Each tempo model reads 120 +- 1 BPM on the click track."""
    assert run(name, clicks)["bpm"] == pytest.approx(120.0, abs=1.0)


def test_multifeature_beats_confidence_and_faithfulness(clicks: np.ndarray) -> None:
    """Beats within 50 ms of the clicks, a high confidence, and exactly RhythmExtractor2013's output."""
    result = run("bpm_multifeature", clicks)
    truth = click_times(120.0, 20.0)
    assert np.median([np.min(np.abs(truth - b)) for b in result["beats"]]) < 0.05
    assert result["confidence"] > 3.5
    bpm, ticks, confidence, _, _ = es.RhythmExtractor2013(method="multifeature")(clicks)
    assert result["bpm"] == float(bpm) and result["confidence"] == float(confidence)
    assert result["beats"] == [round(float(t), 4) for t in ticks]


def test_beats_has_a_flat_bpm_curve_on_clicks(clicks: np.ndarray) -> None:
    """The local tempo curve is 120 +- 1 everywhere on a metronome, one point per beat."""
    result = run("beats", clicks)
    curve = result["bpm_curve"]
    assert len(curve["times"]) == len(curve["bpm"]) == result["beat_count"]
    assert np.allclose(curve["bpm"], 120.0, atol=1.0)


def test_percival_equals_essentia(clicks: np.ndarray) -> None:
    """The wrapper is PercivalBpmEstimator with its defaults."""
    assert run("bpm_percival", clicks)["bpm"] == float(es.PercivalBpmEstimator()(clicks))


def test_onsets_find_every_click(clicks: np.ndarray) -> None:
    """One onset per click (within 30 ms), rate = count / duration, same as OnsetRate."""
    result = run("onsets", clicks)
    truth = click_times(120.0, 20.0)
    assert result["onset_count"] == len(truth)
    assert np.max(np.abs(np.array(result["onsets"]) - truth)) < 0.03
    onsets, rate = es.OnsetRate()(clicks)
    assert result["onset_rate"] == float(rate) == pytest.approx(len(truth) / 20.0)
    assert result["onsets"] == [round(float(t), 4) for t in onsets]


def test_danceability_is_essentias_and_rhythm_beats_noise(clicks: np.ndarray) -> None:
    """A steady pulse is more danceable than white noise; values equal Essentia Danceability."""
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR * 20)).astype(np.float32)
    pulse, hiss = run("danceability_dsp", clicks), run("danceability_dsp", noise)
    assert pulse["danceability"] > hiss["danceability"]
    value, dfa = es.Danceability()(clicks)
    assert pulse["danceability"] == float(value) and pulse["dfa"] == [float(v) for v in dfa]


# --- tonality ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["key_edma", "key_temperley", "key_krumhansl"])
def test_key_profiles_on_cadences_equal_essentia(name: str) -> None:
    """Each profile finds C major / A minor and equals KeyExtractor(profileType=...) on the same array."""
    profile = entry(name).params["profile"]
    for audio, expected in ((c_major_cadence(), ("C", "major")), (a_minor_cadence(), ("A", "minor"))):
        result = run(name, audio)
        assert (result["key"], result["scale"], result["profile"]) == (*expected, profile)
        key, scale, strength = es.KeyExtractor(profileType=profile)(audio)
        assert (result["key"], result["scale"], result["strength"]) == (key, scale, float(strength))


def test_chords_of_c_major_cadence() -> None:
    """I-IV-V-I at 2 s per chord: C F G C segments with times, roman numerals in C major."""
    result = run("chords", c_major_cadence(seconds_per_chord=2.0, repeats=2))
    assert (result["key"], result["scale"]) == ("C", "major")
    segments = result["segments"]
    assert [s["chord"] for s in segments] == ["C", "F", "G", "C", "F", "G", "C"]
    assert [s["roman"] for s in segments] == ["I", "IV", "V", "I", "IV", "V", "I"]
    boundaries = [s["start"] for s in segments[1:]]
    assert np.allclose(boundaries, [2, 4, 6, 10, 12, 14], atol=0.15)
    assert segments[0]["start"] == 0.0 and segments[-1]["end"] == pytest.approx(16.0)
    assert result["chords_key"] == "C" and result["chords_scale"] == "major"


def test_chords_equal_tonal_extractor_and_roman_numerals_in_minor() -> None:
    """Frame labels are TonalExtractor's; A minor's i-iv-V read as i, iv, V; a second call is independent."""
    audio = a_minor_cadence()
    run("chords", c_major_cadence())  # state from a previous track must not leak
    result = run("chords", audio)
    labels = dict(zip(es.TonalExtractor().outputNames(), es.TonalExtractor()(audio), strict=True))
    progression = labels["chords_progression"]
    expanded = [s["chord"] for s in result["segments"] for _ in range(round((s["end"] - s["start"]) * SR / 2048))]
    assert len(set(progression)) == len({s["chord"] for s in result["segments"]})
    assert expanded[:50] == list(progression[:50])
    assert {s["roman"] for s in result["segments"]} <= {"i", "iv", "V"}
    assert roman_numeral("Bb", "C", "major") == "bVII" and roman_numeral("G", "A", "minor") == "VII"


@pytest.mark.parametrize("cents", [-40.0, -20.0, 0.0, 15.0])
def test_tuning_of_detuned_cadence(cents: float) -> None:
    """A cadence rendered with A4 = 440 * 2**(c/1200) reads c +- 6 cents (measured: within 5); equals Essentia."""
    audio = c_major_cadence()
    shifted = np.interp(np.arange(0, len(audio), 2 ** (cents / 1200)), np.arange(len(audio)), audio)
    shifted = shifted.astype(np.float32)
    result = run("tuning", shifted)
    assert result["tuning_cents"] == pytest.approx(cents, abs=6.0)
    assert result["essentia_frequency"] == float(es.TuningFrequencyExtractor()(shifted)[-1])
    assert result["tuning_frequency"] == pytest.approx(440.0 * 2 ** (result["tuning_cents"] / 1200))


# --- dynamics and timbre ----------------------------------------------------------------------------------


def test_dynamic_complexity_steady_vs_stepped() -> None:
    """A steady sine has ~0 dB dynamic complexity, a 20 dB step much more; equals DynamicComplexity."""
    steady = sine(1000.0, -20.0, 10.0, SR, 1)[0]
    stepped = np.concatenate([sine(1000.0, -20.0, 5.0, SR, 1)[0], sine(1000.0, -40.0, 5.0, SR, 1)[0]])
    flat, varied = run("dynamic_complexity", steady), run("dynamic_complexity", stepped)
    assert flat["dynamic_complexity"] < 0.5 < 5.0 < varied["dynamic_complexity"]
    assert varied["dynamic_complexity"] == float(es.DynamicComplexity()(stepped)[0])


def test_replay_gain_tracks_level_exactly() -> None:
    """10 dB quieter audio needs 10 dB more gain; equals Essentia ReplayGain."""
    loud, quiet = sine(1000.0, -10.0, 5.0, SR, 1)[0], sine(1000.0, -20.0, 5.0, SR, 1)[0]
    gain_loud, gain_quiet = run("replay_gain", loud)["replay_gain"], run("replay_gain", quiet)["replay_gain"]
    assert gain_quiet - gain_loud == pytest.approx(10.0, abs=0.05)
    assert gain_loud == float(es.ReplayGain()(loud))


def test_spectral_summary_known_answers_and_low_level_extractor() -> None:
    """A 3 kHz sine has its centroid/roll-off near 3 kHz; frame values equal LowLevelSpectralExtractor's."""
    tone = sine(3000.0, -10.0, 3.0, SR, 1)[0]
    result = run("spectral", tone)
    assert result["spectral_centroid"]["median"] == pytest.approx(3000.0, rel=0.1)
    assert result["spectral_rolloff"]["median"] == pytest.approx(3000.0, rel=0.05)
    assert len(result["mfcc_mean"]) == len(result["mfcc_var"]) == 13
    audio = c_major_cadence()
    result = run("spectral", audio)
    extractor = es.LowLevelSpectralExtractor()
    reference = dict(zip(extractor.outputNames(), extractor(audio), strict=True))
    assert result["frames"] == len(reference["mfcc"])
    for name in ("spectral_flux", "spectral_rolloff", "zerocrossingrate"):
        assert result[name]["mean"] == pytest.approx(float(np.mean(reference[name].astype(np.float64))), rel=1e-6)
    assert np.allclose(result["mfcc_mean"], np.mean(reference["mfcc"].astype(np.float64), axis=0), rtol=1e-5)


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "seconds", "message"),
    [
        ("bpm_multifeature", 1.0, "at least 2 s"),
        ("bpm_percival", 1.0, "at least 2 s"),
        ("bpm_octave", 1.0, "at least 2 s"),
        ("beats", 1.0, "at least 2 s"),
        ("onsets", 0.2, "at least 0.5 s"),
        ("danceability_dsp", 1.0, "at least 2 s"),
        ("key_edma", 0.5, "at least 1 s"),
        ("chords", 0.5, "at least 1 s"),
        ("tuning", 0.5, "at least 1 s"),
        ("dynamic_complexity", 0.2, "at least 0.4 s"),
        ("replay_gain", 0.05, "at least 0.1 s"),
        ("spectral", 0.01, "at least 0.0464399 s"),  # one 2048-sample frame
    ],
)
def test_too_short_is_a_clear_error(name: str, seconds: float, message: str) -> None:
    """Audio shorter than the class declares raises AnalyzerError with the reason (shown to the client), from the
    host, before the analyzer runs."""
    host = AnalyzerHost(entry(name))
    with pytest.raises(AnalyzerError, match=rf"audio is {seconds:.2f} s long; {entry(name).key} needs {message}"):
        host.run({"audio": Audio(np.zeros(int(SR * seconds), np.float32), SR)})


def test_silence_is_handled() -> None:
    """Silence: no onsets, zero danceability/complexity, errors for replay gain and tempo (not 738 BPM)."""
    silence = np.zeros(SR * 5, np.float32)
    assert run("onsets", silence)["onset_count"] == 0
    assert run("danceability_dsp", silence)["danceability"] == 0.0
    assert run("dynamic_complexity", silence)["dynamic_complexity"] == 0.0
    assert run("spectral", silence)["frames"] > 0
    with pytest.raises(AnalyzerError, match="digital silence"):
        analyzer("replay_gain").analyze(Audio(silence, SR))
    for name in ("bpm_degara", "bpm_multifeature", "beats"):
        with pytest.raises(AnalyzerError, match="no beats in digital silence"):
            analyzer(name).analyze(Audio(silence, SR))
    for name in ("bpm_percival", "bpm_octave"):
        with pytest.raises(AnalyzerError, match="no tempo found"):
            analyzer(name).analyze(Audio(silence, SR))


# --- loudness true peak, and the CI subset of benchmarks/accuracy -----------------------------------------


@pytest.mark.parametrize(("case", "description", "signal", "expect"), ebu_cases(), ids=lambda v: str(v)[:8])
def test_ebu_tech_3341_3342_cases(case: str, description: str, signal: np.ndarray, expect: dict) -> None:
    """Each synthesized EBU case passes with the standard's tolerance (5.0 case 6 through libebur128)."""
    audio = signal.astype(np.float32)
    result = run("loudness-ebur128", audio, EBU_RATE)
    verdicts = check(expect, result)
    assert all(ok for _, ok in verdicts.values()), (case, description, verdicts)


def test_true_peak_backends_agree_per_channel() -> None:
    """libebur128 (default) and Essentia's TruePeakDetector agree within 0.05 dB; per-channel values differ."""
    from models.loudness import LoudnessEBUR128Analyzer

    x = np.vstack([sine(997.0, -1.0, 2.0, 48000, 1)[0], sine(997.0, -12.0, 2.0, 48000, 1)[0]])
    ours = run("loudness-ebur128", x, 48000)
    theirs = LoudnessEBUR128Analyzer(curves=False, true_peak="essentia").analyze(Audio(x, 48000))
    assert ours["true_peak"] == ours["true_peak_channels"][0] == pytest.approx(-1.0, abs=0.1)
    assert ours["true_peak_channels"][1] == pytest.approx(-12.0, abs=0.1)
    assert np.allclose(ours["true_peak_channels"], theirs["true_peak_channels"], atol=0.05)
    silent = run("loudness-ebur128", np.zeros((2, 48000), np.float32), 48000)
    assert silent["true_peak"] is None


@pytest.mark.parametrize("bpm", [90.0, 120.0, 180.0])
def test_octave_correction_on_drum_grooves(bpm: float) -> None:
    """180 BPM rock groove: degara reads 90, bpm_octave 180 (+-4 %, Accuracy1); 90 and 120 stay put."""
    groove = drum_groove(bpm)
    assert run("bpm_octave", groove)["bpm"] == pytest.approx(bpm, rel=0.04)
    degara = analyzer("bpm_degara").analyze(Audio(groove, SR))["bpm"]
    expected_degara = bpm / 2 if bpm >= 170 else bpm
    assert degara == pytest.approx(expected_degara, rel=0.04)
