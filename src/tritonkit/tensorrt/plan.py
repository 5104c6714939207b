"""TensorRT plans for the `tensorrt` target, built with Polygraphy's loaders.

Profiles are derived, never hand-written: the batch axis of every optimization profile comes
from the spec's `max_batch_size` (the same field that becomes `max_batch_size` in config.pbtxt),
and every other dim comes from the ONNX model. The network is strongly typed: precision lives in
the ONNX model (fp16 weights and ops, or explicit Q/DQ), which works on TensorRT 10 and 11 alike.

TensorRT and Polygraphy are imported lazily, so this module (profiles, the equivalent trtexec
command, server flags, cache paths) works on machines without TensorRT or a GPU. Plans are tied
to the TensorRT version and the GPU architecture, so the real build runs in the NGC TensorRT
container of the same release as the Triton container that serves the plan.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonkit.build.manifest import GpuInfo
from tritonkit.errors import EngineBuildError
from tritonkit.spec import HardwareCompatibility, ModelSpec
from tritonkit.tensorrt.profiles import ShapeProfile, derive_profiles

if TYPE_CHECKING:
    from tritonkit.build.onnx_inspect import OnnxModelInfo

log = logging.getLogger(__name__)

MIB = 1 << 20

# The release is pinned in one place later (docker/versions.env); this is the shape of the command.
CONTAINER_BUILD_COMMAND = (
    "docker run --gpus all -v $PWD:/work -w /work nvcr.io/nvidia/tensorrt:<release>-py3 "
    "tritonkit build --spec models.yaml --target tensorrt --out model_repository"
)
_CONTAINER_HINT = (
    "Build TensorRT plans in the NGC TensorRT container of the same release as the Triton "
    f"container that serves them, for example: {CONTAINER_BUILD_COMMAND}"
)

# trtexec spellings of the hardware-compatibility levels (--hardwareCompatibilityLevel=...).
_TRTEXEC_HW_LEVEL: dict[HardwareCompatibility, str] = {
    HardwareCompatibility.AMPERE_PLUS: "ampere+",
    HardwareCompatibility.SAME_COMPUTE_CAPABILITY: "sameComputeCapability",
}
# Member names of tensorrt.HardwareCompatibilityLevel.
_TRT_HW_LEVEL: dict[HardwareCompatibility, str] = {
    HardwareCompatibility.AMPERE_PLUS: "AMPERE_PLUS",
    HardwareCompatibility.SAME_COMPUTE_CAPABILITY: "SAME_COMPUTE_CAPABILITY",
}

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """Everything that decides how a plan is built (recorded in the manifest)."""

    profiles: tuple[ShapeProfile, ...]
    workspace_bytes: int
    builder_optimization_level: int
    strongly_typed: bool = True
    version_compatible: bool = False
    hardware_compatibility: HardwareCompatibility = HardwareCompatibility.NONE
    timing_cache: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "profiles": [p.as_dict() for p in self.profiles],
            "workspace_bytes": self.workspace_bytes,
            "builder_optimization_level": self.builder_optimization_level,
            "strongly_typed": self.strongly_typed,
            "tf32": False,
            "version_compatible": self.version_compatible,
            "hardware_compatibility": self.hardware_compatibility.value,
            # the file name only: the cache's folder is the build machine's, not the plan's
            "timing_cache": self.timing_cache.name if self.timing_cache is not None else None,
        }


def plan_options(model: ModelSpec, info: OnnxModelInfo, *, timing_cache: Path | None,
                 fed: Mapping[str, int] | None = None) -> PlanOptions:
    """The plan's options: profiles from the spec and the ONNX model (`derive_profiles`; `fed`
    is what the pipeline feeds each input, `fed_axis_bounds`), the rest from `tensorrt:`."""
    trt_options = model.tensorrt
    return PlanOptions(
        profiles=derive_profiles(model, info, fed=fed),
        workspace_bytes=trt_options.workspace_mib * MIB,
        builder_optimization_level=trt_options.builder_optimization_level,
        strongly_typed=True,
        version_compatible=trt_options.version_compatible,
        hardware_compatibility=trt_options.hardware_compatibility,
        timing_cache=timing_cache,
    )


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True, kw_only=True)
class TensorRTEnvironment:
    """The TensorRT installation and GPU a plan is built with (plans are tied to both)."""

    tensorrt_version: str
    cuda_version: str | None
    gpu_name: str
    compute_capability: str  # "9.0"

    @property
    def gpu(self) -> GpuInfo:
        return GpuInfo(name=self.gpu_name, compute_capability=self.compute_capability)


def parse_nvidia_smi_gpus(text: str) -> list[GpuInfo]:
    """Parse `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` output."""
    gpus: list[GpuInfo] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, capability = line.rpartition(",")
        name, capability = name.strip(), capability.strip()
        if not sep or not name or not re.fullmatch(r"\d+\.\d+", capability):
            raise EngineBuildError(f"cannot read the GPU from nvidia-smi output line {line!r}")
        gpus.append(GpuInfo(name=name, compute_capability=capability))
    return gpus


_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Fa-f-]+$")
# CUDA numbers GPUs fastest first unless told otherwise; nvidia-smi numbers them by PCI bus.
PCI_BUS_ORDER = "PCI_BUS_ID"


def _nvidia_smi(executable: str, *args: str) -> str:
    command = [executable, "--query-gpu=name,compute_cap", "--format=csv,noheader", *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineBuildError(f"no NVIDIA GPU is visible: nvidia-smi failed: {e}") from e
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise EngineBuildError("no NVIDIA GPU is visible: nvidia-smi exited with "
                               f"{result.returncode}: {reason[0] if reason else 'no output'}")
    return result.stdout


def detect_gpu() -> GpuInfo:
    """The GPU TensorRT will build on (CUDA device 0 of this process), as nvidia-smi reports it.

    CUDA_VISIBLE_DEVICES may name it by UUID (exact) or by index. An index means the same GPU
    to CUDA and to nvidia-smi only in PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID, which
    `probe_tensorrt` sets when unset); in CUDA's default fastest-first order an index on a
    machine with different GPUs is refused. Raises EngineBuildError when no GPU is visible.
    """
    executable = shutil.which("nvidia-smi")
    if executable is None:
        raise EngineBuildError("no NVIDIA GPU is visible: nvidia-smi is not on PATH (run the "
                               "container with --gpus all)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = "0" if visible is None else visible.split(",")[0].strip()
    if not first or first == "-1":
        raise EngineBuildError(f"no NVIDIA GPU is visible: CUDA_VISIBLE_DEVICES is {visible!r}")
    if not _GPU_UUID.match(first) and os.environ.get("CUDA_DEVICE_ORDER") != PCI_BUS_ORDER:
        every = parse_nvidia_smi_gpus(_nvidia_smi(executable))
        if len(set(every)) > 1:
            raise EngineBuildError(
                f"cannot tell which GPU CUDA device {first} is: CUDA numbers GPUs fastest first "
                "and nvidia-smi by PCI bus, and this machine has different GPUs "
                f"({', '.join(sorted({g.name for g in every}))}). Set CUDA_DEVICE_ORDER="
                f"{PCI_BUS_ORDER}, or name the GPU by UUID in CUDA_VISIBLE_DEVICES")
    gpus = parse_nvidia_smi_gpus(_nvidia_smi(executable, f"--id={first}"))
    if not gpus:
        raise EngineBuildError("no NVIDIA GPU is visible: nvidia-smi lists no GPU")
    return gpus[0]


def probe_tensorrt() -> TensorRTEnvironment:
    """Find TensorRT and the GPU; raises EngineBuildError naming what is missing and the fix.

    Sets CUDA_DEVICE_ORDER=PCI_BUS_ID for this process when unset (before CUDA starts), so that
    a GPU index means the same device to CUDA and to nvidia-smi.
    """
    os.environ.setdefault("CUDA_DEVICE_ORDER", PCI_BUS_ORDER)
    missing: list[str] = []
    tensorrt_version: str | None = None
    try:
        trt = importlib.import_module("tensorrt")
        tensorrt_version = str(trt.__version__)
    except ImportError as e:
        missing.append(f"the TensorRT Python package cannot be imported ({e}); it cannot be "
                       "installed from PyPI on these machines")
    gpu: GpuInfo | None = None
    try:
        gpu = detect_gpu()
    except EngineBuildError as e:
        missing.append(str(e))
    if tensorrt_version is None or gpu is None:
        raise EngineBuildError(
            "cannot build TensorRT plans here: " + "; ".join(missing) + ". " + _CONTAINER_HINT)
    # NGC containers set CUDA_VERSION to the CUDA toolkit they ship.
    environment = TensorRTEnvironment(
        tensorrt_version=tensorrt_version,
        cuda_version=os.environ.get("CUDA_VERSION") or None,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
    )
    log.info("TensorRT %s on %s (compute capability %s)", environment.tensorrt_version,
             environment.gpu_name, environment.compute_capability)
    return environment


def timing_cache_path(cache_dir: Path, env: TensorRTEnvironment) -> Path:
    """One timing cache per TensorRT version and GPU (tactic timings are valid for no other)."""
    key = f"trt{env.tensorrt_version}_{env.gpu_name}_cc{env.compute_capability}"
    return cache_dir / f"timing_{_UNSAFE_FILE_CHARS.sub('_', key).strip('_')}.cache"


# --------------------------------------------------------------------------- commands and flags


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _shape_flags(profile: ShapeProfile) -> list[str]:
    flags = []
    for flag, pick in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
        spec = ",".join(f"{name}:{_shape_text(getattr(shape_range, pick))}"
                        for name, shape_range in profile.shapes.items())
        flags.append(f"{flag}={spec}")
    return flags


def trtexec_command(onnx_path: Path, plan_path: Path, options: PlanOptions) -> str:
    """An equivalent trtexec command line (for the manifest; build_engine does not run it).

    One profile is given as plain --minShapes/--optShapes/--maxShapes. Several profiles use
    trtexec's `--profile=N` followed directly by that profile's three shape flags (TensorRT 10
    trtexec). A static single profile (an unbatched model) needs no shape flags. TF32 is off,
    as in build_engine, so fp32 layers compute in fp32 like the ONNX Runtime accuracy checks.
    """
    argv = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}", "--skipInference"]
    if options.strongly_typed:
        argv.append("--stronglyTyped")
    argv.append("--noTF32")
    if len(options.profiles) == 1:
        profile = options.profiles[0]
        if not all(r.is_static for r in profile.shapes.values()):
            argv.extend(_shape_flags(profile))
    else:
        for index, profile in enumerate(options.profiles):
            argv.append(f"--profile={index}")
            argv.extend(_shape_flags(profile))
    workspace = (f"{options.workspace_bytes // MIB}M" if options.workspace_bytes % MIB == 0
                 else f"{options.workspace_bytes}B")
    argv.append(f"--memPoolSize=workspace:{workspace}")
    argv.append(f"--builderOptimizationLevel={options.builder_optimization_level}")
    if options.timing_cache is not None:
        argv.append(f"--timingCacheFile={options.timing_cache}")
    if options.version_compatible:
        argv.append("--versionCompatible")
    level = _TRTEXEC_HW_LEVEL.get(options.hardware_compatibility)
    if level is not None:
        argv.append(f"--hardwareCompatibilityLevel={level}")
    return shlex.join(argv)


def server_flags(options: PlanOptions) -> tuple[str, ...]:
    """tritonserver flags this plan needs: version-compatible plans carry a lean runtime that
    the TensorRT backend only loads when told to. Hardware compatibility needs no flag."""
    if options.version_compatible:
        return ("--backend-config=tensorrt,version-compatible=true",)
    return ()


# --------------------------------------------------------------------------- build


def _hardware_level(trt: Any, level: HardwareCompatibility) -> Any:
    """The tensorrt.HardwareCompatibilityLevel member, or None for TensorRT's default."""
    name = _TRT_HW_LEVEL.get(level)
    if name is None:
        return None
    member = getattr(trt.HardwareCompatibilityLevel, name, None)
    if member is None:
        raise EngineBuildError(
            f"hardware_compatibility {level.value!r} needs tensorrt.HardwareCompatibilityLevel."
            f"{name}, which TensorRT {trt.__version__} lacks; choose another level or build in "
            "the container of a release whose TensorRT has it")
    return member


