"""The embedding+head pipeline (models/heads.py) on tiny generated TensorFlow graphs with known answers.

MTG's real weights cannot be downloaded here, so tests/tf_graphs.py writes frozen GraphDefs by hand that
Essentia's TensorflowPredictMusiCNN / TensorflowPredictEffnetDiscogs / TensorflowPredict2D load exactly as
they load MTG's: same node names, same metadata JSON layout. A zero embedding kernel makes every patch's
embedding a known constant, so the head's output is known to float precision; a random kernel is checked
against Essentia's algorithms called directly, and the real registry entries' schemas hold for the results.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from models.base import AnalyzerError, Audio
from models.essentia_runtime import essentia_standard
from models.heads import EXTRACTORS, EmbeddingHeadAnalyzer, MetadataError, parse_metadata
from serve_app.config import DEFAULT_REGISTRY
from serve_app.registry import load_registry
from tests import tf_graphs
from tests.audio_factory import c_major_cadence

SR = 16000


def _write(tmp_path: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Write role → bytes as files; return role → path (the weight_files the server would inject)."""
    paths = {}
    for role, data in files.items():
        path = tmp_path / f"{role}.{'json' if role == 'metadata' else 'pb'}"
        path.write_bytes(data)
        paths[role] = str(path)
    return paths


@pytest.fixture(scope="module")
def music() -> Audio:
    """8 s of a C-major cadence at 16 kHz (content does not matter for the constant-embedding graphs)."""
    samples = c_major_cadence(seconds_per_chord=2.0, repeats=1, sample_rate=SR)
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), SR)


def test_softmax_head_on_musicnn_gives_the_known_probabilities(tmp_path: Path, music: Audio) -> None:
    """Constant embedding → every patch gives softmax(b·W + c); the result is that, sorted, with all labels."""
    model = tf_graphs.tiny_model("msd-musicnn", ("happy", "non_happy", "meh"))
    analyzer = EmbeddingHeadAnalyzer("msd-musicnn", top_n=2, weight_files=_write(tmp_path, model.files))
    result = analyzer.analyze(music)
    assert result["labels"] == ["happy", "non_happy", "meh"]
    np.testing.assert_allclose(result["activations"], model.expected, rtol=1e-6, atol=1e-7)
    assert sum(result["activations"]) == pytest.approx(1.0, abs=1e-6)
    order = np.argsort(-model.expected)[:2]
    assert [t["label"] for t in result["top"]] == [model.classes[i] for i in order]
    assert [t["score"] for t in result["top"]] == [result["activations"][i] for i in order]
    # MusiCNN: 187-frame patches every 93 frames (hop 256 samples at 16 kHz) over 8 s of audio
    frames = 8 * SR // 256
    assert result["patches"] == (frames - 187) // 93 + 1


def test_effnet_embedding_output_1_feeds_the_head(tmp_path: Path, music: Audio) -> None:
    """Discogs-EffNet's embeddings are output 1 of ``PartitionedCall``: the head must see those, not output 0."""
    model = tf_graphs.tiny_model("discogs-effnet", ("danceable", "not_danceable"), seed=3)
    result = EmbeddingHeadAnalyzer("discogs-effnet", weight_files=_write(tmp_path, model.files)).analyze(music)
    np.testing.assert_allclose(result["activations"], model.expected, rtol=1e-6, atol=1e-7)
    wrong = tf_graphs.tiny_model("msd-musicnn", ("danceable", "not_danceable"), seed=3).expected  # output 0's answer
    assert not np.allclose(result["activations"], wrong, atol=1e-3)


def test_regression_head_reports_named_values_and_range(tmp_path: Path, music: Audio) -> None:
    """An Identity head with classes [valence, arousal] → values by name (the raw mean), plus the given range."""
    model = tf_graphs.tiny_model("msd-musicnn", ("valence", "arousal"), activation="Identity", kind="regressor")
    analyzer = EmbeddingHeadAnalyzer("msd-musicnn", value_range=[1, 9], weight_files=_write(tmp_path, model.files))
    result = analyzer.analyze(music)
    assert set(result) == {"values", "range"} and result["range"] == [1.0, 9.0]
    assert result["values"]["valence"] == pytest.approx(model.expected[0], abs=1e-6)
    assert result["values"]["arousal"] == pytest.approx(model.expected[1], abs=1e-6)


