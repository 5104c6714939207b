"""A strict stand-in for the `tensorrt` Python package of one release, built from its surface.

`make_tensorrt_module(surface)` returns a module with `__version__`, every enum of the surface
as an `enum.IntEnum` with exactly its members (numeric values are the double's own, not
TensorRT's), the module attributes (`trt.float32`, ...) and every class of the surface. An
instance raises AttributeError, as the pybind11 binding would, for ANY attribute (get or set)
missing from its class's surface, and NotImplementedError for one the surface has but the double
does not implement. Builder, IBuilderConfig, INetworkDefinition, ITensor, ILayer, Dims,
IOptimizationProfile, ITimingCache, IHostMemory, Logger/ILogger and OnnxParser behave enough for
Polygraphy's loaders; what they were given lands in `double_record(module)`.

OnnxParser, OnnxParserFlag and `init_libnvinfer_plugins` are bound in parsers/pyOnnx.cpp and
infer/pyPlugin.cpp, which shared/third_party/tensorrt-api does not hold; `_SUPPLEMENT` lists
their names as read from NVIDIA/TensorRT at tags v10.8.0, v10.16 and v11.1 (a surface that does
hold an OnnxParser is used instead). The parser reads the ONNX file with the `onnx` package:
inputs/outputs (name, dtype, shape with -1 for dynamic dims) and one ILayer per node.

Checks the real TensorRT defers to add_optimization_profile or the build (a profile naming an
unknown input, a wrong rank, a fixed dim changed) are raised by `set_shape` as RuntimeError;
`build_serialized_network` logs an error through the builder's logger and returns None, as
TensorRT does, when a dynamic dim of an input is not covered by every profile.

How Polygraphy picks the double up: each Polygraphy module holds `trt = lazy_import_trt()`, a
LazyModule that imports "tensorrt" via importlib on first use and then keeps that module in its
instance attribute `module` for good; `polygraphy.backend.trt.util.TRT_LOGGER` also caches a
logger whose class derives from the first module's ILogger. `install_tensorrt_double` puts the
double into `sys.modules` with `monkeypatch.setitem` and `clear_polygraphy_tensorrt_cache()`
empties every such cache (call it again after the test) so each release is imported afresh.
"""

from __future__ import annotations

import copy
import enum
import json
import logging
import re
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import onnx
import pytest

from tritonkit.tensorrt.api.surface import TensorRTSurface

log = logging.getLogger(__name__)

PRECISION_BUILDER_FLAGS = frozenset({"FP16", "BF16", "INT8", "FP8", "INT4", "FP4"})
PLAN_MAGIC = b"tensorrt-double-plan\n"

# Read from NVIDIA/TensorRT python/src/parsers/pyOnnx.cpp and python/src/infer/pyPlugin.cpp at
# the release tags (not in shared/third_party/tensorrt-api): (major, minor) -> names.
_PARSER_10_8 = ("__del__", "__init__", "clear_errors", "clear_flag", "flags", "get_error",
                "get_flag", "get_layer_output_tensor", "get_subgraph_nodes",
                "get_used_vc_plugin_libraries", "is_subgraph_supported", "num_errors",
                "num_subgraphs", "parse", "parse_from_file", "parse_with_weight_descriptors",
                "set_flag", "supports_model", "supports_model_v2", "supports_operator")
_PARSER_10_16 = (*_PARSER_10_8, "load_initializer", "load_model_proto", "parse_model_proto",
                 "set_builder_config")
_PARSER_11_1 = tuple(n for n in _PARSER_10_16
                     if n not in ("parse_with_weight_descriptors", "supports_model"))
_PARSER_FLAGS_10_16 = ("NATIVE_INSTANCENORM", "ENABLE_UINT8_AND_ASYMMETRIC_QUANTIZATION_DLA",
                       "ENABLE_PLUGIN_OVERRIDE", "ADJUST_FOR_DLA")
_PARSER_ERROR = ("__repr__", "__str__", "code", "desc", "file", "func", "line",
                 "local_function_stack", "local_function_stack_size", "node", "node_name",
                 "node_operator")
_FUNCTIONS = ("get_builder_plugin_registry", "get_nv_onnx_parser_version",
              "init_libnvinfer_plugins")
_SUPPLEMENT: dict[tuple[int, int], dict[str, Any]] = {
    (10, 8): {"classes": {"OnnxParser": _PARSER_10_8, "ParserError": _PARSER_ERROR},
              "enums": {"OnnxParserFlag": ("NATIVE_INSTANCENORM",)}, "functions": _FUNCTIONS},
    (10, 16): {"classes": {"OnnxParser": _PARSER_10_16, "ParserError": _PARSER_ERROR},
               "enums": {"OnnxParserFlag": _PARSER_FLAGS_10_16}, "functions": _FUNCTIONS},
    (11, 1): {"classes": {"OnnxParser": _PARSER_11_1, "ParserError": _PARSER_ERROR},
              "enums": {"OnnxParserFlag": _PARSER_FLAGS_10_16}, "functions": _FUNCTIONS},
}

