"""Provenance manifests: a `manifest.json` beside every built artifact in a version directory."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from tritonkit.errors import ToolkitError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


class ArtifactKind(str, Enum):
    ONNX = "onnx"
    TENSORRT_PLAN = "tensorrt_plan"


@dataclass(frozen=True, kw_only=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True, kw_only=True)
class Manifest:
    artifact: str  # file name inside the version directory, e.g. "model.plan"
    kind: ArtifactKind
    artifact_sha256: str
    # the spec's fp32 ONNX, relative to the spec's folder, or `pytorch:<factory>` for a model
    # exported from a PyTorch source (see `export`)
    source_onnx: str
    source_onnx_sha256: str
    spec_sha256: str
    precision: str
    # the ONNX the artifact was made from (for a plan: the one TensorRT parsed, which is the
    # fp16/int8 transform of source_onnx for those precisions)
    parsed_onnx: str = ""
    parsed_onnx_sha256: str = ""
    profiles: tuple[dict[str, Any], ...] = ()
    tools: dict[str, str] = field(default_factory=dict)  # onnx, onnxruntime, tensorrt, cuda, ...
    gpu: GpuInfo | None = None
    options: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    built_at: str = ""  # ISO 8601, UTC
    build_seconds: float = 0.0
    reproduce: str = ""  # for plans, an equivalent trtexec command line (relative paths)
    server_flags: tuple[str, ...] = ()  # flags tritonserver needs to load this artifact
    # a PyTorch source's export record (tritonkit.export.ExportRecord.to_dict()): factory,
    # module and weights sha256, exporter and why, torch version, the checks against PyTorch
    export: dict[str, Any] | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["kind"] = self.kind.value
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def relative_to(path: Path, base: Path) -> str:
    """`path` relative to `base` when inside it, else its name: provenance never records a
    path of the machine that built the artifact."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.name


def write_manifest(manifest: Manifest, version_dir: Path) -> Path:
    path = version_dir / MANIFEST_NAME
    path.write_text(manifest.to_json(), encoding="utf-8")
    log.debug("wrote %s", path)
    return path


def read_manifest(path: Path) -> Manifest:
    """Read a manifest.json; raises ToolkitError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        gpu = data.get("gpu")
        return Manifest(
            artifact=data["artifact"],
            kind=ArtifactKind(data["kind"]),
            artifact_sha256=data["artifact_sha256"],
            source_onnx=data["source_onnx"],
            source_onnx_sha256=data["source_onnx_sha256"],
            spec_sha256=data["spec_sha256"],
            precision=data["precision"],
            parsed_onnx=data.get("parsed_onnx", ""),
            parsed_onnx_sha256=data.get("parsed_onnx_sha256", ""),
            profiles=tuple(data.get("profiles", ())),
            tools=dict(data.get("tools", {})),
            gpu=GpuInfo(**gpu) if gpu else None,
            options=dict(data.get("options", {})),
            accuracy=data.get("accuracy"),
            built_at=data.get("built_at", ""),
            build_seconds=float(data.get("build_seconds", 0.0)),
            reproduce=data.get("reproduce", ""),
            server_flags=tuple(data.get("server_flags", ())),
            export=data.get("export"),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ToolkitError(f"{path}: not a valid build manifest ({e})") from e
