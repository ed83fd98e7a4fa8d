"""MusiCNN (Pons & Serra, ISMIR 2019 LBD) on essentia-tensorflow: one forward pass per track, many consumers.

``MusiCNNBackbone`` cuts the log-mel patches exactly as Essentia's ``TensorflowPredictMusiCNN`` does (frames of
512 samples every 256 at 16 kHz, ``TensorflowInputMusiCNN``'s 96 log-mel bands, 187-frame = 3 s patches every
``patch_hop_size`` frames, a trailing partial patch discarded) and runs the graph once with
``TensorflowPredict`` fetching two nodes: the tag sigmoids (``model/Sigmoid``) and the 200-d embedding
(``model/dense/BiasAdd``, the input of MTG's transfer-learning heads). Its results keep the per-patch arrays;
the thin views below (and the heads in models/heads.py) format them. Results are means over patches, as in
Essentia's model examples. Graphs: models/weights/musicnn (musicnn 0.1.0 checkpoints frozen with MTG's node
names, ISC) and models/weights/mtg (MTG's genre_dortmund MusiCNN, CC BY-NC-SA 4.0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.base import Analyzer, AnalyzerError, Audio, AudioInput, Input, ModelInput

SAMPLE_RATE = 16000
FRAME_SIZE = 512  # samples per STFT frame (TensorflowInputMusiCNN)
FRAME_HOP = 256  # samples between frames
PATCH_FRAMES = 187  # frames per patch: the graphs' fixed input length (3 s)
MEL_BANDS = 96
INPUT_NODE = "model/Placeholder"
AUDIO = AudioInput(sample_rate=SAMPLE_RATE, channels="mono", min_seconds=3.0)  # one patch needs 2.96 s


def mel_bands(samples: np.ndarray) -> np.ndarray:
    """Log-mel frames (n, 96) exactly as TensorflowPredictMusiCNN computes them (FrameCutter 512/256 with its
    defaults, then TensorflowInputMusiCNN); standard mode, ~10x faster here than an equivalent streaming chain."""
    from models.essentia_runtime import essentia_standard

    es = essentia_standard()
    signal = np.ascontiguousarray(samples, dtype=np.float32)
    mel = es.TensorflowInputMusiCNN()
    bands = [mel(frame) for frame in es.FrameGenerator(signal, frameSize=FRAME_SIZE, hopSize=FRAME_HOP)]
    return np.asarray(bands, dtype=np.float32).reshape(-1, MEL_BANDS)


def patch_stack(bands: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(n, size, 96) patches starting every ``hop`` frames; frames after the last whole patch are dropped
    (Essentia's ``lastPatchMode="discard"``). MusiCNN takes 187-frame patches, Discogs-EffNet 128."""
    if len(bands) < size:
        return np.zeros((0, size, MEL_BANDS), np.float32)
    return np.stack([bands[s : s + size] for s in range(0, len(bands) - size + 1, hop)])


def read_metadata(path: Path) -> dict[str, Any]:
    """The MTG-style JSON next to a graph: classes and the output nodes by purpose (predictions, embeddings)."""
    meta = json.loads(path.read_text())
    outputs = {o.get("output_purpose"): o["name"] for o in meta.get("schema", {}).get("outputs", [])}
    if not meta.get("classes") or "predictions" not in outputs or "embeddings" not in outputs:
        raise ValueError(f"{path}: needs 'classes' and schema outputs for 'predictions' and 'embeddings'")
    return meta


