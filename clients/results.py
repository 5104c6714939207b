"""Small typed results of the client, and their parsing from HTTP JSON and gRPC messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from clients.errors import ServerError

ModelConfig = model_config_pb2.ModelConfig


class ModelState(str, Enum):
    """A model's state in the repository index. NOT_LOADED: listed but never loaded."""

    READY = "READY"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"
    UNKNOWN = "UNKNOWN"
    NOT_LOADED = "NOT_LOADED"

    @classmethod
    def parse(cls, text: str | None) -> ModelState:
        if not text:
            return cls.NOT_LOADED
        try:
            return cls(text.upper())
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, kw_only=True)
class ModelStatus:
    """One entry of the server's model repository index."""

    name: str
    version: str  # "" when no version is loaded
    state: ModelState
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY


@dataclass(frozen=True, kw_only=True)
class TensorMetadata:
    """An input or output of a model; `shape` has -1 for variable dims (and the batch axis)."""

    name: str
    datatype: str  # Triton name: FP32, INT64, BYTES, ...
    shape: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]

    def output(self, name: str) -> TensorMetadata | None:
        return next((t for t in self.outputs if t.name == name), None)


@dataclass(frozen=True, kw_only=True)
class ModelReadiness:
    name: str
    ready: bool


@dataclass(frozen=True, kw_only=True)
class HealthReport:
    """Liveness, readiness and per-model readiness of one server."""

    url: str
    live: bool
    ready: bool
    models: tuple[ModelReadiness, ...] = ()

    @property
    def ok(self) -> bool:
        return self.live and self.ready and all(m.ready for m in self.models)

    @property
    def models_not_ready(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if not m.ready)


def model_status_from_json(entry: Mapping[str, Any]) -> ModelStatus:
    """An entry of the HTTP `/v2/repository/index` answer (keys are absent when not loaded)."""
    return ModelStatus(
        name=str(entry["name"]),
        version=str(entry.get("version", "")),
        state=ModelState.parse(entry.get("state")),
        reason=str(entry.get("reason", "")),
    )


def model_status_from_proto(entry: Any) -> ModelStatus:
    """A `RepositoryIndexResponse.ModelIndex` message."""
    return ModelStatus(
        name=entry.name,
        version=entry.version,
        state=ModelState.parse(entry.state),
        reason=entry.reason,
    )


def _tensors(entries: Sequence[Any], *, from_json: bool) -> tuple[TensorMetadata, ...]:
    if from_json:
        return tuple(
            TensorMetadata(
                name=str(t["name"]),
                datatype=str(t["datatype"]),
                shape=tuple(int(d) for d in t.get("shape", ())),
            )
            for t in entries
        )
    return tuple(
        TensorMetadata(name=t.name, datatype=t.datatype, shape=tuple(int(d) for d in t.shape))
        for t in entries
    )


def model_metadata_from_json(data: Mapping[str, Any]) -> ModelMetadata:
    try:
        return ModelMetadata(
            name=str(data["name"]),
            versions=tuple(str(v) for v in data.get("versions", ())),
            platform=str(data.get("platform", "")),
            inputs=_tensors(data.get("inputs", ()), from_json=True),
            outputs=_tensors(data.get("outputs", ()), from_json=True),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ServerError(f"unexpected model metadata from the server: {e!r}") from e


def model_metadata_from_proto(message: Any) -> ModelMetadata:
    """A `ModelMetadataResponse` message."""
    return ModelMetadata(
        name=message.name,
        versions=tuple(message.versions),
        platform=message.platform,
        inputs=_tensors(message.inputs, from_json=False),
        outputs=_tensors(message.outputs, from_json=False),
    )


def model_config_from_json(data: Mapping[str, Any]) -> model_config_pb2.ModelConfig:
    """The HTTP config answer as a `ModelConfig` message (fields this client does not know,
    from a newer server, are ignored)."""
    try:
        return json_format.ParseDict(
            dict(data), model_config_pb2.ModelConfig(), ignore_unknown_fields=True
        )
    except json_format.ParseError as e:
        raise ServerError(f"unexpected model config from the server: {e}") from e