def build_engine(onnx_path: Path, plan_path: Path, options: PlanOptions) -> Path:
    """Build a strongly typed TensorRT plan from `onnx_path` and write it atomically.

    TensorRT serializes the plan directly (no engine is deserialized on the way). The bytes go
    to a temporary file beside `plan_path` and are moved into place, so a failed build never
    leaves a partial plan. The timing cache (if any) is loaded before and updated after the
    build. Raises EngineBuildError naming the ONNX file and the reason.
    """
    try:
        trt = importlib.import_module("tensorrt")
        from polygraphy.backend.common import save_bytes  # noqa: PLC0415
        from polygraphy.backend.trt import (  # noqa: PLC0415  (TensorRT only when building)
            CreateConfig,
            Profile,
            engine_bytes_from_network,
            network_from_onnx_path,
        )
        from polygraphy.exception import PolygraphyException  # noqa: PLC0415
    except ImportError as e:
        raise EngineBuildError(
            f"cannot build a TensorRT plan from {onnx_path}: {e}. {_CONTAINER_HINT}") from e

    cache = str(options.timing_cache) if options.timing_cache is not None else None
    if options.timing_cache is not None:
        options.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("building TensorRT plan %s from %s (%d profile(s), workspace %d MiB, level %d)",
             plan_path, onnx_path, len(options.profiles), options.workspace_bytes // MIB,
             options.builder_optimization_level)
    fd, tmp_name = tempfile.mkstemp(dir=plan_path.parent, prefix=f".{plan_path.name}.",
                                    suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        profiles = []
        for profile in options.profiles:
            polygraphy_profile = Profile()
            for name, shape_range in profile.shapes.items():
                polygraphy_profile.add(name, min=shape_range.min, opt=shape_range.opt,
                                       max=shape_range.max)
            profiles.append(polygraphy_profile)
        network = network_from_onnx_path(str(onnx_path), strongly_typed=options.strongly_typed)
        config = CreateConfig(
            profiles=profiles,
            memory_pool_limits={trt.MemoryPoolType.WORKSPACE: options.workspace_bytes},
            builder_optimization_level=options.builder_optimization_level,
            load_timing_cache=cache,
            version_compatible=options.version_compatible,
            hardware_compatibility_level=_hardware_level(trt, options.hardware_compatibility),
            tf32=False,
        )
        plan = engine_bytes_from_network(network, config=config, save_timing_cache=cache)
        save_bytes(plan, path=str(tmp_path))
        os.replace(tmp_path, plan_path)
    # Polygraphy reports failures as PolygraphyException; TensorRT's bindings raise RuntimeError,
    # TypeError and AttributeError (an API this TensorRT lacks); writing the plan raises OSError.
    except (PolygraphyException, RuntimeError, TypeError, ValueError, AttributeError,
            OSError) as e:
        raise EngineBuildError(
            f"TensorRT {getattr(trt, '__version__', '?')} could not build a plan from "
            f"{onnx_path}: {e}") from e
    finally:
        tmp_path.unlink(missing_ok=True)
    log.info("wrote TensorRT plan %s (%d bytes)", plan_path, plan_path.stat().st_size)
    return plan_path
