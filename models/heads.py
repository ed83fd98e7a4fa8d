"""Transfer-learning heads on a shared embedding backbone (the model graph's leaves).

MTG's heads are small networks on per-patch embeddings (Alonso-Jiménez et al., "TensorFlow Audio Models in
Essentia", ICASSP 2020): for MSD-MusiCNN 200 → dense 100 (ReLU) → 2 (softmax) for moods and danceability, and
200 → affine batch norm → dense 2 for arousal/valence. ``ClassifierHead``/``RegressionHead`` take the backbone
node's per-patch ``embeddings`` (models.musicnn.MusiCNNBackbone), run the head on every patch and average over
patches, as Essentia's examples do. The runtime follows the head file: ONNX heads (models/weights/mtg: converted
from MTG's TF.js files by tools/mtg/convert.py, or MTG's own Discogs-EffNet ONNX heads) run on onnxruntime, so
their replicas never load TensorFlow; MTG's downloadable TensorFlow heads (.pb) run on Essentia's
``TensorflowPredict2D``. Weights: CC BY-NC-SA 4.0 / CC BY-NC-ND 4.0 (non-commercial), models/weights/mtg/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.base import Analyzer, AnalyzerError, Input, ModelInput
from models.onnx_runtime import check_onnx_file
from models.tf_graph import graph_file_node_names

SAMPLE_RATE = 16000


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


class Head(Analyzer):
    """A head on the backbone's per-patch embeddings; ``weight_files``: ``head`` (.onnx or .pb) and ``metadata``.

    The metadata (MTG's layout: ``classes``, ``type``, ``schema.inputs/outputs``) gives the labels in output
    order and the input/output tensor names; a 3-D ONNX input ([n, 1, D], emomusic's flatten_in) gets a unit axis.
    """

    inputs: ClassVar[Mapping[str, Input]] = {"backbone": ModelInput(requires=("embeddings",))}

    def __init__(self, weight_files: dict[str, str] | None = None) -> None:
        files = weight_files or {}
        if "head" not in files or "metadata" not in files:
            raise ValueError("a head needs weight_files with its 'head' (.onnx or .pb) and 'metadata' (.json)")
        try:
            self.meta = parse_metadata(Path(files["metadata"]).read_bytes())
        except MetadataError as exc:
            raise ValueError(f"{Path(files['metadata']).name}: {exc}") from None
        self._run = (
            _onnx_runner(files["head"], self.meta)
            if files["head"].endswith(".onnx")
            else _tf_runner(files["head"], self.meta)
        )

    @classmethod
    def check_weight(cls, role: str, path: Path) -> None:
        """Format check of a downloaded file: metadata parses; an .onnx starts like a ModelProto; a .pb is a
        GraphDef (with the nodes the metadata next to it names, when it is there)."""
        if role == "metadata":
            try:
                parse_metadata(path.read_bytes())
            except MetadataError as exc:
                raise ValueError(f"bad metadata: {exc}") from None
        elif role == "head" and path.suffix == ".onnx":
            check_onnx_file(path)
        elif role == "head":
            nodes = graph_file_node_names(path)
            meta_path = path.with_suffix(".json")
            if meta_path.is_file():
                meta = parse_metadata(meta_path.read_bytes())
                absent = [t for t in (meta.input, meta.output) if t.rsplit(":", 1)[0] not in nodes]
                if absent:
                    raise ValueError(f"the head graph has no node(s) {', '.join(absent)} named by its metadata")

    def per_patch(self, embeddings: np.ndarray) -> np.ndarray:
        """Head outputs for every patch, shape (patches, classes)."""
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise AnalyzerError(f"the backbone gave embeddings of shape {x.shape}; the head needs (patches, dims)")
        if self.meta.input_dims is not None and x.shape[1] != self.meta.input_dims:
            raise AnalyzerError(f"the head takes {self.meta.input_dims}-d embeddings, the backbone gave {x.shape[1]}")
        out = np.asarray(self._run(x), dtype=np.float64).reshape(len(x), -1)
        if out.shape[1] != len(self.meta.classes):
            raise AnalyzerError(f"the head gave {out.shape[1]} values but its metadata lists {len(self.meta.classes)}")
        return out


def _onnx_runner(path: str, meta: HeadMetadata) -> Any:
    """(patches, D) → head outputs with onnxruntime (sessions sized to this replica's placement)."""
    from models.onnx_runtime import create_session

    session = create_session(path)
    names = {i.name: i for i in session.get_inputs()}
    if meta.input not in names or meta.output not in {o.name for o in session.get_outputs()}:
        raise ValueError(f"{Path(path).name} has no input {meta.input!r} or output {meta.output!r}")
    rank = len(names[meta.input].shape)

    def run(x: np.ndarray) -> np.ndarray:
        return session.run([meta.output], {meta.input: x[:, None, :] if rank == 3 else x})[0]

    return run


def _tf_runner(path: str, meta: HeadMetadata) -> Any:
    """(patches, D) → head outputs with Essentia's TensorflowPredict2D (MTG's .pb heads)."""
    from models.essentia_runtime import essentia_standard

    options: dict[str, Any] = {"input": meta.input, "output": meta.output}
    if meta.input_dims:
        options["dimensions"] = meta.input_dims  # avoids a reload on the first call
    predict = essentia_standard().TensorflowPredict2D(graphFilename=path, **options)
    return lambda x: predict(x)


class ClassifierHead(Head):
    """Class probabilities averaged over patches: the top N, all labels and all activations (output order)."""

    def __init__(self, top_n: int = 5, weight_files: dict[str, str] | None = None) -> None:
        super().__init__(weight_files)
        self.top_n = max(1, int(top_n))

    def analyze(self, backbone: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Classify one track from its backbone results."""
        out = self.per_patch(backbone["embeddings"])
        mean = out.mean(axis=0)
        labels = list(self.meta.classes)
        order = np.argsort(-mean, kind="stable")[: self.top_n]
        return {
            "top": [{"label": labels[i], "score": float(mean[i])} for i in order],
            "labels": labels,
            "activations": [float(v) for v in mean],
            "patches": int(out.shape[0]),
        }


class RegressionHead(Head):
    """Regression values averaged over patches, by name (metadata classes), with the scale they live on."""

    def __init__(self, value_range: list[float] | None = None, weight_files: dict[str, str] | None = None) -> None:
        super().__init__(weight_files)
        self.value_range = [float(v) for v in value_range] if value_range else None

    def analyze(self, backbone: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Regress one track's values from its backbone results."""
        mean = self.per_patch(backbone["embeddings"]).mean(axis=0)
        result: dict[str, Any] = {"values": {n: float(v) for n, v in zip(self.meta.classes, mean, strict=True)}}
        if self.value_range:
            result["range"] = self.value_range
        return result
