"""The seed analyzers on arrays with known answers (no server): key, tempo, EBU R128 loudness."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import AnalyzerError, Audio
from models.key import KeyAnalyzer
from models.loudness import LoudnessEBUR128Analyzer
from models.rhythm import RhythmAnalyzer
from serve_app.runners.host import AnalyzerHost
from tests.audio_factory import a_minor_cadence, c_major_cadence, click_times, click_track, sine
from tests.conftest import catalogue_entry


def test_key_c_major_and_a_minor() -> None:
    """KeyExtractor's default (bgate) profile on synthesized cadences."""
    key = KeyAnalyzer()
    major = key.analyze(Audio(c_major_cadence(), 44100))
    minor = key.analyze(Audio(a_minor_cadence(), 44100))
    assert (major["key"], major["scale"], major["profile"]) == ("C", "major", "bgate")
    assert (minor["key"], minor["scale"]) == ("A", "minor")
    assert 0.5 < major["strength"] <= 1.0


def test_key_profile_is_a_parameter() -> None:
    """Another profile is one registry param away and still finds C major."""
    assert KeyAnalyzer(profile="temperley").analyze(Audio(c_major_cadence(), 44100))["key"] == "C"


def test_degara_tempo_and_beats_on_click_track() -> None:
    """120 BPM clicks: bpm within 1, beats within 50 ms of the clicks."""
    result = RhythmAnalyzer().analyze(Audio(click_track(120.0, 20.0), 44100))
    assert result["bpm"] == pytest.approx(120.0, abs=1.0)
    assert result["confidence"] == 0.0
    truth = click_times(120.0, 20.0)
    beats = np.array(result["beats"])
    errors = [np.min(np.abs(truth - b)) for b in beats]
    assert np.median(errors) < 0.05 and result["beat_count"] == len(beats) >= 30


@pytest.mark.parametrize("rate", [44100, 48000])
def test_ebu_case1_stereo_sine_at_each_rate(rate: int) -> None:
    """EBU Tech 3341 case 1 at the file's own rate: -23.0 ±0.1 LUFS, LRA ~0."""
    result = LoudnessEBUR128Analyzer().analyze(Audio(sine(1000.0, -23.0, 20.0, rate, 2), rate))
    assert result["integrated_loudness"] == pytest.approx(-23.0, abs=0.1)
    assert result["momentary_max"] == pytest.approx(-23.0, abs=0.1)
    assert result["short_term_max"] == pytest.approx(-23.0, abs=0.1)
    assert result["loudness_range"] == pytest.approx(0.0, abs=0.1)
    assert len(result["short_term"]) > 100 and result["hop_seconds"] == 0.1


def test_mono_counts_once_per_bs1770() -> None:
    """A 1-D mono signal reads 3.01 LU below the same signal on two channels."""
    mono = LoudnessEBUR128Analyzer(curves=False).analyze(Audio(sine(1000.0, -23.0, 10.0, 48000, 1)[0], 48000))
    assert mono["integrated_loudness"] == pytest.approx(-26.01, abs=0.1)
    assert "momentary" not in mono


def test_silence_is_null_not_minus_infinity() -> None:
    """Silent blocks are null (not Essentia's -300.691 floor); integrated sits at the -70 LUFS absolute gate."""
    result = LoudnessEBUR128Analyzer().analyze(Audio(np.zeros((2, 48000 * 3), np.float32), 48000))
    assert result["integrated_loudness"] == -70.0
    assert result["momentary_max"] is None and result["short_term_max"] is None
    assert set(result["momentary"]) == {None}


def test_surround_and_too_short_are_clear_errors() -> None:
    """Layouts and lengths an algorithm cannot handle raise AnalyzerError with the reason."""
    with pytest.raises(AnalyzerError, match="4 channels"):
        LoudnessEBUR128Analyzer().analyze(Audio(np.zeros((4, 48000), np.float32), 48000))
    with pytest.raises(AnalyzerError, match="key:1 needs at least 1 s"):
        AnalyzerHost(catalogue_entry("key")).run({"audio": Audio(np.zeros(1000, np.float32), 44100)})
    with pytest.raises(AnalyzerError, match="bpm_degara:1 needs at least 2 s"):
        AnalyzerHost(catalogue_entry("bpm_degara")).run({"audio": Audio(np.zeros(44100, np.float32), 44100)})


def test_five_one_weights_surrounds_and_drops_lfe() -> None:
    """EBU Tech 3341 case 6 as 5.1: L,R -28, C -24, Ls,Rs -30 dBFS reads -23.0; a loud LFE changes nothing."""
    tone = sine(1000.0, 0.0, 20.0, 48000, 1)[0]
    levels = {"L": -28, "R": -28, "C": -24, "LFE": -6, "Ls": -30, "Rs": -30}
    x = np.stack([tone * 10 ** (db / 20) for db in levels.values()]).astype(np.float32)
    result = LoudnessEBUR128Analyzer().analyze(Audio(x, 48000))
    assert result["integrated_loudness"] == pytest.approx(-23.0, abs=0.1)
    assert result["channels"] == 6 and len(result["true_peak_channels"]) == 6
