"""Extract one release's TensorRT surface from NVIDIA's sources in a release folder.

The folder holds `include/NvInferVersion.h`, `python/src/**/py*.cpp` (pybind11 bindings)
and `samples/common/sampleOptions.{cpp,h}` (trtexec's options), as in NVIDIA/TensorRT.
Preprocessor branches are taken as for the full `tensorrt` wheel and a Linux trtexec.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from tritonkit.errors import TensorRTApiError
from tritonkit.tensorrt.api.cpp_text import read_source, strip_comments
from tritonkit.tensorrt.api.pybind import read_bindings
from tritonkit.tensorrt.api.surface import TensorRTSurface, data_file_name
from tritonkit.tensorrt.api.trtexec_options import read_trtexec_flags

log = logging.getLogger(__name__)

# Macros defined when NVIDIA builds the full `tensorrt` Python package (the lean and dispatch
# packages leave EXPORT_ALL_BINDINGS off). Everything else is undefined (0), as in C: e.g.
# ENABLE_INETWORK_SERIALIZE (internal), TRT_WINML and _WIN32 (Windows), ENABLE_UNIFIED_BUILDER
# (the safety build of trtexec).
BINDING_DEFINES: Mapping[str, int] = {"EXPORT_ALL_BINDINGS": 1}
TRTEXEC_DEFINES: Mapping[str, int] = {}

_VERSION_PARTS = ("MAJOR", "MINOR", "PATCH", "BUILD")


def read_version(header: Path) -> str:
    """`10.8.0.43` from NvInferVersion.h (macros that point at other macros are resolved)."""
    try:
        text = strip_comments(header.read_text(encoding="utf-8"))
    except OSError as e:
        raise TensorRTApiError(f"cannot read {header}: {e}") from e
    defines = dict(re.findall(r"^\s*#\s*define\s+(\w+)[ \t]+(\S+)", text, re.MULTILINE))

    def resolve(name: str) -> str | None:
        value = defines.get(name)
        for _ in range(8):
            if value is None or value.isdigit():
                return value
            value = defines.get(value)
        return None

    parts = [resolve(f"NV_TENSORRT_{part}") for part in _VERSION_PARTS]
    if any(part is None for part in parts[:3]):
        raise TensorRTApiError(f"{header}: no NV_TENSORRT_MAJOR/MINOR/PATCH numbers")
    return ".".join(part for part in parts if part is not None)


def _read(path: Path, defines: Mapping[str, int], root: Path) -> tuple[str, str]:
    try:
        return str(path.relative_to(root)), read_source(path.read_text(encoding="utf-8"), defines)
    except OSError as e:
        raise TensorRTApiError(f"cannot read {path}: {e}") from e


def extract_surface(api_dir: Path) -> TensorRTSurface:
    """Parse one release folder (e.g. shared/third_party/tensorrt-api/v10.8.0)."""
    api_dir = Path(api_dir)
    version = read_version(api_dir / "include" / "NvInferVersion.h")
    binding_files = sorted((api_dir / "python" / "src").rglob("py*.cpp"))
    if not binding_files:
        raise TensorRTApiError(f"{api_dir}: no pybind11 sources under python/src")
    names = read_bindings(_read(p, BINDING_DEFINES, api_dir) for p in binding_files)
    options = api_dir / "samples" / "common" / "sampleOptions.cpp"
    where, cpp = _read(options, TRTEXEC_DEFINES, api_dir)
    _, header = _read(options.with_suffix(".h"), TRTEXEC_DEFINES, api_dir)
    flags = read_trtexec_flags(cpp, header, where)
    log.info("%s: TensorRT %s, %d enums, %d classes, %d trtexec flags", api_dir.name, version,
             len(names.enums), len(names.classes), len(flags))
    return TensorRTSurface(version=version, enums=names.enums, classes=names.classes,
                           functions=names.functions, trtexec_flags=flags,
                           module_attributes=names.module_attributes)


def release_folders(api_root: Path) -> list[Path]:
    """Release folders under `api_root` (those with include/NvInferVersion.h)."""
    if not Path(api_root).is_dir():
        raise TensorRTApiError(f"{api_root} is not a folder of TensorRT release sources")
    folders = sorted(p for p in Path(api_root).iterdir()
                     if (p / "include" / "NvInferVersion.h").is_file())
    if not folders:
        raise TensorRTApiError(f"{api_root}: no release folders (<tag>/include/NvInferVersion.h)")
    return folders


def extract_all(api_root: Path, out_dir: Path) -> list[Path]:
    """Write `tensorrt-<tag>.json` into `out_dir` for every release folder of `api_root`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for folder in release_folders(api_root):
        path = out_dir / data_file_name(folder.name)
        path.write_text(extract_surface(folder).to_json(), encoding="utf-8")
        written.append(path)
    return written