def test_head_matches_essentia_called_directly(tmp_path: Path, music: Audio) -> None:
    """With an input-dependent embedding, the result is the mean over patches of the head applied to Essentia's
    own embeddings (numpy recomputes the head from the known weights)."""
    rng = np.random.default_rng(11)
    kernel, bias = rng.normal(0, 0.05, (96, 6)).astype(np.float32), rng.normal(0, 0.1, 6).astype(np.float32)
    w, c = rng.normal(0, 1.0, (6, 4)).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32)
    classes = ["rock", "pop", "jazz", "metal"]
    files = {
        "embedding": tf_graphs.musicnn_like(kernel, bias),
        "head": tf_graphs.head(w, c, "Sigmoid", "model/Sigmoid", "model/Placeholder"),
        "metadata": tf_graphs.metadata(classes, "model/Placeholder", "model/Sigmoid", "multi-label classifier", 6),
    }
    paths = _write(tmp_path, files)
    result = EmbeddingHeadAnalyzer("msd-musicnn", top_n=4, weight_files=paths).analyze(music)
    es = essentia_standard()
    embeddings = es.TensorflowPredictMusiCNN(graphFilename=paths["embedding"], output="model/dense/BiasAdd")(
        music.samples
    )
    assert embeddings.shape[0] == result["patches"] > 1 and np.ptp(embeddings, axis=0).max() > 0
    expected = (1 / (1 + np.exp(-(embeddings.astype(np.float64) @ w + c)))).mean(axis=0)
    np.testing.assert_allclose(result["activations"], expected, rtol=1e-5)
    assert [t["score"] for t in result["top"]] == sorted(result["activations"], reverse=True)


def test_registry_entries_validate_with_generated_weights(tmp_path: Path, music: Audio) -> None:
    """The shipped entries (classifier on EffNet, regressor on MusiCNN) build from their params and their
    results satisfy their own output_schema."""
    registry = load_registry(DEFAULT_REGISTRY)
    cases = [
        ("mood_happy", tf_graphs.tiny_model("discogs-effnet", ("happy", "non_happy"))),
        ("genre_discogs_400", tf_graphs.tiny_model("discogs-effnet", [f"G---S{i}" for i in range(7)], "Sigmoid")),
        ("arousal_valence", tf_graphs.tiny_model("msd-musicnn", ("valence", "arousal"), "Identity", "regressor")),
    ]
    for name, model in cases:
        entry = registry.find(name, None)
        assert entry is not None and {w.role for w in entry.weights} == {"embedding", "head", "metadata"}
        assert entry.noncommercial and entry.input.sample_rate == SR
        folder = tmp_path / name
        folder.mkdir()
        analyzer = entry.load_class()(**entry.params, weight_files=_write(folder, model.files))
        result = analyzer.analyze(music)
        jsonschema.validate(result, entry.output_schema)
        json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(("embedding", "samples"), [("msd-musicnn", 47361), ("discogs-effnet", 32513)])
def test_audio_shorter_than_one_patch_is_refused(tmp_path: Path, embedding: str, samples: int) -> None:
    """One sample short of one patch (MusiCNN 2.96 s, EffNet 2.03 s) the analyzer says how long audio must be;
    at exactly one patch it works, so the limit is Essentia's own and not a guess."""
    model = tf_graphs.tiny_model(embedding)
    analyzer = EmbeddingHeadAnalyzer(embedding, weight_files=_write(tmp_path, model.files))
    assert round(EXTRACTORS[embedding].min_seconds * SR) == samples
    with pytest.raises(AnalyzerError, match="needs at least"):
        analyzer.analyze(Audio(np.zeros(samples - 1, np.float32), SR))
    result = analyzer.analyze(Audio(np.zeros(samples, np.float32), SR))
    assert result["patches"] == 1
    np.testing.assert_allclose(result["activations"], model.expected, rtol=1e-6, atol=1e-7)


def test_head_wider_than_its_metadata_is_an_error(tmp_path: Path, music: Audio) -> None:
    """Metadata listing 2 classes for a 3-output head (no shape to catch it earlier) fails clearly at run time."""
    model = tf_graphs.tiny_model("msd-musicnn", ("a", "b", "c"))
    doc = json.loads(model.files["metadata"])
    doc["classes"] = ["a", "b"]
    doc["schema"]["outputs"][0].pop("shape")
    files = {**model.files, "metadata": json.dumps(doc).encode()}
    analyzer = EmbeddingHeadAnalyzer("msd-musicnn", weight_files=_write(tmp_path, files))
    with pytest.raises(AnalyzerError, match=r"metadata lists 2 classes"):
        analyzer.analyze(music)


