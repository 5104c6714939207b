"""Server answers about the repository and its models, as result dataclasses.

HTTP answers are JSON (dicts and lists); gRPC answers are protobuf messages. `JSON_ANSWERS`
and `PROTO_ANSWERS` bundle the three conversions each protocol needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from tritonkit_client.errors import ServerError
from tritonkit_client.results import (
    ModelConfig,
    ModelMetadata,
    ModelState,
    ModelStatus,
    TensorMetadata,
)


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


def statuses_from_json(entries: Sequence[Mapping[str, Any]]) -> list[ModelStatus]:
    """The HTTP repository index: a list of entries."""
    return [model_status_from_json(e) for e in entries]


def statuses_from_proto(response: Any) -> list[ModelStatus]:
    """A `RepositoryIndexResponse` message."""
    return [model_status_from_proto(m) for m in response.models]


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


def model_config_from_json(data: Mapping[str, Any]) -> ModelConfig:
    """The HTTP config answer as a `ModelConfig` message (fields this client does not know,
    from a newer server, are ignored)."""
    try:
        return json_format.ParseDict(dict(data), ModelConfig(), ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise ServerError(f"unexpected model config from the server: {e}") from e


def model_config_from_proto(response: Any) -> ModelConfig:
    """A `ModelConfigResponse` message: the config it carries."""
    config: ModelConfig = response.config
    return config


@dataclass(frozen=True, kw_only=True)
class Answers:
    """How one protocol's answers to index, metadata and config requests become results."""

    index: Callable[[Any], list[ModelStatus]]
    metadata: Callable[[Any], ModelMetadata]
    config: Callable[[Any], ModelConfig]


JSON_ANSWERS = Answers(
    index=statuses_from_json, metadata=model_metadata_from_json, config=model_config_from_json
)
PROTO_ANSWERS = Answers(
    index=statuses_from_proto, metadata=model_metadata_from_proto, config=model_config_from_proto
)
