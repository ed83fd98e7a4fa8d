"""The key and tempo ensembles (models/ensembles.py): decision functions on crafted upstream answers, then each
ensemble class on the results the real upstream analyzers give for a synthesised signal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soxr

from models import ensembles as ens
from models.base import Audio, ModelInput
from serve_app.registry import Registry
from tests.audio_factory import c_major_cadence, click_track, encode
from tests.conftest import catalogue_entry, free_port, make_settings, running_local_server
from tests.sse import post

REPO = Path(__file__).resolve().parents[1]
TEMPOCNN_GRAPH = REPO / "models" / "weights" / "mtg" / "deeptemp_k16.pb"
C_MAJOR, G_MAJOR, F_MAJOR, A_MINOR, C_MINOR = 0, 7, 5, 21, 12
FLAT = {"same": 0.7, "fifth_up": 0.1, "fifth_down": 0.05, "relative": 0.05, "parallel": 0.05, "other": 0.05}


def one_hot(index: int, p: float = 0.9) -> np.ndarray:
    """A 24-key distribution with ``p`` on one key and the rest spread evenly."""
    out = np.full(24, (1 - p) / 23)
    out[index] = p
    return out


# --- key: crafted answers ----------------------------------------------------------------------------------


def test_key_relations_follow_mirex_categories() -> None:
    assert ens.key_relation(C_MAJOR, C_MAJOR) == "same"
    assert ens.key_relation(G_MAJOR, C_MAJOR) == "fifth_up"
    assert ens.key_relation(F_MAJOR, C_MAJOR) == "fifth_down"
    assert ens.key_relation(A_MINOR, C_MAJOR) == "relative"
    assert ens.key_relation(C_MAJOR, A_MINOR) == "relative"
    assert ens.key_relation(C_MINOR, C_MAJOR) == "parallel"
    assert ens.key_relation(ens.key_index("F#", "major"), C_MAJOR) == "other"
    assert ens.key_name(A_MINOR) == ("A", "minor") and ens.key_index("Bb", "minor") == 22


def test_answer_likelihood_sums_to_one_over_answers() -> None:
    """For a fixed true key, P(answer | key) over all 24 answers is a distribution ('other' spread over 19)."""
    table = np.array([ens.answer_likelihood(a, FLAT) for a in range(24)])
    assert np.allclose(table.sum(axis=0), 1.0)


def test_profiles_overrule_a_relative_mode_confusion_of_madmom() -> None:
    """madmom leans to the relative minor (its typical error); four profiles agreeing on C major win."""
    madmom = 0.55 * one_hot(A_MINOR, 1.0) + 0.45 * one_hot(C_MAJOR, 1.0)
    post = ens.key_posterior(madmom, [C_MAJOR] * 4, [FLAT] * 4, 1.0, 1.0)
    assert int(np.argmax(post)) == C_MAJOR
    assert int(np.argmax(ens.key_posterior(madmom, [C_MAJOR] * 4, [FLAT] * 4, 1.0, 0.0))) == A_MINOR


def test_madmom_overrules_a_fifth_error_the_profiles_are_known_for() -> None:
    """Profiles that often answer the dominant (fifth_up) cannot outvote a confident madmom on the tonic."""
    fifth_prone = {"same": 0.6, "fifth_up": 0.3, "fifth_down": 0.02, "relative": 0.03, "parallel": 0.03, "other": 0.02}
    post = ens.key_posterior(one_hot(C_MAJOR, 0.9), [G_MAJOR, G_MAJOR, C_MAJOR, G_MAJOR], [fifth_prone] * 4, 1.0, 1.0)
    assert int(np.argmax(post)) == C_MAJOR


def test_parallel_confusion_between_profiles_and_madmom() -> None:
    """A parallel-mode split is settled by the vote weight: profiles say C minor, madmom weakly C major."""
    madmom = 0.6 * one_hot(C_MAJOR, 1.0) + 0.4 * one_hot(C_MINOR, 1.0)
    assert int(np.argmax(ens.key_posterior(madmom, [C_MINOR] * 4, [FLAT] * 4, 1.0, 1.0))) == C_MINOR
    assert int(np.argmax(ens.key_posterior(madmom, [C_MINOR] * 4, [FLAT] * 4, 1.0, 0.02))) == C_MAJOR


def test_key_confusion_counts_relations_with_laplace_smoothing() -> None:
    table = ens.key_confusion([C_MAJOR, G_MAJOR, A_MINOR, -1], [C_MAJOR] * 4)
    assert table == {"same": 0.2, "fifth_up": 0.2, "fifth_down": 0.1, "relative": 0.2, "parallel": 0.1, "other": 0.2}


# --- tempo: crafted answers --------------------------------------------------------------------------------


def test_tempo_relations_and_candidates() -> None:
    assert ens.tempo_relation(181.0, 90.0) == "double"
    assert ens.tempo_relation(44.0, 90.0) == "half"
    assert ens.tempo_relation(120.0, 90.0) == "other"
    assert ens.tempo_candidates([90.0, 180.5], 40, 250) == pytest.approx([45.0, 180.5 / 3, 90.0, 180.0])  # 4 % merged
    assert ens.refine_tempo(180.0, {"a": 90.2, "b": 179.0, "c": 120.0}) == pytest.approx(179.7)


def _model(fast_trust: str) -> ens.TempoModel:
    """Two bands split at 150 BPM; above it ``fast_trust`` is usually right and the other voter usually halves."""
    reliable = {"same": 0.8, "double": 0.05, "half": 0.05, "triple": 0.02, "third": 0.02, "other": 0.06}
    halver = {"same": 0.3, "double": 0.02, "half": 0.6, "triple": 0.02, "third": 0.02, "other": 0.04}
    tables = {v: [reliable, reliable if v == fast_trust else halver] for v in ("a", "b")}
    return ens.TempoModel(tables, edges=(150.0,), vote_weight=1.0, prior=(120.0, 1.0))


def test_octave_disagreement_goes_to_the_voter_reliable_at_that_tempo() -> None:
    """a says 90, b says 180: the band tables decide which octave is more plausible."""
    evidence = ens.TempoEvidence({"a": 90.0, "b": 180.0})
    assert ens.decide_tempo(evidence, _model("b"))[0] == pytest.approx(180.0)
    assert ens.decide_tempo(evidence, _model("a"))[0] == pytest.approx(90.0)


def test_onsets_per_beat_break_an_octave_tie() -> None:
    """Equally trusted voters split between 70 and 140; 4.7 onsets/s is ~2 per beat at 140, ~4 at 70."""
    same = {"same": 0.8, "double": 0.08, "half": 0.08, "triple": 0.01, "third": 0.01, "other": 0.02}
    model = ens.TempoModel({"a": [same], "b": [same]}, edges=(), prior=(100.0, 100.0), onset_prior=(2.0, 0.5))
    assert ens.decide_tempo(ens.TempoEvidence({"a": 70.0, "b": 140.0}, onset_rate=4.7), model)[0] == 140.0


def test_cnn_probabilities_add_evidence_only_with_weight() -> None:
    probabilities = np.zeros(256)
    probabilities[150 - ens.CNN_LOW_BPM] = 1.0  # TempoCNN sure of 150 BPM
    same = {"same": 0.8, "double": 0.08, "half": 0.08, "triple": 0.01, "third": 0.01, "other": 0.02}
    evidence = ens.TempoEvidence({"a": 75.0}, cnn_probabilities=probabilities)
    model = ens.TempoModel({"a": [same]}, edges=(), prior=(100.0, 100.0))
    assert ens.decide_tempo(evidence, model)[0] == pytest.approx(75.0)
    weighted = ens.TempoModel({"a": [same]}, edges=(), prior=(100.0, 100.0), cnn_weight=2.0)
    assert ens.decide_tempo(evidence, weighted)[0] == pytest.approx(150.0)
    assert ens.class_mass(probabilities, 152.0) == 1.0 and ens.class_mass(probabilities, 140.0) == 0.0


def test_retime_beats_doubles_and_halves_on_the_onset_phase() -> None:
    beats = [0.0, 0.5, 1.0, 1.5, 2.0]
    assert ens.retime_beats(beats, 2.0) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert ens.retime_beats(beats, 0.5, onsets=[0.51, 1.49]) == [0.5, 1.5]
    assert ens.retime_beats(beats, 0.5, onsets=[0.0, 1.0, 2.0]) == [0.0, 1.0, 2.0]
    assert ens.retime_beats(beats, 1.0) == beats


def test_tempo_confusions_are_per_band_of_the_true_tempo() -> None:
    tables = ens.tempo_confusions([90.0, 180.0, 120.0], [180.0, 180.0, 120.0], (150.0,), smoothing=0.0)
    assert tables[0]["same"] == 1.0
    assert tables[1] == {"same": 0.5, "double": 0.0, "half": 0.5, "triple": 0.0, "third": 0.0, "other": 0.0}


def test_classes_declare_model_inputs_and_check_their_tables() -> None:
    assert all(isinstance(v, ModelInput) for v in ens.KeyEnsemble.inputs.values())
    assert set(ens.TempoEnsemble.inputs) == {*ens.TEMPO_VOTERS, "onsets"}
    with pytest.raises(ValueError, match="confusions"):
        ens.KeyEnsemble(confusions={"bgate": FLAT})
    with pytest.raises(ValueError, match="band tables"):
        ens.TempoEnsemble(edges=(100.0, 150.0))


# --- each class on real upstream results --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cadence_upstream() -> dict[str, dict]:
    """What key, key_edma, key_temperley, key_krumhansl and key_madmom answer for a C-major cadence."""
    from models.key import KeyAnalyzer
    from models.madmom_models import MadmomKeyRecognizer

    audio = Audio(c_major_cadence(2.0, 3), 44100)
    out = {p: KeyAnalyzer(profile=p).analyze(audio) for p in ens.KEY_PROFILES}
    out["madmom"] = MadmomKeyRecognizer().analyze(audio)
    return out


def test_key_ensemble_on_real_upstream_results(cadence_upstream: dict[str, dict]) -> None:
    result = ens.KeyEnsemble().analyze(**cadence_upstream)
    assert (result["key"], result["scale"]) == ("C", "major")
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-3 and len(result["probabilities"]) == 24
    assert set(result["votes"]) == {*ens.KEY_PROFILES, "madmom"}


def test_tempo_ensemble_on_real_upstream_results() -> None:
    """A 120 BPM click track through bpm_degara, beats_madmom, bpm_octave, TempoCNN and onsets, then the ensemble."""
    from models.madmom_models import MadmomBeatTracker
    from models.onsets import OnsetsAnalyzer
    from models.rhythm import RhythmAnalyzer
    from models.tempo import OctaveTempoAnalyzer
    from models.tempocnn import TempoCNNAnalyzer

    x = click_track(120.0, 30.0, 44100)
    audio = Audio(x, 44100)
    upstream = {
        "degara": RhythmAnalyzer(method="degara").analyze(audio),
        "madmom": MadmomBeatTracker().analyze(audio),
        "octave": OctaveTempoAnalyzer().analyze(audio),
        "tempocnn": TempoCNNAnalyzer(weight_files={"graph": str(TEMPOCNN_GRAPH)}).analyze(
            Audio(soxr.resample(x, 44100, 11025).astype(np.float32), 11025)
        ),
        "onsets": OnsetsAnalyzer().analyze(audio),
    }
    result = ens.TempoEnsemble().analyze(**upstream)
    assert result["bpm"] == pytest.approx(120.0, rel=0.04)
    assert result["beats_from"] in ("madmom", "degara") and result["beat_count"] == len(result["beats"]) > 40
    assert np.median(np.diff(result["beats"])) == pytest.approx(0.5, abs=0.02)
    assert result["candidates"][0]["log_score"] >= result["candidates"][-1]["log_score"]


# --- served: the registry entries on a real server, upstreams resolved by the graph --------------------------

SERVED = (
    "key_ensemble",
    "key",
    "key_edma",
    "key_temperley",
    "key_krumhansl",
    "key_madmom",
    "bpm_ensemble",
    "bpm_degara",
    "beats_madmom",
    "bpm_octave",
    "bpm_tempocnn",
    "onsets",
)


@pytest.fixture(scope="module")
def ensemble_server() -> Iterator[str]:
    """The in-process server with both ensembles and every upstream they bind (one pool process each)."""
    registry = Registry(entries=tuple(catalogue_entry(n) for n in SERVED))
    with running_local_server(registry, make_settings(free_port())) as base:
        yield base


def test_served_ensembles_answer_with_their_upstreams_run_once(ensemble_server: str) -> None:
    """Asking for both ensembles and one of their upstreams: three completed events whose schemas hold, the key
    ensemble's bgate vote is the streamed key result, and the upstreams that were not asked for send nothing."""
    body = encode(np.concatenate([c_major_cadence(1.5, 4), click_track(120.0, 20.0, 44100)]), 44100, "flac")
    stream = post(ensemble_server, "key_ensemble,bpm_ensemble,key", body, timeout=300)
    assert stream.status == 200, stream.body
    events = stream.by_model()
    assert set(events) == {"key_ensemble", "bpm_ensemble", "key"}, events
    assert all(e["status"] == "completed" for e in events.values()), events
    for name, event in events.items():
        jsonschema.validate(event["result"]["results"], catalogue_entry(name).output_schema)
    key = events["key_ensemble"]["result"]["results"]
    assert set(key["votes"]) == {*ens.KEY_PROFILES, "madmom"}
    assert key["votes"]["bgate"] == "{key} {scale}".format(**events["key"]["result"]["results"])
    assert set(events["bpm_ensemble"]["result"]["results"]["votes"]) >= {"degara", "madmom", "octave", "tempocnn"}