def test_constructor_errors_name_the_problem(tmp_path: Path) -> None:
    """Unknown embedding, missing weight files, bad metadata: each raises with a message that says so."""
    model = tf_graphs.tiny_model()
    paths = _write(tmp_path, model.files)
    with pytest.raises(ValueError, match="unknown embedding 'vggish'"):
        EmbeddingHeadAnalyzer("vggish", weight_files=paths)
    with pytest.raises(ValueError, match="mirstream models fetch"):
        EmbeddingHeadAnalyzer("msd-musicnn")
    Path(paths["metadata"]).write_text('{"classes": []}')
    with pytest.raises(ValueError, match="'classes' must be a non-empty list"):
        EmbeddingHeadAnalyzer("msd-musicnn", weight_files=paths)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("schema"), "'schema' with inputs and outputs is missing"),
        (lambda d: d["schema"].update(outputs=[]), "schema.outputs must be a non-empty list"),
        (lambda d: d["schema"]["inputs"][0].pop("name"), "needs a node 'name'"),
        (lambda d: d["classes"].append("extra"), "has 2 values but 'classes' lists 3"),
        (lambda d: d.update(inference={"sample_rate": 44100}), "inference.sample_rate is 44100"),
        (lambda d: d.update(classes="happy"), "'classes' must be a non-empty list of strings"),
    ],
)
def test_metadata_sanity_checks(mutate: object, message: str) -> None:
    """Each malformed part of a metadata JSON is named."""
    doc = json.loads(tf_graphs.metadata(["happy", "non_happy"], "model/Placeholder", "model/Softmax", dims=1280))
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(MetadataError, match=message):
        parse_metadata(json.dumps(doc))


def test_metadata_parse_picks_the_predictions_output() -> None:
    """MTG's genre_discogs400 JSON lists two outputs; the one marked 'predictions' is used, and the kind is read."""
    doc = json.loads(
        tf_graphs.metadata(["a", "b"], "serving_default_model_Placeholder", "PartitionedCall:0", "multi-label")
    )
    doc["schema"]["outputs"].insert(0, {"name": "PartitionedCall:1", "shape": [1280], "output_purpose": "embeddings"})
    meta = parse_metadata(json.dumps(doc).encode())
    assert (meta.input, meta.output, meta.multi_label, meta.regression) == (
        "serving_default_model_Placeholder",
        "PartitionedCall:0",
        True,
        False,
    )
    with pytest.raises(MetadataError, match="not valid JSON"):
        parse_metadata(b"<html>502 Bad Gateway</html>")


def test_arousal_valence_uses_the_packaged_musicnn_graph(tmp_path: Path, music: Audio) -> None:
    """arousal_valence needs only its head from MTG: with a generated 200→2 head in the models dir it becomes
    available, its embedding is models/weights/musicnn/msd-musicnn-1.pb, and the values are the head applied
    to Essentia's own MSD-MusiCNN embeddings of the audio."""
    from serve_app.config import Settings
    from serve_app.weights import resolve_availability

    entry = load_registry(DEFAULT_REGISTRY).find("arousal_valence", None)
    rng = np.random.default_rng(2)
    w, c = rng.normal(0, 0.1, (200, 2)).astype(np.float32), np.array([5.0, 4.0], np.float32)
    files = {
        "head": tf_graphs.head(w, c, "Identity", "model/Identity", "model/Placeholder"),
        "metadata": tf_graphs.metadata(["valence", "arousal"], "model/Placeholder", "model/Identity", "regressor", 200),
    }
    for weight in entry.weights:
        if weight.role in files:
            (tmp_path / weight.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / weight.path).write_bytes(files[weight.role])
    registry = resolve_availability(load_registry(DEFAULT_REGISTRY), Settings(models_dir=tmp_path))
    served = registry.find("arousal_valence", None)
    assert served in registry.entries, registry.why_withheld(served)
    packaged = served.params["weight_files"]["embedding"]
    assert packaged.endswith("models/weights/musicnn/msd-musicnn-1.pb")
    result = served.load_class()(**served.params).analyze(music)
    jsonschema.validate(result, served.output_schema)
    embeddings = essentia_standard().TensorflowPredictMusiCNN(graphFilename=packaged, output="model/dense/BiasAdd")(
        music.samples
    )
    expected = (embeddings.astype(np.float64) @ w + c).mean(axis=0)
    assert embeddings.shape[1] == 200 and result["range"] == [1.0, 9.0]
    assert [result["values"]["valence"], result["values"]["arousal"]] == pytest.approx(expected, abs=1e-5)
