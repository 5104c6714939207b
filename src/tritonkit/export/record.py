"""The export record: how a PyTorch source became ONNX, kept as JSON beside the exported ONNX."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tritonkit.errors import ExportError

EXPORT_RECORD_NAME = "export.json"
EXPORTED_ONNX_NAME = "model.onnx"


@dataclass(frozen=True, kw_only=True)
class ExportRecord:
    """What was exported, how, and how the export was checked. Paths are relative to the
    spec's folder (or bare file names): no path of the exporting machine appears."""

    factory: str  # module:function
    module_file: str  # the factory's module file
    module_sha256: str | None
    weights: str | None  # the state_dict file
    weights_sha256: str | None
    exporter: str  # ExporterKind value
    exporter_reason: str
    opset: int
    tolerance: float
    tools: dict[str, str] = field(default_factory=dict)  # torch, onnxscript, onnx, onnxruntime
    inputs: tuple[dict[str, Any], ...] = ()  # name, dtype, shape, dynamic_axes
    outputs: tuple[str, ...] = ()
    onnx_sha256: str = ""
    checks: tuple[str, ...] = ()  # one line per comparison of ONNX Runtime with PyTorch
    max_abs_diff: float = 0.0  # the largest difference over every check
    export_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("inputs", "outputs", "checks"):
            data[key] = list(data[key])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def describe(self) -> str:
        return (f"exported from pytorch:{self.factory} ({self.exporter}, opset {self.opset}, "
                f"max abs diff {self.max_abs_diff:.2g} vs PyTorch over {len(self.checks)} "
                "checks)")


def write_export_record(record: ExportRecord, directory: Path) -> Path:
    path = directory / EXPORT_RECORD_NAME
    path.write_text(record.to_json(), encoding="utf-8")
    return path


def read_export_record(path: Path) -> ExportRecord:
    """Read an export.json; raises ExportError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ExportRecord(
            factory=data["factory"], module_file=data["module_file"],
            module_sha256=data.get("module_sha256"), weights=data.get("weights"),
            weights_sha256=data.get("weights_sha256"), exporter=data["exporter"],
            exporter_reason=data["exporter_reason"], opset=int(data["opset"]),
            tolerance=float(data["tolerance"]), tools=dict(data.get("tools", {})),
            inputs=tuple(data.get("inputs", ())), outputs=tuple(data.get("outputs", ())),
            onnx_sha256=data.get("onnx_sha256", ""), checks=tuple(data.get("checks", ())),
            max_abs_diff=float(data.get("max_abs_diff", 0.0)),
            export_seconds=float(data.get("export_seconds", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{path}: not a valid export record ({e})") from e
