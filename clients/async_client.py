"""The asyncio client: `connect_async(url)` returns an `AsyncTritonClient` over
tritonclient.http.aio or tritonclient.grpc.aio. It mirrors `TritonClient` method for method,
shares its options, retry policy, error translation and tensor helpers, and creates the
underlying tritonclient object on first use, inside the running event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Protocol, TypeVar

import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio
from numpy.typing import NDArray

from clients._translate import translate_error
from clients.errors import ClientError, ClientTimeoutError, InvalidInputError
from clients.options import (
    ClientOptions,
    Endpoint,
    RetryPolicy,
    acall_with_retry,
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
from clients.sync_client import (
    CAUGHT,
    NO_RETRY,
    NOT_READY_YET,
    Parameters,
    RegionSet,
    batch_size_of,
    build_request,
    build_shm_request,
    grpc_channel_args,
    merge_batches,
    not_ready_message,
    plan_input_region,
    plan_output_region,
    prepare_inputs,
    read_outputs,
    read_shm_outputs,
    split_batches,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


def connect_async(
    url: str,
    *,
    timeout_s: float = 60.0,
    retries: int = 2,
    backoff_s: float = 0.1,
    max_backoff_s: float = 5.0,
    max_message_mb: int = 256,
    verbose: bool = False,
) -> AsyncTritonClient:
    """The asyncio twin of `connect`; same options. Use it as ``async with connect_async(url)
    as client:`` or call ``await client.close()``."""
    options = make_options(
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        max_backoff_s=max_backoff_s,
        max_message_mb=max_message_mb,
        verbose=verbose,
    )
    return AsyncTritonClient(parse_url(url), options)


class _AsyncTransport(Protocol):
    async def live(self, timeout_s: float) -> bool: ...
    async def ready(self, timeout_s: float) -> bool: ...
    async def model_ready(self, name: str, version: str, timeout_s: float) -> bool: ...
    async def index(self) -> list[ModelStatus]: ...
    async def metadata(self, name: str, version: str) -> ModelMetadata: ...
    async def config(self, name: str, version: str) -> ModelConfig: ...
    async def infer(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[Any] | None,
        version: str,
        parameters: dict[str, Any] | None,
    ) -> Any: ...
    async def register_shm(self, region: str, key: str, byte_size: int) -> None: ...
    async def unregister_shm(self, region: str) -> None: ...
    async def close(self) -> None: ...


class _AsyncHttpTransport:
    """tritonclient.http.aio; `timeout_s` is aiohttp's total timeout of each request."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self._client = http_aio.InferenceServerClient(
            endpoint.target, verbose=options.verbose, conn_timeout=options.timeout_s
        )

    async def live(self, timeout_s: float) -> bool:
        return bool(await self._client.is_server_live())

    async def ready(self, timeout_s: float) -> bool:
        return bool(await self._client.is_server_ready())

    async def model_ready(self, name: str, version: str, timeout_s: float) -> bool:
        return bool(await self._client.is_model_ready(name, version))

    async def index(self) -> list[ModelStatus]:
        entries = await self._client.get_model_repository_index()
        return [model_status_from_json(e) for e in entries]

    async def metadata(self, name: str, version: str) -> ModelMetadata:
        return model_metadata_from_json(await self._client.get_model_metadata(name, version))

    async def config(self, name: str, version: str) -> ModelConfig:
        return model_config_from_json(await self._client.get_model_config(name, version))

    async def infer(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[Any] | None,
        version: str,
        parameters: dict[str, Any] | None,
    ) -> Any:
        return await self._client.infer(
            model, inputs, model_version=version, outputs=outputs, parameters=parameters
        )

    async def register_shm(self, region: str, key: str, byte_size: int) -> None:
        await self._client.register_system_shared_memory(region, key, byte_size)

    async def unregister_shm(self, region: str) -> None:
        await self._client.unregister_system_shared_memory(region)

    async def close(self) -> None:
        await self._client.close()


