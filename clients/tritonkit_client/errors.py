"""Exception hierarchy of the client: every failure the client reports is a ClientError.

tritonclient, gRPC, aiohttp and socket errors are converted in one place,
`tritonkit_client._translate.translate_error`, and re-raised with `raise ... from e` so the original
stays available as `__cause__`.
"""

from __future__ import annotations


class ClientError(Exception):
    """Root of every error raised by the clients package."""

    #: True when repeating the same request later may succeed (see `RetryPolicy`).
    transient: bool = False


class InvalidOptionError(ClientError):
    """An option given to `connect`/`connect_async` (or the CLI) is out of range."""


class InvalidURLError(InvalidOptionError):
    """The server URL cannot be used. The message names the URL and the accepted schemes."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{url!r}: {problem}")


class ServerUnavailableError(ClientError):
    """The server cannot be reached or is not serving (connection refused, gRPC UNAVAILABLE,
    HTTP 503)."""

    transient = True


class ResourceExhaustedError(ClientError):
    """The server rejected the request for lack of capacity (gRPC RESOURCE_EXHAUSTED, HTTP 429,
    a full request queue)."""

    transient = True


class ClientTimeoutError(ClientError):
    """The request, or a wait for readiness, ran past its deadline."""


class InvalidInputError(ClientError):
    """The request is invalid: wrong input name, shape or dtype, batch too large
    (gRPC INVALID_ARGUMENT, HTTP 400), or input the client itself refuses."""


class ModelUnavailableError(ClientError):
    """The model is unknown to the server or not ready (gRPC NOT_FOUND, HTTP 404)."""


class ModelUnloadingError(ModelUnavailableError):
    """The model is known but has no version serving right now ("has no available versions"):
    a server shutting down or a model being reloaded. Transient: retried with backoff."""

    transient = True


class ServerError(ClientError):
    """The server accepted the request but failed to process it (gRPC INTERNAL, HTTP 500,
    any other status), or returned a response the client cannot use."""


class SharedMemoryError(ClientError):
    """A system shared-memory region could not be created, written, read or destroyed."""
