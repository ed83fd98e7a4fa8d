"""Freeze musicnn's TF1 checkpoints (MSD_musicnn, MTT_musicnn) into graphs that Essentia runs as-is.

musicnn 0.1.0 (Pons & Serra, "musicnn: pre-trained convolutional neural networks for music audio tagging",
ISMIR 2019 LBD; https://github.com/jordipons/musicnn, ISC) ships its weights as TF1 checkpoints. Essentia's
``TensorflowPredictMusiCNN`` wants a frozen GraphDef with MTG's node names: input ``model/Placeholder``
[batch, 187, 96], tags ``model/Sigmoid`` [batch, 50], embeddings ``model/dense/BiasAdd`` [batch, 200]. This
script rebuilds musicnn's own network definition (``musicnn.models.define_model``) under the name scope
``model`` with ``is_training=False`` (batch norm uses its moving statistics, dropout is the identity),
restores the checkpoint, folds the variables into constants and writes ``<out>/{msd,mtt}-musicnn-1.pb``,
a metadata JSON per model, musicnn's LICENSE and SHA256SUMS.

Reproducible: the GraphDef is serialised with deterministic protobuf output (map fields sorted), device
placements are cleared and node order is the build order, so a rerun with the pinned tool environment
(requirements.txt) gives byte-identical files; ``--check`` rebuilds in memory and compares with what is on
disk instead of writing. Run it with the tool venv, never the project venv (see README.md next to it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
warnings.filterwarnings("ignore", message=r"`tf\.layers\.", category=UserWarning)  # musicnn's TF1 layers

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "models" / "weights" / "musicnn"
INPUT_NODE = "model/Placeholder"
TAGS_NODE = "model/Sigmoid"
LOGITS_NODE = "model/dense_1/BiasAdd"
EMBEDDINGS_NODE = "model/dense/BiasAdd"
PATCH_FRAMES = 187  # 3 s of 16 kHz audio at hop 256 (musicnn's input_length=3)
MEL_BANDS = 96
EMBEDDING_SIZE = 200
CITATION = (
    "Pons, J. and Serra, X. (2019). musicnn: Pre-trained convolutional neural networks for music audio "
    "tagging. Late-breaking/demo session, 20th International Society for Music Information Retrieval "
    "Conference (ISMIR 2019)."
)


@dataclass(frozen=True)
class Spec:
    """One checkpoint to freeze: musicnn's model name, the output file stem and what its tags come from."""

    checkpoint: str
    stem: str
    title: str
    labels_attr: str
    dataset: str
    dataset_citation: str


SPECS = (
    Spec(
        "MSD_musicnn",
        "msd-musicnn-1",
        "MSD MusiCNN",
        "MSD_LABELS",
        "Million Song Dataset (top-50 Last.fm tags)",
        "Bertin-Mahieux et al., The Million Song Dataset, ISMIR 2011",
    ),
    Spec(
        "MTT_musicnn",
        "mtt-musicnn-1",
        "MTT MusiCNN",
        "MTT_LABELS",
        "MagnaTagATune (top-50 tags)",
        "Law et al., Evaluation of algorithms using games: the case of music tagging, ISMIR 2009",
    ),
)


def musicnn_dir() -> Path:
    """The installed musicnn package (holds the checkpoints, configuration.py with the labels, LICENSE)."""
    import musicnn

    return Path(musicnn.__file__).resolve().parent


def musicnn_license() -> bytes:
    """musicnn's ISC licence text exactly as the installed distribution ships it."""
    from importlib.metadata import distribution

    dist = distribution("musicnn")
    for f in dist.files or ():
        if f.name.upper().startswith("LICENSE"):
            return Path(dist.locate_file(f)).read_bytes()
    raise SystemExit("musicnn's LICENSE file is not in its installed distribution")


def build_and_freeze(spec: Spec, package: Path) -> tuple[bytes, np.ndarray]:
    """Rebuild the network, restore the checkpoint, fold variables; return GraphDef bytes and a probe output."""
    from musicnn import models

    graph = tf.Graph()
    with graph.as_default():
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, MEL_BANDS])
            logits = models.define_model(x, False, spec.checkpoint, 50)[0]
            tf.nn.sigmoid(logits)
        names = {x.op.name, logits.op.name}
        if names != {INPUT_NODE, LOGITS_NODE}:
            raise SystemExit(f"unexpected node names {sorted(names)}; musicnn's model code changed?")
        with tf.compat.v1.Session(graph=graph) as sess:
            tf.compat.v1.train.Saver().restore(sess, str(package / spec.checkpoint) + "/")
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), [TAGS_NODE, LOGITS_NODE, EMBEDDINGS_NODE]
            )
            probe = _probe_input()
            reference = sess.run([f"{TAGS_NODE}:0", f"{EMBEDDINGS_NODE}:0"], {f"{INPUT_NODE}:0": probe})
    for node in frozen.node:
        node.device = ""
    data = frozen.SerializeToString(deterministic=True)
    _check_frozen(data, reference)
    return data, reference[0]


def _probe_input() -> np.ndarray:
    """A fixed log-mel-like input (seeded) to compare the frozen graph with the checkpoint session."""
    rng = np.random.default_rng(20190701)
    return rng.uniform(0.0, 3.0, size=(2, PATCH_FRAMES, MEL_BANDS)).astype(np.float32)


