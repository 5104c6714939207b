"""Generate `config.pbtxt` messages from the spec, through `model_config_pb2` only.

Tensor names, dtypes and dims come from the ONNX model (models) or the spec (Python steps);
`max_batch_size` and the TensorRT profile come from the same spec field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from tritonkit.build.assets import asset_location
from tritonkit.build.onnx_inspect import OnnxModelInfo, OnnxTensor
from tritonkit.errors import ConfigError
from tritonkit.runtime import parameters as parameter_names
from tritonkit.spec import (
    DataType,
    DynamicBatching,
    ImageFormat,
    InstanceKind,
    ModelSpec,
    PythonStepSpec,
    QueueTimeoutAction,
    ServingOptions,
    Target,
    TensorSpec,
)

LABELS_FILE = "labels.txt"
_IMAGE_FORMATS = {ImageFormat.NCHW: mc.ModelInput.FORMAT_NCHW,
                  ImageFormat.NHWC: mc.ModelInput.FORMAT_NHWC}

PLATFORMS: dict[Target, str] = {
    Target.TENSORRT: "tensorrt_plan",
    Target.ONNXRUNTIME: "onnxruntime_onnx",
}
MODEL_FILES: dict[Target, str] = {
    Target.TENSORRT: "model.plan",
    Target.ONNXRUNTIME: "model.onnx",
    Target.LOCAL: "model.onnx",
}


@dataclass(frozen=True, kw_only=True)
class Tensor:
    """A config tensor: dims exclude the batch axis when the model is batched."""

    name: str
    dtype: DataType
    dims: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class WarmupInput:
    name: str
    dtype: DataType
    dims: tuple[int, ...]
    file_name: str  # inside <model>/warmup/


def data_type(dtype: DataType) -> int:
    return int(mc.DataType.Value(f"TYPE_{'STRING' if dtype is DataType.BYTES else dtype.value}"))


def tensors_from_onnx(info: OnnxModelInfo, *, batched: bool) -> tuple[list[Tensor], list[Tensor]]:
    def convert(t: OnnxTensor) -> Tensor:
        return Tensor(name=t.name, dtype=t.dtype, dims=t.dims_without_batch if batched else t.dims)

    return [convert(t) for t in info.inputs], [convert(t) for t in info.outputs]


def tensors_from_spec(tensors: Iterable[TensorSpec]) -> list[Tensor]:
    return [Tensor(name=t.name, dtype=t.dtype, dims=t.dims) for t in tensors]


def _fill_io(
    message: mc.ModelInput | mc.ModelOutput, tensor: Tensor,
) -> None:
    message.name = tensor.name
    message.data_type = data_type(tensor.dtype)  # type: ignore[assignment]
    if tensor.dims:
        message.dims.extend(tensor.dims)
    else:  # Triton needs at least one dim: a scalar is [1], reshaped to [] for the model
        message.dims.append(1)
        message.reshape.SetInParent()


def _dynamic_batching(config: mc.ModelConfig, batching: DynamicBatching) -> None:
    db = config.dynamic_batching
    db.SetInParent()
    db.preferred_batch_size.extend(batching.preferred_batch_sizes)
    db.max_queue_delay_microseconds = batching.max_queue_delay_us
    _default_queue_policy(db.default_queue_policy, batching)


_TIMEOUT_ACTIONS: dict[QueueTimeoutAction, int] = {
    QueueTimeoutAction.REJECT: int(mc.ModelQueuePolicy.REJECT),
    QueueTimeoutAction.DELAY: int(mc.ModelQueuePolicy.DELAY),
}


def _default_queue_policy(policy: mc.ModelQueuePolicy, batching: DynamicBatching) -> None:
    """A bounded queue: a request beyond `max_queue_size` is rejected at once (UNAVAILABLE,
    "exceeds maximum queue size"); one that waits past its timeout gets the timeout action."""
    policy.SetInParent()
    policy.max_queue_size = batching.max_queue_size
    policy.timeout_action = _TIMEOUT_ACTIONS[batching.timeout_action]  # type: ignore[assignment]
    policy.default_timeout_microseconds = batching.queue_timeout_us
    policy.allow_timeout_override = True


def _instance_kind(kind: InstanceKind, target: Target) -> int:
    if kind is InstanceKind.AUTO:
        kind = InstanceKind.CPU if target is Target.LOCAL else InstanceKind.GPU
    if target is Target.LOCAL:  # the local target runs on the CPU Triton; no GPU there
        kind = InstanceKind.CPU
    return int(mc.ModelInstanceGroup.KIND_GPU if kind is InstanceKind.GPU
               else mc.ModelInstanceGroup.KIND_CPU)


def _common(config: mc.ModelConfig, serving: ServingOptions, target: Target,
            parameters: Mapping[str, str]) -> None:
    config.max_batch_size = serving.max_batch_size
    if serving.dynamic_batching is not None and serving.max_batch_size > 0:
        _dynamic_batching(config, serving.dynamic_batching)
    group = config.instance_group.add()
    group.kind = _instance_kind(serving.instance_group.kind, target)  # type: ignore[assignment]
    group.count = serving.instance_group.count
    if group.kind == mc.ModelInstanceGroup.KIND_GPU:
        group.gpus.extend(serving.instance_group.gpus)
    policy = serving.version_policy
    if policy.all:
        config.version_policy.all.SetInParent()
    elif policy.specific:
        config.version_policy.specific.versions.extend(policy.specific)
    else:
        config.version_policy.latest.num_versions = policy.latest or 1
    for key in sorted(parameters):
        config.parameters[key].string_value = parameters[key]
    if serving.response_cache:
        config.response_cache.enable = True


def model_config(
    model: ModelSpec, info: OnnxModelInfo, *, target: Target,
    warmup: Sequence[WarmupInput] = (),
) -> mc.ModelConfig:
    """The config of an ONNX model for a resolved target (not AUTO)."""
    if target is Target.AUTO:
        raise ValueError("resolve Target.AUTO before generating configs")
    config = mc.ModelConfig(name=model.name)
    parameters = dict(model.serving.parameters)
    if target is Target.LOCAL:
        # Triton's ONNX Runtime backend on KIND_CPU: the config of a CPU deployment in the NGC
        # container, and what the local server runs (tritonkit.server.onnxruntime_backend)
        config.backend = "onnxruntime"
    else:
        config.platform = PLATFORMS[target]
    if target is not Target.TENSORRT and model.onnxruntime.intra_op_threads:
        parameters[parameter_names.ORT_INTRA_OP_THREADS] = str(model.onnxruntime.intra_op_threads)
    inputs, outputs = tensors_from_onnx(info, batched=model.max_batch_size > 0)
    for tensor in inputs:
        _fill_io(config.input.add(), tensor)
    if model.image_format is not ImageFormat.NONE:
        if len(inputs) != 1 or len(inputs[0].dims) != 3:
            raise ConfigError(
                f"{model.name}: image_format {model.image_format.value} needs one input of "
                f"3 dims besides the batch axis; the ONNX model has "
                f"{[f'{t.name} {list(t.dims)}' for t in inputs]}")
        config.input[0].format = _IMAGE_FORMATS[model.image_format]  # type: ignore[assignment]
    for i, tensor in enumerate(outputs):
        out = config.output.add()
        _fill_io(out, tensor)
        if i == 0 and model.serving.labels is not None:
            out.label_filename = LABELS_FILE
    _common(config, model.serving, target, parameters)
    profiles = 1 + len(model.tensorrt.extra_profile_batch_sizes)
    if target is Target.TENSORRT and profiles > 1:
        # Triton's TensorRT backend uses profile 0 only, unless the instance group lists them;
        # it then picks, per batch, the profile that fits it best.
        for group in config.instance_group:
            group.profile.extend(str(i) for i in range(profiles))
    if target is Target.TENSORRT and model.tensorrt.cuda_graphs:
        config.optimization.cuda.graphs = True
    if target is Target.ONNXRUNTIME and model.onnxruntime.tensorrt_accelerator:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
        accelerator.name = "tensorrt"
        accelerator.parameters["precision_mode"] = model.onnxruntime.accelerator_precision.name
        accelerator.parameters["max_workspace_size_bytes"] = str(
            model.tensorrt.workspace_mib * 1024 * 1024)
    if model.warmup is not None and warmup:
        entry = config.model_warmup.add()
        entry.name = f"{model.name}_real_samples"
        entry.batch_size = model.warmup.batch_size if model.max_batch_size > 0 else 1
        entry.count = model.warmup.count
        for w in warmup:
            item = entry.inputs[w.name]
            item.data_type = data_type(w.dtype)  # type: ignore[assignment]
            item.dims.extend(w.dims)
            item.input_data_file = w.file_name
    return config


def python_step_config(step: PythonStepSpec) -> mc.ModelConfig:
    """The config of a Python-backend step; the same for every target (steps run on CPU)."""
    config = mc.ModelConfig(name=step.name, backend="python")
    for tensor in tensors_from_spec(step.inputs):
        _fill_io(config.input.add(), tensor)
    for tensor in tensors_from_spec(step.outputs):
        _fill_io(config.output.add(), tensor)
    parameters = {**step.serving.parameters, parameter_names.FUNCTION: step.function}
    parameters.update({key: asset_location(path) for key, path in step.assets.items()})
    if step.serving.labels is not None:
        parameters[parameter_names.LABELS_FILE] = LABELS_FILE
    _common(config, step.serving, Target.LOCAL, parameters)
    return config
