"""Read a frozen TensorFlow GraphDef (.pb) without TensorFlow: nodes, their inputs and their constants.

A minimal protobuf wire-format decoder for the messages of tensorflow/core/framework/{graph,node_def,
attr_value,tensor,tensor_shape}.proto; enough to list node names and compare Const tensors with other
copies of the same weights (tools/mtg/compare_backbone.py). Nothing here runs a graph.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.tf_graph import varint, wire_fields

# TensorFlow DataType enum → numpy dtype (types.proto)
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}
Fields = dict[int, list[int | bytes]]


def fields(data: bytes) -> Fields:
    """Split one message into field number → raw values (ints for varint/fixed, bytes for length-delimited;
    fixed64 as a signed int64)."""
    out: Fields = {}
    for number, wire, value in wire_fields(memoryview(data)):
        if isinstance(value, memoryview):
            out.setdefault(number, []).append(bytes(value))
        else:
            out.setdefault(number, []).append(value - (1 << 64) if wire == 1 and value >= 1 << 63 else value)
    return out


def _packed(values: list[int | bytes], fmt: str) -> list[float | int]:
    """Repeated numeric field values, whether packed (one bytes blob) or not."""
    result: list[float | int] = []
    for v in values:
        if isinstance(v, bytes):
            if fmt == "varint":
                pos = 0
                while pos < len(v):
                    item, pos = varint(v, pos)
                    result.append(item)
            else:
                result.extend(struct.unpack(f"<{len(v) // 4}{fmt}", v))
        elif fmt == "f":
            result.append(struct.unpack("<f", struct.pack("<I", v))[0])
        else:
            result.append(v)
    return result


def tensor(data: bytes) -> np.ndarray | None:
    """A TensorProto as a numpy array (None for dtypes this reader does not need, e.g. strings)."""
    f = fields(data)
    dtype = DTYPES.get(int(f.get(1, [0])[0]))
    if dtype is None:
        return None
    shape_fields = fields(f[2][0]) if 2 in f else {}
    shape = [_signed(fields(d).get(1, [0])[0]) for d in shape_fields.get(2, [])]
    if 4 in f:  # tensor_content: raw little-endian bytes
        return np.frombuffer(f[4][0], dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)
    if dtype == np.float32:
        values = _packed(f.get(5, []), "f")
    elif dtype == np.int64:
        values = [_signed(v) for v in _packed(f.get(10, []), "varint")]
    elif dtype == np.bool_:
        values = _packed(f.get(11, []), "varint")
    else:
        values = [_signed(v) for v in _packed(f.get(7, []), "varint")]
    count = int(np.prod(shape)) if shape else 1
    if len(values) == 1 and count > 1:  # TF stores a splat as one value
        values = values * count
    return np.array(values, dtype=dtype).reshape(shape)


def _signed(value: int | bytes) -> int:
    """Interpret a varint as a two's-complement int64."""
    assert isinstance(value, int)
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class Node:
    """One NodeDef: name, op, inputs, and the attributes this reader decodes (raw AttrValue fields)."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Fields] = field(default_factory=dict)

    def value(self) -> np.ndarray | None:
        """The tensor of a Const node."""
        attr = self.attrs.get("value")
        return tensor(attr[8][0]) if attr and 8 in attr else None  # type: ignore[arg-type]

    def float_attr(self, name: str) -> float | None:
        """A float attribute (AttrValue.f), e.g. FusedBatchNorm's epsilon."""
        attr = self.attrs.get(name)
        if not attr or 4 not in attr:
            return None
        return struct.unpack("<f", struct.pack("<I", attr[4][0]))[0]


@dataclass
class Graph:
    """A GraphDef's nodes in file order and its producer version."""

    nodes: list[Node]
    producer: int

    def consts(self) -> dict[str, np.ndarray]:
        """Every Const node's tensor by node name (skipping dtypes this reader does not decode)."""
        out = {}
        for node in self.nodes:
            if node.op == "Const":
                value = node.value()
                if value is not None:
                    out[node.name] = value
        return out

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(n for n in self.nodes if n.name == name)


def read_graph(path: Path) -> Graph:
    """Parse a binary GraphDef: node = 1 (name 1, op 2, input 3, attr 5), versions = 4 (producer 1)."""
    top = fields(path.read_bytes())
    nodes = []
    for raw in top.get(1, []):
        f = fields(raw)  # type: ignore[arg-type]
        attrs = {}
        for entry in f.get(5, []):
            e = fields(entry)  # type: ignore[arg-type]
            attrs[e[1][0].decode()] = fields(e[2][0]) if 2 in e else {}  # type: ignore[union-attr,arg-type]
        nodes.append(
            Node(
                name=f[1][0].decode(),  # type: ignore[union-attr]
                op=f[2][0].decode(),  # type: ignore[union-attr]
                inputs=[i.decode() for i in f.get(3, [])],  # type: ignore[union-attr]
                attrs=attrs,
            )
        )
    versions = fields(top[4][0]) if 4 in top else {}  # type: ignore[arg-type]
    return Graph(nodes, int(versions.get(1, [0])[0]))


def placeholders(graph: Graph) -> dict[str, list[int]]:
    """Placeholder name → declared shape (-1 = any; [] when the rank is unknown)."""
    out = {}
    for node in graph.nodes:
        if node.op == "Placeholder":
            shape = node.attrs.get("shape", {})
            dims = fields(shape[7][0]).get(2, []) if 7 in shape else []  # type: ignore[arg-type]
            out[node.name] = [_signed(fields(d).get(1, [0])[0]) for d in dims]  # type: ignore[arg-type]
    return out


def sinks(graph: Graph) -> list[str]:
    """Nodes that nothing consumes (the candidate outputs), Consts and Placeholders excluded."""
    used = {i.split(":")[0].lstrip("^") for n in graph.nodes for i in n.inputs}
    return [n.name for n in graph.nodes if n.name not in used and n.op not in ("Const", "Placeholder")]
