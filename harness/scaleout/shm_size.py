"""How much shared memory (/dev/shm, compose `shm_size`) a Triton container needs.

Docker gives a container 64 MiB of /dev/shm by default. Triton's Python backend moves every
request and response tensor between the server and each model instance's stub process through
a shared-memory region of its own, so a repository with Python steps runs out of it under load
("Failed to increase the shared memory pool size"). The estimate, from the built repository's
config.pbtxt files:

    per Python-backend instance = region_default_bytes
                                  + in_flight * max_batch * (sum input bytes + sum output bytes)
    instances of a model        = instance_group count (x gpu_count for KIND_GPU groups
                                  without an explicit `gpus` list)
    total                       = headroom_bytes + sum over Python-backend models of
                                  instances * per-instance bytes, rounded up to whole MiB

Tensor bytes are element count (dims, -1 counted as `variable_dim`) times the dtype size;
a BYTES/STRING element counts as `bytes_element_size` for inputs (encoded images, text) and
`bytes_output_element_size` for outputs (labels), plus its 4-byte length prefix.
`region_default_bytes` is the backend's `shm-default-byte-size` (1 MiB by default), `in_flight`
= 2 (a request and a response of one batch may coexist), `max_batch` = max_batch_size (1 for
models without batching). TensorRT, ONNX Runtime and ensemble models use no /dev/shm.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from harness.scaleout.errors import ScaleoutError
from tritonkit.errors import ToolkitError
from tritonkit.repository import CONFIG_NAME, ModelKind, model_kind, parse_config

log = logging.getLogger(__name__)

MIB = 1 << 20
DEFAULT_REGION_BYTES = 1 * MIB  # Python backend shm-default-byte-size
DEFAULT_HEADROOM_BYTES = 64 * MIB  # Docker's own default, kept for the server and the rest
DEFAULT_BYTES_ELEMENT_SIZE = 256 * 1024  # an encoded image of a few hundred kB
DEFAULT_BYTES_OUTPUT_ELEMENT_SIZE = 1024  # a label
_LENGTH_PREFIX = 4  # Triton serializes each BYTES element with a 4-byte length

_DTYPE_BYTES: dict[int, int] = {
    mc.TYPE_BOOL: 1,
    mc.TYPE_UINT8: 1,
    mc.TYPE_UINT16: 2,
    mc.TYPE_UINT32: 4,
    mc.TYPE_UINT64: 8,
    mc.TYPE_INT8: 1,
    mc.TYPE_INT16: 2,
    mc.TYPE_INT32: 4,
    mc.TYPE_INT64: 8,
    mc.TYPE_FP16: 2,
    mc.TYPE_FP32: 4,
    mc.TYPE_FP64: 8,
    mc.TYPE_BF16: 2,
}


@dataclass(frozen=True, kw_only=True)
class ModelShm:
    """The shared memory one Python-backend model needs."""

    name: str
    instances: int
    max_batch: int
    sample_bytes: int  # inputs + outputs of one batch element
    per_instance_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.instances * self.per_instance_bytes


@dataclass(frozen=True, kw_only=True)
class ShmEstimate:
    """The estimate for a whole repository; `total_bytes` is whole MiB."""

    models: tuple[ModelShm, ...]
    headroom_bytes: int
    total_bytes: int

    @property
    def total_mib(self) -> int:
        return self.total_bytes // MIB

    @property
    def compose_value(self) -> str:
        """The value for compose's `shm_size` (and an emptyDir `sizeLimit` in Mi)."""
        return f"{self.total_mib}m"


def _tensor_bytes(
    tensor: mc.ModelInput | mc.ModelOutput, *, bytes_element_size: int, variable_dim: int
) -> int:
    dims = list(tensor.reshape.shape) if tensor.HasField("reshape") and tensor.reshape.shape \
        else list(tensor.dims)
    elements = math.prod(variable_dim if d == -1 else d for d in dims) if dims else 1
    if tensor.data_type == mc.TYPE_STRING:
        return elements * (bytes_element_size + _LENGTH_PREFIX)
    size = _DTYPE_BYTES.get(tensor.data_type)
    if size is None:
        raise ScaleoutError(
            f"tensor {tensor.name!r}: unknown data type {tensor.data_type}; cannot size it"
        )
    return elements * size


def _instances(config: mc.ModelConfig, gpu_count: int) -> int:
    if not config.instance_group:
        return 1
    total = 0
    for group in config.instance_group:
        count = group.count or 1
        if group.kind == mc.ModelInstanceGroup.KIND_GPU:
            count *= len(group.gpus) or gpu_count
        total += count
    return total


def model_shm(
    config: mc.ModelConfig,
    *,
    gpu_count: int = 1,
    bytes_element_size: int = DEFAULT_BYTES_ELEMENT_SIZE,
    bytes_output_element_size: int = DEFAULT_BYTES_OUTPUT_ELEMENT_SIZE,
    variable_dim: int = 1024,
    region_default_bytes: int = DEFAULT_REGION_BYTES,
    in_flight: int = 2,
) -> ModelShm | None:
    """The need of one model; None for models that use no shared memory (not Python)."""
    if model_kind(config) is not ModelKind.PYTHON:
        return None
    sample = sum(
        _tensor_bytes(t, bytes_element_size=bytes_element_size, variable_dim=variable_dim)
        for t in config.input
    ) + sum(
        _tensor_bytes(t, bytes_element_size=bytes_output_element_size, variable_dim=variable_dim)
        for t in config.output
    )
    max_batch = max(config.max_batch_size, 1)
    return ModelShm(
        name=config.name,
        instances=_instances(config, gpu_count),
        max_batch=max_batch,
        sample_bytes=sample,
        per_instance_bytes=region_default_bytes + in_flight * max_batch * sample,
    )


def estimate_shm_size(
    repository: Path,
    *,
    gpu_count: int = 1,
    bytes_element_size: int = DEFAULT_BYTES_ELEMENT_SIZE,
    bytes_output_element_size: int = DEFAULT_BYTES_OUTPUT_ELEMENT_SIZE,
    variable_dim: int = 1024,
    region_default_bytes: int = DEFAULT_REGION_BYTES,
    in_flight: int = 2,
    headroom_bytes: int = DEFAULT_HEADROOM_BYTES,
) -> ShmEstimate:
    """The shared memory a container serving `repository` needs (formula: module docstring)."""
    root = Path(repository)
    if not root.is_dir():
        raise ScaleoutError(f"{root}: model repository does not exist")
    models: list[ModelShm] = []
    for config_path in sorted(root.glob(f"*/{CONFIG_NAME}")):
        try:
            config = parse_config(config_path.read_text(encoding="utf-8"), config_path)
        except (OSError, ToolkitError) as e:
            raise ScaleoutError(f"{config_path}: cannot read the config ({e})") from e
        if not config.name:
            config.name = config_path.parent.name
        need = model_shm(
            config, gpu_count=gpu_count, bytes_element_size=bytes_element_size,
            bytes_output_element_size=bytes_output_element_size, variable_dim=variable_dim,
            region_default_bytes=region_default_bytes, in_flight=in_flight,
        )
        if need is not None:
            models.append(need)
    raw = headroom_bytes + sum(m.total_bytes for m in models)
    total = math.ceil(raw / MIB) * MIB
    log.info("%s: %d Python-backend model(s) need %d MiB of /dev/shm", root, len(models),
             total // MIB)
    return ShmEstimate(models=tuple(models), headroom_bytes=headroom_bytes, total_bytes=total)
