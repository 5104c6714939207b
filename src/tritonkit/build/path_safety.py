"""Paths the builder writes or reads on a spec's behalf never leave their directory.

- `model_dir(root, name)`: the directory of one model in the repository being built; a name
  that is not a plain directory name (`..`, `a/b`, an absolute path, a symlink out) is refused.
- `check_external_data(onnx_path)`: every tensor of an ONNX model stored as external data
  must name a file inside the model's own directory; ONNX Runtime and TensorRT would otherwise
  read whatever file the model points at (`../../etc/shadow`).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx
from onnx.external_data_helper import uses_external_data

from tritonkit.errors import OnnxModelError, UnsafePathError
from tritonkit.spec import NAME_PATTERN

log = logging.getLogger(__name__)


def model_dir(root: Path, name: str) -> Path:
    """`root / name`, after checking that `name` is a safe model name that stays in `root`."""
    if not NAME_PATTERN.match(name):
        raise UnsafePathError(
            f"model name {name!r} is not a safe directory name: use 1-63 letters, digits, '_' "
            "or '-', starting with a letter or digit")
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise UnsafePathError(f"model name {name!r} resolves to {path}, outside {base}")
    return base / name


def _escapes(location: str) -> str | None:
    """Why an external-data location is unsafe in itself, or None."""
    if not location:
        return "is empty"
    if "\x00" in location:
        return "contains a NUL byte"
    for pure in (PurePosixPath(location), PureWindowsPath(location)):
        if pure.is_absolute() or pure.drive or pure.root:
            return "is an absolute path"
        if ".." in pure.parts:
            return "contains '..'"
    return None


def check_external_data(onnx_path: Path) -> tuple[Path, ...]:
    """The external-data files of an ONNX model, each checked to lie inside its directory.

    Reads only the graph structure (no tensor data is loaded). Raises UnsafePathError for a
    location that is absolute, climbs with '..' or resolves (through symlinks) outside the
    model's directory, and OnnxModelError when the model cannot be read.
    """
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, OSError, ValueError, ...
        raise OnnxModelError(f"{onnx_path}: cannot be read as ONNX: {e}") from e
    base = onnx_path.resolve().parent
    files: list[Path] = []
    for tensor in _all_tensors(model):
        if not uses_external_data(tensor):
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        problem = _escapes(location)
        resolved = (base / location).resolve() if problem is None else None
        if resolved is not None and not resolved.is_relative_to(base):
            problem = f"resolves to {resolved}"
        if problem is not None:
            raise UnsafePathError(
                f"{onnx_path}: tensor {tensor.name!r} keeps its data in {location!r}, which "
                f"{problem}; external data must be a file inside {base}")
        if resolved is not None and resolved not in files:
            files.append(resolved)
    if files:
        log.info("%s: %d external-data file(s) inside %s", onnx_path.name, len(files), base)
    return tuple(files)


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initializers and constant-attribute tensors of the graph and all its subgraphs."""
    tensors: list[onnx.TensorProto] = []
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        tensors.extend(graph.initializer)
        tensors.extend(sparse.values for sparse in graph.sparse_initializer)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
                tensors.extend(attribute.tensors)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)
    return tensors
