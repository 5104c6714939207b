"""A model's PyTorch source to a checked ONNX file: load, export, prove, compare, record.

`export_source(model, out_dir, base_dir=...)` writes `model.onnx` and `export.json` into
`out_dir`; `export_inputs` lists everything the result depends on, for a cache key (the
builder caches exports by it). Neither imports torch until an export actually runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

from tritonkit.errors import ExportError
from tritonkit.export.export_checks import check_export
from tritonkit.export.pytorch_export import EXPORTER_REASONS, export_onnx
from tritonkit.export.record import (
    EXPORTED_ONNX_NAME,
    ExportRecord,
    write_export_record,
)
from tritonkit.export.source import factory_module_file, load_pytorch_model
from tritonkit.hashing import sha256_file
from tritonkit.spec import ExampleInput, ModelSpec, PyTorchSource

log = logging.getLogger(__name__)

# Bump when a change here changes what an export produces: it invalidates cached exports.
EXPORT_FORMAT = 1
_TOOLS = ("torch", "onnxscript", "onnx", "onnxruntime")


def _source(model: ModelSpec) -> PyTorchSource:
    if model.pytorch is None:
        raise ExportError(f"model {model.name!r} has no PyTorch source (it names an ONNX file)")
    return model.pytorch


def _versions() -> dict[str, str]:
    found = {}
    for package in _TOOLS:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _portable(path: Path, base_dir: Path) -> str:
    """`path` relative to the spec's folder when inside it, else its name."""
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.name


def _canonical_input(tensor: ExampleInput) -> dict[str, Any]:
    return {"name": tensor.name, "dtype": tensor.dtype.value, "shape": list(tensor.shape),
            "dynamic_axes": {str(axis): {"name": d.name, "probe": d.probe}
                             for axis, d in sorted(tensor.dynamic_axes.items())},
            "high": tensor.high}


def export_inputs(model: ModelSpec, *, base_dir: Path) -> dict[str, Any]:
    """What the export of `model` depends on (JSON-able): the factory module's source text,
    the weights file, the declared inputs, outputs and options, and the exporter versions.

    Raises ExportError when the weights file is missing.
    """
    source = _source(model)
    module = factory_module_file(source.factory, base_dir)
    weights_sha = None
    if source.weights is not None:
        if not source.weights.is_file():
            raise ExportError(f"model {model.name!r} (pytorch:{source.factory}): weights file "
                              f"{source.weights} not found")
        weights_sha = sha256_file(source.weights)
    return {
        "format": EXPORT_FORMAT,
        "factory": source.factory,
        "module_sha256": sha256_file(module) if module else None,
        "weights_sha256": weights_sha,
        "inputs": [_canonical_input(t) for t in source.inputs],
        "outputs": list(source.outputs),
        "opset": source.opset,
        "exporter": source.exporter.value,
        "tolerance": source.tolerance,
        "max_batch_size": model.max_batch_size,
        "tools": _versions(),
    }


def export_source(model: ModelSpec, out_dir: Path, *, base_dir: Path,
                  inputs: dict[str, Any] | None = None) -> ExportRecord:
    """Export `model`'s PyTorch source to `out_dir/model.onnx`, prove its declared axes
    dynamic, check it against PyTorch, and write `out_dir/export.json`. `inputs` is
    `export_inputs(model, base_dir=base_dir)` where the caller has it (the weights are then
    not hashed again). Raises ExportError."""
    source = _source(model)
    where = f"model {model.name!r} (pytorch:{source.factory})"
    if importlib.util.find_spec("torch") is None:
        raise ExportError(f"{where}: exporting a PyTorch source needs torch and onnxscript: "
                          "pip install 'tritonkit[export]'")
    started = time.monotonic()
    if inputs is None:
        inputs = export_inputs(model, base_dir=base_dir)
    module = factory_module_file(source.factory, base_dir)
    torch_model = load_pytorch_model(source, base_dir=base_dir, model_name=model.name)
    onnx_path = out_dir / EXPORTED_ONNX_NAME
    export_onnx(torch_model, source, onnx_path, model_name=model.name,
                max_batch_size=model.max_batch_size)
    checks = check_export(torch_model, onnx_path, source, model_name=model.name,
                          max_batch_size=model.max_batch_size)
    record = ExportRecord(
        factory=source.factory,
        module_file=_portable(module, base_dir) if module else "",
        module_sha256=inputs["module_sha256"],
        weights=_portable(source.weights, base_dir) if source.weights else None,
        weights_sha256=inputs["weights_sha256"],
        exporter=source.exporter.value,
        exporter_reason=EXPORTER_REASONS[source.exporter],
        opset=source.opset,
        tolerance=source.tolerance,
        tools=inputs["tools"],
        inputs=tuple(inputs["inputs"]),
        outputs=source.outputs,
        onnx_sha256=sha256_file(onnx_path),
        checks=checks.checks,
        max_abs_diff=checks.max_abs_diff,
        export_seconds=round(time.monotonic() - started, 3),
    )
    write_export_record(record, out_dir)
    log.info("%s: %s", model.name, record.describe())
    return record
