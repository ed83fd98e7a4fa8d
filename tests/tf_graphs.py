"""Tiny TensorFlow GraphDefs for tests, encoded by hand in protobuf wire format (no TensorFlow needed).

Only what the head-pipeline tests need: Placeholder, Const (float32/int32 tensors), MatMul, BiasAdd,
Softmax, Sigmoid, Identity, Mean, Reshape and Split, wired as frozen graphs that Essentia's TensorflowPredict*
algorithms load like MTG's models. Message and field numbers follow tensorflow/core/framework/{graph,
node_def,attr_value,tensor,tensor_shape,versions}.proto.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DT_FLOAT = 1
DT_INT32 = 3
PRODUCER = 1205  # GraphDef version of TF 2.15; only has to be within what Essentia's libtensorflow accepts


def _varint(value: int) -> bytes:
    """Base-128 varint (negative int64 values as ten-byte two's complement, like protobuf)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    """Field key: (number << 3) | wire type (0 varint, 2 length-delimited, 5 fixed32)."""
    return _varint(field << 3 | wire_type)


def _int(field: int, value: int) -> bytes:
    """A varint field."""
    return _key(field, 0) + _varint(value)


def _bytes(field: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or embedded message)."""
    return _key(field, 2) + _varint(len(payload)) + payload


def _shape(dims: Sequence[int]) -> bytes:
    """TensorShapeProto: repeated Dim dim = 2 {int64 size = 1} (-1 = unknown size)."""
    return b"".join(_bytes(2, _int(1, d)) for d in dims)


def _tensor(array: np.ndarray) -> bytes:
    """TensorProto: dtype = 1, tensor_shape = 2, tensor_content = 4 (little-endian raw bytes)."""
    dtype = {np.dtype(np.float32): DT_FLOAT, np.dtype(np.int32): DT_INT32}[array.dtype]
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return _int(1, dtype) + _bytes(2, _shape(array.shape)) + _bytes(4, raw)


def _attr(name: str, value: bytes) -> bytes:
    """One entry of NodeDef.attr (map<string, AttrValue> = 5): key = 1, value = 2."""
    return _bytes(5, _bytes(1, name.encode()) + _bytes(2, value))


def attr_type(dtype: int) -> bytes:
    """AttrValue.type = 6."""
    return _int(6, dtype)


def attr_shape(dims: Sequence[int]) -> bytes:
    """AttrValue.shape = 7."""
    return _bytes(7, _shape(dims))


def attr_tensor(array: np.ndarray) -> bytes:
    """AttrValue.tensor = 8."""
    return _bytes(8, _tensor(array))


def attr_int(value: int) -> bytes:
    """AttrValue.i = 3."""
    return _int(3, value)


def attr_bool(value: bool) -> bytes:
    """AttrValue.b = 5."""
    return _int(5, int(value))


def node(name: str, op: str, inputs: Sequence[str] = (), **attrs: bytes) -> bytes:
    """NodeDef: name = 1, op = 2, repeated input = 3, attr = 5 (sorted, as TF writes them)."""
    body = _bytes(1, name.encode()) + _bytes(2, op.encode())
    body += b"".join(_bytes(3, i.encode()) for i in inputs)
    body += b"".join(_attr(k, attrs[k]) for k in sorted(attrs))
    return body


def graph(*nodes: bytes) -> bytes:
    """GraphDef: repeated NodeDef node = 1, VersionDef versions = 4 {producer = 1}."""
    return b"".join(_bytes(1, n) for n in nodes) + _bytes(4, _int(1, PRODUCER))


def placeholder(name: str, dims: Sequence[int]) -> bytes:
    """A float32 Placeholder of the given shape (-1 = any)."""
    return node(name, "Placeholder", dtype=attr_type(DT_FLOAT), shape=attr_shape(dims))


def const(name: str, array: np.ndarray) -> bytes:
    """A Const holding ``array`` (float32 or int32)."""
    dtype = DT_FLOAT if array.dtype == np.float32 else DT_INT32
    return node(name, "Const", dtype=attr_type(dtype), value=attr_tensor(array))


def float_op(name: str, op: str, inputs: Sequence[str]) -> bytes:
    """An op whose only attribute is T = float32 (MatMul, BiasAdd, Softmax, Sigmoid, Identity)."""
    return node(name, op, inputs, T=attr_type(DT_FLOAT))


def dense(prefix: str, source: str, weights: np.ndarray, bias: np.ndarray, out: str) -> list[bytes]:
    """``out = source @ weights + bias`` as MatMul + BiasAdd (the node named ``out`` is the BiasAdd)."""
    return [
        const(f"{prefix}/kernel", weights.astype(np.float32)),
        const(f"{prefix}/bias", bias.astype(np.float32)),
        float_op(f"{prefix}/MatMul", "MatMul", [source, f"{prefix}/kernel"]),
        float_op(out, "BiasAdd", [f"{prefix}/MatMul", f"{prefix}/bias"]),
    ]


def mean(name: str, source: str, axes: Sequence[int]) -> list[bytes]:
    """``Mean(source, axes)`` without keeping the reduced dimensions."""
    return [
        const(f"{name}/axes", np.array(axes, np.int32)),
        node(
            name,
            "Mean",
            [source, f"{name}/axes"],
            T=attr_type(DT_FLOAT),
            Tidx=attr_type(DT_INT32),
            keep_dims=attr_bool(False),
        ),
    ]


def reshape(name: str, source: str, shape: Sequence[int]) -> list[bytes]:
    """``Reshape(source, shape)``."""
    return [
        const(f"{name}/shape", np.array(shape, np.int32)),
        node(name, "Reshape", [source, f"{name}/shape"], T=attr_type(DT_FLOAT), Tshape=attr_type(DT_INT32)),
    ]


def split2(name: str, source: str, axis: int) -> list[bytes]:
    """``Split(axis, source)`` into two halves: outputs ``name:0`` and ``name:1`` (like effnet's PartitionedCall)."""
    return [
        const(f"{name}/axis", np.array(axis, np.int32)),
        node(name, "Split", [f"{name}/axis", source], T=attr_type(DT_FLOAT), num_split=attr_int(2)),
    ]


def musicnn_like(kernel: np.ndarray, bias: np.ndarray) -> bytes:
    """An 'msd-musicnn' stand-in: [B,187,96] mel patches → mean over time → dense → ``model/dense/BiasAdd``.

    ``kernel`` is (96, E): the embedding is the time-averaged mel patch projected to E dimensions.
    """
    return graph(
        placeholder("model/Placeholder", [-1, 187, 96]),
        *mean("model/time_mean", "model/Placeholder", [1]),
        *dense("model/dense", "model/time_mean", kernel, bias, "model/dense/BiasAdd"),
    )


def effnet_like(kernel: np.ndarray, bias: np.ndarray) -> bytes:
    """A 'discogs-effnet' stand-in: [64,128,96] → mean over time → dense (96, 2E) → Split → ``PartitionedCall:1``.

    Output 0 (the first E columns) plays the style activations, output 1 the E-d embedding, like the real graph.
    """
    return graph(
        placeholder("serving_default_melspectrogram", [-1, 128, 96]),
        *mean("time_mean", "serving_default_melspectrogram", [1]),
        *dense("dense", "time_mean", kernel, bias, "dense/BiasAdd"),
        *split2("PartitionedCall", "dense/BiasAdd", 1),
    )


def head(kernel: np.ndarray, bias: np.ndarray, activation: str, output: str, input_name: str) -> bytes:
    """A classification/regression head: ``input_name`` [B,D] → dense (D, C) → activation named ``output``.

    ``activation`` is Softmax, Sigmoid or Identity (regression), as in MTG's heads.
    """
    return graph(
        placeholder(input_name, [-1, kernel.shape[0]]),
        *dense("model/dense", input_name, kernel, bias, "model/dense/BiasAdd"),
        float_op(output, activation, ["model/dense/BiasAdd"]),
    )


def metadata(
    classes: Sequence[str],
    input_name: str,
    output_name: str,
    kind: str = "multi-class classifier",
    dims: int | None = None,
    sample_rate: int | None = 16000,
) -> bytes:
    """A head's metadata JSON laid out like MTG's (name, type, classes, schema, inference)."""
    doc: dict = {
        "name": "test head",
        "type": kind,
        "version": "1",
        "classes": list(classes),
        "schema": {
            "inputs": [{"name": input_name, "type": "float", "shape": [dims] if dims else []}],
            "outputs": [
                {"name": output_name, "type": "float", "shape": [len(classes)], "output_purpose": "predictions"}
            ],
        },
    }
    if sample_rate is not None:
        doc["inference"] = {"sample_rate": sample_rate, "algorithm": "TensorflowPredict2D"}
    return json.dumps(doc, indent=2).encode()


@dataclass(frozen=True)
class TinyModel:
    """Embedding graph, head graph and metadata of a tiny embedding+head model, plus its known answer.

    The embedding kernel is zero, so every patch's embedding is the embedding bias whatever the audio, and the
    head's output per patch is exactly ``expected`` (computed here in float64 from the same weights).
    """

    files: dict[str, bytes]
    classes: tuple[str, ...]
    expected: np.ndarray


def _activate(x: np.ndarray, activation: str) -> np.ndarray:
    """Softmax / Sigmoid / Identity in float64."""
    if activation == "Softmax":
        e = np.exp(x - x.max())
        return e / e.sum()
    if activation == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    return x


def tiny_model(
    embedding: str = "msd-musicnn",
    classes: Sequence[str] = ("happy", "non_happy"),
    activation: str = "Softmax",
    kind: str = "multi-class classifier",
    seed: int = 0,
    dims: int = 8,
) -> TinyModel:
    """A constant-embedding model for ``embedding`` ('msd-musicnn' or 'discogs-effnet') with a known output."""
    rng = np.random.default_rng(seed)
    bias = rng.normal(0, 0.5, 2 * dims).astype(np.float32)
    kernel = rng.normal(0, 0.5, (dims, len(classes))).astype(np.float32)
    head_bias = rng.normal(0, 0.5, len(classes)).astype(np.float32)
    if embedding == "msd-musicnn":
        emb_graph = musicnn_like(np.zeros((96, dims), np.float32), bias[:dims])
        vector = bias[:dims]
    else:  # effnet: the embedding is output 1 of the split, i.e. the second half of the dense layer
        emb_graph = effnet_like(np.zeros((96, 2 * dims), np.float32), bias)
        vector = bias[dims:]
    output = {"Softmax": "model/Softmax", "Sigmoid": "model/Sigmoid", "Identity": "model/Identity"}[activation]
    logits = vector.astype(np.float64) @ kernel.astype(np.float64) + head_bias.astype(np.float64)
    return TinyModel(
        files={
            "embedding": emb_graph,
            "head": head(kernel, head_bias, activation, output, "model/Placeholder"),
            "metadata": metadata(classes, "model/Placeholder", output, kind, dims),
        },
        classes=tuple(classes),
        expected=_activate(logits, activation),
    )
