"""Small typed results of the client. `tritonkit_client._metadata` fills them from server
answers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tritonclient.grpc import model_config_pb2

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
