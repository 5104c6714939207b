"""The synchronous client: `connect(url)` returns a `TritonClient` over tritonclient's HTTP or
gRPC client, chosen by the URL scheme.

Tensors always travel as binary data (never JSON), dtypes come from
`tritonclient.utils.np_to_triton_dtype` (object/bytes/str arrays become BYTES), every
tritonclient/gRPC error becomes a ClientError (`clients._translate`), and transient failures
are retried with the connection's `RetryPolicy`.

The tensor helpers at the bottom of this module (`prepare_inputs`, `split_batches`,
`merge_batches`, the shared-memory layout) are shared with `clients.async_client`.
Like tritonclient's own clients, a TritonClient is meant for one thread at a time.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Protocol, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from numpy.typing import NDArray
from tritonclient.utils import (
    np_to_triton_dtype,
    serialize_byte_tensor,
    serialized_byte_size,
    triton_to_np_dtype,
)

from clients._translate import TRANSLATABLE, translate_error
from clients.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    ModelUnavailableError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
    SharedMemoryError,
)
from clients.options import (
    ClientOptions,
    Endpoint,
    RetryPolicy,
    call_with_retry,
    make_options,
    parse_url,
)
from clients.options import Protocol as WireProtocol
from clients.results import (
    HealthReport,
    ModelConfig,
    ModelMetadata,
    ModelReadiness,
    ModelStatus,
    model_config_from_json,
    model_metadata_from_json,
    model_metadata_from_proto,
    model_status_from_json,
    model_status_from_proto,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Request parameters (Triton's `parameters` field); reserved names are refused by tritonclient.
Parameters = Mapping[str, str | int | float | bool]

NO_RETRY = RetryPolicy(retries=0)
# While waiting for readiness, these mean "not ready yet"; anything else is raised at once.
NOT_READY_YET = (
    ServerUnavailableError,
    ClientTimeoutError,
    ModelUnavailableError,
    ResourceExhaustedError,
)
CAUGHT: tuple[type[BaseException], ...] = (*TRANSLATABLE, ClientError)


def connect(
    url: str,
    *,
    timeout_s: float = 60.0,
    retries: int = 2,
    backoff_s: float = 0.1,
    max_backoff_s: float = 5.0,
    max_message_mb: int = 256,
    verbose: bool = False,
) -> TritonClient:
    """Open a client for ``http://host:port`` or ``grpc://host:port``.

    `timeout_s` bounds each request (HTTP: connect and network timeouts; gRPC: the call
    deadline). `retries` extra attempts, starting `backoff_s` apart and doubling up to
    `max_backoff_s`, are made for ServerUnavailableError and ResourceExhaustedError only.
    `max_message_mb` sets the gRPC send/receive limit. Nothing is sent until the first call.
    """
    options = make_options(
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        max_backoff_s=max_backoff_s,
        max_message_mb=max_message_mb,
        verbose=verbose,
    )
    return TritonClient(parse_url(url), options)


class _Transport(Protocol):
    """What TritonClient needs from one wire protocol. Errors are raised untranslated."""

    def live(self, timeout_s: float) -> bool: ...
    def ready(self, timeout_s: float) -> bool: ...
    def model_ready(self, name: str, version: str, timeout_s: float) -> bool: ...
    def index(self) -> list[ModelStatus]: ...
    def metadata(self, name: str, version: str) -> ModelMetadata: ...
    def config(self, name: str, version: str) -> ModelConfig: ...
    def infer(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[Any] | None,
        version: str,
        parameters: dict[str, Any] | None,
    ) -> Any: ...
    def register_shm(self, region: str, key: str, byte_size: int) -> None: ...
    def unregister_shm(self, region: str) -> None: ...
    def close(self) -> None: ...


class _HttpTransport:
    """tritonclient.http. Timeouts are fixed at construction (connection and network)."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self._client = httpclient.InferenceServerClient(
            endpoint.target,
            verbose=options.verbose,
            connection_timeout=options.timeout_s,
            network_timeout=options.timeout_s,
        )

    def live(self, timeout_s: float) -> bool:
        return bool(self._client.is_server_live())

    def ready(self, timeout_s: float) -> bool:
        return bool(self._client.is_server_ready())

    def model_ready(self, name: str, version: str, timeout_s: float) -> bool:
        return bool(self._client.is_model_ready(name, version))

    def index(self) -> list[ModelStatus]:
        return [model_status_from_json(e) for e in self._client.get_model_repository_index()]

    def metadata(self, name: str, version: str) -> ModelMetadata:
        return model_metadata_from_json(self._client.get_model_metadata(name, version))

    def config(self, name: str, version: str) -> ModelConfig:
        return model_config_from_json(self._client.get_model_config(name, version))

    def infer(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[Any] | None,
        version: str,
        parameters: dict[str, Any] | None,
    ) -> Any:
        return self._client.infer(
            model, inputs, model_version=version, outputs=outputs, parameters=parameters
        )

    def register_shm(self, region: str, key: str, byte_size: int) -> None:
        self._client.register_system_shared_memory(region, key, byte_size)

    def unregister_shm(self, region: str) -> None:
        self._client.unregister_system_shared_memory(region)

    def close(self) -> None:
        self._client.close()


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