class MusiCNNBackbone(Analyzer):
    """One MusiCNN forward pass: per-patch tag activations (n, C) and embeddings (n, 200) as numpy arrays.

    ``weight_files`` holds the ``graph`` (.pb) and its ``metadata`` (.json, classes and node names).
    ``batch_size`` patches go through TensorFlow per session run (1 = least CPU time and memory on CPU).
    """

    inputs: ClassVar[Mapping[str, Input]] = {"audio": AUDIO}

    def __init__(
        self, patch_hop_size: int = 93, batch_size: int = 1, weight_files: dict[str, str] | None = None
    ) -> None:
        files = weight_files or {}
        if "graph" not in files or "metadata" not in files:
            raise ValueError("MusiCNNBackbone needs weight_files with a 'graph' and its 'metadata'")
        meta = read_metadata(Path(files["metadata"]))
        outputs = {o.get("output_purpose"): o["name"] for o in meta["schema"]["outputs"]}
        self.labels = [str(c) for c in meta["classes"]]
        self.tags_node, self.embedding_node = outputs["predictions"], outputs["embeddings"]
        self.hop = int(patch_hop_size)
        self.batch_size = max(1, int(batch_size))
        self.patch_hop_s = self.hop * FRAME_HOP / SAMPLE_RATE
        from models.essentia_runtime import essentia_standard

        self._predict = essentia_standard().TensorflowPredict(
            graphFilename=files["graph"], inputs=[INPUT_NODE], outputs=[self.tags_node, self.embedding_node]
        )

    @classmethod
    def check_weight(cls, role: str, path: Path) -> None:
        """Format check of a downloaded file: the metadata must name classes and both output nodes."""
        if role == "metadata":
            read_metadata(path)
        elif role == "graph" and path.stat().st_size < 1024:
            raise ValueError(f"{path.name} is {path.stat().st_size} bytes: not a MusiCNN graph")

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tag activations and embeddings for a stack of patches (n, 187, 96), ``batch_size`` at a time."""
        import essentia

        tags, embeddings = [], []
        for start in range(0, len(x), self.batch_size):
            self.check_cancelled()
            batch = x[start : start + self.batch_size]
            pool = essentia.Pool()
            pool.set(INPUT_NODE, np.ascontiguousarray(batch[:, None], dtype=np.float32))  # [b, 1, 187, 96]
            out = self._predict(pool)
            tags.append(np.asarray(out[self.tags_node], np.float32).reshape(len(batch), -1))
            embeddings.append(np.asarray(out[self.embedding_node], np.float32).reshape(len(batch), -1))
        return np.concatenate(tags), np.concatenate(embeddings)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Per-patch activations and embeddings of one track (arrays, for the views and heads downstream)."""
        x = patch_stack(mel_bands(audio.samples), PATCH_FRAMES, self.hop)
        if len(x) == 0:
            raise AnalyzerError(f"audio is {audio.duration:.2f} s long; MusiCNN needs one 3 s patch")
        activations, embeddings = self.forward(x)
        if activations.shape[1] != len(self.labels):
            raise AnalyzerError(f"the graph gave {activations.shape[1]} activations for {len(self.labels)} classes")
        return {
            "activations": activations,
            "embeddings": embeddings,
            "labels": self.labels,
            "patches": len(x),
            "patch_hop_s": self.patch_hop_s,
        }


def tag_summary(backbone: Mapping[str, Any], top_n: int) -> dict[str, Any]:
    """Mean activation per class over patches, the top N (best first, ties in output order) and all labels."""
    per_patch = np.asarray(backbone["activations"], dtype=np.float32)
    labels = list(backbone["labels"])
    mean = per_patch.mean(axis=0)
    order = np.argsort(-mean, kind="stable")[: max(1, min(int(top_n), len(labels)))]
    return {
        "top": [{"label": labels[i], "score": float(mean[i])} for i in order],
        "labels": labels,
        "activations": [float(v) for v in mean],
        "patches": int(per_patch.shape[0]),
        "patch_hop_s": float(backbone["patch_hop_s"]),
    }


class MusiCNNTags(Analyzer):
    """Tags view of a backbone's results: mean sigmoid per tag, the full vector and the top N."""

    inputs: ClassVar[Mapping[str, Input]] = {"backbone": ModelInput(requires=("activations", "labels", "patch_hop_s"))}

    def __init__(self, top_n: int = 10) -> None:
        self.top_n = int(top_n)

    def analyze(self, backbone: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Format one track's backbone results as tags."""
        return tag_summary(backbone, self.top_n)


class MusiCNNEmbeddingsView(Analyzer):
    """Embeddings view of a backbone's results: the per-patch 200-d vectors and their mean."""

    inputs: ClassVar[Mapping[str, Input]] = {"backbone": ModelInput(requires=("embeddings", "patch_hop_s"))}

    def analyze(self, backbone: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Format one track's backbone results as embeddings."""
        frames = np.asarray(backbone["embeddings"], dtype=np.float32)
        return {
            "embedding": [float(v) for v in frames.mean(axis=0)],
            "dimensions": int(frames.shape[1]),
            "frames": frames.tolist(),
            "frame_hop_s": float(backbone["patch_hop_s"]),
        }


class MusiCNNClassifier(Analyzer):
    """A complete MusiCNN classifier on audio (its own network, e.g. genre_dortmund): backbone + tags view in
    one node, for graphs that no other entry shares."""

    inputs: ClassVar[Mapping[str, Input]] = {"audio": AUDIO}

    def __init__(
        self, top_n: int = 10, patch_hop_size: int = 93, batch_size: int = 1, weight_files: dict[str, str] | None = None
    ) -> None:
        self.network = MusiCNNBackbone(patch_hop_size, batch_size, weight_files)
        self.top_n = int(top_n)

    @classmethod
    def check_weight(cls, role: str, path: Path) -> None:
        """The backbone's format checks (metadata names classes and both outputs)."""
        MusiCNNBackbone.check_weight(role, path)

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Class activations of one track, formatted like the tag views."""
        return tag_summary(self.network.analyze(audio), self.top_n)
