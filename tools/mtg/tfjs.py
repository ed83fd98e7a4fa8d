"""Read a TensorFlow.js graph model (model.json + weight shards) and evaluate it with numpy.

The TF.js converter stores a GraphDef as JSON (``modelTopology.node``: name, op, input, attr) with the Const
values moved to binary shards listed in ``weightsManifest`` (concatenated little-endian arrays, in manifest
order). Its graph optimiser folds batch norm into Mul/Add constants and fuses MatMul/Conv2D + BiasAdd (+ Relu)
into ``_FusedMatMul`` / ``_FusedConv2D``. ``evaluate`` runs exactly the ops MTG's MusiCNN graphs and heads
use, in float64, as the reference the ONNX conversion and the Essentia graphs are checked against.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class TfjsNode:
    """One node of the topology: name, op, data inputs (control inputs dropped) and decoded attributes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class TfjsModel:
    """A TF.js graph model: its nodes in file order and the weights by Const name."""

    nodes: tuple[TfjsNode, ...]
    weights: Mapping[str, np.ndarray]
    converted_by: str

    def node(self, name: str) -> TfjsNode:
        """The node called ``name``."""
        return next(n for n in self.nodes if n.name == name)

    def placeholders(self) -> list[TfjsNode]:
        """Input nodes, in file order."""
        return [n for n in self.nodes if n.op == "Placeholder"]


def _attr(value: Mapping[str, Any]) -> Any:
    """Decode one JSON AttrValue (protobuf JSON mapping: int64 as strings, bytes as base64)."""
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    if "list" in value:
        items = value["list"]
        if "s" in items:
            return [base64.b64decode(s).decode() for s in items["s"]]
        if "i" in items:
            return [int(i) for i in items["i"]]
        return []
    if "shape" in value:
        return [int(d.get("size", -1)) for d in value["shape"].get("dim", [])]
    return value


def load(folder: Path) -> TfjsModel:
    """Read ``folder/model.json`` and its shards; refuse quantised weights (not used by MTG's files)."""
    doc = json.loads((folder / "model.json").read_text())
    if doc.get("format") != "graph-model":
        raise ValueError(f"{folder}: not a TF.js graph model (format {doc.get('format')!r})")
    weights: dict[str, np.ndarray] = {}
    for group in doc["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if "quantization" in spec:
                raise ValueError(f"{folder}: quantised weight {spec['name']} is not supported")
            dtype = np.dtype(spec["dtype"]).newbyteorder("<")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            weights[spec["name"]] = (
                np.frombuffer(data, dtype, count, offset).reshape(spec["shape"]).astype(dtype.newbyteorder("="))
            )
            offset += count * dtype.itemsize
        if offset != len(data):
            raise ValueError(f"{folder}: manifest covers {offset} bytes of {len(data)}")
    nodes = tuple(
        TfjsNode(
            name=n["name"],
            op=n["op"],
            inputs=tuple(i for i in n.get("input", []) if not i.startswith("^")),
            attrs={k: _attr(v) for k, v in n.get("attr", {}).items()},
        )
        for n in doc["modelTopology"]["node"]
    )
    return TfjsModel(nodes, weights, str(doc.get("convertedBy", "")))


# ---- numpy evaluation --------------------------------------------------------------------------------


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (extra row/column at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x: np.ndarray, kernel: np.ndarray, padding: str, strides: list[int]) -> np.ndarray:
    """NHWC convolution (TF Conv2D semantics, dilation 1) by im2col: x [N,H,W,C], kernel [kh,kw,C,O]."""
    kh, kw, c, o = kernel.shape
    if padding == "SAME":
        ph, pw = _same_padding(x.shape[1], kh, strides[1]), _same_padding(x.shape[2], kw, strides[2])
        x = np.pad(x, [(0, 0), ph, pw, (0, 0)])
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, :: strides[1], :: strides[2]]  # N,H',W',C,kh,kw
    n, h, w = windows.shape[:3]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, kh * kw * c)
    return (cols @ kernel.reshape(kh * kw * c, o)).reshape(n, h, w, o)


def max_pool(x: np.ndarray, ksize: list[int], strides: list[int], padding: str) -> np.ndarray:
    """NHWC max pooling with VALID padding (the only kind these graphs use)."""
    if padding != "VALID":
        raise ValueError(f"MaxPool padding {padding} is not supported")
    windows = sliding_window_view(x, (ksize[1], ksize[2]), axis=(1, 2))[:, :: strides[1], :: strides[2]]
    return windows.max(axis=(-2, -1))


def _fused(node: TfjsNode, value: np.ndarray, bias: np.ndarray, record: dict[str, np.ndarray]) -> np.ndarray:
    """Apply a fused op's epilogue (BiasAdd, then Relu if listed); keep the pre-activation as ``<scope>/BiasAdd``."""
    ops = node.attrs.get("fused_ops", [])
    if ops[:1] != ["BiasAdd"] or not set(ops) <= {"BiasAdd", "Relu"}:
        raise ValueError(f"{node.name}: fused ops {ops} are not supported")
    value = value + bias
    if "Relu" in ops:
        record[node.name.rsplit("/", 1)[0] + "/BiasAdd"] = value
        value = np.maximum(value, 0.0)
    return value