class _AsyncGrpcTransport:
    """tritonclient.grpc.aio; every call gets a deadline of `timeout_s` seconds."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self._client = grpc_aio.InferenceServerClient(
            endpoint.target, verbose=options.verbose, channel_args=grpc_channel_args(options)
        )
        self._timeout_s = options.timeout_s

    async def live(self, timeout_s: float) -> bool:
        return bool(await self._client.is_server_live(client_timeout=timeout_s))

    async def ready(self, timeout_s: float) -> bool:
        return bool(await self._client.is_server_ready(client_timeout=timeout_s))

    async def model_ready(self, name: str, version: str, timeout_s: float) -> bool:
        return bool(await self._client.is_model_ready(name, version, client_timeout=timeout_s))

    async def index(self) -> list[ModelStatus]:
        response = await self._client.get_model_repository_index(client_timeout=self._timeout_s)
        return [model_status_from_proto(m) for m in response.models]

    async def metadata(self, name: str, version: str) -> ModelMetadata:
        response = await self._client.get_model_metadata(
            name, version, client_timeout=self._timeout_s
        )
        return model_metadata_from_proto(response)

    async def config(self, name: str, version: str) -> ModelConfig:
        response = await self._client.get_model_config(
            name, version, client_timeout=self._timeout_s
        )
        config: ModelConfig = response.config
        return config

    async def infer(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[Any] | None,
        version: str,
        parameters: dict[str, Any] | None,
    ) -> Any:
        return await self._client.infer(
            model,
            inputs,
            model_version=version,
            outputs=outputs,
            parameters=parameters,
            client_timeout=self._timeout_s,
        )

    async def register_shm(self, region: str, key: str, byte_size: int) -> None:
        await self._client.register_system_shared_memory(
            region, key, byte_size, client_timeout=self._timeout_s
        )

    async def unregister_shm(self, region: str) -> None:
        await self._client.unregister_system_shared_memory(region, client_timeout=self._timeout_s)

    async def close(self) -> None:
        await self._client.close()


class AsyncTritonClient:
    """An asyncio Triton client. Create it with `connect_async(url, ...)`."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions | None = None) -> None:
        self._endpoint = endpoint
        self._options = options if options is not None else ClientOptions()
        self._max_batch_sizes: dict[tuple[str, str], int] = {}
        self._metadata: dict[tuple[str, str], ModelMetadata] = {}
        self._transport_instance: _AsyncTransport | None = None
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

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport, self._transport_instance = self._transport_instance, None
        if transport is not None:
            await self._call("close", transport.close, policy=NO_RETRY)

    def clear_cache(self) -> None:
        self._max_batch_sizes.clear()
        self._metadata.clear()

    def _transport(self) -> _AsyncTransport:
        if self._closed:
            raise ClientError(f"the client for {self.url} is closed")
        if self._transport_instance is None:
            transport_type = (
                _AsyncHttpTransport
                if self._endpoint.protocol is WireProtocol.HTTP
                else _AsyncGrpcTransport
            )
            try:
                self._transport_instance = transport_type(self._endpoint, self._options)
            except CAUGHT as e:
                raise translate_error(e, context=f"create client at {self.url}") from e
        return self._transport_instance

    async def _call(
        self,
        what: str,
        operation: Callable[[], Awaitable[T]],
        *,
        policy: RetryPolicy | None = None,
    ) -> T:
        return await acall_with_retry(
            operation,
            policy=self._options.retry if policy is None else policy,
            context=f"{what} at {self._endpoint.url}",
        )

    # -- health ------------------------------------------------------------------------------

    async def is_live(self) -> bool:
        transport = self._transport()
        return await self._call("liveness check", partial(transport.live, self._options.timeout_s))

    async def is_ready(self) -> bool:
        transport = self._transport()
        return await self._call(
            "readiness check", partial(transport.ready, self._options.timeout_s)
        )

    async def is_model_ready(self, name: str, *, version: str = "") -> bool:
        transport = self._transport()
        return await self._call(
            f"readiness check of model {name!r}",
            partial(transport.model_ready, name, version, self._options.timeout_s),
        )

    async def health(self, *, models: Sequence[str] = ()) -> HealthReport:
        live = await self.is_live()
        ready = await self.is_ready()
        readiness = []
        for name in models:
            readiness.append(ModelReadiness(name=name, ready=await self.is_model_ready(name)))
        return HealthReport(url=self.url, live=live, ready=ready, models=tuple(readiness))

    async def wait_until_ready(
        self, *, models: Sequence[str] = (), timeout_s: float, poll_interval_s: float = 0.25
    ) -> None:
        """Poll until the server and every model in `models` are ready; ClientTimeoutError
        naming what was not ready when `timeout_s` passes."""
        transport = self._transport()
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            per_call_s = max(0.05, min(self._options.timeout_s, remaining))
            last_error: ClientError | None = None
            try:
                missing: list[str] = []
                if not await transport.ready(per_call_s):
                    missing = ["server"]
                else:
                    for name in models:
                        if not await transport.model_ready(name, "", per_call_s):
                            missing.append(f"model {name!r}")
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
            await asyncio.sleep(min(poll_interval_s, deadline - now))

    # -- models ------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelStatus]:
        return await self._call("list models", self._transport().index)

    async def model_metadata(self, name: str, *, version: str = "") -> ModelMetadata:
        transport = self._transport()
        metadata = await self._call(
            f"metadata of model {name!r}", partial(transport.metadata, name, version)
        )
        self._metadata[(name, version)] = metadata
        return metadata

    async def model_config(self, name: str, *, version: str = "") -> ModelConfig:
        """The model's config as a `tritonclient.grpc.model_config_pb2.ModelConfig`."""
        transport = self._transport()
        config = await self._call(
            f"config of model {name!r}", partial(transport.config, name, version)
        )
        self._max_batch_sizes[(name, version)] = int(config.max_batch_size)
        return config

    async def max_batch_size(self, name: str, *, version: str = "") -> int:
        cached = self._max_batch_sizes.get((name, version))
        if cached is None:
            cached = int((await self.model_config(name, version=version)).max_batch_size)
        return cached

    async def _cached_metadata(self, name: str, version: str) -> ModelMetadata:
        cached = self._metadata.get((name, version))
        if cached is None:
            cached = await self.model_metadata(name, version=version)
        return cached

    # -- inference ---------------------------------------------------------------------------

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        parameters: Parameters | None = None,
        shared_memory: bool = False,
    ) -> dict[str, NDArray[Any]]:
        """See `TritonClient.infer`."""
        arrays = prepare_inputs(inputs)
        wanted = None if outputs is None else list(outputs)
        params = None if parameters is None else dict(parameters)
        if shared_memory:
            return await self._infer_shared_memory(model, arrays, wanted, version, params)
        transport = self._transport()
        infer_inputs, requested = build_request(self._endpoint.protocol, arrays, wanted)
        result = await self._call(
            f"infer {model!r}",
            partial(transport.infer, model, infer_inputs, requested, version, params),
        )
        return read_outputs(result, wanted, context=f"infer {model!r} at {self.url}")

    async def infer_batched(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        parameters: Parameters | None = None,
        max_batch_size: int | None = None,
        concurrency: int = 4,
    ) -> dict[str, NDArray[Any]]:
        """See `TritonClient.infer_batched`; up to `concurrency` chunks are in flight at once
        (results keep the input order)."""
        if concurrency < 1:
            raise InvalidInputError(f"concurrency must be >= 1, got {concurrency}")
        arrays = prepare_inputs(inputs)
        total = batch_size_of(arrays)
        limit = (
            await self.max_batch_size(model, version=version)
            if max_batch_size is None
            else max_batch_size
        )
        if limit < 0:
            raise InvalidInputError(f"max_batch_size must be >= 0, got {limit}")
        if limit == 0 or total <= limit:
            return await self.infer(
                model, arrays, outputs=outputs, version=version, parameters=parameters
            )
        gate = asyncio.Semaphore(concurrency)

        async def run(chunk: slice) -> dict[str, NDArray[Any]]:
            async with gate:
                return await self.infer(
                    model,
                    {name: array[chunk] for name, array in arrays.items()},
                    outputs=outputs,
                    version=version,
                    parameters=parameters,
                )

        tasks = [asyncio.ensure_future(run(chunk)) for chunk in split_batches(total, limit)]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return merge_batches(parts)

    async def _infer_shared_memory(
        self,
        model: str,
        arrays: dict[str, NDArray[Any]],
        wanted: list[str] | None,
        version: str,
        params: dict[str, Any] | None,
    ) -> dict[str, NDArray[Any]]:
        transport = self._transport()
        context = f"infer {model!r} (shared memory) at {self.url}"
        metadata = await self._cached_metadata(model, version)
        names = wanted if wanted is not None else [t.name for t in metadata.outputs]
        batched = await self.max_batch_size(model, version=version) > 0
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
                await self._call(
                    "register shared memory",
                    partial(transport.register_shm, layout.region, layout.key, layout.byte_size),
                )
                registered.append(layout.region)
            infer_inputs, requested = build_shm_request(
                self._endpoint.protocol, in_layout, out_layout, names
            )
            result = await self._call(
                f"infer {model!r}",
                partial(transport.infer, model, infer_inputs, requested, version, params),
            )
            if out_layout is not None:
                return read_shm_outputs(
                    result, out_layout, handles[out_layout.region], context=context
                )
            return read_outputs(result, names, context=context)
        finally:
            for region in registered:
                try:
                    await self._call(
                        "unregister shared memory",
                        partial(transport.unregister_shm, region),
                        policy=NO_RETRY,
                    )
                except ClientError as e:
                    logger.warning("could not unregister shared memory %s: %s", region, e)
            regions.destroy_all()
