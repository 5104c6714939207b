"""Small edits of ONNX graphs shared by the int8 transform: read, write, insert nodes."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from tritonkit.errors import PrecisionError


def insert_after_producers(graph: onnx.GraphProto,
                            new_nodes: dict[str, list[onnx.NodeProto]]) -> None:
    """Place each new node list right after the node producing its tensor (first for inputs)."""
    ordered: list[onnx.NodeProto] = []
    inputs = {v.name for v in graph.input}
    for tensor in sorted(new_nodes):
        if tensor in inputs:
            ordered.extend(new_nodes.pop(tensor))
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(new_nodes.pop(out, []))
    del graph.node[:]
    graph.node.extend(ordered)


def load_model(path: Path, label: str) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except (OSError, ValueError, DecodeError) as e:
        raise PrecisionError(f"{label}: cannot read ONNX model {path}: {e}") from e


def save_model(model: onnx.ModelProto, path: Path, label: str) -> None:
    try:
        path.write_bytes(model.SerializeToString())
    except (OSError, ValueError) as e:
        raise PrecisionError(f"{label}: cannot write {path}: {e}") from e
