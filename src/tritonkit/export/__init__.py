"""PyTorch sources of the spec to checked ONNX: export with the declared dynamic axes, prove
each axis dynamic, compare ONNX Runtime with PyTorch, and record how.

Importing this package does not import torch (nor onnx or onnxruntime): they load when an
export runs. `export_source(model, out_dir, base_dir=...)` is the entry point; the builder
caches its result by `export_inputs(model, base_dir=...)`.
"""

from tritonkit.export.example_data import example_arrays
from tritonkit.export.export_checks import ExportChecks, check_export
from tritonkit.export.pytorch_export import EXPORTER_REASONS, export_onnx
from tritonkit.export.record import (
    EXPORT_RECORD_NAME,
    EXPORTED_ONNX_NAME,
    ExportRecord,
    read_export_record,
)
from tritonkit.export.source import factory_module_file, load_pytorch_model
from tritonkit.export.workflow import export_inputs, export_source

__all__ = [
    "EXPORTED_ONNX_NAME",
    "EXPORTER_REASONS",
    "EXPORT_RECORD_NAME",
    "ExportChecks",
    "ExportRecord",
    "check_export",
    "example_arrays",
    "export_inputs",
    "export_onnx",
    "export_source",
    "factory_module_file",
    "load_pytorch_model",
    "read_export_record",
]
