"""The asyncio client: `connect_async(url)` returns an `AsyncTritonClient` over
tritonclient.http.aio or tritonclient.grpc.aio. It mirrors `TritonClient` method for method
and shares with it everything but the calls themselves (`tritonkit_client._base`): options, retry
policy, error translation, request building and result parsing. It creates the underlying
tritonclient object on first use, inside the running event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import tritonclient.grpc.aio as grpc_aio
import tritonclient.http.aio as http_aio
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
    acall_with_retry,
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


def _open_tritonclient(endpoint: Endpoint, options: ClientOptions) -> Calls:
    """tritonclient.http.aio (`timeout_s` is aiohttp's total timeout of each request) or
    tritonclient.grpc.aio."""
    client: Any
    if endpoint.protocol is WireProtocol.HTTP:
        client = http_aio.InferenceServerClient(
            endpoint.target, verbose=options.verbose, conn_timeout=options.timeout_s
        )
    else:
        client = grpc_aio.InferenceServerClient(
            endpoint.target, verbose=options.verbose, channel_args=grpc_channel_args(options)
        )
    return Calls(client, protocol=endpoint.protocol, timeout_s=options.timeout_s)


async def _missing_readiness(calls: Calls, models: Sequence[str], timeout_s: float) -> list[str]:
    """What is not ready, asked once each without retries (errors untranslated)."""
    if not await calls.ready(timeout_s).run_async():
        return ["server"]
    missing = []
    for name in models:
        if not await calls.model_ready(name, "", timeout_s).run_async():
            missing.append(f"model {name!r}")
    return missing


class AsyncTritonClient(ClientBase):
    """An asyncio Triton client. Create it with `connect_async(url, ...)`."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions | None = None) -> None:
        super().__init__(endpoint, options)
        self._calls_instance: Calls | None = None

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
        calls, self._calls_instance = self._calls_instance, None
        if calls is not None:
            await self._run("close", calls.close(), policy=NO_RETRY)

    def _calls(self) -> Calls:
        self._check_open()
        if self._calls_instance is None:
            self._calls_instance = self._open(_open_tritonclient)
        return self._calls_instance

    async def _run(self, what: str, call: Call[T], *, policy: RetryPolicy | None = None) -> T:
        return await acall_with_retry(
            call.run_async, policy=self._policy(policy), context=self._context(what)
        )

    # -- health ------------------------------------------------------------------------------

    async def is_live(self) -> bool:
        return await self._run("liveness check", self._calls().live(self._options.timeout_s))

    async def is_ready(self) -> bool:
        return await self._run("readiness check", self._calls().ready(self._options.timeout_s))

    async def is_model_ready(self, name: str, *, version: str = "") -> bool:
        return await self._run(
            f"readiness check of model {name!r}",
            self._calls().model_ready(name, version, self._options.timeout_s),
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
        calls = self._calls()
        deadline = self._readiness_deadline(timeout_s, poll_interval_s)
        while True:
            last_error: ClientError | None = None
            try:
                missing = await _missing_readiness(calls, models, deadline.call_timeout_s())
            except CAUGHT as e:
                missing, last_error = ["server"], deadline.not_ready_error(e)
            pause_s = deadline.pause_s(missing, last_error)
            if pause_s is None:
                return
            await asyncio.sleep(pause_s)

    # -- models ------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelStatus]:
        return await self._run("list models", self._calls().index())

    async def model_metadata(self, name: str, *, version: str = "") -> ModelMetadata:
        call = self._calls().metadata(name, version)
        metadata = await self._run(f"metadata of model {name!r}", call)
        self._metadata[(name, version)] = metadata
        return metadata

    async def model_config(self, name: str, *, version: str = "") -> ModelConfig:
        """The model's config as a `tritonclient.grpc.model_config_pb2.ModelConfig`."""
        config = await self._run(f"config of model {name!r}", self._calls().config(name, version))
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
        class_counts: Mapping[str, int] | None = None,
    ) -> dict[str, NDArray[Any]]:
        """See `TritonClient.infer`."""
        args = infer_args(model, inputs, outputs=outputs, version=version, parameters=parameters,
                          class_counts=class_counts)
        if shared_memory and args.class_counts:
            raise InvalidInputError("classification (class_counts) comes back in the response; "
                                    "it cannot be combined with shared_memory=True")
        if shared_memory:
            return await self._infer_shared_memory(args)
        request = self._binary_request(args)
        result = await self._run(f"infer {model!r}", self._calls().infer(request))
        return read_outputs(result, args.outputs, context=self._context(f"infer {model!r}"))

    async def infer_batched(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        parameters: Parameters | None = None,
        class_counts: Mapping[str, int] | None = None,
        max_batch_size: int | None = None,
        concurrency: int = 4,
    ) -> dict[str, NDArray[Any]]:
        """See `TritonClient.infer_batched`; up to `concurrency` chunks are in flight at once
        (results keep the input order)."""
        if concurrency < 1:
            raise InvalidInputError(f"concurrency must be >= 1, got {concurrency}")
        arrays = prepare_inputs(inputs)
        total = batch_size_of(arrays)
        if max_batch_size is None:
            max_batch_size = await self.max_batch_size(model, version=version)
        chunks = chunk_inputs(arrays, total=total, max_batch_size=max_batch_size)
        if len(chunks) == 1:
            return await self.infer(
                model, chunks[0], outputs=outputs, version=version, parameters=parameters,
                class_counts=class_counts,
            )
        gate = asyncio.Semaphore(concurrency)

        async def run(chunk: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
            async with gate:
                return await self.infer(
                    model, chunk, outputs=outputs, version=version, parameters=parameters,
                    class_counts=class_counts,
                )

        tasks = [asyncio.ensure_future(run(chunk)) for chunk in chunks]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return merge_batches(parts)

    async def _infer_shared_memory(self, args: InferArgs) -> dict[str, NDArray[Any]]:
        calls = self._calls()
        metadata = await self._cached_metadata(args.model, args.version)
        batched = await self.max_batch_size(args.model, version=args.version) > 0
        shm = self._shm_inference(args, metadata, batched=batched)
        registered: list[str] = []
        try:
            for layout in shm.layouts:
                shm.create(layout)
                register = calls.register_shm(layout.region, layout.key, layout.byte_size)
                await self._run("register shared memory", register)
                registered.append(layout.region)
            result = await self._run(f"infer {args.model!r}", calls.infer(shm.request()))
            return shm.read(result)
        finally:
            for region in registered:
                try:
                    unregister = calls.unregister_shm(region)
                    await self._run("unregister shared memory", unregister, policy=NO_RETRY)
                except ClientError as e:
                    logger.warning("could not unregister shared memory %s: %s", region, e)
            shm.destroy()
