"""The calls both clients make to tritonclient, described once for HTTP and gRPC.

tritonclient's four clients (http, grpc, http.aio, grpc.aio) share their method names and
arguments; the aio ones return awaitables. A `Call` holds what to send and how to parse the
answer; `TritonClient` runs it with `Call.run()`, `AsyncTritonClient` with
``await Call.run_async()``. Errors are raised untranslated (the clients' retry translates).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import tritonclient.grpc as grpcclient

from tritonkit_client._metadata import JSON_ANSWERS, PROTO_ANSWERS
from tritonkit_client._requests import InferRequest
from tritonkit_client.options import ClientOptions
from tritonkit_client.options import Protocol as WireProtocol
from tritonkit_client.results import ModelConfig, ModelMetadata, ModelStatus

T = TypeVar("T")


def _as_is(response: Any) -> Any:
    return response


def _nothing(response: object) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class Call(Generic[T]):
    """One tritonclient call, not yet made.

    `send` makes the request: it returns the answer from a sync tritonclient client and an
    awaitable of it from an aio one. `parse` turns the answer into the result.
    """

    send: Callable[[], Any]
    parse: Callable[[Any], T]

    def run(self) -> T:
        return self.parse(self.send())

    async def run_async(self) -> T:
        answer: Awaitable[Any] = self.send()
        return self.parse(await answer)


def grpc_channel_args(options: ClientOptions) -> list[tuple[str, Any]]:
    """Channel arguments: the message limit from the options, tritonclient's keepalive."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", options.max_message_bytes),
        ("grpc.max_receive_message_length", options.max_message_bytes),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
    ]


class Calls:
    """The calls to one tritonclient client (`client`: an InferenceServerClient of
    tritonclient.http, .grpc, .http.aio or .grpc.aio).

    gRPC calls get a deadline (`client_timeout`): `timeout_s`, or the one given to the health
    checks. HTTP clients have their timeouts fixed at construction, and answer in JSON.
    """

    def __init__(self, client: Any, *, protocol: WireProtocol, timeout_s: float) -> None:
        self._client = client
        self._grpc = protocol is WireProtocol.GRPC
        self._answers = PROTO_ANSWERS if self._grpc else JSON_ANSWERS
        self._timeout_s = timeout_s

    def _deadline(self, timeout_s: float | None = None) -> dict[str, float]:
        if not self._grpc:
            return {}
        return {"client_timeout": self._timeout_s if timeout_s is None else timeout_s}

    def live(self, timeout_s: float) -> Call[bool]:
        send = partial(self._client.is_server_live, **self._deadline(timeout_s))
        return Call(send=send, parse=bool)

    def ready(self, timeout_s: float) -> Call[bool]:
        send = partial(self._client.is_server_ready, **self._deadline(timeout_s))
        return Call(send=send, parse=bool)

    def model_ready(self, name: str, version: str, timeout_s: float) -> Call[bool]:
        send = partial(self._client.is_model_ready, name, version, **self._deadline(timeout_s))
        return Call(send=send, parse=bool)

    def index(self) -> Call[list[ModelStatus]]:
        send = partial(self._client.get_model_repository_index, **self._deadline())
        return Call(send=send, parse=self._answers.index)

    def metadata(self, name: str, version: str) -> Call[ModelMetadata]:
        send = partial(self._client.get_model_metadata, name, version, **self._deadline())
        return Call(send=send, parse=self._answers.metadata)

    def config(self, name: str, version: str) -> Call[ModelConfig]:
        send = partial(self._client.get_model_config, name, version, **self._deadline())
        return Call(send=send, parse=self._answers.config)

    def infer(self, request: InferRequest) -> Call[Any]:
        """The answer is tritonclient's InferResult."""
        send = partial(
            self._client.infer,
            request.model,
            request.inputs,
            model_version=request.version,
            outputs=request.outputs,
            parameters=request.parameters,
            **self._deadline(),
        )
        return Call(send=send, parse=_as_is)

    def register_shm(self, region: str, key: str, byte_size: int) -> Call[None]:
        send = partial(
            self._client.register_system_shared_memory,
            region,
            key,
            byte_size,
            **self._deadline(),
        )
        return Call(send=send, parse=_nothing)

    def unregister_shm(self, region: str) -> Call[None]:
        send = partial(self._client.unregister_system_shared_memory, region, **self._deadline())
        return Call(send=send, parse=_nothing)

    def close(self) -> Call[None]:
        return Call(send=self._client.close, parse=_nothing)