def _check_frozen(data: bytes, reference: list[np.ndarray]) -> None:
    """Reload the frozen bytes in a fresh graph and require the checkpoint's outputs (to float32 rounding)."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(data)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        out = sess.run([f"{TAGS_NODE}:0", f"{EMBEDDINGS_NODE}:0"], {f"{INPUT_NODE}:0": _probe_input()})
    for got, want in zip(out, reference, strict=True):
        # float32 noise only: the session and the frozen graph may fuse/fold ops differently
        scale = float(np.abs(want).max())
        if got.shape != want.shape or float(np.abs(got - want).max()) > 1e-5 * max(scale, 1.0):
            raise SystemExit("the frozen graph does not reproduce the checkpoint's outputs")
    if out[1].shape[1] != EMBEDDING_SIZE:
        raise SystemExit(f"embeddings have {out[1].shape[1]} dimensions, expected {EMBEDDING_SIZE}")


def metadata(spec: Spec, package: Path, labels: list[str], graph: bytes) -> bytes:
    """MTG-style model JSON (classes, schema with node names, inference sample rate) plus provenance."""
    result_file = package / spec.checkpoint / "experiment.result"
    meta = {
        "name": spec.title,
        "type": "auto-tagging",
        "version": "1",
        "description": f"Prediction of the top-50 tags of the {spec.dataset}, and 200-d embeddings",
        "author": "Jordi Pons (musicnn); frozen for mirstream by tools/musicnn/freeze_musicnn.py",
        "framework": "tensorflow",
        "framework_version": tf.__version__,
        "classes": labels,
        "model_types": ["frozen_model"],
        "dataset": {
            "name": spec.dataset,
            "citation": spec.dataset_citation,
            "metrics": _metrics(result_file),
        },
        "schema": {
            "inputs": [{"name": INPUT_NODE, "type": "float", "shape": ["batch_size", PATCH_FRAMES, MEL_BANDS]}],
            "outputs": [
                {
                    "name": TAGS_NODE,
                    "type": "float",
                    "shape": ["batch_size", len(labels)],
                    "op": "Sigmoid",
                    "output_purpose": "predictions",
                },
                {
                    "name": LOGITS_NODE,
                    "type": "float",
                    "shape": ["batch_size", len(labels)],
                    "op": "fully connected",
                    "description": "logits",
                    "output_purpose": "",
                },
                {
                    "name": EMBEDDINGS_NODE,
                    "type": "float",
                    "shape": ["batch_size", EMBEDDING_SIZE],
                    "op": "fully connected",
                    "description": "penultimate dense layer before its ReLU",
                    "output_purpose": "embeddings",
                },
            ],
        },
        "citation": CITATION,
        "inference": {"sample_rate": 16000, "algorithm": "TensorflowPredictMusiCNN"},
        "source": {
            "package": "musicnn==0.1.0",
            "checkpoint": spec.checkpoint,
            "license": "ISC",
            "graph_sha256": hashlib.sha256(graph).hexdigest(),
        },
    }
    return (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode()


def _metrics(result_file: Path) -> dict[str, float]:
    """ROC-AUC / PR-AUC from the checkpoint's experiment.result ('AUC: x' lines, in that order)."""
    values = [float(line.split(":", 1)[1]) for line in result_file.read_text().splitlines() if line.startswith("AUC")]
    return {"ROC-AUC": round(values[0], 4), "PR-AUC": round(values[1], 4)} if len(values) >= 2 else {}


def build_all(package: Path) -> dict[str, bytes]:
    """Every output file name → its bytes (graphs, metadata, LICENSE, SHA256SUMS)."""
    from musicnn import configuration

    files: dict[str, bytes] = {}
    for spec in SPECS:
        graph, tags = build_and_freeze(spec, package)
        labels = list(getattr(configuration, spec.labels_attr))
        if tags.shape[1] != len(labels):
            raise SystemExit(f"{spec.checkpoint}: {tags.shape[1]} outputs but {len(labels)} labels")
        files[f"{spec.stem}.pb"] = graph
        files[f"{spec.stem}.json"] = metadata(spec, package, labels, graph)
    files["LICENSE"] = musicnn_license()
    sums = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files))
    files["SHA256SUMS"] = sums.encode()
    return files


def main(argv: list[str] | None = None) -> int:
    """Write the files (default) or, with --check, compare a fresh build with the files on disk."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="rebuild and compare byte-for-byte; write nothing")
    args = parser.parse_args(argv)
    tf.compat.v1.disable_eager_execution()
    files = build_all(musicnn_dir())
    if args.check:
        differ = [name for name, data in files.items() if _read(args.out / name) != data]
        for name in differ:
            print(f"DIFFERS: {args.out / name}", file=sys.stderr)
        print("identical" if not differ else f"{len(differ)} file(s) differ")
        return 1 if differ else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"{hashlib.sha256(data).hexdigest()}  {len(data):>8}  {args.out / name}")
    return 0


def _read(path: Path) -> bytes | None:
    """File bytes, or None when it does not exist."""
    return path.read_bytes() if path.exists() else None


if __name__ == "__main__":
    raise SystemExit(main())
