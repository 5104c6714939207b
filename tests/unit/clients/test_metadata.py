"""Server answers as results: HTTP JSON as Triton 2.51 sends it, and gRPC messages."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2
from tritonkit_client._metadata import (
    JSON_ANSWERS,
    PROTO_ANSWERS,
    model_config_from_json,
    model_metadata_from_json,
    model_metadata_from_proto,
    model_status_from_json,
    model_status_from_proto,
)
from tritonkit_client.errors import ServerError
from tritonkit_client.results import ModelState, ModelStatus, TensorMetadata

# Captured from a local Triton 2.51 (`GET /v2/models/ident/config`), trimmed; the last key is
# one this client's protobuf does not know (as from a newer server).
HTTP_CONFIG: dict[str, Any] = {
    "name": "ident",
    "platform": "",
    "backend": "python",
    "version_policy": {"latest": {"num_versions": 1}},
    "max_batch_size": 4,
    "input": [
        {
            "name": "X",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NONE",
            "dims": [3],
            "is_shape_tensor": False,
            "allow_ragged_batch": False,
            "optional": False,
        },
    ],
    "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [3], "label_filename": ""}],
    "dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": "100"},
    "a_field_from_the_future": True,
}


def test_model_config_from_json() -> None:
    config = model_config_from_json(HTTP_CONFIG)
    assert isinstance(config, model_config_pb2.ModelConfig)
    assert config.max_batch_size == 4
    assert config.backend == "python"
    assert list(config.input[0].dims) == [3]
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]


def test_model_config_from_json_rejects_wrong_types() -> None:
    with pytest.raises(ServerError, match="unexpected model config"):
        model_config_from_json({"max_batch_size": "many"})


def test_model_status_from_json_handles_models_never_loaded() -> None:
    loaded = model_status_from_json({"name": "cls", "version": "1", "state": "READY"})
    assert loaded.ready and loaded.version == "1" and loaded.state is ModelState.READY
    listed = model_status_from_json({"name": "broken"})
    assert listed.state is ModelState.NOT_LOADED
    assert listed.version == ""
    assert not listed.ready


def test_model_status_from_proto() -> None:
    entry = service_pb2.RepositoryIndexResponse.ModelIndex(
        name="broken", version="1", state="UNAVAILABLE", reason="Internal: boom"
    )
    status = model_status_from_proto(entry)
    assert status.state is ModelState.UNAVAILABLE
    assert status.reason == "Internal: boom"
    assert ModelState.parse("SOMETHING_NEW") is ModelState.UNKNOWN


def test_model_metadata_from_json_and_proto_agree() -> None:
    data = {
        "name": "ident",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "Y", "datatype": "FP32", "shape": [-1, 3]}],
    }
    message = service_pb2.ModelMetadataResponse(
        name="ident",
        versions=["1"],
        platform="python",
        inputs=[
            service_pb2.ModelMetadataResponse.TensorMetadata(
                name="X", datatype="FP32", shape=[-1, 3]
            )
        ],
        outputs=[
            service_pb2.ModelMetadataResponse.TensorMetadata(
                name="Y", datatype="FP32", shape=[-1, 3]
            )
        ],
    )
    from_json = model_metadata_from_json(data)
    assert from_json == model_metadata_from_proto(message)
    assert from_json.inputs == (TensorMetadata(name="X", datatype="FP32", shape=(-1, 3)),)
    assert from_json.output("Y") == TensorMetadata(name="Y", datatype="FP32", shape=(-1, 3))
    assert from_json.output("Z") is None


def test_model_metadata_from_json_rejects_garbage() -> None:
    with pytest.raises(ServerError):
        model_metadata_from_json({"versions": ["1"]})


def test_json_and_proto_answers_give_the_same_results() -> None:
    index_json = [{"name": "a", "version": "1", "state": "READY"}, {"name": "b"}]
    index_proto = service_pb2.RepositoryIndexResponse(
        models=[
            service_pb2.RepositoryIndexResponse.ModelIndex(name="a", version="1", state="READY"),
            service_pb2.RepositoryIndexResponse.ModelIndex(name="b"),
        ]
    )
    expected = [
        ModelStatus(name="a", version="1", state=ModelState.READY),
        ModelStatus(name="b", version="", state=ModelState.NOT_LOADED),
    ]
    assert JSON_ANSWERS.index(index_json) == PROTO_ANSWERS.index(index_proto) == expected

    config = json_format.ParseDict(
        {"name": "ident", "max_batch_size": 4}, model_config_pb2.ModelConfig()
    )
    config_proto = service_pb2.ModelConfigResponse(config=config)
    from_json = JSON_ANSWERS.config({"name": "ident", "max_batch_size": 4})
    assert from_json == PROTO_ANSWERS.config(config_proto) == config
    assert JSON_ANSWERS.metadata is model_metadata_from_json
    assert PROTO_ANSWERS.metadata is model_metadata_from_proto
