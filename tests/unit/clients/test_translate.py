"""Error translation from real tritonclient, gRPC, aiohttp and socket exceptions."""

from __future__ import annotations

import gevent
import grpc
import grpc.aio
import pytest
from aiohttp import ServerDisconnectedError
from tritonclient.grpc._utils import get_error_grpc
from tritonclient.utils import InferenceServerException
from tritonkit_client._translate import TRANSLATABLE, status_error_type, translate_error
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    ModelUnavailableError,
    ModelUnloadingError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
)

# Status strings exactly as tritonclient reports them (gRPC: str(rpc_error.code());
# HTTP: str(response.status_code)), messages as Triton 2.51 sends them.
CASES = [
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ServerUnavailableError),
    ("503", "Service Unavailable", ServerUnavailableError),
    ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", ResourceExhaustedError),
    ("503", "Exceeds maximum queue size", ResourceExhaustedError),
    ("StatusCode.RESOURCE_EXHAUSTED", "rate limited", ResourceExhaustedError),
    ("429", "Too Many Requests", ResourceExhaustedError),
    ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'X'", InvalidInputError),
    ("400", "inference request batch-size must be <= 4 for 'ident'", InvalidInputError),
    (
        "StatusCode.NOT_FOUND",
        "Request for unknown model: 'nope' is not found",
        ModelUnavailableError,
    ),
    ("404", "Request for unknown model: 'nope' is not found", ModelUnavailableError),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'digits' has no available versions",
     ModelUnloadingError),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", ClientTimeoutError),
    ("StatusCode.INTERNAL", "bad image", ServerError),
    ("500", "bad image", ServerError),
    ("StatusCode.UNIMPLEMENTED", "nope", ServerError),
    ("StatusCode.CANCELLED", "Locally cancelled by application!", ClientError),
]


@pytest.mark.parametrize(("status", "message", "expected"), CASES)
def test_inference_server_exception_by_status(
    status: str, message: str, expected: type[ClientError]
) -> None:
    original = InferenceServerException(msg=message, status=status)
    translated = translate_error(original, context="infer 'm' at grpc://h:1")
    assert type(translated) is expected
    assert message in str(translated)
    assert status in str(translated)
    assert str(translated).startswith("infer 'm' at grpc://h:1: ")


def test_status_none_is_refused_input() -> None:
    # tritonclient raises these itself, before sending anything (see raise_error calls)
    original = InferenceServerException(
        msg='Parameter "priority" is a reserved parameter and cannot be specified.'
    )
    translated = translate_error(original, context="infer")
    assert type(translated) is InvalidInputError
    assert "reserved parameter" in str(translated)


def test_status_error_type_accepts_codes_in_every_spelling() -> None:
    assert status_error_type("UNAVAILABLE") is ServerUnavailableError
    assert status_error_type("StatusCode.RESOURCE_EXHAUSTED") is ResourceExhaustedError
    assert status_error_type(429) is ResourceExhaustedError
    assert status_error_type(" 400 ") is InvalidInputError
    assert status_error_type("418") is ServerError
    assert status_error_type(None) is InvalidInputError


def test_grpc_message_too_large_is_invalid_input_with_a_hint() -> None:
    original = InferenceServerException(
        msg="CLIENT: Sent message larger than max (2097244 vs. 1048576)",
        status="StatusCode.RESOURCE_EXHAUSTED",
    )
    translated = translate_error(original, context="infer")
    assert type(translated) is InvalidInputError
    assert not translated.transient
    assert "max_message_mb" in str(translated)


def aio_rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details, debug_error_string="dbg"
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, ServerUnavailableError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInputError),
        (grpc.StatusCode.NOT_FOUND, ModelUnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ClientTimeoutError),
        (grpc.StatusCode.INTERNAL, ServerError),
    ],
)
def test_raw_grpc_errors(code: grpc.StatusCode, expected: type[ClientError]) -> None:
    rpc_error = aio_rpc_error(code, "server says no")
    translated = translate_error(rpc_error, context="ping")
    assert type(translated) is expected
    assert "server says no" in str(translated)
    # tritonclient's own conversion of the same error lands in the same class
    assert type(translate_error(get_error_grpc(rpc_error), context="ping")) is expected


def test_socket_errors() -> None:
    refused = translate_error(ConnectionRefusedError(111, "Connection refused"), context="ping")
    assert type(refused) is ServerUnavailableError
    assert "Connection refused" in str(refused)
    assert type(translate_error(TimeoutError("timed out"), context="ping")) is ClientTimeoutError
    assert type(translate_error(OSError(113, "No route to host"), context="p")) is (
        ServerUnavailableError
    )


def test_aiohttp_and_gevent_errors() -> None:
    disconnected = translate_error(ServerDisconnectedError(), context="ping")
    assert type(disconnected) is ServerUnavailableError
    assert type(translate_error(gevent.Timeout(1.0), context="ping")) is ClientTimeoutError


def test_translatable_covers_what_the_libraries_raise() -> None:
    for error in (
        InferenceServerException("x", status="400"),
        aio_rpc_error(grpc.StatusCode.UNAVAILABLE, "x"),
        ConnectionRefusedError(),
        TimeoutError(),
        ServerDisconnectedError(),
        gevent.Timeout(1.0),
    ):
        assert isinstance(error, TRANSLATABLE)


def test_client_errors_are_returned_as_they_are() -> None:
    error = InvalidInputError("mine")
    assert translate_error(error, context="ignored") is error


def test_translated_errors_chain_when_raised_from() -> None:
    original = InferenceServerException("gone", status="404")
    with pytest.raises(ModelUnavailableError) as info:
        try:
            raise original
        except TRANSLATABLE as e:
            raise translate_error(e, context="infer") from e
    assert info.value.__cause__ is original