_ONNX_DTYPES: dict[int, str] = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF",
                onnx.TensorProto.BFLOAT16: "BF16", onnx.TensorProto.INT8: "INT8",
                onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64",
                onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.UINT8: "UINT8",
                onnx.TensorProto.FLOAT8E4M3FN: "FP8"}
_ONNX_LAYERS = {"Conv": "CONVOLUTION", "MatMul": "MATRIX_MULTIPLY", "Gemm": "MATRIX_MULTIPLY",
                "Add": "ELEMENTWISE", "Mul": "ELEMENTWISE", "Sub": "ELEMENTWISE",
                "Div": "ELEMENTWISE", "Relu": "ACTIVATION", "Sigmoid": "ACTIVATION",
                "Softmax": "SOFTMAX", "Reshape": "SHUFFLE", "Transpose": "SHUFFLE",
                "Flatten": "SHUFFLE", "Cast": "CAST", "QuantizeLinear": "QUANTIZE",
                "DequantizeLinear": "DEQUANTIZE", "Concat": "CONCATENATION",
                "MaxPool": "POOLING", "AveragePool": "POOLING", "Shape": "SHAPE",
                "Gather": "GATHER", "ReduceMean": "REDUCE", "Constant": "CONSTANT"}
_INTERNAL = re.compile(r"__\w+__|_d\w*")


# --------------------------------------------------------------------------- the record


@dataclass
class ConfigRecord:
    """What was set on one IBuilderConfig (BuilderFlag names, pools by MemoryPoolType name)."""

    flags: set[str] = field(default_factory=lambda: {"TF32"})  # TF32 is on by default
    memory_pool_limits: dict[str, int] = field(default_factory=dict)
    profiles: list[dict[str, tuple[tuple[int, ...], ...]]] = field(default_factory=list)
    hardware_compatibility_level: str | None = None
    builder_optimization_level: int | None = None
    preview_features: dict[str, bool] = field(default_factory=dict)
    quantization_flags: set[str] = field(default_factory=set)
    timing_cache: bytes | None = None  # the cache set with set_timing_cache
    properties: dict[str, Any] = field(default_factory=dict)  # other properties that were set

    def precision_flags(self) -> set[str]:
        return self.flags & PRECISION_BUILDER_FLAGS


@dataclass
class TensorRecord:
    name: str
    dtype: str  # DataType member name
    shape: tuple[int, ...]  # -1 = dynamic


@dataclass
class NetworkRecord:
    creation_flags: set[str]
    inputs: list[TensorRecord] = field(default_factory=list)
    outputs: list[TensorRecord] = field(default_factory=list)
    onnx_path: Path | None = None


@dataclass
class BuildRecord:
    network: NetworkRecord
    config: ConfigRecord  # a copy taken at build time
    plan: bytes | None  # None: the build failed (see DoubleRecord.errors)


