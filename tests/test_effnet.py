"""Discogs-EffNet backbone (models/effnet.py) on both runtimes, without MTG's 18 MB graph (not reachable here).

A stand-in network with EffNet's interface (melspectrogram [n, 128, 96] → PartitionedCall:0/:1, embeddings =
time-mean of each patch projected to E dims) is written as a TensorFlow GraphDef (tests/tf_graphs.py) and as the
same computation in ONNX. Essentia's TensorflowPredictEffnetDiscogs runs the first, our front end + onnxruntime
the second: identical embeddings prove our patching is Essentia's, which is what the bsdynamic ONNX path relies on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.base import Audio
from models.effnet import AUDIO, EffnetBackbone
from serve_app.ingress.decode import decode, representation
from tests import tf_graphs

E = 8  # embedding width of the stand-in (the real one is 1280)
REPO = Path(__file__).resolve().parent.parent
METADATA = REPO / "models" / "weights" / "mtg" / "discogs-effnet-bsdynamic-1.json"  # MTG's real node names


def _onnx_effnet(kernel: np.ndarray, bias: np.ndarray) -> bytes:
    """The stand-in as ONNX: ReduceMean over time, MatMul + Add, then split into activations and embeddings."""
    half = kernel.shape[1] // 2
    nodes = [
        helper.make_node("ReduceMean", ["melspectrogram"], ["mean"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["mean", "kernel"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["dense"]),
        helper.make_node("Split", ["dense", "split"], ["activations", "embeddings"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "effnet_like",
        [helper.make_tensor_value_info("melspectrogram", TensorProto.FLOAT, ["n", 128, 96])],
        [
            helper.make_tensor_value_info("activations", TensorProto.FLOAT, ["n", half]),
            helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["n", half]),
        ],
        initializer=[
            numpy_helper.from_array(kernel, "kernel"),
            numpy_helper.from_array(bias, "bias"),
            numpy_helper.from_array(np.array([half, half], np.int64), "split"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The stand-in network as .pb and as .onnx (same weights), each with MTG's real backbone metadata."""
    rng = np.random.default_rng(5)
    kernel = rng.normal(0, 0.3, (96, 2 * E)).astype(np.float32)
    bias = rng.normal(0, 0.3, 2 * E).astype(np.float32)
    folder = tmp_path_factory.mktemp("effnet")
    (folder / "effnet.pb").write_bytes(tf_graphs.effnet_like(kernel, bias))
    (folder / "effnet.onnx").write_bytes(_onnx_effnet(kernel, bias))
    (folder / "effnet.json").write_bytes(METADATA.read_bytes())
    meta = str(folder / "effnet.json")
    return {
        "pb": {"graph": str(folder / "effnet.pb"), "metadata": meta},
        "onnx": {"graph": str(folder / "effnet.onnx"), "metadata": meta},
    }


@pytest.fixture(scope="module")
def rock() -> Audio:
    """The rock clip (tests/data) at 16 kHz mono."""
    data = (REPO / "tests" / "data" / "rock_clip.opus").read_bytes()
    return representation(decode(data, 600.0), AUDIO.spec)


def test_onnx_patching_equals_essentia_effnet(files: dict[str, dict[str, str]], rock: Audio) -> None:
    """Same patches (count, hop, values) from Essentia's bs64 path and our bsdynamic ONNX path."""
    essentia = EffnetBackbone(weight_files=files["pb"]).analyze(rock)
    ours = EffnetBackbone(batch_size=7, weight_files=files["onnx"]).analyze(rock)
    frames = (len(rock.samples) - 512) // 256 + 1
    assert essentia["patches"] == ours["patches"] == (frames - 128) // 62 + 1
    assert essentia["embeddings"].shape == ours["embeddings"].shape == (ours["patches"], E)
    np.testing.assert_allclose(ours["embeddings"], essentia["embeddings"], rtol=1e-4, atol=1e-4)
    assert ours["patch_hop_s"] == pytest.approx(0.992)


def test_the_embedding_is_output_1_not_the_style_activations(files: dict[str, dict[str, str]], rock: Audio) -> None:
    """MTG's metadata names PartitionedCall:1 (1280-d embeddings), not :0 (400 styles): the backbone takes :1."""
    meta = json.loads(METADATA.read_text())
    purposes = {o["name"]: o["output_purpose"] for o in meta["schema"]["outputs"]}
    assert purposes == {"PartitionedCall:0": "predictions", "PartitionedCall:1": "embeddings"}
    backbone = EffnetBackbone(weight_files=files["pb"])
    assert backbone.output_node == "PartitionedCall:1"


def test_shortest_audio_with_one_patch(files: dict[str, dict[str, str]]) -> None:
    """The declared minimum gives exactly one patch on both runtimes."""
    n = int(np.ceil(AUDIO.min_seconds * 16000))
    audio = Audio(np.random.default_rng(1).normal(0, 0.1, n).astype(np.float32), 16000)
    for runtime in ("pb", "onnx"):
        assert EffnetBackbone(weight_files=files[runtime]).analyze(audio)["patches"] == 1, runtime


def test_check_weight_refuses_what_is_not_a_backbone(files: dict[str, dict[str, str]], tmp_path: Path) -> None:
    """Downloads are format-checked: the stand-ins pass; an HTML page or metadata without embeddings fails."""
    EffnetBackbone.check_weight("graph", Path(files["pb"]["graph"]))
    EffnetBackbone.check_weight("graph", Path(files["onnx"]["graph"]))
    EffnetBackbone.check_weight("metadata", METADATA)
    page = tmp_path / "x.onnx"
    page.write_text("<html>404</html>")
    with pytest.raises(ValueError, match="not an ONNX model"):
        EffnetBackbone.check_weight("graph", page)
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"schema": {"inputs": [{"name": "x"}], "outputs": [{"name": "y"}]}}))
    with pytest.raises(ValueError, match="embeddings"):
        EffnetBackbone.check_weight("metadata", bad)
    assert onnx.load_from_string(Path(files["onnx"]["graph"]).read_bytes()).graph.input[0].name == "melspectrogram"
