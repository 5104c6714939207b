"""Load and validate the build spec (`models.yaml`) into the frozen types of `tritonkit.spec.types`.

`load_spec(path)` is the only way in. Every validation error is a `SpecError` naming the file,
the field path (for example `models[1].max_batch_size`) and the fix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tritonkit.errors import SpecError
from tritonkit.runtime import parameters as parameter_names
from tritonkit.spec.overlay import SpecOverlay, merge_overlay
from tritonkit.spec.types import (
    ADAPTER_PARAMETERS,
    ASSET_NAME_PATTERN,
    AXIS_NAME_PATTERN,
    BYTES_STEP_QUEUE_DELAY_US,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_QUEUE_DELAY_US,
    FUNCTION_PATTERN,
    NAME_PATTERN,
    ONNXRUNTIME_REPOSITORY,
    PARAMETER_NAME_PATTERN,
    SPEC_VERSION,
    TENSOR_NAME_PATTERN,
    AccuracyBudget,
    AccuracyMetric,
    AxisRange,
    BuildSpec,
    DataType,
    DynamicAxis,
    DynamicBatching,
    ExampleInput,
    ExporterKind,
    HardwareCompatibility,
    ImageFormat,
    InstanceGroup,
    InstanceKind,
    ModelSpec,
    OnnxRuntimeOptions,
    PipelineSpec,
    PipelineStep,
    Precision,
    PythonStepSpec,
    PyTorchSource,
    QueueTimeoutAction,
    ServingOptions,
    TensorRTOptions,
    TensorSpec,
    VersionPolicy,
    Warmup,
    has_bytes,
)

E = TypeVar("E", bound=Enum)
T = TypeVar("T")

_TOP_LEVEL_KEYS = {"version", "models", "python_steps", "pipelines"}


class _Reader:
    """Reads one YAML node, remembering the file and field path for error messages."""

    def __init__(self, source: str, base_dir: Path, node: Any, path: str) -> None:
        self.source = source
        self.base_dir = base_dir
        self.node = node
        self.path = path

    def fail(self, problem: str, key: str | None = None) -> SpecError:
        return SpecError(self.source, self._join(key), problem)

    def _join(self, key: str | None) -> str:
        if key is None:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, allowed: set[str]) -> _Reader:
        if not isinstance(self.node, dict):
            raise self.fail(f"must be a mapping, got {type(self.node).__name__}")
        unknown = sorted(str(k) for k in self.node if k not in allowed)
        if unknown:
            raise self.fail(
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        return self

    def has(self, key: str) -> bool:
        return isinstance(self.node, dict) and self.node.get(key) is not None

    def child(self, key: str) -> _Reader:
        return _Reader(self.source, self.base_dir, self.node.get(key), self._join(key))

    def items(self, key: str, *, required: bool = False) -> list[_Reader]:
        value = self.node.get(key)
        if value is None:
            if required:
                raise self.fail("is required: add a list", key)
            return []
        if not isinstance(value, list):
            raise self.fail(f"must be a list, got {type(value).__name__}", key)
        return [
            _Reader(self.source, self.base_dir, v, f"{self._join(key)}[{i}]")
            for i, v in enumerate(value)
        ]

    def _get(self, key: str, default: Any, required: bool) -> Any:
        value = self.node.get(key)
        if value is None:
            if required:
                raise self.fail("is required", key)
            return default
        return value

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> Any:
        value = self._get(key, default, required)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"must be a string, got {value!r}", key)
        return value

    def integer(
        self, key: str, default: int | None = None, *, minimum: int | None = None,
        maximum: int | None = None, required: bool = False,
    ) -> Any:
        value = self._get(key, default, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"must be an integer, got {value!r}", key)
        if minimum is not None and value < minimum:
            raise self.fail(f"must be >= {minimum}, got {value}", key)
        if maximum is not None and value > maximum:
            raise self.fail(f"must be <= {maximum}, got {value}", key)
        return value

    def number(self, key: str, *, required: bool = True) -> float:
        value = self._get(key, None, required)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"must be a number, got {value!r}", key)
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise self.fail(f"must be true or false, got {value!r}", key)
        return value

    def enum(self, key: str, enum_type: type[E], default: E | None = None) -> E:
        value = self._get(key, default, default is None)
        if isinstance(value, enum_type):
            return value
        try:
            return enum_type(value)
        except ValueError:
            choices = ", ".join(str(e.value) for e in enum_type)
            raise self.fail(f"must be one of {choices}, got {value!r}", key) from None

    def int_list(self, key: str, *, minimum: int | None = None) -> tuple[int, ...]:
        values = self._get(key, [], False)
        if not isinstance(values, list):
            raise self.fail(f"must be a list of integers, got {values!r}", key)
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(f"must be an integer, got {v!r}", f"{key}[{i}]")
            if minimum is not None and v < minimum:
                raise self.fail(f"must be >= {minimum}, got {v}", f"{key}[{i}]")
        return tuple(values)

    def str_map(self, key: str) -> dict[str, str]:
        values = self._get(key, {}, False)
        if not isinstance(values, dict):
            raise self.fail(f"must be a mapping of strings, got {values!r}", key)
        out: dict[str, str] = {}
        for k, v in values.items():
            if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
                raise self.fail(f"must map strings to scalars, got {k!r}: {v!r}", key)
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def path_value(self, key: str, *, required: bool = False) -> Path | None:
        value = self.string(key, required=required)
        if value is None:
            return None
        if not value or "\x00" in value:
            raise self.fail("must be a non-empty file path", key)
        path = Path(value)
        return path if path.is_absolute() else (self.base_dir / path)


def _name(r: _Reader, key: str = "name") -> str:
    name = r.string(key, required=True)
    if not NAME_PATTERN.match(name):
        raise r.fail(
            f"{name!r} is not a safe model name: use 1-63 letters, digits, '_' or '-', "
            "starting with a letter or digit (no '/', '.', spaces)",
            key,
        )
    return str(name)


def _dynamic_batching(r: _Reader, max_batch_size: int,
                      default_delay_us: int) -> DynamicBatching | None:
    if r.node is False:
        return None
    if r.node is None or r.node is True:
        return DynamicBatching(max_queue_delay_us=default_delay_us)
    r.mapping({"preferred_batch_sizes", "max_queue_delay_us", "max_queue_size",
               "queue_timeout_us", "timeout_action"})
    preferred = r.int_list("preferred_batch_sizes", minimum=1)
    for i, size in enumerate(preferred):
        if size > max_batch_size:
            raise r.fail(
                f"{size} exceeds max_batch_size {max_batch_size}: lower it or raise max_batch_size",
                f"preferred_batch_sizes[{i}]",
            )
    return DynamicBatching(
        preferred_batch_sizes=preferred,
        max_queue_delay_us=r.integer("max_queue_delay_us", default_delay_us, minimum=0),
        max_queue_size=r.integer("max_queue_size", DEFAULT_MAX_QUEUE_SIZE, minimum=1),
        queue_timeout_us=r.integer("queue_timeout_us", 0, minimum=0),
        timeout_action=r.enum("timeout_action", QueueTimeoutAction, QueueTimeoutAction.REJECT),
    )


def _serving(r: _Reader, default_delay_us: int = DEFAULT_QUEUE_DELAY_US) -> ServingOptions:
    max_batch_size = r.integer("max_batch_size", required=True, minimum=0)
    db_reader = r.child("dynamic_batching")
    if max_batch_size == 0 and r.has("dynamic_batching") and db_reader.node is not False:
        raise r.fail("needs max_batch_size >= 1: dynamic batching batches along the batch axis",
                     "dynamic_batching")
    ig = r.child("instance_group")
    instance_group = InstanceGroup()
    if r.has("instance_group"):
        ig.mapping({"kind", "count", "gpus"})
        instance_group = InstanceGroup(
            kind=ig.enum("kind", InstanceKind, InstanceKind.AUTO),
            count=ig.integer("count", 1, minimum=1, maximum=64),
            gpus=ig.int_list("gpus", minimum=0),
        )
    vp = r.child("version_policy")
    version_policy = VersionPolicy()
    if r.has("version_policy"):
        vp.mapping({"latest", "specific", "all"})
        chosen = [k for k in ("latest", "specific", "all") if vp.has(k)]
        if len(chosen) != 1:
            raise vp.fail("must set exactly one of latest, specific, all")
        version_policy = VersionPolicy(
            latest=vp.integer("latest", minimum=1) if vp.has("latest") else None,
            specific=vp.int_list("specific", minimum=1),
            all=vp.boolean("all", False),
        )
    return ServingOptions(
        max_batch_size=max_batch_size,
        dynamic_batching=None if max_batch_size == 0 else _dynamic_batching(
            db_reader, max_batch_size, default_delay_us),
        instance_group=instance_group,
        version=r.integer("version", 1, minimum=1),
        version_policy=version_policy,
        labels=r.path_value("labels"),
        parameters=r.str_map("parameters"),
        response_cache=r.boolean("response_cache", False),
    )


_SERVING_KEYS = {"max_batch_size", "dynamic_batching", "instance_group", "version",
                 "version_policy", "labels", "parameters", "response_cache"}


def _tensorrt(r: _Reader, max_batch_size: int) -> TensorRTOptions:
    if r.node is None:
        return TensorRTOptions()
    r.mapping({"opt_batch_size", "extra_profiles", "dynamic_axes", "workspace_mib",
               "builder_optimization_level", "version_compatible", "hardware_compatibility",
               "cuda_graphs"})
    upper = max(max_batch_size, 1)
    opt = r.integer("opt_batch_size", None, minimum=1, maximum=upper)
    profiles: list[tuple[int, int, int]] = []
    for p in r.items("extra_profiles"):
        p.mapping({"min", "opt", "max"})
        lo = p.integer("min", required=True, minimum=1, maximum=upper)
        mid = p.integer("opt", required=True, minimum=lo, maximum=upper)
        hi = p.integer("max", required=True, minimum=mid, maximum=upper)
        profiles.append((lo, mid, hi))
    return TensorRTOptions(
        opt_batch_size=opt,
        extra_profile_batch_sizes=tuple(profiles),
        dynamic_axes=_dynamic_axes(r.child("dynamic_axes")),
        workspace_mib=r.integer("workspace_mib", 1024, minimum=1),
        builder_optimization_level=r.integer("builder_optimization_level", 3, minimum=0,
                                             maximum=5),
        version_compatible=r.boolean("version_compatible", False),
        hardware_compatibility=r.enum("hardware_compatibility", HardwareCompatibility,
                                      HardwareCompatibility.NONE),
        cuda_graphs=r.boolean("cuda_graphs", False),
    )


def _dynamic_axes(r: _Reader) -> dict[str, AxisRange]:
    """`{dim_name: {min, opt, max}}`; a name is the ONNX `dim_param` of a non-batch axis."""
    if r.node is None:
        return {}
    if not isinstance(r.node, dict):
        raise r.fail("must map ONNX dim names to {min, opt, max}, e.g. "
                     "{sequence: {min: 1, opt: 128, max: 256}}")
    axes: dict[str, AxisRange] = {}
    for name in r.node:
        if not isinstance(name, str) or not name:
            raise r.fail(f"{name!r} is not an ONNX dim name")
        a = r.child(name).mapping({"min", "opt", "max"})
        lo = a.integer("min", required=True, minimum=1)
        mid = a.integer("opt", required=True, minimum=lo)
        hi = a.integer("max", required=True, minimum=mid)
        axes[name] = AxisRange(min=lo, opt=mid, max=hi)
    return axes


def _onnxruntime(r: _Reader) -> OnnxRuntimeOptions:
    if r.node is None:
        return OnnxRuntimeOptions()
    r.mapping({"tensorrt_accelerator", "accelerator_precision", "intra_op_threads"})
    precision = r.enum("accelerator_precision", Precision, Precision.FP32)
    if precision is Precision.INT8:
        raise r.fail("must be fp32 or fp16: int8 comes from an int8 (Q/DQ) model, set "
                     "precision: int8 on the model instead", "accelerator_precision")
    return OnnxRuntimeOptions(
        tensorrt_accelerator=r.boolean("tensorrt_accelerator", False),
        accelerator_precision=precision,
        intra_op_threads=r.integer("intra_op_threads", 0, minimum=0),
    )


_INTEGER_TYPES = {DataType.UINT8: 256, DataType.INT8: 128, DataType.INT32: 2**31,
                  DataType.INT64: 2**63}  # dtype -> the largest `high` (exclusive bound)
_PYTORCH_KEYS = {"factory", "weights", "exporter", "opset", "tolerance", "inputs", "outputs"}


def _axis_key(r: _Reader, key: Any, rank: int) -> int:
    """A `dynamic_axes` key: an axis index of the example shape (an int, or its digits)."""
    axis = int(key) if isinstance(key, str) and key.isdigit() else key
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise r.fail(f"{key!r} is not an axis index: map axis numbers to names, e.g. "
                     "{0: batch, 2: height}")
    if not 0 <= axis < rank:
        raise r.fail(f"axis {axis} is out of range for the example shape of rank {rank} "
                     f"(axes 0..{rank - 1})", str(key))
    return axis


def _example_axes(r: _Reader, shape: tuple[int, ...]) -> dict[int, DynamicAxis]:
    """`{axis: name}` or `{axis: {name, probe}}`; the probe defaults to example + 2 for axis 0
    and twice the example for the others."""
    if r.node is None:
        return {}
    if not isinstance(r.node, dict):
        raise r.fail("must map axis numbers to names, e.g. {0: batch, 2: height}")
    axes: dict[int, DynamicAxis] = {}
    for key in r.node:
        axis = _axis_key(r, key, len(shape))
        a = _Reader(r.source, r.base_dir, r.node[key], f"{r.path}.{key}")
        example = shape[axis]
        probe: int = example + 2 if axis == 0 else 2 * example
        if isinstance(a.node, dict):
            a.mapping({"name", "probe"})
            name = a.string("name", required=True)
            probe = a.integer("probe", probe, minimum=1)
            if probe == example:
                raise a.fail(f"must differ from the example size {example}: the export is "
                             "checked at a second size of every dynamic axis", "probe")
        else:
            name = a.node
        if not isinstance(name, str) or not AXIS_NAME_PATTERN.match(name):
            raise a.fail(f"{name!r} is not an axis name: use a Python identifier such as "
                         "batch or height (it names the torch.export.Dim and the ONNX dim)")
        if example < 2:
            raise r.fail(f"axis {axis} ({name}) has example size {example}: torch.export "
                         "fixes sizes 0 and 1, so a dynamic axis needs an example size >= 2",
                         str(key))
        if axis in axes:
            raise r.fail(f"axis {axis} is declared twice", str(key))
        axes[axis] = DynamicAxis(name=name, probe=probe)
    return dict(sorted(axes.items()))


def _example_input(r: _Reader) -> ExampleInput:
    r.mapping({"name", "dtype", "shape", "dynamic_axes", "high"})
    name = r.string("name", required=True)
    if not TENSOR_NAME_PATTERN.match(name):
        raise r.fail(f"{name!r} is not a valid tensor name", "name")
    dtype = r.enum("dtype", DataType)
    if dtype is DataType.BYTES:
        raise r.fail("BYTES cannot be a PyTorch tensor: use a numeric dtype", "dtype")
    shape = r.int_list("shape", minimum=1)
    if not shape:
        raise r.fail("must give the example input's shape, e.g. [1, 3, 64, 64]", "shape")
    high = None
    if r.has("high"):
        if dtype not in _INTEGER_TYPES:
            raise r.fail(f"applies to integer inputs only, not {dtype.value}", "high")
        high = r.integer("high", minimum=1, maximum=_INTEGER_TYPES[dtype])
    return ExampleInput(name=name, dtype=dtype, shape=shape,
                        dynamic_axes=_example_axes(r.child("dynamic_axes"), shape), high=high)


def _pytorch(r: _Reader, max_batch_size: int) -> PyTorchSource:
    r.mapping(_PYTORCH_KEYS)
    factory = r.string("factory", required=True)
    if not FUNCTION_PATTERN.match(factory):
        raise r.fail(f"{factory!r} must look like 'package.module:function' (a function that "
                     "returns the torch.nn.Module)", "factory")
    tolerance = r.number("tolerance") if r.has("tolerance") else 1e-4
    if not tolerance > 0:
        raise r.fail(f"must be > 0, got {tolerance}", "tolerance")
    inputs = tuple(_example_input(i) for i in r.items("inputs", required=True))
    if not inputs:
        raise r.fail("must declare at least one input", "inputs")
    _unique(r, "inputs", [i.name for i in inputs], "input")
    outputs = r.node.get("outputs")
    if (not isinstance(outputs, list) or not outputs
            or not all(isinstance(o, str) and TENSOR_NAME_PATTERN.match(o) for o in outputs)):
        raise r.fail("must list the output tensor names, in the order the model returns "
                     f"them, e.g. [output]; got {outputs!r}", "outputs")
    for i, output in enumerate(outputs):
        if output in outputs[:i] or output in {t.name for t in inputs}:
            raise r.fail(f"{output!r} is named twice: every input and output needs its own "
                         "name", f"outputs[{i}]")
    _check_shared_axes(r, inputs, max_batch_size)
    return PyTorchSource(
        factory=factory,
        weights=r.path_value("weights"),
        exporter=r.enum("exporter", ExporterKind, ExporterKind.DYNAMO),
        opset=r.integer("opset", 18, minimum=13),
        tolerance=tolerance,
        inputs=inputs,
        outputs=tuple(outputs),
    )


def _check_shared_axes(r: _Reader, inputs: tuple[ExampleInput, ...], max_batch_size: int) -> None:
    """Axes that share a name are one dimension: one example size and one probe. With
    max_batch_size > 0, axis 0 of every input is the (one) batch axis."""
    seen: dict[str, tuple[int, int, str]] = {}  # name -> (example, probe, where)
    for i, t in enumerate(inputs):
        where = f"inputs[{i}].dynamic_axes"
        if max_batch_size > 0 and 0 not in t.dynamic_axes:
            raise r.fail(f"must declare axis 0 of {t.name!r} dynamic (e.g. {{0: batch}}): "
                         f"max_batch_size {max_batch_size} batches along axis 0", where)
        for axis, dim in t.dynamic_axes.items():
            size = (t.shape[axis], dim.probe, f"{t.name!r} axis {axis}")
            first = seen.setdefault(dim.name, size)
            if size[:2] != first[:2]:
                raise r.fail(f"axis {axis} ({dim.name}) has example size {size[0]} and probe "
                             f"{size[1]}, but {first[2]}, also {dim.name}, has {first[0]} and "
                             f"{first[1]}: axes sharing a name must agree", f"{where}.{axis}")
    if max_batch_size > 0:
        names = {t.dynamic_axes[0].name for t in inputs}
        if len(names) > 1:
            raise r.fail(f"axis 0 is the batch axis of every input, but it has the names "
                         f"{', '.join(sorted(names))}: give them one name", "inputs")


def _model(r: _Reader) -> ModelSpec:
    r.mapping(_SERVING_KEYS | {"name", "onnx", "pytorch", "precision", "calibration",
                               "accuracy", "keep_fp32_ops", "dynamic_batch_probe", "warmup",
                               "tensorrt", "onnxruntime", "image_format"})
    name = _name(r)
    serving = _serving(r)
    if r.has("onnx") == r.has("pytorch"):
        raise r.fail("must set exactly one of onnx (an ONNX file) and pytorch (a PyTorch "
                     "source the builder exports)")
    pytorch = None
    if r.has("pytorch"):
        pytorch = _pytorch(r.child("pytorch"), serving.max_batch_size)
        onnx = (r.base_dir / ONNXRUNTIME_REPOSITORY / name / str(serving.version)
                / "model.onnx")
    else:
        onnx = r.path_value("onnx", required=True)  # type: ignore[assignment]
    precision = r.enum("precision", Precision, Precision.FP32)
    accuracy = None
    if r.has("accuracy"):
        a = r.child("accuracy").mapping({"metric", "threshold", "holdout"})
        accuracy = AccuracyBudget(
            metric=a.enum("metric", AccuracyMetric),
            threshold=a.number("threshold"),
            holdout=a.path_value("holdout", required=True),  # type: ignore[arg-type]
        )
    elif precision is not Precision.FP32:
        raise r.fail(f"is required for precision {precision.value}: add accuracy: {{metric, "
                     "threshold, holdout}} so the transform is checked against fp32", "accuracy")
    calibration = r.path_value("calibration")
    if precision is Precision.INT8 and calibration is None:
        raise r.fail("is required for precision int8: name an .npz of real, preprocessed "
                     "samples keyed by input name", "calibration")
    warmup = None
    if r.has("warmup"):
        w = r.child("warmup").mapping({"samples", "batch_size", "count"})
        warmup = Warmup(
            samples=w.path_value("samples", required=True),  # type: ignore[arg-type]
            batch_size=w.integer("batch_size", 1, minimum=1,
                                 maximum=max(serving.max_batch_size, 1)),
            count=w.integer("count", 1, minimum=1, maximum=1000),
        )
    ops = r.node.get("keep_fp32_ops") or []
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        raise r.fail("must be a list of ONNX op types, e.g. [LayerNormalization]",
                     "keep_fp32_ops")
    probe = r.integer("dynamic_batch_probe", 3, minimum=2)
    if serving.max_batch_size >= 2:
        probe = min(probe, serving.max_batch_size)
    return ModelSpec(
        name=name,
        onnx=onnx,
        serving=serving,
        precision=precision,
        calibration=calibration,
        accuracy=accuracy,
        keep_fp32_ops=tuple(ops),
        dynamic_batch_probe=probe,
        warmup=warmup,
        tensorrt=_tensorrt(r.child("tensorrt"), serving.max_batch_size),
        onnxruntime=_onnxruntime(r.child("onnxruntime")),
        image_format=r.enum("image_format", ImageFormat, ImageFormat.NONE),
        pytorch=pytorch,
    )


def _tensor(r: _Reader) -> TensorSpec:
    r.mapping({"name", "dtype", "dims"})
    name = r.string("name", required=True)
    if not TENSOR_NAME_PATTERN.match(name):
        raise r.fail(f"{name!r} is not a valid tensor name", "name")
    dims = r.int_list("dims")
    if not dims:
        raise r.fail("must list at least one dim (without the batch axis); use [1] for a "
                     "scalar per batch row", "dims")
    for i, d in enumerate(dims):
        if d == 0 or d < -1:
            raise r.fail(f"must be a positive size or -1 (variable), got {d}", f"dims[{i}]")
    return TensorSpec(name=name, dtype=r.enum("dtype", DataType), dims=dims)


def _tensors(r: _Reader, key: str) -> tuple[TensorSpec, ...]:
    tensors = tuple(_tensor(t) for t in r.items(key, required=True))
    if not tensors:
        raise r.fail("must declare at least one tensor", key)
    _unique(r, key, [t.name for t in tensors], "tensor")
    return tensors


def _assets(r: _Reader, parameters: Mapping[str, str]) -> dict[str, Path]:
    """`assets: {parameter: path}`; each path relative to the spec file, named plainly."""
    if r.node is None:
        return {}
    if not isinstance(r.node, dict):
        raise r.fail("must map config parameter names to paths, e.g. "
                     "{tokenizer_dir: artifacts/text_encoder/tokenizer}")
    assets: dict[str, Path] = {}
    copied_to: dict[str, str] = {}
    for key, value in r.node.items():
        where = str(key)
        if not isinstance(key, str) or not PARAMETER_NAME_PATTERN.match(key):
            raise r.fail(f"{key!r} is not a parameter name: use letters, digits and '_'",
                         where)
        if key in ADAPTER_PARAMETERS:
            raise r.fail(f"'{key}' is a parameter the adapter reads; name the asset after the "
                         "parameter the step function reads (e.g. tokenizer_dir)", where)
        if key in parameters:
            raise r.fail(f"is also set in parameters ({parameters[key]!r}): an asset's "
                         "parameter is set by the builder, remove it from parameters", where)
        if not isinstance(value, str) or not value or "\x00" in value:
            raise r.fail(f"must be a path to a file or directory, got {value!r}", where)
        if Path(value).name in ("", ".", ".."):
            raise r.fail(f"{value!r} names no file or directory of its own; name the file or "
                         "directory itself", where)
        path = Path(os.path.normpath(r.base_dir / value))
        if not ASSET_NAME_PATTERN.match(path.name):
            raise r.fail(f"{path.name!r} cannot be copied under that name: rename it to "
                         "letters, digits, '_', '.' or '-'", where)
        if path.name in copied_to:
            raise r.fail(f"'{copied_to[path.name]}' and '{key}' both copy to "
                         f"{parameter_names.ASSETS_DIR}/{path.name}; rename one of them", where)
        copied_to[path.name] = key
        assets[key] = path
    return assets


def _python_step(r: _Reader) -> PythonStepSpec:
    r.mapping(_SERVING_KEYS | {"name", "function", "inputs", "outputs", "assets"})
    function = r.string("function", required=True)
    if not FUNCTION_PATTERN.match(function):
        raise r.fail(f"{function!r} must look like 'package.module:function'", "function")
    inputs = _tensors(r, "inputs")
    bytes_inputs = has_bytes(inputs)
    serving = _serving(r, default_delay_us=BYTES_STEP_QUEUE_DELAY_US if bytes_inputs
                       else DEFAULT_QUEUE_DELAY_US)
    batching = serving.dynamic_batching
    if bytes_inputs and batching and batching.max_queue_delay_us != BYTES_STEP_QUEUE_DELAY_US:
        raise r.child("dynamic_batching").fail(
            "must be 0 for a Python step with BYTES inputs: with a queue delay, Triton merges "
            "separately formed batches, so one request with malformed BYTES framing could "
            "fail the valid requests batched with it (leave the delay out: it defaults to 0 "
            "here)", "max_queue_delay_us")
    return PythonStepSpec(
        name=_name(r),
        function=function,
        inputs=inputs,
        outputs=_tensors(r, "outputs"),
        serving=serving,
        assets=_assets(r.child("assets"), serving.parameters),
    )


def _pipeline(r: _Reader) -> PipelineSpec:
    r.mapping({"name", "max_batch_size", "steps", "outputs"})
    steps: list[PipelineStep] = []
    for s in r.items("steps", required=True):
        if isinstance(s.node, str):
            steps.append(PipelineStep(model=s.node))
            continue
        s.mapping({"model", "inputs", "outputs"})
        steps.append(PipelineStep(model=s.string("model", required=True),
                                  inputs=s.str_map("inputs"), outputs=s.str_map("outputs")))
    if not steps:
        raise r.fail("must list at least one step", "steps")
    outputs = r.node.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise r.fail("must be a list of ensemble tensor names", "outputs")
    return PipelineSpec(
        name=_name(r),
        max_batch_size=r.integer("max_batch_size", required=True, minimum=0),
        steps=tuple(steps),
        outputs=tuple(outputs),
    )


def _unique(r: _Reader, key: str, names: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise r.fail(f"duplicate {what} name {n!r}: names must be unique", f"{key}[{i}].name")
        seen.add(n)


def _read_list(r: _Reader, key: str, parse: Callable[[_Reader], T]) -> tuple[T, ...]:
    return tuple(parse(item) for item in r.items(key))


def parse_spec(text: str, source: Path, *, release: str | None = None,
               overlay: SpecOverlay | None = None) -> BuildSpec:
    """Parse and validate spec text; `source` names the file in errors and anchors paths.

    With `release` (an NGC release, "26.03"), every `tensorrt:` option must be one that
    release's TensorRT has (`tritonkit.spec.release_support`). With `overlay`, its serving
    settings are merged in first (`tritonkit.spec.overlay`) and validated with the rest.
    """
    source_name = source.name
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(source_name, "", f"is not valid YAML{where}: {e}") from e
    if overlay is None:
        return _parse_document(data, text, source, release=release)
    try:
        return _parse_document(merge_overlay(data, overlay, source_name), text, source,
                               overlay=overlay, release=release)
    except SpecError as e:
        if e.source != source_name:
            raise
        raise SpecError(source_name, e.field_path,
                        f"{e.problem} (with overlay {overlay.source.name})") from e


def _parse_document(data: Any, text: str, source: Path, *, overlay: SpecOverlay | None = None,
                    release: str | None = None) -> BuildSpec:
    source_name = source.name
    root = _Reader(source_name, source.parent.resolve(), data if data is not None else {}, "")
    root.mapping(_TOP_LEVEL_KEYS)
    root.integer("version", SPEC_VERSION, minimum=SPEC_VERSION, maximum=SPEC_VERSION)
    models = _read_list(root, "models", _model)
    steps = _read_list(root, "python_steps", _python_step)
    pipelines = _read_list(root, "pipelines", _pipeline)
    all_names = [m.name for m in models] + [s.name for s in steps] + [p.name for p in pipelines]
    seen: set[str] = set()
    for n in all_names:
        if n in seen:
            raise SpecError(source_name, "", f"duplicate model name {n!r}: every model, python "
                            "step and pipeline needs its own name (it is a directory)")
        seen.add(n)
    spec = BuildSpec(source=source.resolve(), models=models, python_steps=steps,
                     pipelines=pipelines, sha256=_spec_hash(text, overlay))
    for i, p in enumerate(pipelines):
        for j, step in enumerate(p.steps):
            if step.model not in seen or step.model in {q.name for q in pipelines}:
                raise SpecError(source_name, f"pipelines[{i}].steps[{j}].model",
                                f"{step.model!r} is not a model or python step of this spec")
    if not all_names:
        raise SpecError(source_name, "", "declares no models: add a models: list")
    if release is not None:
        _check_release(spec, release)
    return spec


def _spec_hash(text: str, overlay: SpecOverlay | None) -> str:
    digest = hashlib.sha256(text.encode())
    if overlay is not None:
        digest.update(b"\0overlay\0" + overlay.sha256.encode())
    return digest.hexdigest()


def _check_release(spec: BuildSpec, name: str) -> None:
    # Imported here: release_support reads the spec's types.
    from tritonkit import releases  # noqa: PLC0415
    from tritonkit.errors import ToolkitError  # noqa: PLC0415
    from tritonkit.spec.release_support import unsupported  # noqa: PLC0415

    try:
        target = releases.release(name)
    except ToolkitError as e:
        raise SpecError(spec.source.name, "", f"targets {e}") from e
    for i, model in enumerate(spec.models):
        for key, problem in unsupported(model.tensorrt, target):
            path = f"models[{i}].tensorrt" + (f".{key}" if key else "")
            raise SpecError(spec.source.name, path, problem)


def load_spec(path: str | Path, *, release: str | None = None,
              overlay: SpecOverlay | None = None) -> BuildSpec:
    """Load and validate a YAML build spec (against `release`'s TensorRT, when given), with
    `overlay`'s serving settings merged in."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(str(path), "", f"cannot be read: {e.strerror}") from e
    return parse_spec(text, path, release=release, overlay=overlay)
