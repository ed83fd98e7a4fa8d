"""Heads on a shared backbone (models/heads.py): MTG's downloadable TensorFlow (.pb) heads, their metadata, and
the downloadable entries of the registry, with small TensorFlow graphs generated here (tests/tf_graphs.py).

The shipped ONNX heads with MTG's real weights are tested in tests/test_mtg_models.py; the download path of these
entries against a loopback server in tests/test_weights.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from models.base import AnalyzerError
from models.heads import ClassifierHead, Head, MetadataError, RegressionHead, parse_metadata
from serve_app.config import DEFAULT_REGISTRY, Settings
from serve_app.registry import load_registry
from serve_app.registry.availability import resolve_availability
from serve_app.runners.host import AnalyzerHost
from tests import tf_graphs


def _write(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Write generated weight files; role → path as the server passes them."""
    suffix = {"head": ".pb", "metadata": ".json", "graph": ".pb"}
    paths = {}
    for role, data in files.items():
        path = folder / f"{role}{suffix[role]}"
        path.write_bytes(data)
        paths[role] = str(path)
    return paths


def _embeddings(n: int = 5, dims: int = 6, seed: int = 0) -> np.ndarray:
    """Per-patch embeddings as a backbone hands them on (float32, patches x dims)."""
    return np.random.default_rng(seed).normal(0, 1, (n, dims)).astype(np.float32)


def test_tensorflow_head_is_the_mean_of_its_per_patch_outputs(tmp_path: Path) -> None:
    """A .pb head runs on Essentia's TensorflowPredict2D: the result is the per-patch sigmoid, averaged."""
    rng = np.random.default_rng(11)
    w, c = rng.normal(0, 1.0, (6, 4)).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32)
    classes = ["rock", "pop", "jazz", "metal"]
    files = {
        "head": tf_graphs.head(w, c, "Sigmoid", "model/Sigmoid", "model/Placeholder"),
        "metadata": tf_graphs.metadata(classes, "model/Placeholder", "model/Sigmoid", "multi-label classifier", 6),
    }
    x = _embeddings()
    result = ClassifierHead(top_n=4, weight_files=_write(tmp_path, files)).analyze({"embeddings": x})
    expected = (1 / (1 + np.exp(-(x.astype(np.float64) @ w + c)))).mean(axis=0)
    np.testing.assert_allclose(result["activations"], expected, rtol=1e-5)
    assert result["labels"] == classes and result["patches"] == 5
    assert [t["score"] for t in result["top"]] == sorted(result["activations"], reverse=True)


def test_tensorflow_regression_head_names_its_values(tmp_path: Path) -> None:
    """An Identity head with classes [valence, arousal] → values by name (the raw mean), plus the given range."""
    rng = np.random.default_rng(2)
    w, c = rng.normal(0, 0.1, (6, 2)).astype(np.float32), np.array([5.0, 4.0], np.float32)
    files = {
        "head": tf_graphs.head(w, c, "Identity", "model/Identity", "model/Placeholder"),
        "metadata": tf_graphs.metadata(["valence", "arousal"], "model/Placeholder", "model/Identity", "regressor", 6),
    }
    x = _embeddings(seed=3)
    result = RegressionHead(value_range=[1, 9], weight_files=_write(tmp_path, files)).analyze({"embeddings": x})
    expected = (x.astype(np.float64) @ w + c).mean(axis=0)
    assert set(result) == {"values", "range"} and result["range"] == [1.0, 9.0]
    assert [result["values"]["valence"], result["values"]["arousal"]] == pytest.approx(expected, abs=1e-5)


def test_head_wider_than_its_metadata_is_an_error(tmp_path: Path) -> None:
    """Metadata listing 2 classes for a 3-output head (no shape to catch it earlier) fails clearly at run time."""
    model = tf_graphs.tiny_model("msd-musicnn", ("a", "b", "c"), dims=6)
    doc = json.loads(model.files["metadata"])
    doc["classes"] = ["a", "b"]
    doc["schema"]["outputs"][0].pop("shape")
    files = {"head": model.files["head"], "metadata": json.dumps(doc).encode()}
    head = ClassifierHead(weight_files=_write(tmp_path, files))
    with pytest.raises(AnalyzerError, match=r"gave 3 values but its metadata lists 2"):
        head.analyze({"embeddings": _embeddings()})
    with pytest.raises(AnalyzerError, match=r"takes 6-d embeddings, the backbone gave 4"):
        head.analyze({"embeddings": _embeddings(dims=4)})


