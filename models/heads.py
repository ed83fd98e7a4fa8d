"""Essentia's transfer-learning models: an audio embedding network plus a small classification/regression head.

This is the pipeline behind the hosted API's genre, mood, voice, danceability ... models: 16 kHz mono audio →
Discogs-EffNet (``TensorflowPredictEffnetDiscogs``, 1280-d) or MSD-MusiCNN (``TensorflowPredictMusiCNN``,
200-d) embeddings per patch → the head (``TensorflowPredict2D``, node names from the head's metadata JSON) →
mean over patches. Alonso-Jiménez et al., "TensorFlow Audio Models in Essentia", ICASSP 2020; models and
metadata from https://essentia.upf.edu/models.html (MTG weights: CC BY-NC-SA 4.0, fetched by
``mirstream models fetch``; the MSD-MusiCNN graph is the one packaged in models/weights/musicnn).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import placement
from models.base import Analyzer, AnalyzerError, Audio, require_duration
from models.essentia_runtime import configure_tensorflow
from models.musicnn import verify_checksum

SAMPLE_RATE = 16000
ROLES = ("embedding", "head", "metadata")


@dataclass(frozen=True)
class Extractor:
    """An embedding network as Essentia runs it: algorithm, embedding node, and the audio one patch needs."""

    algorithm: str
    output: str
    min_seconds: float


# The shortest audio that yields one patch, measured with Essentia 2.1b6 (fewer samples give no patch):
# EffNet 128 frames = 127 hops of 256 + 1 samples, MusiCNN 187 frames = 185 hops of 256 + 1 samples.
EXTRACTORS = {
    "discogs-effnet": Extractor("TensorflowPredictEffnetDiscogs", "PartitionedCall:1", (127 * 256 + 1) / SAMPLE_RATE),
    "msd-musicnn": Extractor("TensorflowPredictMusiCNN", "model/dense/BiasAdd", (185 * 256 + 1) / SAMPLE_RATE),
}


class MetadataError(ValueError):
    """A model's metadata JSON is not what the head pipeline needs; the message says which part."""


@dataclass(frozen=True)
class HeadMetadata:
    """What the pipeline takes from MTG's ``<head>.json``: classes, node names, kind and sample rate."""

    classes: tuple[str, ...]
    input: str
    output: str
    regression: bool
    multi_label: bool
    input_dims: int | None
    sample_rate: int | None


def _last_dim(spec: dict[str, Any]) -> int | None:
    """The last entry of a schema ``shape`` when it is a positive integer (batch dims may be null/-1)."""
    shape = spec.get("shape")
    if isinstance(shape, list) and shape and isinstance(shape[-1], int) and shape[-1] > 0:
        return int(shape[-1])
    return None


def _named(items: Any, what: str) -> list[dict[str, Any]]:
    """``schema.inputs``/``schema.outputs``: a non-empty list of objects with a string ``name``."""
    if not isinstance(items, list) or not items:
        raise MetadataError(f"schema.{what} must be a non-empty list")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise MetadataError(f"every schema.{what} item needs a node 'name'")
    return items


def parse_metadata(text: str | bytes) -> HeadMetadata:
    """Parse and sanity-check a head's metadata JSON (raises MetadataError saying what is wrong).

    Checks: valid JSON object; ``classes`` a non-empty list of strings; ``schema.inputs``/``outputs`` name
    their nodes; the predictions output (``output_purpose: predictions``, else the first) is as wide as
    ``classes`` when its shape says; ``inference.sample_rate``, when given, is 16000.
    """
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MetadataError("the top level must be a JSON object")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise MetadataError("'classes' must be a non-empty list of strings")
    schema = data.get("schema")
    if not isinstance(schema, dict):
        raise MetadataError("'schema' with inputs and outputs is missing")
    inputs = _named(schema.get("inputs"), "inputs")
    outputs = _named(schema.get("outputs"), "outputs")
    output = next((o for o in outputs if o.get("output_purpose") == "predictions"), outputs[0])
    width = _last_dim(output)
    if width is not None and width != len(classes):
        raise MetadataError(f"output {output['name']!r} has {width} values but 'classes' lists {len(classes)}")
    inference = data.get("inference") if isinstance(data.get("inference"), dict) else {}
    rate = inference.get("sample_rate")
    if rate is not None and rate != SAMPLE_RATE:
        raise MetadataError(f"inference.sample_rate is {rate!r}; these pipelines run at {SAMPLE_RATE} Hz")
    kind = str(data.get("type", "")).lower()
    return HeadMetadata(
        classes=tuple(classes),
        input=inputs[0]["name"],
        output=output["name"],
        regression="regress" in kind,
        multi_label="multi-label" in kind,
        input_dims=_last_dim(inputs[0]),
        sample_rate=rate,
    )


