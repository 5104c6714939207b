"""What `TritonClient` and `AsyncTritonClient` share: the endpoint, options, closed state,
per-model caches and every step that makes no call to the server. The two clients add only
the calls (`Call.run()` or ``await Call.run_async()``) and the waiting between them."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tritonkit_client._readiness import ReadinessDeadline
from tritonkit_client._requests import InferArgs, InferRequest, binary_request
from tritonkit_client._shm import ShmInference
from tritonkit_client._wire import Calls
from tritonkit_client.errors import ClientError
from tritonkit_client.options import NO_RETRY, ClientOptions, Endpoint, RetryPolicy, call_with_retry
from tritonkit_client.results import ModelMetadata


class ClientBase:
    """The state and call-free steps of one client; see the module docstring."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions | None = None) -> None:
        self._endpoint = endpoint
        self._options = options if options is not None else ClientOptions()
        self._max_batch_sizes: dict[tuple[str, str], int] = {}
        self._metadata: dict[tuple[str, str], ModelMetadata] = {}
        self._closed = False

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def url(self) -> str:
        return self._endpoint.url

    @property
    def options(self) -> ClientOptions:
        return self._options

    def clear_cache(self) -> None:
        """Forget cached max_batch_size and metadata (after a model was reloaded)."""
        self._max_batch_sizes.clear()
        self._metadata.clear()

    def _context(self, what: str) -> str:
        """What was attempted and where, for error messages."""
        return f"{what} at {self.url}"

    def _policy(self, policy: RetryPolicy | None) -> RetryPolicy:
        return self._options.retry if policy is None else policy

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError(f"the client for {self.url} is closed")

    def _open(self, opener: Callable[[Endpoint, ClientOptions], Calls]) -> Calls:
        """The calls to a tritonclient client made by `opener`; its errors become
        ClientErrors (once: creating a client is not retried)."""
        return call_with_retry(
            partial(opener, self._endpoint, self._options),
            policy=NO_RETRY,
            context=self._context("create client"),
        )

    def _readiness_deadline(self, timeout_s: float, poll_interval_s: float) -> ReadinessDeadline:
        return ReadinessDeadline(
            url=self.url,
            timeout_s=timeout_s,
            poll_interval_s=poll_interval_s,
            request_timeout_s=self._options.timeout_s,
        )

    def _binary_request(self, args: InferArgs) -> InferRequest:
        return binary_request(self._endpoint.protocol, args)

    def _shm_inference(
        self, args: InferArgs, metadata: ModelMetadata, *, batched: bool
    ) -> ShmInference:
        return ShmInference(
            protocol=self._endpoint.protocol,
            args=args,
            metadata=metadata,
            batched=batched,
            context=self._context(f"infer {args.model!r} (shared memory)"),
        )