class _GrpcTransport:
    """tritonclient.grpc. Every call gets a deadline of `timeout_s` seconds (client_timeout)."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self._client = grpcclient.InferenceServerClient(
            endpoint.target, verbose=options.verbose, channel_args=grpc_channel_args(options)
        )
        self._timeout_s = options.timeout_s

    def live(self, timeout_s: float) -> bool:
        return bool(self._client.is_server_live(client_timeout=timeout_s))

    def ready(self, timeout_s: float) -> bool:
        return bool(self._client.is_server_ready(client_timeout=timeout_s))

    def model_ready(self, name: str, version: str, timeout_s: float) -> bool:
        return bool(self._client.is_model_ready(name, version, client_timeout=timeout_s))

    def index(self) -> list[ModelStatus]:
        response = self._client.get_model_repository_index(client_timeout=self._timeout_s)
        return [model_status_from_proto(m) for m in response.models]

    def metadata(self, name: str, version: str) -> ModelMetadata:
        response = self._client.get_model_metadata(name, version, client_timeout=self._timeout_s)
        return model_metadata_from_proto(response)

    def config(self, name: str, version: str) -> ModelConfig:
        response = self._client.get_model_config(name, version, client_timeout=self._timeout_s)
        config: ModelConfig = response.config
        return config

    def infer(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[Any] | None,
        version: str,
        parameters: dict[str, Any] | None,
    ) -> Any:
        return self._client.infer(
            model,
            inputs,
            model_version=version,
            outputs=outputs,
            parameters=parameters,
            client_timeout=self._timeout_s,
        )

    def register_shm(self, region: str, key: str, byte_size: int) -> None:
        self._client.register_system_shared_memory(
            region, key, byte_size, client_timeout=self._timeout_s
        )

    def unregister_shm(self, region: str) -> None:
        self._client.unregister_system_shared_memory(region, client_timeout=self._timeout_s)

    def close(self) -> None:
        self._client.close()


class TritonClient:
    """A synchronous Triton client. Create it with `connect(url, ...)`; close it (or use it as
    a context manager) when done."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions | None = None) -> None:
        self._endpoint = endpoint
        self._options = options if options is not None else ClientOptions()
        self._max_batch_sizes: dict[tuple[str, str], int] = {}
        self._metadata: dict[tuple[str, str], ModelMetadata] = {}
        transport_type = (
            _HttpTransport if endpoint.protocol is WireProtocol.HTTP else _GrpcTransport
        )
        self._transport_instance: _Transport = self._call(
            "create client", lambda: transport_type(endpoint, self._options), policy=NO_RETRY
        )
        self._closed = False

    # -- basics -------------------------------------------------------------------------------

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def url(self) -> str:
        return self._endpoint.url

    @property
    def options(self) -> ClientOptions:
        return self._options

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._call("close", self._transport_instance.close, policy=NO_RETRY)

    @property
    def _transport(self) -> _Transport:
        if self._closed:
            raise ClientError(f"the client for {self.url} is closed")
        return self._transport_instance

    def clear_cache(self) -> None:
        """Forget cached max_batch_size and metadata (after a model was reloaded)."""
        self._max_batch_sizes.clear()
        self._metadata.clear()

    def _call(
        self, what: str, operation: Callable[[], T], *, policy: RetryPolicy | None = None
    ) -> T:
        return call_with_retry(
            operation,
            policy=self._options.retry if policy is None else policy,
            context=f"{what} at {self._endpoint.url}",
        )

    # -- health ------------------------------------------------------------------------------

    def is_live(self) -> bool:
        """True when the server answers that it is live; raises when it cannot be reached."""
        return self._call("liveness check", lambda: self._transport.live(self._options.timeout_s))

    def is_ready(self) -> bool:
        """True when the server answers that it is ready; raises when it cannot be reached."""
        return self._call("readiness check", lambda: self._transport.ready(self._options.timeout_s))

    def is_model_ready(self, name: str, *, version: str = "") -> bool:
        """True when the model is loaded and ready (False for an unknown model)."""
        return self._call(
            f"readiness check of model {name!r}",
            lambda: self._transport.model_ready(name, version, self._options.timeout_s),
        )

    def health(self, *, models: Sequence[str] = ()) -> HealthReport:
        """Liveness, readiness and the readiness of each of `models`, asked once each."""
        live = self.is_live()
        ready = self.is_ready()
        readiness = tuple(ModelReadiness(name=m, ready=self.is_model_ready(m)) for m in models)
        return HealthReport(url=self.url, live=live, ready=ready, models=readiness)

    def wait_until_ready(
        self, *, models: Sequence[str] = (), timeout_s: float, poll_interval_s: float = 0.25
    ) -> None:
        """Poll until the server and every model in `models` are ready.

        Raises ClientTimeoutError naming what was not ready when `timeout_s` passes. An
        unreachable server counts as not ready yet; other errors are raised at once. gRPC polls
        get a deadline within `timeout_s`; HTTP polls use the connection's `timeout_s`, so keep
        that short when waiting on a server that may hang.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            per_call_s = max(0.05, min(self._options.timeout_s, remaining))
            last_error: ClientError | None = None
            try:
                missing = _missing_readiness(self._transport, models, per_call_s)
            except CAUGHT as e:
                error = translate_error(e, context=f"readiness check at {self.url}")
                if not isinstance(error, NOT_READY_YET):
                    raise error from e
                missing, last_error = ["server"], error
            if not missing:
                return
            now = time.monotonic()
            if now >= deadline:
                raise ClientTimeoutError(
                    not_ready_message(self.url, timeout_s, missing, last_error)
                )
            time.sleep(min(poll_interval_s, deadline - now))

    # -- models ------------------------------------------------------------------------------

    def list_models(self) -> list[ModelStatus]:
        """Every model in the server's repository, loaded or not."""
        return self._call("list models", self._transport.index)

    def model_metadata(self, name: str, *, version: str = "") -> ModelMetadata:
        metadata = self._call(
            f"metadata of model {name!r}", lambda: self._transport.metadata(name, version)
        )
        self._metadata[(name, version)] = metadata
        return metadata

    def model_config(self, name: str, *, version: str = "") -> ModelConfig:
        """The model's config as a `tritonclient.grpc.model_config_pb2.ModelConfig`."""
        config = self._call(
            f"config of model {name!r}", lambda: self._transport.config(name, version)
        )
        self._max_batch_sizes[(name, version)] = int(config.max_batch_size)
        return config

    def max_batch_size(self, name: str, *, version: str = "") -> int:
        """The model's max_batch_size (0: the model does not batch), cached per model."""
        cached = self._max_batch_sizes.get((name, version))
        if cached is None:
            cached = int(self.model_config(name, version=version).max_batch_size)
        return cached

    def _cached_metadata(self, name: str, version: str) -> ModelMetadata:
        cached = self._metadata.get((name, version))
        return cached if cached is not None else self.model_metadata(name, version=version)

    # -- inference ---------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        parameters: Parameters | None = None,
        shared_memory: bool = False,
    ) -> dict[str, NDArray[Any]]:
        """Run one inference request; returns the outputs by name (all of them when `outputs`
        is None).

        With `shared_memory=True` the inputs (and fixed-size, non-BYTES outputs) go through a
        system shared-memory region registered for this call and removed afterwards; the server
        must run on this host.
        """
        arrays = prepare_inputs(inputs)
        wanted = None if outputs is None else list(outputs)
        params = None if parameters is None else dict(parameters)
        if shared_memory:
            return self._infer_shared_memory(model, arrays, wanted, version, params)
        infer_inputs, requested = build_request(self._endpoint.protocol, arrays, wanted)
        result = self._call(
            f"infer {model!r}",
            lambda: self._transport.infer(model, infer_inputs, requested, version, params),
        )
        return read_outputs(result, wanted, context=f"infer {model!r} at {self.url}")

    def infer_batched(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        parameters: Parameters | None = None,
        max_batch_size: int | None = None,
    ) -> dict[str, NDArray[Any]]:
        """Like `infer`, but split inputs along axis 0 into chunks of the model's
        max_batch_size (read from its config and cached, unless given) and concatenate the
        outputs. A model with max_batch_size 0 gets one request."""
        arrays = prepare_inputs(inputs)
        total = batch_size_of(arrays)
        limit = (
            self.max_batch_size(model, version=version)
            if max_batch_size is None
            else max_batch_size
        )
        if limit < 0:
            raise InvalidInputError(f"max_batch_size must be >= 0, got {limit}")
        if limit == 0 or total <= limit:
            return self.infer(
                model, arrays, outputs=outputs, version=version, parameters=parameters
            )
        parts = [
            self.infer(
                model,
                {name: array[chunk] for name, array in arrays.items()},
                outputs=outputs,
                version=version,
                parameters=parameters,
            )
            for chunk in split_batches(total, limit)
        ]
        return merge_batches(parts)

    def _infer_shared_memory(
        self,
        model: str,
        arrays: dict[str, NDArray[Any]],
        wanted: list[str] | None,
        version: str,
        params: dict[str, Any] | None,
    ) -> dict[str, NDArray[Any]]:
        context = f"infer {model!r} (shared memory) at {self.url}"
        metadata = self._cached_metadata(model, version)
        names = wanted if wanted is not None else [t.name for t in metadata.outputs]
        batched = self.max_batch_size(model, version=version) > 0
        in_layout, payloads = plan_input_region(arrays)
        out_layout = plan_output_region(
            metadata, names, batch=batch_size_of(arrays) if batched else None
        )
        regions = RegionSet(context=context)
        handles: dict[str, Any] = {}
        registered: list[str] = []
        try:
            for layout, payload in ((in_layout, payloads), (out_layout, None)):
                if layout is None:
                    continue
                handles[layout.region] = regions.create(layout, payload)
                self._call(
                    "register shared memory",
                    partial(
                        self._transport.register_shm, layout.region, layout.key, layout.byte_size
                    ),
                )
                registered.append(layout.region)
            infer_inputs, requested = build_shm_request(
                self._endpoint.protocol, in_layout, out_layout, names
            )
            result = self._call(
                f"infer {model!r}",
                lambda: self._transport.infer(model, infer_inputs, requested, version, params),
            )
            if out_layout is not None:
                return read_shm_outputs(
                    result, out_layout, handles[out_layout.region], context=context
                )
            return read_outputs(result, names, context=context)
        finally:
            for region in registered:
                try:
                    self._call(
                        "unregister shared memory",
                        partial(self._transport.unregister_shm, region),
                        policy=NO_RETRY,
                    )
                except ClientError as e:
                    logger.warning("could not unregister shared memory %s: %s", region, e)
            regions.destroy_all()


