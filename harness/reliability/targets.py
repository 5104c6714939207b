"""What the corpus runs against: every model and ensemble of a built repository, read from
its `config.pbtxt` files (inputs, dtypes, dims, max_batch_size), so new pipelines join
without a line changed here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from tritonkit.repository import CONFIG_NAME, read_config

_IMAGE_NAME = re.compile(r"IMAGE|IMG|PICTURE|PHOTO", re.IGNORECASE)
_TEXT_NAME = re.compile(r"TEXT|SENTENCE|QUERY|PROMPT|DOCUMENT|PASSAGE", re.IGNORECASE)


class InputKind(str, Enum):
    """What a tensor carries, which decides the kind-specific bad-input cases."""

    IMAGE = "image"  # BYTES: one encoded image per element
    TEXT = "text"  # BYTES: UTF-8 text
    BYTES = "bytes"  # other BYTES
    FLOAT = "float"
    INTEGER = "integer"
    BOOL = "bool"


@dataclass(frozen=True, kw_only=True)
class TensorInfo:
    name: str
    datatype: str  # the protocol name: FP32, INT64, BYTES, ...
    dims: tuple[int, ...]  # without the batch axis when the model batches; -1: variable
    kind: InputKind

    def concrete_dims(self) -> tuple[int, ...]:
        """The dims with every variable (-1) dim set to a small valid size."""
        return tuple(4 if d < 0 else d for d in self.dims)


@dataclass(frozen=True, kw_only=True)
class ModelTarget:
    name: str
    max_batch_size: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ensemble: bool
    python_backend: bool

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0


def protocol_datatype(data_type: int) -> str:
    """`TYPE_FP32` -> `FP32`, `TYPE_STRING` -> `BYTES`."""
    name = mc.DataType.Name(data_type).removeprefix("TYPE_")  # type: ignore[arg-type]
    return "BYTES" if name == "STRING" else name


def input_kind(name: str, datatype: str) -> InputKind:
    if datatype == "BYTES":
        if _IMAGE_NAME.search(name):
            return InputKind.IMAGE
        if _TEXT_NAME.search(name):
            return InputKind.TEXT
        return InputKind.BYTES
    if datatype.startswith(("FP", "BF")):
        return InputKind.FLOAT
    if datatype == "BOOL":
        return InputKind.BOOL
    return InputKind.INTEGER


def _tensor(entry: mc.ModelInput | mc.ModelOutput) -> TensorInfo:
    datatype = protocol_datatype(entry.data_type)
    return TensorInfo(name=entry.name, datatype=datatype, dims=tuple(int(d) for d in entry.dims),
                      kind=input_kind(entry.name, datatype))


def target_from_config(config: mc.ModelConfig) -> ModelTarget:
    return ModelTarget(
        name=config.name,
        max_batch_size=int(config.max_batch_size),
        inputs=tuple(_tensor(i) for i in config.input),
        outputs=tuple(_tensor(o) for o in config.output),
        ensemble=config.platform == "ensemble",
        python_backend=config.backend == "python",
    )


def load_targets(repository: Path) -> tuple[ModelTarget, ...]:
    """Every model of a built repository, sorted by name."""
    return tuple(target_from_config(read_config(path))
                 for path in sorted(repository.glob(f"*/{CONFIG_NAME}")))