def _strided_slice(node: TfjsNode, x: np.ndarray, begin: np.ndarray, end: np.ndarray, step: np.ndarray) -> Any:
    """StridedSlice for the 1-D shape slices the converters emit (begin/end masks, shrink_axis_mask)."""
    if x.ndim != 1 or node.attrs.get("ellipsis_mask", 0) or node.attrs.get("new_axis_mask", 0):
        raise ValueError(f"{node.name}: only 1-D StridedSlice without ellipsis/new axes is supported")
    b = None if node.attrs.get("begin_mask", 0) & 1 else int(begin[0])
    e = None if node.attrs.get("end_mask", 0) & 1 else int(end[0])
    out = x[b : e : int(step[0])]
    return out[0] if node.attrs.get("shrink_axis_mask", 0) & 1 else out


def _ops() -> dict[str, Callable[..., Any]]:
    """op name → function(node, inputs, record) for every op in MTG's MusiCNN graphs and heads."""

    def reduce(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        return lambda n, a, r: fn(
            a[0], axis=tuple(np.atleast_1d(a[1]).tolist()), keepdims=bool(n.attrs.get("keep_dims", False))
        )

    return {
        "Identity": lambda n, a, r: a[0],
        "ExpandDims": lambda n, a, r: np.expand_dims(a[0], int(a[1])),
        "Mul": lambda n, a, r: a[0] * a[1],
        "Add": lambda n, a, r: a[0] + a[1],
        "AddV2": lambda n, a, r: a[0] + a[1],
        "Sub": lambda n, a, r: a[0] - a[1],
        "Relu": lambda n, a, r: np.maximum(a[0], 0.0),
        "Sigmoid": lambda n, a, r: 1.0 / (1.0 + np.exp(-a[0])),
        "Softmax": lambda n, a, r: (
            np.exp(a[0] - a[0].max(-1, keepdims=True))
            / np.exp(a[0] - a[0].max(-1, keepdims=True)).sum(-1, keepdims=True)
        ),
        "MatMul": lambda n, a, r: (
            (a[0].T if n.attrs.get("transpose_a") else a[0]) @ (a[1].T if n.attrs.get("transpose_b") else a[1])
        ),
        "_FusedMatMul": lambda n, a, r: _fused(n, a[0] @ a[1], a[2], r),
        "_FusedConv2D": lambda n, a, r: _fused(n, conv2d(a[0], a[1], n.attrs["padding"], n.attrs["strides"]), a[2], r),
        "Conv2D": lambda n, a, r: conv2d(a[0], a[1], n.attrs["padding"], n.attrs["strides"]),
        "BiasAdd": lambda n, a, r: a[0] + a[1],
        "Pad": lambda n, a, r: np.pad(a[0], a[1].tolist()),
        "MaxPool": lambda n, a, r: max_pool(a[0], n.attrs["ksize"], n.attrs["strides"], n.attrs["padding"]),
        "Squeeze": lambda n, a, r: np.squeeze(a[0], axis=tuple(n.attrs.get("squeeze_dims", []))),
        "ConcatV2": lambda n, a, r: np.concatenate(a[:-1], axis=int(a[-1])),
        "Transpose": lambda n, a, r: np.transpose(a[0], a[1].tolist()),
        "Max": reduce(np.max),
        "Mean": reduce(np.mean),
        "Shape": lambda n, a, r: np.array(a[0].shape, dtype=np.int32),
        "StridedSlice": lambda n, a, r: _strided_slice(n, *a),
        "Pack": lambda n, a, r: np.stack([np.asarray(v) for v in a], axis=n.attrs.get("axis", 0)),
        "Reshape": lambda n, a, r: a[0].reshape(np.asarray(a[1]).tolist()),
    }


def evaluate(model: TfjsModel, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """Run the graph on ``feeds`` (placeholder name → array) in float64; return the requested node values.

    Besides node names, ``outputs`` may name a fused op's pre-activation as ``<scope>/BiasAdd`` (the
    ``model/dense/BiasAdd`` embedding of MusiCNN is fused into ``model/dense/Relu`` by the TF.js converter).
    """
    ops = _ops()
    values: dict[str, Any] = {}
    for node in model.nodes:
        if node.op == "Placeholder":
            if node.name in feeds:
                values[node.name] = np.asarray(feeds[node.name], dtype=np.float64)
            continue
        if node.op == "Const":
            w = model.weights[node.name]
            values[node.name] = w.astype(np.float64) if w.dtype.kind == "f" else w
            continue
        if node.op not in ops:
            raise ValueError(f"op {node.op} ({node.name}) is not supported by this evaluator")
        args = [values[i.split(":")[0]] for i in node.inputs]
        values[node.name] = ops[node.op](node, args, values)
    missing = [o for o in outputs if o not in values]
    if missing:
        raise KeyError(f"no value for {missing}")
    return {o: np.asarray(values[o]) for o in outputs}
