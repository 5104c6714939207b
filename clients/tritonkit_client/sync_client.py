"""The synchronous client: `connect(url)` returns a `TritonClient` over tritonclient's HTTP or
gRPC client, chosen by the URL scheme.

Tensors always travel as binary data (never JSON, `tritonkit_client._tensors`), every
tritonclient/gRPC error becomes a ClientError (`tritonkit_client._translate`), and transient
failures
are retried with the connection's `RetryPolicy`. Everything but the calls themselves is
shared with `tritonkit_client.async_client` (`tritonkit_client._base`). Like tritonclient's own
clients, a
TritonClient is meant for one thread at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from numpy.typing import NDArray

from tritonkit_client._base import ClientBase
from tritonkit_client._batching import batch_size_of, chunk_inputs, merge_batches
from tritonkit_client._requests import InferArgs, Parameters, infer_args
from tritonkit_client._tensors import prepare_inputs, read_outputs
from tritonkit_client._translate import CAUGHT
from tritonkit_client._wire import Call, Calls, grpc_channel_args
from tritonkit_client.errors import ClientError, InvalidInputError
from tritonkit_client.options import (
    NO_RETRY,
    ClientOptions,
    Endpoint,
    RetryPolicy,
    call_with_retry,
    make_options,
    parse_url,
)
from tritonkit_client.options import Protocol as WireProtocol
from tritonkit_client.results import (
    HealthReport,
    ModelConfig,
    ModelMetadata,
    ModelReadiness,
    ModelStatus,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def _open_tritonclient(endpoint: Endpoint, options: ClientOptions) -> Calls:
    """tritonclient.http (timeouts fixed at construction) or tritonclient.grpc."""
    client: Any
    if endpoint.protocol is WireProtocol.HTTP:
        client = httpclient.InferenceServerClient(
            endpoint.target,
            verbose=options.verbose,
            connection_timeout=options.timeout_s,
            network_timeout=options.timeout_s,
        )
    else:
        client = grpcclient.InferenceServerClient(
            endpoint.target, verbose=options.verbose, channel_args=grpc_channel_args(options)
        )
    return Calls(client, protocol=endpoint.protocol, timeout_s=options.timeout_s)


def _missing_readiness(calls: Calls, models: Sequence[str], timeout_s: float) -> list[str]:
    """What is not ready, asked once each without retries (errors untranslated)."""
    if not calls.ready(timeout_s).run():
        return ["server"]
    return [f"model {m!r}" for m in models if not calls.model_ready(m, "", timeout_s).run()]


class TritonClient(ClientBase):
    """A synchronous Triton client. Create it with `connect(url, ...)`; close it (or use it as
    a context manager) when done."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions | None = None) -> None:
        super().__init__(endpoint, options)
        self._calls_instance = self._open(_open_tritonclient)

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
        self._run("close", self._calls_instance.close(), policy=NO_RETRY)

    def _calls(self) -> Calls:
        self._check_open()
        return self._calls_instance

    def _run(self, what: str, call: Call[T], *, policy: RetryPolicy | None = None) -> T:
        return call_with_retry(call.run, policy=self._policy(policy), context=self._context(what))

    # -- health ------------------------------------------------------------------------------

    def is_live(self) -> bool:
        """True when the server answers that it is live; raises when it cannot be reached."""
        return self._run("liveness check", self._calls().live(self._options.timeout_s))

    def is_ready(self) -> bool:
        """True when the server answers that it is ready; raises when it cannot be reached."""
        return self._run("readiness check", self._calls().ready(self._options.timeout_s))

    def is_model_ready(self, name: str, *, version: str = "") -> bool:
        """True when the model is loaded and ready (False for an unknown model)."""
        return self._run(
            f"readiness check of model {name!r}",
            self._calls().model_ready(name, version, self._options.timeout_s),
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
        calls = self._calls()
        deadline = self._readiness_deadline(timeout_s, poll_interval_s)
        while True:
            last_error: ClientError | None = None
            try:
                missing = _missing_readiness(calls, models, deadline.call_timeout_s())
            except CAUGHT as e:
                missing, last_error = ["server"], deadline.not_ready_error(e)
            pause_s = deadline.pause_s(missing, last_error)
            if pause_s is None:
                return
            time.sleep(pause_s)

    # -- models ------------------------------------------------------------------------------

    def list_models(self) -> list[ModelStatus]:
        """Every model in the server's repository, loaded or not."""
        return self._run("list models", self._calls().index())

    def model_metadata(self, name: str, *, version: str = "") -> ModelMetadata:
        metadata = self._run(f"metadata of model {name!r}", self._calls().metadata(name, version))
        self._metadata[(name, version)] = metadata
        return metadata

    def model_config(self, name: str, *, version: str = "") -> ModelConfig:
        """The model's config as a `tritonclient.grpc.model_config_pb2.ModelConfig`."""
        config = self._run(f"config of model {name!r}", self._calls().config(name, version))
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
        class_counts: Mapping[str, int] | None = None,
    ) -> dict[str, NDArray[Any]]:
        """Run one inference request; returns the outputs by name (all of them when `outputs`
        is None).

        With `shared_memory=True` the inputs (and fixed-size, non-BYTES outputs) go through a
        system shared-memory region registered for this call and removed afterwards; the server
        must run on this host.
        """
        args = infer_args(model, inputs, outputs=outputs, version=version, parameters=parameters,
                          class_counts=class_counts)
        if shared_memory and args.class_counts:
            raise InvalidInputError("classification (class_counts) comes back in the response; "
                                    "it cannot be combined with shared_memory=True")
        if shared_memory:
            return self._infer_shared_memory(args)
        request = self._binary_request(args)
        result = self._run(f"infer {model!r}", self._calls().infer(request))
        return read_outputs(result, args.outputs, context=self._context(f"infer {model!r}"))

    def infer_batched(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        parameters: Parameters | None = None,
        class_counts: Mapping[str, int] | None = None,
        max_batch_size: int | None = None,
    ) -> dict[str, NDArray[Any]]:
        """Like `infer`, but split inputs along axis 0 into chunks of the model's
        max_batch_size (read from its config and cached, unless given) and concatenate the
        outputs. A model with max_batch_size 0 gets one request."""
        arrays = prepare_inputs(inputs)
        total = batch_size_of(arrays)
        if max_batch_size is None:
            max_batch_size = self.max_batch_size(model, version=version)
        chunks = chunk_inputs(arrays, total=total, max_batch_size=max_batch_size)
        parts = [
            self.infer(model, chunk, outputs=outputs, version=version, parameters=parameters,
                       class_counts=class_counts)
            for chunk in chunks
        ]
        return parts[0] if len(parts) == 1 else merge_batches(parts)

    def _infer_shared_memory(self, args: InferArgs) -> dict[str, NDArray[Any]]:
        calls = self._calls()
        metadata = self._cached_metadata(args.model, args.version)
        batched = self.max_batch_size(args.model, version=args.version) > 0
        shm = self._shm_inference(args, metadata, batched=batched)
        registered: list[str] = []
        try:
            for layout in shm.layouts:
                shm.create(layout)
                register = calls.register_shm(layout.region, layout.key, layout.byte_size)
                self._run("register shared memory", register)
                registered.append(layout.region)
            result = self._run(f"infer {args.model!r}", calls.infer(shm.request()))
            return shm.read(result)
        finally:
            for region in registered:
                try:
                    unregister = calls.unregister_shm(region)
                    self._run("unregister shared memory", unregister, policy=NO_RETRY)
                except ClientError as e:
                    logger.warning("could not unregister shared memory %s: %s", region, e)
            shm.destroy()