@dataclass
class DoubleRecord:
    """Everything the double was asked to do, for assertions."""

    networks: list[NetworkRecord] = field(default_factory=list)
    configs: list[ConfigRecord] = field(default_factory=list)
    builds: list[BuildRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def uncovered_dynamic_dims(network: NetworkRecord, config: ConfigRecord) -> list[str]:
    """Problems unless every dynamic dim of every input is in every profile, min <= opt <= max."""
    problems = [] if config.profiles else ["no optimization profile"]
    for index, profile in enumerate(config.profiles):
        for tensor in network.inputs:
            if -1 not in tensor.shape:
                continue
            if tensor.name not in profile:
                problems.append(f"profile {index} lacks dynamic input {tensor.name!r}")
                continue
            low, opt, high = profile[tensor.name]
            for axis, dim in enumerate(tensor.shape):
                if not (len(low) == len(opt) == len(high) == len(tensor.shape)):
                    problems.append(f"profile {index} {tensor.name!r}: rank differs")
                    break
                if dim == -1 and not 0 <= low[axis] <= opt[axis] <= high[axis]:
                    problems.append(f"profile {index} {tensor.name!r} axis {axis}: "
                                    f"{low[axis]} <= {opt[axis]} <= {high[axis]} fails")
                if dim != -1 and not low[axis] == opt[axis] == high[axis] == dim:
                    problems.append(f"profile {index} {tensor.name!r} axis {axis}: fixed "
                                    f"dim {dim} given as {low[axis]}/{opt[axis]}/{high[axis]}")
    return problems


# --------------------------------------------------------------------------- strictness


class _Strict:
    """Base of every double class: only surface members (and internals `_d*`) exist."""

    _d_name: ClassVar[str] = ""
    _d_members: ClassVar[frozenset[str]] = frozenset()
    _d_module: ClassVar[types.ModuleType]

    def _d_is_user_attribute(self, name: str) -> bool:
        """Python subclasses (a logger deriving from trt.ILogger) may add attributes."""
        for klass in type(self).__mro__:
            if "_d_name" in vars(klass):
                break
            if name in vars(klass):
                return True
        else:
            return True
        user_subclass = "_d_name" not in vars(type(self))
        return user_subclass and name in object.__getattribute__(self, "__dict__")

    def __getattribute__(self, name: str) -> Any:
        cls = type(self)
        if _INTERNAL.fullmatch(name) or name in cls._d_members:
            try:
                return object.__getattribute__(self, name)
            except AttributeError:
                if name in cls._d_members:
                    raise NotImplementedError(
                        f"tensorrt double: {cls._d_name}.{name} exists in TensorRT "
                        f"{cls._d_module.__version__} but the double does not implement it"
                    ) from None
                raise
        if object.__getattribute__(self, "_d_is_user_attribute")(name):
            return object.__getattribute__(self, name)
        raise AttributeError(f"'tensorrt.{cls._d_name}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        user_subclass = "_d_name" not in vars(cls)
        if name in cls._d_members and not hasattr(cls, name):
            raise NotImplementedError(f"tensorrt double: setting {cls._d_name}.{name}")
        if (_INTERNAL.fullmatch(name) or isinstance(getattr(cls, name, None), property)
                or (user_subclass and name not in cls._d_members)):
            object.__setattr__(self, name, value)  # a property without setter raises here
        else:
            raise AttributeError(f"'tensorrt.{cls._d_name}' object attribute '{name}' cannot "
                                 "be set" if name in cls._d_members else
                                 f"'tensorrt.{cls._d_name}' object has no attribute '{name}'")

    def __repr__(self) -> str:
        return f"<tensorrt.tensorrt.{type(self)._d_name} object at {id(self):#x}>"

    @classmethod
    def _d_new(cls, **state: Any) -> Any:
        obj = object.__new__(cls)
        for key, value in state.items():
            object.__setattr__(obj, f"_d_{key}", value)
        return obj


def _check(value: Any, module: types.ModuleType, enum_name: str, method: str) -> Any:
    expected = getattr(module, enum_name)
    if not isinstance(value, expected):
        raise TypeError(f"{method}(): incompatible function arguments: expected "
                        f"tensorrt.{enum_name}, got {value!r}")
    return value


def _dims(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _stored(name: str, default: Any, check: str | None = None) -> property:
    """A plain settable property kept in `_d_config.properties` (check: enum type name)."""

    def get(self: Any) -> Any:
        return self._d_config.properties.get(name, default(self) if callable(default) else default)

    def set_(self: Any, value: Any) -> None:
        if check:
            _check(value, self._d_module, check, name)
        self._d_config.properties[name] = value

    return property(get, set_)


# --------------------------------------------------------------------------- implementations

if TYPE_CHECKING:
    class _Impl:
        """For the type checker only: the `_d_*` state is set per instance at run time."""

        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...
else:
    _Impl = object


class _Logger(_Impl):
    def __init__(self, min_severity: Any = None) -> None:
        self._d_min = min_severity

    def log(self, severity: Any, msg: str) -> None:
        log.warning("[TRT double] %s: %s", getattr(severity, "name", severity), msg)

    min_severity = property(lambda self: self._d_min,
                            lambda self, v: object.__setattr__(self, "_d_min", v))


class _ILogger(_Impl):
    def __init__(self) -> None:
        pass

    def log(self, severity: Any, msg: str) -> None:
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


class _Dims(_Impl):
    MAX_DIMS = 8

    def __init__(self, shape: Iterable[int] = ()) -> None:
        self._d_shape = list(_dims(shape))

    def __len__(self) -> int:
        return len(self._d_shape)

    def __getitem__(self, index: int) -> int:
        return self._d_shape[index]

    def __setitem__(self, index: int, value: int) -> None:
        self._d_shape[index] = int(value)

    def __eq__(self, other: object) -> bool:
        try:
            return tuple(self._d_shape) == _dims(other)  # type: ignore[arg-type]
        except TypeError:
            return False

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return str(tuple(self._d_shape))

    __repr__ = __str__


class _ITensor(_Impl):
    name = property(lambda self: self._d_rec.name,
                    lambda self, v: setattr(self._d_rec, "name", v))
    shape = property(lambda self: self._d_module.Dims(self._d_rec.shape))
    dtype = property(lambda self: getattr(self._d_module.DataType, self._d_rec.dtype))
    is_network_input = property(lambda self: self._d_io == "input")
    is_network_output = property(lambda self: self._d_io == "output")
    is_shape_tensor = property(lambda self: False)
    is_execution_tensor = property(lambda self: True)
    location = property(lambda self: self._d_module.TensorLocation.DEVICE)


class _ILayer(_Impl):
    name = property(lambda self: self._d_layer_name)
    type = property(lambda self: getattr(self._d_module.LayerType, self._d_type))
    num_inputs = property(lambda self: self._d_inputs)
    num_outputs = property(lambda self: self._d_outputs)
    precision = property(lambda self: self._d_module.DataType.FLOAT)
    precision_is_set = property(lambda self: False)


class _INetworkDefinition(_Impl):
    num_inputs = property(lambda self: len(self._d_inputs))
    num_outputs = property(lambda self: len(self._d_outputs))
    num_layers = property(lambda self: len(self._d_layers))
    has_implicit_batch_dimension = property(lambda self: False)
    builder = property(lambda self: self._d_builder)
    name = property(lambda self: self._d_net_name,
                    lambda self, v: object.__setattr__(self, "_d_net_name", v))

    def _d_tensor(self, rec: TensorRecord, io: str) -> Any:
        return self._d_module.ITensor._d_new(rec=rec, io=io)

    def get_input(self, index: int) -> Any:
        return self._d_inputs[index]

    def get_output(self, index: int) -> Any:
        return self._d_outputs[index]

    def get_layer(self, index: int) -> Any:
        return self._d_layers[index]

    def __len__(self) -> int:
        return len(self._d_layers)

    def __getitem__(self, index: int) -> Any:
        if not -len(self._d_layers) <= index < len(self._d_layers):
            raise IndexError(index)
        return self._d_layers[index]

    def get_flag(self, flag: Any) -> bool:
        _check(flag, self._d_module, "NetworkDefinitionCreationFlag", "get_flag")
        return flag.name in self._d_rec.creation_flags

    flags = property(lambda self: sum(1 << int(getattr(
        self._d_module.NetworkDefinitionCreationFlag, n)) for n in self._d_rec.creation_flags))

    def add_input(self, name: str, dtype: Any, shape: Iterable[int]) -> Any:
        _check(dtype, self._d_module, "DataType", "add_input")
        rec = TensorRecord(name=name, dtype=dtype.name, shape=_dims(shape))
        self._d_rec.inputs.append(rec)
        self._d_inputs.append(self._d_tensor(rec, "input"))
        return self._d_inputs[-1]

    def mark_output(self, tensor: Any) -> None:
        self._d_rec.outputs.append(tensor._d_rec)
        object.__setattr__(tensor, "_d_io", "output")
        self._d_outputs.append(tensor)

    def mark_unfused_tensors_as_debug_tensors(self) -> bool:
        return True


class _IOptimizationProfile(_Impl):
    def _d_input(self, name: str) -> TensorRecord:
        for network in self._d_builder._d_networks:
            for tensor in network._d_rec.inputs:
                if tensor.name == name:
                    return tensor
        raise RuntimeError(f"IOptimizationProfile::setDimensions: no network input named {name!r}")

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        shapes = {"min": _dims(min), "opt": _dims(opt), "max": _dims(max)}
        rank = len(shapes["min"])
        for which, shape in shapes.items():
            if len(shape) != rank or any(d < 0 for d in shape):
                raise RuntimeError(f"Shape provided for {which} is inconsistent with other shapes.")
        for axis in range(rank):
            if not shapes["min"][axis] <= shapes["opt"][axis] <= shapes["max"][axis]:
                raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        tensor = self._d_input(input)
        if len(tensor.shape) != rank:
            raise RuntimeError(f"input {input!r} has rank {len(tensor.shape)} "
                               f"({tensor.shape}), the profile gives rank {rank}")
        for axis, dim in enumerate(tensor.shape):
            if dim != -1 and any(shape[axis] != dim for shape in shapes.values()):
                raise RuntimeError(f"input {input!r} dim {axis} is fixed at {dim}, the "
                                   f"profile gives {[s[axis] for s in shapes.values()]}")
        self._d_shapes[input] = (shapes["min"], shapes["opt"], shapes["max"])

    def get_shape(self, input: str) -> list[Any]:
        return [self._d_module.Dims(s) for s in self._d_shapes.get(input, ())]

    def set_shape_input(self, input: str, min: Any, opt: Any, max: Any) -> None:
        raise RuntimeError(f"{input!r} is not a shape tensor input")

    def __bool__(self) -> bool:
        return bool(self._d_shapes)

    __nonzero__ = __bool__


class _IHostMemory(_Impl):
    dtype = property(lambda self: self._d_module.DataType.UINT8)
    nbytes = property(lambda self: len(bytes(self)))

    def __del__(self) -> None:
        pass


class _ITimingCache(_Impl):
    def serialize(self) -> Any:
        return _host_memory(self._d_module, self._d_bytes)

    def combine(self, input_cache: Any, ignore_mismatch: bool) -> bool:
        return True

    def reset(self) -> bool:
        object.__setattr__(self, "_d_bytes", b"")
        return True


def _host_memory(module: types.ModuleType, data: bytes) -> Any:
    memory = bytes.__new__(module.IHostMemory, data)
    return memory


class _IBuilderConfig(_Impl):
    def _d_flag(self, flag: Any, method: str) -> str:
        return str(_check(flag, self._d_module, "BuilderFlag", method).name)

    def set_flag(self, flag: Any) -> None:
        self._d_config.flags.add(self._d_flag(flag, "set_flag"))

    def clear_flag(self, flag: Any) -> None:
        self._d_config.flags.discard(self._d_flag(flag, "clear_flag"))

    def get_flag(self, flag: Any) -> bool:
        return self._d_flag(flag, "get_flag") in self._d_config.flags

    flags = property(lambda self: sum(1 << int(getattr(self._d_module.BuilderFlag, n))
                                      for n in self._d_config.flags))

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        _check(pool, self._d_module, "MemoryPoolType", "set_memory_pool_limit")
        if int(pool_size) < 0:
            raise TypeError("set_memory_pool_limit(): pool_size must be a non-negative int")
        self._d_config.memory_pool_limits[pool.name] = int(pool_size)

    def get_memory_pool_limit(self, pool: Any) -> int:
        _check(pool, self._d_module, "MemoryPoolType", "get_memory_pool_limit")
        return self._d_config.memory_pool_limits.get(pool.name, 0)

    def add_optimization_profile(self, profile: Any) -> int:
        if not profile:
            return -1  # TensorRT returns -1 for an invalid profile
        self._d_config.profiles.append(dict(profile._d_shapes))
        return len(self._d_config.profiles) - 1

    num_optimization_profiles = property(lambda self: len(self._d_config.profiles))

    def set_preview_feature(self, feature: Any, enable: bool) -> None:
        _check(feature, self._d_module, "PreviewFeature", "set_preview_feature")
        self._d_config.preview_features[feature.name] = bool(enable)

    def get_preview_feature(self, feature: Any) -> bool:
        _check(feature, self._d_module, "PreviewFeature", "get_preview_feature")
        return self._d_config.preview_features.get(feature.name, False)

    def set_quantization_flag(self, flag: Any) -> None:
        _check(flag, self._d_module, "QuantizationFlag", "set_quantization_flag")
        self._d_config.quantization_flags.add(flag.name)

    def clear_quantization_flag(self, flag: Any) -> None:
        _check(flag, self._d_module, "QuantizationFlag", "clear_quantization_flag")
        self._d_config.quantization_flags.discard(flag.name)

    def get_quantization_flag(self, flag: Any) -> bool:
        _check(flag, self._d_module, "QuantizationFlag", "get_quantization_flag")
        return flag.name in self._d_config.quantization_flags

    def get_tactic_sources(self) -> int:
        every = sum(1 << int(source) for source in self._d_module.TacticSource)  # the default
        return int(self._d_config.properties.get("tactic_sources", every))

    def set_tactic_sources(self, tactic_sources: int) -> bool:
        self._d_config.properties["tactic_sources"] = int(tactic_sources)
        return True

    def create_timing_cache(self, serialized_timing_cache: bytes) -> Any:
        return self._d_module.ITimingCache._d_new(bytes=bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        self._d_config.timing_cache = cache._d_bytes
        object.__setattr__(self, "_d_cache", cache)
        return True

    def get_timing_cache(self) -> Any:
        return getattr(self, "_d_cache", None)

    @property
    def builder_optimization_level(self) -> int:
        level = self._d_config.builder_optimization_level
        return 3 if level is None else level  # TensorRT's default

    @builder_optimization_level.setter
    def builder_optimization_level(self, level: int) -> None:
        if not isinstance(level, int) or level < 0:
            raise TypeError(f"builder_optimization_level: {level!r} is not an int >= 0")
        self._d_config.builder_optimization_level = min(level, 5)  # > 5 acts as 5

    @property
    def hardware_compatibility_level(self) -> Any:
        name = self._d_config.hardware_compatibility_level or "NONE"
        return getattr(self._d_module.HardwareCompatibilityLevel, name)

    @hardware_compatibility_level.setter
    def hardware_compatibility_level(self, level: Any) -> None:
        _check(level, self._d_module, "HardwareCompatibilityLevel", "hardware_compatibility_level")
        self._d_config.hardware_compatibility_level = level.name

    profiling_verbosity = _stored(
        "profiling_verbosity", lambda s: s._d_module.ProfilingVerbosity.LAYER_NAMES_ONLY,
        "ProfilingVerbosity")
    engine_capability = _stored(
        "engine_capability", lambda s: s._d_module.EngineCapability.STANDARD, "EngineCapability")
    default_device_type = _stored(
        "default_device_type", lambda s: s._d_module.DeviceType.GPU, "DeviceType")
    runtime_platform = _stored(
        "runtime_platform", lambda s: s._d_module.RuntimePlatform.SAME_AS_BUILD, "RuntimePlatform")
    tiling_optimization_level = _stored(
        "tiling_optimization_level", lambda s: s._d_module.TilingOptimizationLevel.NONE,
        "TilingOptimizationLevel")
    DLA_core = _stored("DLA_core", -1)
    max_aux_streams = _stored("max_aux_streams", -1)
    int8_calibrator = _stored("int8_calibrator", None)
    algorithm_selector = _stored("algorithm_selector", None)
    progress_monitor = _stored("progress_monitor", None)
    avg_timing_iterations = _stored("avg_timing_iterations", 1)


class _Builder(_Impl):
    def __init__(self, logger: Any) -> None:
        self._d_logger = logger
        self._d_networks: list[Any] = []

    logger = property(lambda self: self._d_logger)
    num_DLA_cores = property(lambda self: 0)
    max_DLA_batch_size = property(lambda self: 1)
    platform_has_tf32 = property(lambda self: True)
    platform_has_fast_fp16 = property(lambda self: True)
    platform_has_fast_int8 = property(lambda self: True)
    max_threads = property(lambda self: 1)

    def _d_error(self, message: str) -> None:
        self._d_module.__tensorrt_double__.errors.append(message)
        self._d_logger.log(self._d_module.ILogger.ERROR, message)

    def create_network(self, flags: int = 0) -> Any:
        kinds = self._d_module.NetworkDefinitionCreationFlag
        names = {member.name for member in kinds if flags & (1 << int(member))}
        if flags & ~sum(1 << int(member) for member in kinds):
            self._d_error(f"createNetworkV2: unknown NetworkDefinitionCreationFlag bits {flags:#x}")
            return None
        rec = NetworkRecord(creation_flags=names)
        self._d_module.__tensorrt_double__.networks.append(rec)
        network = self._d_module.INetworkDefinition._d_new(
            rec=rec, builder=self, inputs=[], outputs=[], layers=[], net_name="")
        self._d_networks.append(network)
        return network

    def create_builder_config(self) -> Any:
        rec = ConfigRecord(flags={"TF32"} if "TF32" in self._d_module.BuilderFlag.__members__
                           else set())
        self._d_module.__tensorrt_double__.configs.append(rec)
        return self._d_module.IBuilderConfig._d_new(config=rec)

    def create_optimization_profile(self) -> Any:
        return self._d_module.IOptimizationProfile._d_new(builder=self, shapes={})

    def build_serialized_network(self, network: Any, config: Any) -> Any:
        rec = copy.deepcopy(config._d_config)
        problems = uncovered_dynamic_dims(network._d_rec, rec)
        if any(-1 in t.shape for t in network._d_rec.inputs) and problems:
            for problem in problems:
                self._d_error(f"buildSerializedNetwork: {problem}")
            self._d_module.__tensorrt_double__.builds.append(BuildRecord(network._d_rec, rec, None))
            return None
        plan = PLAN_MAGIC + json.dumps({
            "tensorrt": self._d_module.__version__,
            "creation_flags": sorted(network._d_rec.creation_flags),
            "flags": sorted(rec.flags), "profiles": rec.profiles,
            "hardware_compatibility_level": rec.hardware_compatibility_level,
        }, sort_keys=True).encode()
        self._d_module.__tensorrt_double__.builds.append(BuildRecord(network._d_rec, rec, plan))
        return _host_memory(self._d_module, plan)


class _ParserError(_Impl):
    def __init__(self) -> None:
        raise TypeError("tensorrt.ParserError: No constructor defined!")

    def desc(self) -> str:
        return str(self._d_desc)

    def __str__(self) -> str:
        return f"In node -1 (parse): {self._d_desc}"

    __repr__ = __str__


class _OnnxParser(_Impl):
    def __init__(self, network: Any, logger: Any) -> None:
        self._d_network = network
        self._d_logger = logger
        self._d_errors: list[Any] = []
        self._d_flags = 0

    num_errors = property(lambda self: len(self._d_errors))
    flags = property(lambda self: self._d_flags,
                     lambda self, v: object.__setattr__(self, "_d_flags", int(v)))

    def get_error(self, index: int) -> Any:
        return self._d_errors[index]

    def clear_errors(self) -> None:
        self._d_errors.clear()

    def set_flag(self, flag: Any) -> None:
        _check(flag, self._d_module, "OnnxParserFlag", "set_flag")
        self._d_flags |= 1 << int(flag)

    def clear_flag(self, flag: Any) -> None:
        _check(flag, self._d_module, "OnnxParserFlag", "clear_flag")
        self._d_flags &= ~(1 << int(flag))

    def get_flag(self, flag: Any) -> bool:
        _check(flag, self._d_module, "OnnxParserFlag", "get_flag")
        return bool(self._d_flags & (1 << int(flag)))

    def set_builder_config(self, builder_config: Any) -> bool:
        return True

    def _d_fail(self, message: str) -> bool:
        self._d_errors.append(self._d_module.ParserError._d_new(desc=message))
        return False

    def parse_from_file(self, model: str) -> bool:
        try:
            proto = onnx.load(str(model), load_external_data=False)
        except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError, Exception) as e:
            return self._d_fail(f"cannot read {model}: {e}")
        self._d_network._d_rec.onnx_path = Path(model)
        return self._d_populate(proto)

    def parse(self, model: bytes, path: str | None = None) -> bool:
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as e:
            return self._d_fail(f"cannot read the model: {e}")
        return self._d_populate(proto)

    def _d_populate(self, proto: onnx.ModelProto) -> bool:
        network, module = self._d_network, self._d_module
        initializers = {init.name for init in proto.graph.initializer}

        def tensor(value: onnx.ValueInfoProto) -> TensorRecord | None:
            kind = value.type.tensor_type
            if kind.elem_type not in _ONNX_DTYPES or _ONNX_DTYPES[kind.elem_type] not in \
                    module.DataType.__members__:
                self._d_fail(f"{value.name}: unsupported ONNX data type {kind.elem_type}")
                return None
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
            return TensorRecord(name=value.name, dtype=_ONNX_DTYPES[kind.elem_type], shape=dims)

        read_inputs = [tensor(v) for v in proto.graph.input if v.name not in initializers]
        read_outputs = [tensor(v) for v in proto.graph.output]
        inputs = [t for t in read_inputs if t is not None]
        outputs = [t for t in read_outputs if t is not None]
        if self._d_errors:
            return False
        for rec in inputs:
            network.add_input(rec.name, getattr(module.DataType, rec.dtype), rec.shape)
        for rec in outputs:
            out = network._d_tensor(rec, "output")
            network._d_rec.outputs.append(rec)
            network._d_outputs.append(out)
        for index, node in enumerate(proto.graph.node):
            network._d_layers.append(module.ILayer._d_new(
                layer_name=node.name or f"node_{index}",
                type=_ONNX_LAYERS.get(node.op_type, "PLUGIN_V3"),
                inputs=len(node.input), outputs=len(node.output)))
        return True


_IMPLEMENTATIONS: dict[str, type] = {
    "Logger": _Logger, "ILogger": _ILogger, "Dims": _Dims, "Dims2": _Dims, "Dims3": _Dims,
    "Dims4": _Dims, "DimsHW": _Dims, "ITensor": _ITensor, "ILayer": _ILayer,
    "INetworkDefinition": _INetworkDefinition, "IOptimizationProfile": _IOptimizationProfile,
    "IHostMemory": _IHostMemory, "ITimingCache": _ITimingCache, "IBuilderConfig": _IBuilderConfig,
    "Builder": _Builder, "OnnxParser": _OnnxParser, "ParserError": _ParserError,
}


# --------------------------------------------------------------------------- the module


class _TrtEnum(enum.IntEnum):
    def __str__(self) -> str:
        return f"{type(self).__qualname__}.{self.name}"


def _make_enum(qualname: str, members: Iterable[str]) -> type[enum.IntEnum]:
    factory: Any = _TrtEnum  # the functional API: a new IntEnum with these members
    made: type[enum.IntEnum] = factory(qualname.rsplit(".", 1)[-1],
                                       [(m, i) for i, m in enumerate(members)],
                                       module="tensorrt", qualname=qualname)
    return made


# tensorrt/__init__.py (python/packaging/bindings_wheel, not in shared/third_party) adds Python's
# `with` to these classes (deprecated, no effect); Polygraphy uses it (`with cache.serialize()`).
_CONTEXT_MANAGERS = frozenset({"ILogger", "ICudaEngine", "IExecutionContext", "Runtime",
                               "IHostMemory", "Builder", "INetworkDefinition", "OnnxParser",
                               "IBuilderConfig"})


def _enter(self: Any) -> Any:
    return self


def _exit(self: Any, *exc_info: Any) -> None:
    return None


def _make_class(module: types.ModuleType, name: str, members: frozenset[str],
                nested: dict[str, Any]) -> type:
    impl = _IMPLEMENTATIONS.get(name)
    namespace: dict[str, Any] = {"_d_name": name, "_d_members": members, "_d_module": module,
                                 "__module__": "tensorrt", "__qualname__": name}
    for key, value in (vars(impl).items() if impl else ()):
        # Copied: the double's internals and what the release binds; a method or protocol
        # (__bool__, __len__, ...) the release does not bind stays absent.
        if key.startswith("_d") or (key in members and key != "__init__") or key == "__hash__":
            namespace[key] = value
    if "__init__" in members and impl and "__init__" in vars(impl):
        namespace["__init__"] = vars(impl)["__init__"]
    else:
        def no_constructor(self: Any, *args: Any, **kwargs: Any) -> None:
            raise TypeError(f"tensorrt.{name}: No constructor defined!")
        namespace["__init__"] = no_constructor
    for key, value in nested.items():
        if key in members:
            namespace[key] = value
    if name in _CONTEXT_MANAGERS:
        namespace.update(__enter__=_enter, __exit__=_exit)
    bases: tuple[type, ...] = (_Strict, bytes) if name == "IHostMemory" else (_Strict,)
    return type(name, bases, namespace)


def make_tensorrt_module(surface: TensorRTSurface) -> types.ModuleType:
    """A strict `tensorrt` module for the release of `surface` (see the module docstring)."""
    module = types.ModuleType("tensorrt", f"TensorRT {surface.version} test double")
    module.__version__ = surface.version  # type: ignore[attr-defined]
    module.__tensorrt_double__ = DoubleRecord()  # type: ignore[attr-defined]
    supplement = _SUPPLEMENT.get(surface.major_minor)
    if supplement is None and "OnnxParser" not in surface.classes:
        raise KeyError(f"tests/tensorrt_double.py: add the OnnxParser names of TensorRT "
                       f"{surface.version} (python/src/parsers/pyOnnx.cpp) to _SUPPLEMENT")
    enums = dict(surface.enums)
    classes = dict(surface.classes)
    functions = set(surface.functions)
    if "OnnxParser" not in surface.classes and supplement:
        enums.update(supplement["enums"])
        classes.update(supplement["classes"])
        functions.update(supplement["functions"])
    nested: dict[str, Any] = {}
    for qualname, members in enums.items():
        made = _make_enum(qualname, members)
        if "." in qualname:
            nested[qualname.rsplit(".", 1)[1]] = made
            nested.update({m: made[m] for m in members})
        else:
            setattr(module, qualname, made)
    for name, members in classes.items():
        setattr(module, name, _make_class(module, name, frozenset(members), nested))
    for name, target in surface.module_attributes.items():
        enum_name, _, member = target.rpartition(".")
        if enum_name in enums:
            setattr(module, name, getattr(getattr(module, enum_name), member))
    doubles = {"init_libnvinfer_plugins": lambda logger, namespace: True,
               "get_nv_onnx_parser_version": lambda: int("".join(
                   f"{int(p):02d}" for p in surface.version.split(".")[:3]))}
    for name in functions:
        setattr(module, name, doubles.get(name, _not_implemented(surface, name)))
    return module


def _not_implemented(surface: TensorRTSurface, name: str) -> Any:
    def function(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"tensorrt double: {name}() of TensorRT {surface.version}")
    return function


def double_record(module: types.ModuleType) -> DoubleRecord:
    """What the double module was asked to do."""
    record: DoubleRecord = module.__tensorrt_double__  # type: ignore[attr-defined]
    return record


# --------------------------------------------------------------------------- Polygraphy


def clear_polygraphy_tensorrt_cache() -> None:
    """Forget the tensorrt module every loaded Polygraphy module has imported lazily."""
    for name, loaded in list(sys.modules.items()):
        if not name.startswith("polygraphy") or loaded is None:
            continue
        lazy = vars(loaded).get("trt")
        if type(lazy).__name__ == "LazyModule":
            object.__setattr__(lazy, "module", None)  # LazyModule.__setattr__ would import
    util = sys.modules.get("polygraphy.backend.trt.util")
    if util is not None:
        util.TRT_LOGGER = None  # type: ignore[attr-defined]


def install_tensorrt_double(monkeypatch: pytest.MonkeyPatch,
                            surface: TensorRTSurface) -> types.ModuleType:
    """Make `import tensorrt` (and Polygraphy's lazy import) return the double of `surface`."""
    module = make_tensorrt_module(surface)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    clear_polygraphy_tensorrt_cache()
    return module