class EmbeddingHeadAnalyzer(Analyzer):
    """Embedding network + head, loaded once per replica from the files the registry's ``weights`` name.

    ``weight_files`` (role → absolute path of ``embedding``, ``head``, ``metadata``) is filled in by the server
    from the models directory; the registry entry only says which embedding network the head expects.
    """

    def __init__(
        self,
        embedding: str,
        top_n: int = 5,
        value_range: list[float] | None = None,
        weight_files: dict[str, str] | None = None,
    ) -> None:
        if embedding not in EXTRACTORS:
            raise ValueError(f"unknown embedding {embedding!r}; known: {', '.join(EXTRACTORS)}")
        missing = [r for r in ROLES if r not in (weight_files or {})]
        if missing:
            raise ValueError(f"weight files for {', '.join(missing)} were not given (run `mirstream models fetch`)")
        assert weight_files is not None
        self.extractor = EXTRACTORS[embedding]
        self.embedding = embedding
        self.top_n = top_n
        self.value_range = [float(v) for v in value_range] if value_range else None
        try:
            self.meta = parse_metadata(Path(weight_files["metadata"]).read_bytes())
        except MetadataError as exc:
            raise ValueError(f"{weight_files['metadata']}: {exc}") from None
        embedding_graph = Path(weight_files["embedding"])
        if (embedding_graph.parent / "SHA256SUMS").is_file():  # a graph packaged with mirstream (MSD-MusiCNN)
            verify_checksum(embedding_graph)
        configure_tensorflow(placement.current())  # thread pools and GPU visibility, before TF starts
        from models.essentia_runtime import essentia_standard

        es = essentia_standard()
        self._embed = getattr(es, self.extractor.algorithm)(
            graphFilename=str(embedding_graph), output=self.extractor.output
        )
        head_options: dict[str, Any] = {"input": self.meta.input, "output": self.meta.output}
        if self.meta.input_dims:
            head_options["dimensions"] = self.meta.input_dims  # avoids a reload on the first call
        self._head = es.TensorflowPredict2D(graphFilename=weight_files["head"], **head_options)

    def predictions(self, audio: Audio) -> np.ndarray:
        """Per-patch head outputs, shape (patches, classes)."""
        require_duration(audio, self.extractor.min_seconds, f"the {self.embedding} embedding (one patch)")
        embeddings = np.asarray(self._embed(np.ascontiguousarray(audio.samples, dtype=np.float32)))
        self.check_cancelled()
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise AnalyzerError(f"the {self.embedding} network produced no embeddings for this audio")
        out = np.asarray(self._head(embeddings), dtype=np.float64)
        if out.ndim != 2 or out.shape[1] != len(self.meta.classes):
            raise AnalyzerError(
                f"the head returned shape {out.shape} but its metadata lists {len(self.meta.classes)} classes"
            )
        return out

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Mean head output over patches, as top-N/labels/activations (classifiers) or named values (regressors)."""
        out = self.predictions(audio)
        mean = out.mean(axis=0)
        labels = list(self.meta.classes)
        if self.meta.regression:
            result: dict[str, Any] = {"values": {name: float(v) for name, v in zip(labels, mean, strict=True)}}
            if self.value_range:
                result["range"] = self.value_range
            return result
        order = np.argsort(-mean, kind="stable")[: self.top_n]
        return {
            "top": [{"label": labels[i], "score": float(mean[i])} for i in order],
            "labels": labels,
            "activations": [float(v) for v in mean],
            "patches": int(out.shape[0]),
        }
