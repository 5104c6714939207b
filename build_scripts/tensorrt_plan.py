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

from build_scripts.errors import EngineBuildError
from build_scripts.manifest import GpuInfo
from build_scripts.spec import HardwareCompatibility, ModelSpec

if TYPE_CHECKING:
    from build_scripts.onnx_inspect import OnnxModelInfo, OnnxTensor

log = logging.getLogger(__name__)

MIB = 1 << 20

# The release is pinned in one place later (docker/versions.env); this is the shape of the command.
CONTAINER_BUILD_COMMAND = (
    "docker run --gpus all -v $PWD:/work -w /work nvcr.io/nvidia/tensorrt:<release>-py3 "
    "python -m build_scripts build --spec models.yaml --target tensorrt --out model_repository"
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
class ShapeRange:
    """min/opt/max of one input, full shapes including the batch axis."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True, kw_only=True)
class ShapeProfile:
    """One TensorRT optimization profile: input name -> shape range, in ONNX input order."""

    shapes: Mapping[str, ShapeRange]

    def as_dict(self) -> dict[str, dict[str, list[int]]]:
        return {name: shape_range.as_dict() for name, shape_range in self.shapes.items()}


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
            "timing_cache": str(self.timing_cache) if self.timing_cache is not None else None,
        }


def _static_dims(tensor: OnnxTensor, dims: tuple[int | str, ...], first_axis: int,
                 model: ModelSpec, info: OnnxModelInfo) -> tuple[int, ...]:
    """Dims that must be fixed in the ONNX; a symbolic/unknown one cannot be profiled."""
    fixed: list[int] = []
    for offset, dim in enumerate(dims):
        axis = first_axis + offset
        if isinstance(dim, str) or dim < 1:
            shown = repr(dim) if isinstance(dim, str) else "unknown (-1)"
            raise EngineBuildError(
                f"model {model.name!r} ({info.path.name}): input {tensor.name!r} dim {axis} is "
                f"{shown}, so no TensorRT optimization profile can be derived for it (only the "
                "batch axis comes from max_batch_size). Fix the size of that axis in the ONNX "
                "export (or wait for a spec field for extra dynamic axes)")
        fixed.append(dim)
    return tuple(fixed)


def _batch_ranges(model: ModelSpec) -> list[tuple[int, int, int]]:
    trt_options = model.tensorrt
    opt = trt_options.opt_batch_size or model.max_batch_size
    main = (1, opt, model.max_batch_size)
    return [main, *trt_options.extra_profile_batch_sizes]


def plan_options(model: ModelSpec, info: OnnxModelInfo, *,
                 timing_cache: Path | None) -> PlanOptions:
    """Derive the plan's options from the spec (batch axis) and the ONNX model (other dims).

    The main profile is batch min 1, opt `tensorrt.opt_batch_size` (default max_batch_size),
    max `max_batch_size`; `tensorrt.extra_profiles` add one profile each. For an unbatched
    model (max_batch_size 0) the single profile is the static shape of the ONNX inputs.
    """
    trt_options = model.tensorrt
    profiles: list[ShapeProfile] = []
    if model.max_batch_size == 0:
        if trt_options.extra_profile_batch_sizes:
            raise EngineBuildError(
                f"model {model.name!r}: tensorrt.extra_profiles need a batch axis, but "
                "max_batch_size is 0; remove extra_profiles or set max_batch_size")
        shapes = {}
        for tensor in info.inputs:
            dims = _static_dims(tensor, tensor.shape, 0, model, info)
            shapes[tensor.name] = ShapeRange(min=dims, opt=dims, max=dims)
        profiles.append(ShapeProfile(shapes=shapes))
    else:
        non_batch: dict[str, tuple[int, ...]] = {}
        for tensor in info.inputs:
            if not tensor.shape or not (isinstance(tensor.shape[0], str) or tensor.shape[0] == -1):
                leading = tensor.shape[0] if tensor.shape else "none (scalar)"
                raise EngineBuildError(
                    f"model {model.name!r} ({info.path.name}): max_batch_size is "
                    f"{model.max_batch_size} but input {tensor.name!r} has no dynamic leading "
                    f"(batch) axis (it is {leading}). Re-export with a dynamic batch axis, or "
                    "set max_batch_size: 0")
            non_batch[tensor.name] = _static_dims(tensor, tensor.shape[1:], 1, model, info)
        for low, opt, high in _batch_ranges(model):
            profiles.append(ShapeProfile(shapes={
                name: ShapeRange(min=(low, *dims), opt=(opt, *dims), max=(high, *dims))
                for name, dims in non_batch.items()
            }))
    return PlanOptions(
        profiles=tuple(profiles),
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


def detect_gpu() -> GpuInfo:
    """The GPU TensorRT will build on: the first visible device, as nvidia-smi reports it.

    Honours CUDA_VISIBLE_DEVICES (an index or a GPU UUID); raises EngineBuildError when no
    NVIDIA GPU is visible.
    """
    executable = shutil.which("nvidia-smi")
    if executable is None:
        raise EngineBuildError("no NVIDIA GPU is visible: nvidia-smi is not on PATH (run the "
                               "container with --gpus all)")
    command = [executable, "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        first = visible.split(",")[0].strip()
        if not first or first == "-1":
            raise EngineBuildError(
                f"no NVIDIA GPU is visible: CUDA_VISIBLE_DEVICES is {visible!r}")
        command.append(f"--id={first}")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineBuildError(f"no NVIDIA GPU is visible: nvidia-smi failed: {e}") from e
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise EngineBuildError("no NVIDIA GPU is visible: nvidia-smi exited with "
                               f"{result.returncode}: {reason[0] if reason else 'no output'}")
    gpus = parse_nvidia_smi_gpus(result.stdout)
    if not gpus:
        raise EngineBuildError("no NVIDIA GPU is visible: nvidia-smi lists no GPU")
    return gpus[0]


def probe_tensorrt() -> TensorRTEnvironment:
    """Find TensorRT and the GPU; raises EngineBuildError naming what is missing and the fix."""
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


def build_engine(onnx_path: Path, plan_path: Path, options: PlanOptions) -> Path:
    """Build a strongly typed TensorRT plan from `onnx_path` and write it atomically.

    The plan is saved to a temporary file beside `plan_path` and moved into place, so a failed
    build never leaves a partial plan. The timing cache (if any) is loaded before and updated
    after the build. Raises EngineBuildError naming the ONNX file and the reason.
    """
    try:
        trt = importlib.import_module("tensorrt")
        from polygraphy.backend.trt import (  # noqa: PLC0415  (TensorRT only when building)
            CreateConfig,
            Profile,
            engine_from_network,
            network_from_onnx_path,
            save_engine,
        )
        from polygraphy.exception import PolygraphyException  # noqa: PLC0415
    except ImportError as e:
        raise EngineBuildError(
            f"cannot build a TensorRT plan from {onnx_path}: {e}. {_CONTAINER_HINT}") from e

    profiles = []
    for profile in options.profiles:
        polygraphy_profile = Profile()
        for name, shape_range in profile.shapes.items():
            polygraphy_profile.add(name, min=shape_range.min, opt=shape_range.opt,
                                   max=shape_range.max)
        profiles.append(polygraphy_profile)
    hw_name = _TRT_HW_LEVEL.get(options.hardware_compatibility)
    hw_level = getattr(trt.HardwareCompatibilityLevel, hw_name) if hw_name else None
    cache = str(options.timing_cache) if options.timing_cache is not None else None
    if options.timing_cache is not None:
        options.timing_cache.parent.mkdir(parents=True, exist_ok=True)
    plan_path.parent.mkdir(parents=True, exist_ok=True)

    log.info("building TensorRT plan %s from %s (%d profile(s), workspace %d MiB, level %d)",
             plan_path, onnx_path, len(profiles), options.workspace_bytes // MIB,
             options.builder_optimization_level)
    fd, tmp_name = tempfile.mkstemp(dir=plan_path.parent, prefix=f".{plan_path.name}.",
                                    suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        network = network_from_onnx_path(str(onnx_path), strongly_typed=options.strongly_typed)
        config = CreateConfig(
            profiles=profiles,
            memory_pool_limits={trt.MemoryPoolType.WORKSPACE: options.workspace_bytes},
            builder_optimization_level=options.builder_optimization_level,
            load_timing_cache=cache,
            version_compatible=options.version_compatible,
            hardware_compatibility_level=hw_level,
            tf32=False,
        )
        engine = engine_from_network(network, config=config, save_timing_cache=cache)
        save_engine(engine, path=str(tmp_path))
        os.replace(tmp_path, plan_path)
    # Polygraphy reports failures as PolygraphyException; TensorRT's bindings raise RuntimeError
    # and TypeError; writing the plan raises OSError.
    except (PolygraphyException, RuntimeError, TypeError, ValueError, OSError) as e:
        raise EngineBuildError(
            f"TensorRT could not build a plan from {onnx_path}: {e}") from e
    finally:
        tmp_path.unlink(missing_ok=True)
    log.info("wrote TensorRT plan %s (%d bytes)", plan_path, plan_path.stat().st_size)
    return plan_path
