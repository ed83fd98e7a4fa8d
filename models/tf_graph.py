"""Read a frozen TensorFlow GraphDef's node names without TensorFlow: a format check for downloaded graphs.

A GraphDef is a protobuf message (``node = 1`` repeated NodeDef; NodeDef ``name = 1``, ``op = 2``); walking its
wire format is enough to tell a real graph from an HTML error page or a truncated download, and to check that the
nodes a model's metadata names exist, before the file is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode one protobuf varint at ``pos``; returns (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def wire_fields(data: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """Walk protobuf wire-format fields: (number, wire type, payload or unsigned integer); raises ValueError when
    malformed. The one protobuf reader of the project (tools/mtg/graphdef.py decodes whole graphs with it)."""
    pos = 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = varint(data, pos)
            if pos + length > len(data):
                raise ValueError("length-delimited field runs past the end")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(data):
                raise ValueError("fixed-width field runs past the end")
            yield number, wire, int.from_bytes(data[pos : pos + width], "little")
            pos += width
        else:
            raise ValueError(f"unsupported wire type {wire}")


def graph_node_names(data: bytes) -> set[str]:
    """Names of the nodes of a frozen TensorFlow GraphDef (node = 1; NodeDef name = 1, op = 2).

    Raises ValueError when ``data`` is not a plausible GraphDef (an HTML error page, a truncated file ...).
    """
    names: set[str] = set()
    for number, wire, payload in wire_fields(memoryview(data)):
        if number == 1:
            if wire != 2:
                raise ValueError("GraphDef.node is not a message")
            assert isinstance(payload, memoryview)
            name = op = None
            for field, kind, value in wire_fields(payload):
                if field in (1, 2) and kind == 2:
                    assert isinstance(value, memoryview)
                    text = bytes(value).decode("utf-8")
                    name, op = (text, op) if field == 1 else (name, text)
            if not name or not op:
                raise ValueError("a NodeDef without a name or op")
            names.add(name)
    if not names:
        raise ValueError("no nodes")
    return names


def _node(tensor: str) -> str:
    """Node name of a tensor name (``PartitionedCall:1`` → ``PartitionedCall``)."""
    return tensor.rsplit(":", 1)[0] if tensor.rsplit(":", 1)[-1].isdigit() else tensor


def graph_file_node_names(path: Path) -> set[str]:
    """``graph_node_names`` of a downloaded .pb, with a message that says what the file is not."""
    try:
        return graph_node_names(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path.name} is not a TensorFlow GraphDef ({exc})") from None