def test_constructor_errors_name_the_problem(tmp_path: Path) -> None:
    """Missing weight files or bad metadata: each raises with a message that says so."""
    model = tf_graphs.tiny_model(dims=6)
    paths = _write(tmp_path, {"head": model.files["head"], "metadata": model.files["metadata"]})
    with pytest.raises(ValueError, match="'head'"):
        ClassifierHead()
    Path(paths["metadata"]).write_text('{"classes": []}')
    with pytest.raises(ValueError, match="'classes' must be a non-empty list"):
        ClassifierHead(weight_files=paths)


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


def test_tensorflow_head_check_weight_wants_the_named_nodes(tmp_path: Path) -> None:
    """A downloaded .pb head must be a GraphDef holding the nodes its metadata (next to it) names."""
    model = tf_graphs.tiny_model(dims=6)
    (tmp_path / "h.pb").write_bytes(model.files["head"])
    (tmp_path / "h.json").write_bytes(model.files["metadata"])
    Head.check_weight("head", tmp_path / "h.pb")
    doc = json.loads(model.files["metadata"])
    doc["schema"]["outputs"][0]["name"] = "model/Missing"
    (tmp_path / "h.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="no node"):
        Head.check_weight("head", tmp_path / "h.pb")
    (tmp_path / "page.pb").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError):
        Head.check_weight("head", tmp_path / "page.pb")


def test_downloadable_entries_are_withheld_until_fetched_then_run_in_the_graph(tmp_path: Path) -> None:
    """The DEAM head (arousal_valence:deam-msd-musicnn-2) is withheld without its files, naming the fetch command;
    with generated files in the models dir it is served, feeds on the shipped MSD-MusiCNN backbone, and its
    results satisfy its schema."""
    settings = Settings(models_dir=tmp_path)
    registry = resolve_availability(load_registry(DEFAULT_REGISTRY), settings)
    deam = registry.find("arousal_valence", "deam-msd-musicnn-2")
    reason = registry.why_withheld(deam).reason
    assert "mirstream models fetch arousal_valence" in reason and str(tmp_path) not in reason
    assert registry.find("arousal_valence", None).version == "emomusic-msd-musicnn-1"  # served default
    rng = np.random.default_rng(2)
    w, c = rng.normal(0, 0.1, (200, 2)).astype(np.float32), np.array([5.0, 4.0], np.float32)
    files = {
        "head": tf_graphs.head(w, c, "Identity", "model/Identity", "model/Placeholder"),
        "metadata": tf_graphs.metadata(["valence", "arousal"], "model/Placeholder", "model/Identity", "regressor", 200),
    }
    for weight in deam.weights:
        (tmp_path / weight.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / weight.path).write_bytes(files[weight.role])
    registry = resolve_availability(load_registry(DEFAULT_REGISTRY), settings)
    served = registry.find("arousal_valence", "deam-msd-musicnn-2")
    assert served in registry.entries and served.upstream == {"backbone": "musicnn_msd:1"}
    x = _embeddings(n=3, dims=200)
    result = AnalyzerHost(served).run({"backbone": {"embeddings": x}}).results
    jsonschema.validate(result, served.output_schema)
    expected = (x.astype(np.float64) @ w + c).mean(axis=0)
    assert [result["values"]["valence"], result["values"]["arousal"]] == pytest.approx(expected, abs=1e-5)


def test_effnet_heads_wait_for_their_backbone(tmp_path: Path) -> None:
    """mood_happy:discogs-effnet-1 ships its head but needs the downloaded Discogs-EffNet backbone: withheld,
    naming the backbone and the command, while mood_happy (msd-musicnn-1, shipped) is served."""
    registry = resolve_availability(load_registry(DEFAULT_REGISTRY), Settings(models_dir=tmp_path))
    effnet = registry.find("mood_happy", "discogs-effnet-1")
    reason = registry.why_withheld(effnet).reason
    assert "discogs_effnet:bs64-1" in reason and "mirstream models fetch mood_happy:discogs-effnet-1" in reason
    assert registry.find("mood_happy", None) in registry.entries