def _missing_readiness(transport: _Transport, models: Sequence[str], timeout_s: float) -> list[str]:
    if not transport.ready(timeout_s):
        return ["server"]
    return [f"model {m!r}" for m in models if not transport.model_ready(m, "", timeout_s)]


def not_ready_message(
    url: str, timeout_s: float, missing: Sequence[str], last_error: ClientError | None
) -> str:
    message = f"{url}: not ready after {timeout_s:g}s: {', '.join(missing)} not ready"
    if last_error is not None:
        message += f" (last error: {last_error})"
    return message


# -- tensors, shared by the sync and asyncio clients -------------------------------------------


def _as_bytes(name: str, item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise InvalidInputError(
        f"input {name!r}: a BYTES tensor holds bytes or str, got {type(item).__name__}"
    )


def _as_triton_array(name: str, value: Any) -> NDArray[Any]:
    array = np.asarray(value)
    if array.dtype.kind in ("U", "S", "O"):
        # Object arrays of bytes: numpy's fixed-width "S" would drop trailing NUL bytes.
        items = [_as_bytes(name, item) for item in array.reshape(-1).tolist()]
        converted = np.empty(len(items), dtype=np.object_)
        converted[:] = items
        array = converted.reshape(array.shape)
    if array.ndim == 0:
        raise InvalidInputError(
            f"input {name!r} is a scalar; Triton tensors have at least one dimension"
        )
    if np_to_triton_dtype(array.dtype) is None:
        raise InvalidInputError(f"input {name!r}: numpy dtype {array.dtype} has no Triton type")
    return np.ascontiguousarray(array)


def triton_datatype(array: NDArray[Any]) -> str:
    """Triton's name for the array's dtype (BYTES for object arrays)."""
    datatype = np_to_triton_dtype(array.dtype)
    if datatype is None:
        raise InvalidInputError(f"numpy dtype {array.dtype} has no Triton type")
    return str(datatype)


def prepare_inputs(inputs: Mapping[str, Any]) -> dict[str, NDArray[Any]]:
    """Contiguous arrays with Triton dtypes; str/bytes arrays become object arrays of bytes."""
    if not inputs:
        raise InvalidInputError("at least one input tensor is needed")
    return {name: _as_triton_array(name, value) for name, value in inputs.items()}


def batch_size_of(arrays: Mapping[str, NDArray[Any]]) -> int:
    """The common size of axis 0 of all inputs."""
    sizes = {name: int(array.shape[0]) for name, array in arrays.items()}
    distinct = set(sizes.values())
    if len(distinct) != 1:
        raise InvalidInputError(f"inputs disagree on the batch size (axis 0): {sizes}")
    return distinct.pop()


def split_batches(total: int, max_batch_size: int) -> list[slice]:
    """Slices of at most `max_batch_size` rows covering ``range(total)`` in order."""
    if max_batch_size < 1:
        raise InvalidInputError(f"max_batch_size must be >= 1 to split, got {max_batch_size}")
    if total < 0:
        raise InvalidInputError(f"batch size must be >= 0, got {total}")
    return [
        slice(start, min(start + max_batch_size, total))
        for start in range(0, total, max_batch_size)
    ]


def merge_batches(parts: Sequence[Mapping[str, NDArray[Any]]]) -> dict[str, NDArray[Any]]:
    """Concatenate the outputs of consecutive chunks along axis 0."""
    if not parts:
        return {}
    names = list(parts[0])
    merged: dict[str, NDArray[Any]] = {}
    for name in names:
        pieces = [part[name] for part in parts]
        tails = {piece.shape[1:] for piece in pieces}
        if len(tails) != 1:
            raise InvalidInputError(
                f"output {name!r} has different non-batch shapes across chunks ({sorted(tails)}); "
                "call infer per chunk instead of infer_batched"
            )
        merged[name] = np.concatenate(pieces, axis=0)
    return merged


def _module(protocol: WireProtocol) -> Any:
    return httpclient if protocol is WireProtocol.HTTP else grpcclient


def _requested_output(protocol: WireProtocol, name: str) -> Any:
    module = _module(protocol)
    if protocol is WireProtocol.HTTP:
        return module.InferRequestedOutput(name, binary_data=True)
    return module.InferRequestedOutput(name)


def build_request(
    protocol: WireProtocol, arrays: Mapping[str, NDArray[Any]], outputs: Sequence[str] | None
) -> tuple[list[Any], list[Any] | None]:
    """tritonclient InferInputs (binary data) and requested outputs (binary data over HTTP;
    None asks for all outputs, which tritonclient.http also requests as binary)."""
    module = _module(protocol)
    infer_inputs = []
    for name, array in arrays.items():
        infer_input = module.InferInput(name, list(array.shape), triton_datatype(array))
        if protocol is WireProtocol.HTTP:
            infer_input.set_data_from_numpy(array, binary_data=True)
        else:
            infer_input.set_data_from_numpy(array)
        infer_inputs.append(infer_input)
    requested = None if outputs is None else [_requested_output(protocol, n) for n in outputs]
    return infer_inputs, requested


def response_output_names(result: Any) -> list[str]:
    """Output names in an HTTP (dict) or gRPC (ModelInferResponse) InferResult."""
    response = result.get_response()
    if isinstance(response, Mapping):
        return [str(o["name"]) for o in response.get("outputs", ())]
    return [o.name for o in response.outputs]


def read_outputs(
    result: Any, names: Sequence[str] | None, *, context: str
) -> dict[str, NDArray[Any]]:
    wanted = list(names) if names is not None else response_output_names(result)
    outputs: dict[str, NDArray[Any]] = {}
    for name in wanted:
        array = result.as_numpy(name)
        if array is None:
            raise ServerError(f"{context}: the response has no output {name!r}")
        outputs[name] = array
    return outputs


# -- system shared memory ---------------------------------------------------------------------


def shared_memory_module() -> Any:
    """`tritonclient.utils.shared_memory`, imported on first use.

    tritonclient 2.50 loads its `libcshm.so` through `pkg_resources`, which setuptools >= 81
    no longer ships; without it system shared memory is unavailable (SharedMemoryError).
    """
    try:
        with warnings.catch_warnings():  # tritonclient 2.50 imports the deprecated pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return importlib.import_module("tritonclient.utils.shared_memory")
    except (ImportError, OSError) as e:
        raise SharedMemoryError(
            f"system shared memory is unavailable here: {e!r} "
            "(tritonclient.utils.shared_memory needs Linux and setuptools' pkg_resources, "
            "i.e. setuptools < 81)"
        ) from e


@dataclass(frozen=True, kw_only=True)
class ShmSlot:
    """One tensor's place in a region."""

    name: str
    offset: int
    byte_size: int
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class ShmLayout:
    """A system shared-memory region: Triton's name for it, its key, size and tensors."""

    region: str
    key: str
    byte_size: int
    slots: tuple[ShmSlot, ...]


def _region_names(kind: str) -> tuple[str, str]:
    token = f"clients_{os.getpid()}_{uuid.uuid4().hex[:16]}_{kind}"
    return token, f"/{token}"


def plan_input_region(arrays: Mapping[str, NDArray[Any]]) -> tuple[ShmLayout, list[NDArray[Any]]]:
    """The input region's layout and the payloads to write into it, in order."""
    slots: list[ShmSlot] = []
    payloads: list[NDArray[Any]] = []
    offset = 0
    for name, array in arrays.items():
        datatype = triton_datatype(array)
        if datatype == "BYTES":
            payload = serialize_byte_tensor(array)
            size = int(serialized_byte_size(payload))
        else:
            payload, size = array, int(array.nbytes)
        slots.append(
            ShmSlot(name=name, offset=offset, byte_size=size, datatype=datatype, shape=array.shape)
        )
        payloads.append(payload)
        offset += size
    if offset == 0:
        raise InvalidInputError("shared memory needs at least one non-empty input")
    region, key = _region_names("in")
    return ShmLayout(region=region, key=key, byte_size=offset, slots=tuple(slots)), payloads


def plan_output_region(
    metadata: ModelMetadata, names: Sequence[str], *, batch: int | None
) -> ShmLayout | None:
    """The output region's layout, or None when an output's size is not known in advance
    (BYTES, a variable dim, an unknown name); then outputs come back in the response."""
    slots: list[ShmSlot] = []
    offset = 0
    for name in names:
        tensor = metadata.output(name)
        if tensor is None or tensor.datatype == "BYTES":
            return None
        shape = list(tensor.shape)
        if batch is not None:
            if not shape:
                return None
            shape[0] = batch
        np_dtype = triton_to_np_dtype(tensor.datatype)
        if np_dtype is None or any(d < 0 for d in shape):
            return None
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(np_dtype).itemsize
        slots.append(
            ShmSlot(
                name=name,
                offset=offset,
                byte_size=size,
                datatype=tensor.datatype,
                shape=tuple(shape),
            )
        )
        offset += size
    if offset == 0:
        return None
    region, key = _region_names("out")
    return ShmLayout(region=region, key=key, byte_size=offset, slots=tuple(slots))


def build_shm_request(
    protocol: WireProtocol, inputs: ShmLayout, outputs: ShmLayout | None, names: Sequence[str]
) -> tuple[list[Any], list[Any]]:
    """InferInputs that point into the input region, requested outputs that point into the
    output region (or plain binary outputs when there is none)."""
    module = _module(protocol)
    infer_inputs = []
    for slot in inputs.slots:
        infer_input = module.InferInput(slot.name, list(slot.shape), slot.datatype)
        infer_input.set_shared_memory(inputs.region, slot.byte_size, slot.offset)
        infer_inputs.append(infer_input)
    requested = []
    if outputs is None:
        requested = [_requested_output(protocol, name) for name in names]
    else:
        for slot in outputs.slots:
            output = _requested_output(protocol, slot.name)
            output.set_shared_memory(outputs.region, slot.byte_size, slot.offset)
            requested.append(output)
    return infer_inputs, requested


def _output_shape_and_type(result: Any, name: str) -> tuple[tuple[int, ...], str] | None:
    output = result.get_output(name)
    if output is None:
        return None
    if isinstance(output, Mapping):
        return tuple(int(d) for d in output["shape"]), str(output["datatype"])
    return tuple(int(d) for d in output.shape), str(output.datatype)


def read_shm_outputs(
    result: Any, layout: ShmLayout, handle: Any, *, context: str
) -> dict[str, NDArray[Any]]:
    """Copy each output out of the output region (the region is destroyed afterwards)."""
    shm = shared_memory_module()
    outputs: dict[str, NDArray[Any]] = {}
    for slot in layout.slots:
        found = _output_shape_and_type(result, slot.name)
        if found is None:
            raise ServerError(f"{context}: the response has no output {slot.name!r}")
        shape, datatype = found
        np_dtype = triton_to_np_dtype(datatype)
        if np_dtype is None:
            raise ServerError(f"{context}: output {slot.name!r} has unknown datatype {datatype}")
        needed = int(np.prod(shape, dtype=np.int64)) * np.dtype(np_dtype).itemsize
        if needed > slot.byte_size:
            raise ServerError(
                f"{context}: output {slot.name!r} needs {needed} bytes, "
                f"its shared-memory slot has {slot.byte_size}"
            )
        outputs[slot.name] = np.array(
            call_with_retry(
                partial(
                    shm.get_contents_as_numpy,
                    handle,
                    np_dtype,
                    list(shape),
                    offset=slot.offset,
                ),
                policy=NO_RETRY,
                context=context,
            ),
            copy=True,
        )
    return outputs


class RegionSet:
    """System shared-memory regions created for one call; `destroy_all` removes them."""

    def __init__(self, *, context: str) -> None:
        self._context = context
        self._handles: list[tuple[str, Any]] = []

    def create(self, layout: ShmLayout, payloads: Sequence[NDArray[Any]] | None) -> Any:
        shm = shared_memory_module()
        handle = call_with_retry(
            lambda: shm.create_shared_memory_region(layout.region, layout.key, layout.byte_size),
            policy=NO_RETRY,
            context=self._context,
        )
        self._handles.append((layout.region, handle))
        if payloads:
            call_with_retry(
                lambda: shm.set_shared_memory_region(handle, list(payloads)),
                policy=NO_RETRY,
                context=self._context,
            )
        return handle

    def destroy_all(self) -> None:
        if not self._handles:
            return
        shm = shared_memory_module()
        while self._handles:
            region, handle = self._handles.pop()
            try:
                call_with_retry(
                    partial(shm.destroy_shared_memory_region, handle),
                    policy=NO_RETRY,
                    context=self._context,
                )
            except ClientError as e:
                logger.warning("could not destroy shared memory region %s: %s", region, e)
