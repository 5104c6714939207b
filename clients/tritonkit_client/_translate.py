"""The one place that turns tritonclient, gRPC, aiohttp and socket errors into ClientErrors.

Callers catch `TRANSLATABLE` and write `raise translate_error(e, context=...) from e`.
The mapping follows the status the server sent (gRPC code or HTTP status), as observed on
Triton 2.51: unknown model -> NOT_FOUND/404, bad shape/dtype/name or batch too large ->
INVALID_ARGUMENT/400, a failing model -> INTERNAL/500, refused connection -> UNAVAILABLE or
ConnectionRefusedError, deadline -> DEADLINE_EXCEEDED or TimeoutError.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from tritonclient.utils import InferenceServerException

from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    ModelUnavailableError,
    ModelUnloadingError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
    SharedMemoryError,
)

logger = logging.getLogger(__name__)

_optional: list[type[BaseException]] = []
try:
    import grpc

    _RPC_ERROR: type[BaseException] | None = grpc.RpcError
    _optional.append(grpc.RpcError)
except ImportError:  # tritonclient installed without the grpc extra
    _RPC_ERROR = None
try:
    import aiohttp

    _AIOHTTP_CONNECTION: type[BaseException] | None = aiohttp.ClientConnectionError
    _optional.append(aiohttp.ClientError)
except ImportError:  # tritonclient installed without the http extra
    _AIOHTTP_CONNECTION = None
try:
    import gevent

    _GEVENT_TIMEOUT: type[BaseException] | None = gevent.Timeout
    _optional.append(gevent.Timeout)
except ImportError:
    _GEVENT_TIMEOUT = None
try:
    with warnings.catch_warnings():  # tritonclient 2.50 imports the deprecated pkg_resources
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from tritonclient.utils.shared_memory import SharedMemoryException

    _SHM_ERROR: type[BaseException] | None = SharedMemoryException
    _optional.append(SharedMemoryException)
except (ImportError, OSError):  # libcshm.so is Linux-only
    _SHM_ERROR = None

#: Exception types `translate_error` understands; catch exactly these around library calls.
TRANSLATABLE: tuple[type[BaseException], ...] = (
    InferenceServerException,
    OSError,  # ConnectionRefusedError, TimeoutError (socket.timeout, asyncio.TimeoutError)
    *_optional,
)
#: What retry loops and readiness polls catch: library errors, which `translate_error` turns
#: into ClientErrors, and ClientErrors themselves, which it passes through.
CAUGHT: tuple[type[BaseException], ...] = (*TRANSLATABLE, ClientError)

_GRPC_CODES: dict[str, type[ClientError]] = {
    "UNAVAILABLE": ServerUnavailableError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "DEADLINE_EXCEEDED": ClientTimeoutError,
    "INVALID_ARGUMENT": InvalidInputError,
    "OUT_OF_RANGE": InvalidInputError,
    "NOT_FOUND": ModelUnavailableError,
    "CANCELLED": ClientError,
}
_HTTP_STATUSES: dict[int, type[ClientError]] = {
    400: InvalidInputError,
    404: ModelUnavailableError,
    408: ClientTimeoutError,
    413: InvalidInputError,
    429: ResourceExhaustedError,
    503: ServerUnavailableError,
    504: ClientTimeoutError,
}
# Triton rejects a request whose model queue is full with UNAVAILABLE/503 and this text
# (dynamic_batching.default_queue_policy / max_queue_size). It is overload, not an outage.
_QUEUE_FULL_TEXT = "exceeds maximum queue size"
# A known model with no version serving (shutdown, reload): transient.
_NO_VERSIONS_TEXT = "has no available versions"
# gRPC reports an over-size message as RESOURCE_EXHAUSTED with this text; repeating the request
# cannot help, a larger max_message_mb (or smaller batches) can.
_MESSAGE_TOO_LARGE_TEXT = "larger than max"


def status_error_type(status: str | int | None, message: str = "") -> type[ClientError]:
    """The ClientError subclass for a status as tritonclient reports it.

    `status` is a gRPC code (`"StatusCode.UNAVAILABLE"`, `"UNAVAILABLE"`), an HTTP status
    (`"429"`, `429`) or None: tritonclient raised it itself, before sending anything, on
    arguments it refuses (a reserved or unsupported request parameter, a non-str version).
    """
    if status is None or status == "":
        return InvalidInputError
    text = str(status).strip()
    lowered = message.lower()
    if text.isdigit():
        error_type = _HTTP_STATUSES.get(int(text), ServerError)
    else:
        code = text.rsplit(".", 1)[-1].upper()
        error_type = _GRPC_CODES.get(code, ServerError)
        if error_type is ResourceExhaustedError and _MESSAGE_TOO_LARGE_TEXT in lowered:
            return InvalidInputError
    if error_type is ServerUnavailableError and _QUEUE_FULL_TEXT in lowered:
        return ResourceExhaustedError
    if error_type is ModelUnavailableError and _NO_VERSIONS_TEXT in lowered:
        return ModelUnloadingError
    return error_type


def _grpc_status_and_message(error: BaseException) -> tuple[str | None, str]:
    code_method: Any = getattr(error, "code", None)
    details_method: Any = getattr(error, "details", None)
    code = code_method() if callable(code_method) else None
    details = details_method() if callable(details_method) else None
    status = None if code is None else str(getattr(code, "name", code))
    return status, str(details) if details else str(error)


def translate_error(error: BaseException, *, context: str) -> ClientError:
    """Convert `error` (one of `TRANSLATABLE`, or a ClientError) into a ClientError.

    `context` says what was attempted and where, e.g. ``"infer 'digits' at grpc://h:8001"``.
    The server's own message is kept. Raise the result with ``raise ... from error``.
    """
    if isinstance(error, ClientError):
        return error
    hint = ""
    if isinstance(error, InferenceServerException):
        status = error.status()
        message = str(error.message() or error)
        error_type = status_error_type(status, message)
        if error_type is InvalidInputError and _MESSAGE_TOO_LARGE_TEXT in message.lower():
            hint = " (raise max_message_mb or send smaller batches)"
        shown = f"[{status}] {message}" if status else message
    elif _RPC_ERROR is not None and isinstance(error, _RPC_ERROR):
        status, message = _grpc_status_and_message(error)
        error_type = status_error_type(status, message)
        shown = f"[StatusCode.{status}] {message}" if status else message
    elif _GEVENT_TIMEOUT is not None and isinstance(error, _GEVENT_TIMEOUT):
        error_type, shown = ClientTimeoutError, f"timed out ({error})"
    elif isinstance(error, TimeoutError):  # before OSError: TimeoutError is an OSError
        error_type, shown = ClientTimeoutError, f"timed out{_detail(error)}"
    elif isinstance(error, OSError):  # ConnectionRefusedError, aiohttp.ClientConnectorError
        error_type, shown = ServerUnavailableError, f"cannot connect: {_describe(error)}"
    elif _AIOHTTP_CONNECTION is not None and isinstance(error, _AIOHTTP_CONNECTION):
        error_type, shown = ServerUnavailableError, f"connection failed: {_describe(error)}"
    elif _SHM_ERROR is not None and isinstance(error, _SHM_ERROR):
        error_type, shown = SharedMemoryError, f"shared memory: {_describe(error)}"
    else:
        error_type, shown = ClientError, _describe(error)
    translated = error_type(f"{context}: {shown}{hint}")
    logger.debug("translated %s into %s", type(error).__name__, error_type.__name__)
    return translated


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _detail(error: BaseException) -> str:
    text = str(error)
    return f" ({text})" if text and text != "timed out" else ""
