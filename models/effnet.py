"""Discogs-EffNet (Alonso-Jiménez, Serra & Bogdanov, "Music representation learning based on editorial metadata
from Discogs", ISMIR 2022): the embedding backbone of MTG's Discogs-EffNet heads, as one model-graph node.

The network sees 128-frame patches (about 2 s) of the MusiCNN log-mel front end (512-sample frames every 256 at
16 kHz, ``TensorflowInputMusiCNN``) every ``patch_hop_size`` frames (62 = 0.992 s) and gives a 1280-d embedding
per patch. Two runtimes, chosen by the graph file: MTG's TensorFlow graph through Essentia's
``TensorflowPredictEffnetDiscogs`` (the ``bs64`` graph takes exactly 64 patches per run, Essentia pads the last
batch), or MTG's ``bsdynamic`` ONNX export on onnxruntime (any batch, no padding, no TensorFlow in the replica),
patched here exactly as Essentia patches (tests/test_effnet.py checks both give the same embeddings).
Weights: CC BY-NC-SA 4.0 (MTG), downloaded by ``mirstream models fetch``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, AudioInput, Input
from models.musicnn import FRAME_HOP, SAMPLE_RATE, mel_bands, patch_stack
from models.onnx_runtime import check_onnx_file
from models.tf_graph import graph_file_node_names

PATCH_FRAMES = 128
EMBEDDINGS = "embeddings"  # the metadata's output_purpose of the embedding output
# one patch = 128 frames = 127 hops of 256 samples + one frame start (Essentia gives no patch below that)
AUDIO = AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=(127 * FRAME_HOP + 1) / SAMPLE_RATE)


def embedding_output(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """(input node, embedding output node) named by MTG's backbone metadata JSON."""
    schema = metadata.get("schema") or {}
    inputs, outputs = schema.get("inputs") or [], schema.get("outputs") or []
    out = next((o for o in outputs if o.get("output_purpose") == EMBEDDINGS), None)
    if not inputs or out is None:
        raise ValueError("the metadata must name the input and the output whose output_purpose is 'embeddings'")
    return str(inputs[0]["name"]), str(out["name"])


class EffnetBackbone(Analyzer):
    """Per-patch Discogs-EffNet embeddings (n, 1280) of one track, for the heads downstream.

    ``weight_files``: ``graph`` (MTG's .pb or .onnx) and ``metadata`` (its .json: node names). ``batch_size`` is
    the patches per run: the bs64 .pb needs 64; the ONNX export takes any number.
    """

    inputs: ClassVar[Mapping[str, Input]] = {"audio": AUDIO}

    def __init__(self, patch_hop_size: int = 62, batch_size: int = 64, weight_files: dict[str, str] | None = None):
        files = weight_files or {}
        if "graph" not in files or "metadata" not in files:
            raise ValueError("EffnetBackbone needs weight_files with a 'graph' (.pb or .onnx) and its 'metadata'")
        self.input_node, self.output_node = embedding_output(json.loads(Path(files["metadata"]).read_text()))
        self.hop = int(patch_hop_size)
        self.batch_size = max(1, int(batch_size))
        self.patch_hop_s = self.hop * FRAME_HOP / SAMPLE_RATE
        if files["graph"].endswith(".onnx"):
            self._embed = self._onnx(files["graph"])
        else:
            self._embed = self._essentia(files["graph"])

    def _essentia(self, graph: str) -> Any:
        """Essentia's own patching and batching (the last batch zero-padded, only real patches returned)."""
        from models.essentia_runtime import essentia_standard

        predict = essentia_standard().TensorflowPredictEffnetDiscogs(
            graphFilename=graph,
            input=self.input_node,
            output=self.output_node,
            patchHopSize=self.hop,
            batchSize=self.batch_size,
            lastBatchMode="same",
        )

        def embed(samples: np.ndarray) -> np.ndarray:
            predict.reset()
            return np.asarray(predict(np.ascontiguousarray(samples, dtype=np.float32)), dtype=np.float32)

        return embed

    def _onnx(self, graph: str) -> Any:
        """The MusiCNN front end and Essentia's patching here, then onnxruntime ``batch_size`` patches at a time."""
        from models.onnx_runtime import create_session

        session = create_session(graph)
        (inp,) = session.get_inputs()
        names = [o.name for o in session.get_outputs()]
        output = self.output_node if self.output_node in names else names[-1]

        def embed(samples: np.ndarray) -> np.ndarray:
            x = patch_stack(mel_bands(samples), PATCH_FRAMES, self.hop)
            out = []
            for start in range(0, len(x), self.batch_size):
                self.check_cancelled()
                out.append(session.run([output], {inp.name: x[start : start + self.batch_size]})[0])
            return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

        return embed

    @classmethod
    def check_weight(cls, role: str, path: Path) -> None:
        """Format check of a downloaded file: the metadata names the embedding output; a .pb is a GraphDef that
        holds it; an .onnx starts like a ModelProto."""
        if role == "metadata":
            embedding_output(json.loads(path.read_text()))
        elif role == "graph" and path.suffix == ".onnx":
            check_onnx_file(path)
        elif role == "graph":
            nodes = graph_file_node_names(path)
            if not any(n.startswith("PartitionedCall") or "melspectrogram" in n for n in nodes):
                raise ValueError(f"{path.name} is a GraphDef without Discogs-EffNet's input or output nodes")

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Per-patch embeddings of one track (an array, for the heads) and the patch hop."""
        embeddings = self._embed(audio.samples)
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise AnalyzerError("Discogs-EffNet produced no embeddings for this audio")
        return {"embeddings": embeddings, "patches": int(embeddings.shape[0]), "patch_hop_s": self.patch_hop_s}
