"""Auto-tagging and embeddings with MusiCNN (Pons & Serra, ISMIR 2019 LBD) on essentia-tensorflow.

The graphs in ``models/weights/musicnn/`` are musicnn 0.1.0's MSD and MTT checkpoints frozen with MTG's
node names by ``tools/musicnn/freeze_musicnn.py``; Essentia's ``TensorflowPredictMusiCNN`` computes the
log-mel patches (96 bands, 512/256 frames at 16 kHz, 187 frames = 3 s per patch, hop 93 frames) and runs
the graph. Results are means over patches, as in Essentia's model examples.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from models import placement
from models.base import Analyzer, AnalyzerError, Audio, require_duration
from models.essentia_runtime import configure_tensorflow, essentia_standard

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SAMPLE_RATE = 16000
FRAME_HOP = 256  # samples between mel frames (TensorflowInputMusiCNN)
PATCH_FRAMES = 187  # frames per patch, the graphs' fixed input length
MIN_SECONDS = 3.0  # one patch; Essentia gives no patch (an empty result) below ~2.96 s
INPUT_NODE = "model/Placeholder"
log = logging.getLogger("mirstream.models")


class ModelFilesError(RuntimeError):
    """A weights file is missing, outside the weights folder, or not the one SHA256SUMS records."""


def weights_file(relative: str) -> Path:
    """Resolve a registry ``graph`` param against the installed weights folder (never outside it)."""
    path = (WEIGHTS_DIR / relative).resolve()
    if not path.is_relative_to(WEIGHTS_DIR.resolve()):
        raise ModelFilesError(f"{relative!r} is outside the weights folder {WEIGHTS_DIR}")
    if not path.is_file():
        raise ModelFilesError(f"weights file {path} is missing (the package was installed without its weights?)")
    return path


def verify_checksum(path: Path) -> str:
    """Check ``path`` against the SHA256SUMS file in its folder; return the digest."""
    sums_file = path.parent / "SHA256SUMS"
    if not sums_file.is_file():
        raise ModelFilesError(f"no SHA256SUMS next to {path}")
    expected = {}
    for line in sums_file.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name:
            expected[name.strip()] = digest.strip()
    if path.name not in expected:
        raise ModelFilesError(f"{sums_file} has no checksum for {path.name}")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected[path.name]:
        raise ModelFilesError(
            f"{path} has SHA-256 {actual} but {sums_file} records {expected[path.name]}: the file was altered "
            "or corrupted; reinstall the package or rerun tools/musicnn/freeze_musicnn.py"
        )
    return actual


class MusiCNNModel(Analyzer):
    """Loads one frozen MusiCNN graph (checksum-verified) and returns one output node's per-patch values."""

    def __init__(self, graph: str, output: str, patch_hop_size: int = 93, batch_size: int = 1) -> None:
        path = weights_file(graph)
        verify_checksum(path)
        self.metadata = _read_metadata(path)
        outputs = {o["name"]: o for o in self.metadata["schema"]["outputs"]}
        if output not in outputs:
            raise ModelFilesError(f"{path.name} has no output node {output!r} (it has {sorted(outputs)})")
        self.output_size = int(outputs[output]["shape"][-1])
        self.patch_hop_s = patch_hop_size * FRAME_HOP / SAMPLE_RATE
        configure_tensorflow(placement.current())
        es = essentia_standard()
        self._predict = es.TensorflowPredictMusiCNN(
            graphFilename=str(path),
            input=INPUT_NODE,
            output=output,
            patchHopSize=patch_hop_size,
            batchSize=batch_size,
        )

    def patches(self, audio: Audio) -> np.ndarray:
        """The output node's values for every 3 s patch, shape (patches, output_size)."""
        require_duration(audio, MIN_SECONDS, "MusiCNN (one 3 s patch)")
        self._predict.reset()
        values = np.asarray(self._predict(np.ascontiguousarray(audio.samples, dtype=np.float32)), dtype=np.float32)
        if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] != self.output_size:
            raise AnalyzerError(f"MusiCNN returned no usable patches (shape {values.shape}) for this audio")
        return values


def _read_metadata(graph: Path) -> dict[str, Any]:
    """The MTG-style JSON next to the graph (classes, schema), checksum-verified like the graph."""
    path = graph.with_suffix(".json")
    if not path.is_file():
        raise ModelFilesError(f"metadata file {path} is missing")
    verify_checksum(path)
    return json.loads(path.read_text())


class MusiCNNTagger(MusiCNNModel):
    """Multi-label tags: sigmoid activations averaged over patches, the full vector and the top N."""

    def __init__(
        self, graph: str, output: str = "model/Sigmoid", top_n: int = 10, patch_hop_size: int = 93, batch_size: int = 1
    ) -> None:
        super().__init__(graph, output, patch_hop_size, batch_size)
        self.labels = [str(c) for c in self.metadata["classes"]]
        if len(self.labels) != self.output_size:
            raise ModelFilesError(f"{graph}: {len(self.labels)} classes for {self.output_size} outputs")
        self.top_n = max(1, min(int(top_n), len(self.labels)))

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Tag one track."""
        patches = self.patches(audio)
        activations = patches.mean(axis=0)
        order = np.argsort(-activations, kind="stable")[: self.top_n]
        return {
            "top": [{"label": self.labels[i], "score": float(activations[i])} for i in order],
            "labels": self.labels,
            "activations": [float(v) for v in activations],
            "patches": int(patches.shape[0]),
            "patch_hop_s": self.patch_hop_s,
        }


class MusiCNNEmbeddings(MusiCNNModel):
    """Per-patch embeddings (the penultimate dense layer, before its ReLU) and their mean."""

    def __init__(
        self, graph: str, output: str = "model/dense/BiasAdd", patch_hop_size: int = 93, batch_size: int = 1
    ) -> None:
        super().__init__(graph, output, patch_hop_size, batch_size)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Embed one track."""
        patches = self.patches(audio)
        return {
            "embedding": [float(v) for v in patches.mean(axis=0)],
            "dimensions": int(patches.shape[1]),
            "frames": [[float(v) for v in row] for row in patches],
            "frame_hop_s": self.patch_hop_s,
        }
